//! The `hallpass` command as a technician uses it: `check` and `explain` on the
//! shipped configurations, with the real shipped lists.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hallpass(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("HALLPASS_CONFIG")
        .output()
        .expect("the hallpass binary runs")
}

fn primary() -> PathBuf {
    root().join("config/hallpass.toml")
}

fn secondary() -> PathBuf {
    root().join("config/secondary/hallpass.toml")
}

/// `explain --json` as parsed JSON, asserting exit 0.
fn explain(config: &Path, who: &str, url: &str) -> serde_json::Value {
    let out = hallpass(config, &["explain", "--json", "--as", who, url]);
    assert!(
        out.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain --json prints JSON")
}

/// Every `hallpass.toml` shipped under config/, so a new example cannot go untested.
fn shipped_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("config folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "hallpass.toml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("config"), &mut out);
    out.sort();
    out
}

#[test]
fn every_shipped_config_passes_check_and_its_tests() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 2,
        "expected the primary and secondary examples: {configs:?}"
    );
    for config in configs {
        let out = hallpass(&config, &["check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: check failed:\n{stderr}",
            config.display()
        );
        assert!(
            stdout.contains(": ok:") && stdout.contains("tests passed"),
            "{stdout}"
        );
    }
}

#[test]
fn ks1_is_allowlist_only() {
    let v = explain(&primary(), "year1", "https://www.wikipedia.org/");
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["rule"], "default");
    assert_eq!(v["band"], "ks1");
    let v = explain(&primary(), "year1", "https://www.cbeebies.com/");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["rule"], "allow");
    assert_eq!(v["matched"], "cbeebies.com");
}

#[test]
fn twitter_is_an_approved_service_for_ks2_but_facebook_is_social_networking() {
    let v = explain(&primary(), "year5", "https://twitter.com/");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["rule"], "service");
    assert_eq!(v["service"], "twitter");
    let v = explain(&primary(), "year5", "https://www.facebook.com/");
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["rule"], "category");
    assert_eq!(v["category"], "social");
    assert_eq!(v["matched"], "facebook.com");
    // The deciding policy line: the `block = [...]` of band ks2 in the primary policy.
    let source = v["source"].as_str().expect("source");
    assert!(source.contains("primary/policy.toml:"), "{source}");
}

#[test]
fn staff_may_use_facebook_in_the_secondary_example() {
    let v = explain(&secondary(), "staff", "https://www.facebook.com/");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["rule"], "service");
    let v = explain(&secondary(), "year9", "https://www.facebook.com/");
    assert_eq!(v["verdict"], "block");
}

#[test]
fn locked_test_domains_block_staff_too() {
    for config in [primary(), secondary()] {
        for url in [
            "https://child-abuse.hallpass-test.invalid/",
            "http://WWW.Terrorism.hallpass-test.invalid./x",
        ] {
            let v = explain(&config, "staff", url);
            assert_eq!(v["verdict"], "block", "{url}");
            assert_eq!(v["rule"], "baseline", "{url}");
        }
    }
}

#[test]
fn explain_json_has_the_documented_fields() {
    let v = explain(&primary(), "year5", "https://www.facebook.com/");
    for field in [
        "verdict", "who", "group", "band", "rule", "category", "matched", "source",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["who"], "year5");
    assert_eq!(v["group"], "year5");
}

