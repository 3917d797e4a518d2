//! The systemd units in systemd/: `systemd-analyze verify` accepts them and
//! `systemd-analyze security --offline=yes` rates each service 2.0 or lower.
//! Fails (never skips) when systemd-analyze is missing: scripts/test.sh
//! installs the `systemd` package.
use std::path::{Path, PathBuf};
use std::process::Command;

fn units() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// The units copied to a scratch folder with `/usr/bin/hallpass` pointing at
/// the binary under test, since verify checks that ExecStart= exists.
fn scratch_units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(units()).expect("systemd/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("unit");
        let text = text.replace("/usr/bin/hallpass", env!("CARGO_BIN_EXE_hallpass"));
        std::fs::write(dir.path().join(name), text).expect("copy");
    }
    dir
}

fn analyze(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze is needed (Debian package `systemd`, installed by scripts/install-test-deps.sh): {e}")
        })
}

const UNITS: [&str; 3] = [
    "hallpass.service",
    "hallpass-filter-check.service",
    "hallpass-filter-check.timer",
];

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = scratch_units();
    let paths: Vec<String> = UNITS.iter().map(|u| format!("./{u}")).collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    let out = analyze(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify reports unknown keys and bad values as warnings on stderr.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(complaints.is_empty(), "{stderr}");
}

#[test]
fn each_service_is_rated_2_or_lower_by_systemd_analyze_security() {
    let dir = scratch_units();
    for unit in ["hallpass.service", "hallpass-filter-check.service"] {
        let out = analyze(
            dir.path(),
            &["security", "--offline=yes", &format!("./{unit}")],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{unit}: no rating in {stdout}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: cannot read {line:?}"));
        assert!(score <= 2.0, "{unit}: exposure {score} > 2.0\n{stdout}");
    }
}

#[test]
fn the_service_runs_as_a_sysusers_user_with_the_required_hardening() {
    let service = std::fs::read_to_string(units().join("hallpass.service")).expect("unit");
    let sysusers = std::fs::read_to_string(units().join("hallpass.sysusers")).expect("sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("u hallpass ")));
    for line in [
        "Type=notify",
        "User=hallpass",
        "StateDirectory=hallpass",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "ExecReload=/usr/bin/hallpass -c /etc/hallpass/hallpass.toml reload",
    ] {
        assert!(service.lines().any(|l| l == line), "missing {line}");
    }
    let timer =
        std::fs::read_to_string(units().join("hallpass-filter-check.timer")).expect("timer");
    assert!(timer.lines().any(|l| l == "OnCalendar=weekly"));
}

#[test]
fn the_packaged_configuration_passes_check() {
    // As installed: /etc/hallpass/{hallpass,policy}.toml with the lists in
    // /usr/share/hallpass/lists; here the paths point at the checkout.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root.join("packaging/hallpass.toml")).expect("config");
    let text = text
        .replace(
            "/usr/share/hallpass/lists",
            &root.join("blocklists/lists").display().to_string(),
        )
        .replace(
            "/var/lib/hallpass",
            &dir.path().join("state").display().to_string(),
        );
    std::fs::write(dir.path().join("hallpass.toml"), text).expect("write");
    std::fs::copy(
        root.join("config/primary/policy.toml"),
        dir.path().join("policy.toml"),
    )
    .expect("policy");
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(dir.path().join("hallpass.toml"))
        .arg("check")
        .env_remove("HALLPASS_CONFIG")
        .output()
        .expect("hallpass runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
