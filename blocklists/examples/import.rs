//! Produces the shipped default lists in `blocklists/lists/` from `shared/data`.
//!
//! Usage: `cargo run -p hallpass-blocklists --example import -- <shared/data> <lists>`
//!
//! The canonicaliser here is deliberately simple (lower-case, one trailing dot
//! dropped, only `[a-z0-9._-]` labels and IPv4/IPv6 literals): the proxy runs every
//! entry through the full canonicaliser again when it loads the lists, and
//! `hallpass lists import` uses that one.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use blocklists::import::{self, FileReport};

/// The UT1 categories a school is likely to use (black- and white-type).
const UT1_CATEGORIES: &[&str] = &[
    "adult",
    "mixed_adult",
    "lingerie",
    "dating",
    "gambling",
    "games",
    "chat",
    "forums",
    "social_networks",
    "blog",
    "webmail",
    "audio-video",
    "hacking",
    "malware",
    "phishing",
    "cryptojacking",
    "stalkerware",
    "redirector",
    "strict_redirector",
    "vpn",
    "doh",
    "warez",
    "drogue",
    "agressif",
    "sect",
    "dangerous_material",
    "ddos",
    "remote-control",
    "residential-proxies",
    "filehosting",
    "shortener",
    "dynamic-dns",
    "fakenews",
    "sexual_education",
    "child",
    "educational_games",
    "bank",
];

fn simple_canon(input: &str) -> Result<String, String> {
    let lower = input.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(name.to_string());
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "a name must be 1 to 253 bytes, found {}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 bytes".to_string());
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!("character {bad:?} is not allowed in a host"));
        }
    }
    Ok(name.to_string())
}

fn print(report: &FileReport) {
    for problem in &report.problems {
        eprintln!("{problem} (dropped)");
    }
    println!(
        "{}: accepted {}, written {}, duplicates {}, covered {}, dropped {}, -> {}",
        report.source.display(),
        report.accepted,
        report.written,
        report.duplicates,
        report.covered,
        report.problems.len(),
        report
            .output
            .as_deref()
            .map_or("(nothing)".to_string(), |p| p.display().to_string())
    );
}

fn run(data: &Path, lists: &Path) -> Result<(), blocklists::ListError> {
    let canon = simple_canon;
    let reports = import::import_squidguard_tree(
        &data.join("ut1"),
        &lists.join("ut1"),
        Some(UT1_CATEGORIES),
        &canon,
    )?;
    for category in &reports {
        category.files.iter().for_each(print);
    }
    let report = import::import_hosts_file(
        &data.join("hosts/sinfonietta/pornography-hosts"),
        &lists.join("sinfonietta/pornography"),
        &canon,
    )?;
    print(&report);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [data, lists] = args.as_slice() else {
        eprintln!("usage: import <shared/data> <blocklists/lists>");
        return ExitCode::from(2);
    };
    match run(data, lists) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
