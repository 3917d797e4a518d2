//! `hallpass report` on a seeded store: the numbers in JSON, the policy
//! history's source named, and the HTML printed to PDF by headless Chromium.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use policy::event::{BlockEvent, BlockKind};

const DAY: u64 = 86_400_000;

fn hallpass(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("HALLPASS_CONFIG")
        .env_remove("HALLPASS_INCIDENTS_STORE")
        .output()
        .expect("hallpass runs")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock")
}

fn block(reference: &str, group: &str, category: &str, time_ms: u64) -> BlockEvent {
    BlockEvent {
        reference: reference.into(),
        time_ms,
        client_ip: IpAddr::from([10, 1, 4, 23]),
        who: None,
        group: group.into(),
        band: "ks2".into(),
        method: "GET".into(),
        url: format!("https://{category}.test/"),
        category: Some(category.into()),
        rule: Some("category policy.toml:1:1".into()),
        kind: BlockKind::Policy,
    }
}

/// A config folder (not a git repository) with the shipped primary policy and
/// a store seeded with blocks in this week and the week before.
fn seeded() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("config/primary/policy.toml"),
        dir.path().join("policy.toml"),
    )
    .expect("policy");
    let config = dir.path().join("hallpass.toml");
    std::fs::write(
        &config,
        "version = 1\npolicy = \"policy.toml\"\nstate_dir = \"state\"\n",
    )
    .expect("config");
    let mut store =
        incidents::Store::open_sqlite(&dir.path().join("state/incidents.sqlite3")).expect("store");
    let now = now_ms();
    store
        .write_events(
            &[
                block("n1", "year5", "social", now - DAY),
                block("n2", "year5", "social", now - 2 * DAY),
                block("n3", "year3", "games", now - 3 * DAY),
                block("p1", "year5", "social", now - 8 * DAY),
            ],
            now,
        )
        .expect("seed");
    (dir, config)
}

#[test]
fn the_report_counts_the_period_and_prints_to_pdf() {
    let (dir, config) = seeded();
    let out = hallpass(&config, &["report", "--since", "7d", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["school"], "Example Primary School");
    assert_eq!(json["blocks_total"], 3);
    assert_eq!(json["blocks_previous_total"], 1);
    assert_eq!(json["blocks"][0]["group"], "year5");
    assert_eq!(json["blocks"][0]["count"], 2);
    assert_eq!(json["blocks"][0]["previous"], 1);
    // Not a git repository: the history says it is from modification times,
    // and both files were written just now.
    assert_eq!(json["policy"]["source"], "modification-times");
    assert_eq!(json["policy"]["changes"].as_array().map(Vec::len), Some(2));

    let out = hallpass(&config, &["report", "--since", "7d", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.contains("blocks,year5,social,2,1\n"), "{csv}");

    let html = dir.path().join("report.html");
    let out = hallpass(
        &config,
        &[
            "report",
            "--since",
            "7d",
            "--out",
            html.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("No filter check was recorded in this period."));
    assert!(page.contains("modification times"));

    // Printed by the browser a governor would use: a real, non-trivial PDF.
    let pdf = dir.path().join("report.pdf");
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("chromium is installed (scripts/install-test-deps.sh chromium)");
    let printed = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("chromium").display()
        ))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    let bytes = std::fs::read(&pdf)
        .unwrap_or_else(|e| panic!("no PDF ({e}): {}", String::from_utf8_lossy(&printed.stderr)));
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    // Keep the printout where CI collects artifacts, when it asks.
    if let Ok(artifacts) = std::env::var("HALLPASS_TEST_ARTIFACTS") {
        let _ = std::fs::create_dir_all(&artifacts);
        let _ = std::fs::copy(&pdf, Path::new(&artifacts).join("review-report.pdf"));
        let _ = std::fs::copy(&html, Path::new(&artifacts).join("review-report.html"));
    }
}

#[test]
fn a_git_tracked_policy_reports_its_commits() {
    let (dir, config) = seeded();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "Terry Technician")
            .env("GIT_AUTHOR_EMAIL", "t@example.test")
            .env("GIT_COMMITTER_NAME", "Terry Technician")
            .env("GIT_COMMITTER_EMAIL", "t@example.test")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "policy.toml", "hallpass.toml"]);
    git(&["commit", "-q", "-m", "Open scratch.mit.edu for every band"]);
    let out = hallpass(&config, &["report", "--since", "7d", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["policy"]["source"], "git");
    let changes = json["policy"]["changes"].as_array().expect("changes");
    assert_eq!(
        changes.len(),
        2,
        "one commit touching both files: {changes:?}"
    );
    assert_eq!(changes[0]["who"], "Terry Technician");
    assert_eq!(changes[0]["summary"], "Open scratch.mit.edu for every band");
}
