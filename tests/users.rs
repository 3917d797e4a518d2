//! `hallpass users` as a technician uses it, on a scratch copy of the primary
//! configuration whose state directory is a temporary folder. Passwords go in
//! on standard input; the tests never have a terminal, so the prompt path is
//! tested as the refusal it must be there.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The primary config and policy copied into a temporary folder, with list paths
/// made absolute and the state directory inside the folder.
fn scratch_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = root().join("blocklists/lists");
    let config = std::fs::read_to_string(root().join("config/hallpass.toml"))
        .expect("shipped config")
        .replace("\"../blocklists/lists", &format!("\"{}", lists.display()))
        .replace("primary/policy.toml", "policy.toml")
        .replace("state_dir = \"../state\"", "state_dir = \"state\"");
    assert!(config.contains("state_dir = \"state\""), "{config}");
    std::fs::write(dir.path().join("hallpass.toml"), config).expect("write config");
    std::fs::copy(
        root().join("config/primary/policy.toml"),
        dir.path().join("policy.toml"),
    )
    .expect("copy policy");
    let path = dir.path().join("hallpass.toml");
    (dir, path)
}

/// Runs `hallpass -c CONFIG users ARGS`, with `stdin` piped in (or none).
fn users(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(config)
        .arg("users")
        .args(args)
        .env_remove("HALLPASS_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hallpass binary runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("hallpass finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn accounts_file(config: &Path) -> PathBuf {
    config
        .parent()
        .expect("config folder")
        .join("state/accounts.toml")
}

fn list_json(config: &Path) -> Vec<serde_json::Value> {
    let out = users(config, &["list", "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("argon2"),
        "hashes are never listed"
    );
    serde_json::from_slice(&out.stdout).expect("list --json prints JSON")
}

#[test]
fn add_with_password_stdin_then_list_disable_enable_remove() {
    let (_dir, config) = scratch_config();
    let out = users(
        &config,
        &["add", "year3", "--group", "year3", "--password-stdin"],
        Some("tig3r\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("shared year-group login"),
        "{}",
        text(&out.stdout)
    );
    let out = users(
        &config,
        &["add", "j.smith", "--group", "staff", "--password-stdin"],
        Some("correct horse battery\r\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let file = accounts_file(&config);
    let stored = std::fs::read_to_string(&file).expect("accounts file");
    assert!(
        stored.contains("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(
        !stored.contains("correct horse") && !stored.contains("tig3r"),
        "{stored}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let rows = list_json(&config);
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["j.smith", "year3"]);
    assert_eq!(rows[0]["kind"], "individual");
    assert_eq!(rows[1]["kind"], "shared");
    assert_eq!(rows[0]["disabled"], false);
    let plain = users(&config, &["list"], None);
    let plain_text = text(&plain.stdout);
    assert!(
        plain_text.contains("j.smith") && !plain_text.contains("argon2"),
        "{plain_text}"
    );

    let out = users(&config, &["disable", "j.smith"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(list_json(&config)[0]["disabled"], true);
    assert!(
        file.with_file_name("accounts.toml.bak").exists(),
        "a backup is kept"
    );
    let out = users(&config, &["enable", "j.smith"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(list_json(&config)[0]["disabled"], false);

    let out = users(&config, &["remove", "j.smith"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = list_json(&config);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "year3");

    let out = users(&config, &["remove", "j.smith"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no account named \"j.smith\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn refusals_say_why() {
    let (_dir, config) = scratch_config();
    // A staff password below 8 characters: the rule is named, the password is not.
    let out = users(
        &config,
        &["add", "j.smith", "--group", "staff", "--password-stdin"],
        Some("s3cr3t\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("individual accounts (staff, secondary pupils) need at least 8"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");

    // An unknown group lists the policy's groups.
    let out = users(
        &config,
        &["add", "j.smith", "--group", "teachers", "--password-stdin"],
        Some("long enough password\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown group \"teachers\"")
            && err.contains("reception, staff, year1, year2, year3, year4, year5, year6"),
        "{err}"
    );

    // No terminal and no --password-stdin: refused as a usage error, no prompt.
    let out = users(&config, &["add", "j.smith", "--group", "staff"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--password-stdin"),
        "{}",
        text(&out.stderr)
    );

    // Nothing was written by any of the above.
    assert!(!accounts_file(&config).exists());
    assert!(list_json(&config).is_empty());

    // A password never comes from the command line.
    let out = users(
        &config,
        &["add", "x", "--group", "staff", "--password", "pw"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}
