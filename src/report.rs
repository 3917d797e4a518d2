//! `hallpass report`: the review report for a period (`--since 30d`), against
//! the previous period of the same length, as HTML (prints to PDF), CSV or
//! JSON. The numbers come from the incident store (`incidents::period_report`);
//! the policy history is gathered here: `git log` of the policy file and
//! `hallpass.toml` when they are tracked in a git repository, else their
//! modification times (the report says which).
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use clap::ValueEnum;
use incidents::period_report::{HistorySource, PeriodReport, PolicyChange, PolicyHistory};
use incidents::{Clock, SystemClock};

use crate::filter_check::Light;

/// Arguments of `hallpass report`.
#[derive(clap::Args)]
pub struct Args {
    /// The period: this long before now (`30d`, `90d`, `12h`).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    since: std::time::Duration,
    /// The output format.
    #[arg(long, value_enum, default_value = "html")]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// The store: `sqlite`, `sqlite:PATH` or a postgres:// URL. Default:
    /// `[incidents] store` in the config.
    #[arg(long, env = "HALLPASS_INCIDENTS_STORE")]
    store: Option<String>,
}

#[derive(Copy, Clone, ValueEnum)]
enum Format {
    Html,
    Csv,
    Json,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    incidents::duration::parse(s)
}

/// Runs `hallpass report`.
pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let light = Light::load(config)?;
    let until_ms = SystemClock.now_ms();
    let length = u64::try_from(args.since.as_millis()).unwrap_or(u64::MAX);
    if length == 0 {
        anyhow::bail!("--since must be longer than 0");
    }
    let since_ms = until_ms.saturating_sub(length);
    let files = [light.policy_path.clone(), config.to_path_buf()];
    let history = policy_history(&files, since_ms, until_ms);
    let mut store = light.store(args.store.as_deref())?;
    let report = PeriodReport::build(
        &mut store,
        light.policy.school().unwrap_or("(school name not set)"),
        since_ms,
        until_ms,
        until_ms,
        history,
    )?;
    let text = match args.format {
        Format::Html => report.to_html(),
        Format::Csv => report.to_csv(),
        Format::Json => report.to_json() + "\n",
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => out_raw!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The files' changes in `[since_ms, until_ms)`: from git when every file is
/// tracked in a repository (and git runs), else from modification times.
fn policy_history(files: &[std::path::PathBuf], since_ms: u64, until_ms: u64) -> PolicyHistory {
    if let Some(changes) = git_history(files, since_ms, until_ms) {
        return PolicyHistory {
            source: HistorySource::Git,
            changes,
        };
    }
    let mut changes = Vec::new();
    for f in files {
        let modified = std::fs::metadata(f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if let Some(at_ms) = modified.filter(|t| (since_ms..until_ms).contains(t)) {
            changes.push(PolicyChange {
                at_ms,
                file: f.display().to_string(),
                who: None,
                summary: "modified (last change to the file)".into(),
            });
        }
    }
    changes.sort_by_key(|c| c.at_ms);
    PolicyHistory {
        source: HistorySource::ModificationTimes,
        changes,
    }
}

fn git_history(
    files: &[std::path::PathBuf],
    since_ms: u64,
    until_ms: u64,
) -> Option<Vec<PolicyChange>> {
    let mut changes = Vec::new();
    for f in files {
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty())?;
        let name = f.file_name()?;
        let tracked = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["ls-files", "--error-unmatch", "--"])
            .arg(name)
            .output()
            .ok()?;
        if !tracked.status.success() {
            return None;
        }
        let log = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "log",
                "--follow",
                "--format=%at%x09%an%x09%s",
                &format!("--since=@{}", since_ms / 1000),
                &format!("--until=@{}", until_ms / 1000),
                "--",
            ])
            .arg(name)
            .output()
            .ok()?;
        if !log.status.success() {
            return None;
        }
        for line in String::from_utf8_lossy(&log.stdout).lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(at), Some(who), Some(subject)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(at) = at.parse::<u64>() else { continue };
            changes.push(PolicyChange {
                at_ms: at * 1000,
                file: f.display().to_string(),
                who: Some(who.to_string()),
                summary: subject.to_string(),
            });
        }
    }
    changes.sort_by_key(|c| c.at_ms);
    Some(changes)
}