#[test]
fn explain_text_names_the_rule_and_steps() {
    let out = hallpass(
        &primary(),
        &["explain", "--as", "year5", "https://www.facebook.com/"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("BLOCK  https://www.facebook.com/"),
        "{text}"
    );
    assert!(text.contains("category: social"), "{text}");
    assert!(text.contains("5 category  DECIDES"), "{text}");
}

#[test]
fn unknown_group_lists_the_known_ones() {
    let out = hallpass(
        &primary(),
        &["explain", "--as", "year9", "https://example.com/"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown user or group `year9`"), "{err}");
    assert!(
        err.contains("reception") && err.contains("year1") && err.contains("staff"),
        "{err}"
    );
}

#[test]
fn an_unparseable_url_is_an_error_with_the_reason() {
    for url in ["ftp://example.com/", "https://exa mple.com/", "not a url"] {
        let out = hallpass(&primary(), &["explain", "--as", "year5", url]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot explain"), "{url}: {err}");
    }
}

/// A copy of the primary config in a temporary folder, with list paths made absolute.
fn scratch_config(edit_policy: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = root().join("blocklists/lists");
    let config = std::fs::read_to_string(primary())
        .expect("shipped config")
        .replace("\"../blocklists/lists", &format!("\"{}", lists.display()))
        .replace("primary/policy.toml", "policy.toml");
    std::fs::write(dir.path().join("hallpass.toml"), config).expect("write config");
    let policy =
        std::fs::read_to_string(root().join("config/primary/policy.toml")).expect("policy");
    std::fs::write(dir.path().join("policy.toml"), edit_policy(policy)).expect("write policy");
    let path = dir.path().join("hallpass.toml");
    (dir, path)
}

#[test]
fn check_reports_every_problem_with_file_line_col() {
    let (_dir, config) = scratch_config(|p| {
        p.replace(
            "services = [\"twitter\", \"moderated-chat\"]",
            "services = [\"twiter\", \"moderated-chat\"]",
        )
        .replace(
            "year4 = { band = \"ks2\", label = \"Year 4\" }",
            "year4 = { band = \"ks9\", label = \"Year 4\" }",
        )
        .replace("[allow]\nurls", "[allow]\nlocked = true\nurls")
    });
    let out = hallpass(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // A syntax/type error stops parsing; fix it and the rest are reported together.
    assert!(
        err.contains("policy.toml:") && err.contains("unknown field `locked`"),
        "{err}"
    );
    let (_dir, config) = scratch_config(|p| {
        p.replace(
            "services = [\"twitter\", \"moderated-chat\"]",
            "services = [\"twiter\", \"moderated-chat\"]",
        )
        .replace(
            "year4 = { band = \"ks2\", label = \"Year 4\" }",
            "year4 = { band = \"ks9\", label = \"Year 4\" }",
        )
    });
    let out = hallpass(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("policy.toml:")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines.iter().any(|l| l.contains("unknown service `twiter`")),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.contains("unknown band `ks9`")),
        "{err}"
    );
    for l in lines {
        let mut parts = l.split(':').skip(1);
        let line: u32 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("line number");
        let col: u32 = parts.next().and_then(|s| s.parse().ok()).expect("column");
        assert!(line > 0 && col > 0, "{l}");
    }
}

#[test]
fn check_refuses_an_allow_entry_that_tries_to_open_a_locked_site() {
    let (_dir, config) = scratch_config(|p| {
        p.replace(
            "domains = [\"scratch.mit.edu\"]",
            "domains = [\"scratch.mit.edu\", \"child-abuse.hallpass-test.invalid\"]",
        )
    });
    let out = hallpass(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allow entry `child-abuse.hallpass-test.invalid` has no effect"),
        "{err}"
    );
    assert!(err.contains("locked baseline"), "{err}");
}

#[test]
fn check_fails_a_policy_test_that_does_not_hold() {
    // Withdrawing Twitter from KS2 must make the shipped Twitter test fail.
    let (_dir, config) = scratch_config(|p| {
        p.replace(
            "services = [\"twitter\", \"moderated-chat\"]",
            "services = [\"moderated-chat\"]",
        )
    });
    let out = hallpass(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test failed: https://twitter.com/ as year5: expected allow (service), got block (category)"),
        "{err}"
    );
}

#[test]
fn config_comes_from_the_environment_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .args([
            "explain",
            "--json",
            "--as",
            "staff",
            "https://www.facebook.com/",
        ])
        .env("HALLPASS_CONFIG", secondary())
        .output()
        .expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["verdict"], "allow");
}

#[test]
fn check_refuses_bad_alert_and_console_settings_before_a_restart() {
    let (dir, config) = scratch_config(|p| p);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[incidents.alerts.smtp]\nserver = \"mail.school.test\"\nsecurity = \"none\"\n\
             from = \"hallpass@school.test\"\nto = [\"dsl@school.test\"]\nusername = \"hallpass\"\n\
             password_file = \"smtp-password\"\n"
        )
        .replace("[console]\n", "[console]\nidle_timout = \"15m\"\n"),
    )
    .expect("config");
    let out = hallpass(&config, &["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[incidents]") && err.contains("alerts.smtp") && err.contains("in the clear"),
        "{err}"
    );
    assert!(
        err.contains("[console]") && err.contains("idle_timout"),
        "{err}"
    );
    drop(dir);
}

/// `hallpass explain … | head -0`: the reader is gone before anything is
/// written. The command ends quietly, not with a panic's backtrace.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(primary())
        .args(["explain", "--as", "year3", "http://example.com/"])
        .env_remove("HALLPASS_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the hallpass binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("hallpass ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// Output that cannot be written for any other reason (a full disk) is an
/// error: exit 1 and a reason, so a cut-short export is never taken for whole.
#[test]
fn output_that_cannot_be_written_is_an_error() {
    let full = std::fs::File::create("/dev/full").expect("/dev/full opens");
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(primary())
        .args(["explain", "--as", "year3", "http://example.com/"])
        .env_remove("HALLPASS_CONFIG")
        .stdout(full)
        .output()
        .expect("the hallpass binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The allocator options the binary carries (src/main.rs) are the ones
/// jemalloc reads: its own statistics, printed at exit, show them.
#[test]
fn the_binary_sets_its_allocator_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("the hallpass binary runs");
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(
        stats
            .lines()
            .any(|l| l.trim() == "opt.tcache_nslots_small_min: 64"),
        "jemalloc did not read the binary's malloc_conf:\n{stats}"
    );
}
