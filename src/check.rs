//! `hallpass check`: validate config, policy and lists; run the policy's tests.
use std::path::Path;
use std::process::ExitCode;

use proxy::snapshot::{self, LoadError};
use serde_json::json;

/// Arguments of `hallpass check`.
#[derive(clap::Args)]
pub struct Args {
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let snap = match snapshot::load(config, 1) {
        Ok(s) => s,
        Err(LoadError::Invalid(mut problems)) => {
            problems.sort();
            let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
            report(args.json, &lines, &[], None);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    // A bad line in a list is skipped when serving, but `check` refuses it so the
    // technician sees it (`hallpass lists import` writes clean lists).
    let mut problems: Vec<String> = snap.list_problems.iter().map(ToString::to_string).collect();
    problems.extend(service_problems(&snap));
    let outcomes = snap.policy.run_tests(&snap.lists);
    let mut tests = Vec::new();
    for o in &outcomes {
        let got = match &o.got {
            Ok(v) => format!("{} ({})", v.action, v.rank),
            Err(e) => e.clone(),
        };
        if !o.passed {
            let want = match o.test.rank {
                Some(r) => format!("{} ({r})", o.test.expect),
                None => o.test.expect.to_string(),
            };
            problems.push(format!(
                "{}: test failed: {} as {}: expected {want}, got {got}",
                o.test.at, o.test.url, o.test.group
            ));
        }
        tests.push(json!({"url": o.test.url, "group": o.test.group, "passed": o.passed, "got": got, "source": o.test.at.to_string()}));
    }
    let m = snap.lists.matcher();
    let summary = format!(
        "{}: ok: {} groups, {} bands, {} lists ({} domains), {} tests passed",
        config.display(),
        snap.policy.groups().len(),
        snap.policy.bands().count(),
        snap.policy.lists().len(),
        m.domain_count(),
        outcomes.len()
    );
    report(
        args.json,
        &problems,
        &tests,
        problems.is_empty().then_some(summary),
    );
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The sections `hallpass run` reads besides the policy: `[incidents]` (with
/// its alert channels, which reads the SMTP password file to check it) and
/// `[console]`, so a mistake there is caught before a restart, not by one.
fn service_problems(snap: &snapshot::Snapshot) -> Vec<String> {
    let file = &snap.config.file;
    let mut problems = Vec::new();
    let state_dir = proxy::Settings::from_config(&snap.config, &snap.config_dir).state_dir;
    let incidents: Result<incidents::Settings, _> = snap.config.incidents.clone().try_into();
    match incidents {
        Ok(mut settings) => {
            settings.alerts.resolve_paths(&state_dir);
            if let Err(e) = settings.validate() {
                problems.push(format!("{file}: [incidents]: {e}"));
            }
        }
        Err(e) => problems.push(format!("{file}: [incidents]: {e}")),
    }
    if let Err(e) = console::Settings::from_table(file, &snap.config.console) {
        problems.push(format!("{e}"));
    }
    problems
}

fn report(json: bool, problems: &[String], tests: &[serde_json::Value], summary: Option<String>) {
    if json {
        let out = json!({"ok": problems.is_empty(), "problems": problems, "tests": tests});
        out!("{out:#}");
        return;
    }
    for p in problems {
        eprintln!("{p}");
    }
    match summary {
        Some(s) => out!("{s}"),
        None => eprintln!(
            "{} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
    }
}
