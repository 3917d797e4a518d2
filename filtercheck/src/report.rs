//! A finished check: per group and category, pass or fail, with counts.
//!
//! In: every probe's result. Out: the text a technician reads (one line per
//! group × category, failures named with the URLs that failed), JSON, and the
//! record the incident store keeps ([`Report::to_record`]).
use std::fmt::Write as _;
use std::net::SocketAddr;

use incidents::{FilterCheckResult, NewFilterCheck};
use serde::Serialize;

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// When the first probe was sent (ms since the Unix epoch).
    pub started_ms: u64,
    /// When the last answer came.
    pub finished_ms: u64,
    /// The proxy probed.
    pub proxy: SocketAddr,
    /// Groups probed: (group, band, how identified).
    pub groups: Vec<(String, String, String)>,
    /// Groups not probed, each with why.
    pub skipped: Vec<String>,
    /// Every probe, in order.
    pub results: Vec<FilterCheckResult>,
}

/// One group × kind × category line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The group.
    pub group: String,
    /// Its band.
    pub band: String,
    /// `baseline`, `block`, `allow` or `safe-search`.
    pub kind: String,
    /// The category (or must-allow label, or engine).
    pub category: String,
    /// Probes sent.
    pub probes: usize,
    /// Probes that failed, with their URL and outcome.
    pub failed: Vec<(String, String)>,
}

impl Line {
    /// Whether every probe of the line passed.
    pub fn pass(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Probe results (a fresh [`Report`]'s or a stored run's) grouped per
/// group × kind × category, in probe order.
pub fn lines(results: &[FilterCheckResult]) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for r in results {
        let i = match lines
            .iter()
            .position(|l| l.group == r.group && l.kind == r.kind && l.category == r.category)
        {
            Some(i) => i,
            None => {
                lines.push(Line {
                    group: r.group.clone(),
                    band: r.band.clone(),
                    kind: r.kind.clone(),
                    category: r.category.clone(),
                    probes: 0,
                    failed: Vec::new(),
                });
                lines.len() - 1
            }
        };
        lines[i].probes += 1;
        if !r.pass {
            lines[i].failed.push((r.url.clone(), r.outcome.clone()));
        }
    }
    lines
}

fn is_must_block(r: &FilterCheckResult) -> bool {
    r.kind == "block" || r.kind == "baseline"
}

impl Report {
    /// Must-block probes (categories and the locked baseline) that got through.
    pub fn under_blocked(&self) -> u64 {
        self.count(|r| is_must_block(r) && r.outcome.starts_with("allowed"))
    }

    /// Must-allow probes that were blocked.
    pub fn over_blocked(&self) -> u64 {
        self.count(|r| r.kind == "allow" && r.outcome == "blocked")
    }

    /// Probes with no verdict.
    pub fn errors(&self) -> u64 {
        self.count(|r| r.outcome == "error")
    }

    /// Probes that failed for any reason.
    pub fn failures(&self) -> u64 {
        self.count(|r| !r.pass)
    }

    /// Whether the check passed: probes were sent and none failed.
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.failures() == 0
    }

    fn count(&self, f: impl Fn(&FilterCheckResult) -> bool) -> u64 {
        self.results.iter().filter(|r| f(r)).count() as u64
    }

    /// The results grouped per group × kind × category, in probe order.
    pub fn lines(&self) -> Vec<Line> {
        lines(&self.results)
    }

    /// The record the incident store keeps.
    pub fn to_record(&self, ran_by: &str, suite: &str, policy: &str) -> NewFilterCheck {
        NewFilterCheck {
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            ran_by: ran_by.to_string(),
            proxy: self.proxy.to_string(),
            suite: suite.to_string(),
            policy: policy.to_string(),
            probes: self.results.len() as u64,
            failures: self.failures(),
            under_blocked: self.under_blocked(),
            over_blocked: self.over_blocked(),
            errors: self.errors(),
            passed: self.passed(),
            results: self.results.clone(),
        }
    }

    /// The report as text: one line per group × category, then the counts and,
    /// on failure, every failing category named.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "filter check through {}", self.proxy);
        for (group, band, identity) in &self.groups {
            let _ = writeln!(out, "\ngroup {group} (band {band}, as {identity})");
            for l in self.lines().iter().filter(|l| &l.group == group) {
                let verdict = if l.pass() { "PASS" } else { "FAIL" };
                let _ = write!(
                    out,
                    "  {verdict}  {:<11} {:<18} {}/{} ok",
                    l.kind,
                    l.category,
                    l.probes - l.failed.len(),
                    l.probes
                );
                for (url, outcome) in &l.failed {
                    let _ = write!(out, "; {url} {outcome}");
                }
                out.push('\n');
            }
        }
        if !self.skipped.is_empty() {
            out.push('\n');
        }
        for s in &self.skipped {
            let _ = writeln!(out, "not checked: {s}");
        }
        let _ = writeln!(
            out,
            "\n{} probes, {} failed: under-blocking {}, over-blocking {}, errors {}",
            self.results.len(),
            self.failures(),
            self.under_blocked(),
            self.over_blocked(),
            self.errors()
        );
        if self.results.is_empty() {
            let _ = writeln!(out, "FAILED: no group could be checked");
        }
        for l in self.lines().iter().filter(|l| !l.pass()) {
            let what = match l.kind.as_str() {
                "block" | "baseline" => "UNDER-BLOCKING",
                "allow" => "OVER-BLOCKING",
                "safe-search" => "SAFE SEARCH NOT ENFORCED",
                _ => "FAILED",
            };
            let _ = writeln!(
                out,
                "{what}: {} `{}` for group {} (band {})",
                l.kind, l.category, l.group, l.band
            );
        }
        out
    }
}
