//! The termly/annual review report: one period against the one before it.
//!
//! In: the store, a period `[since, until)` and the policy files' change
//! history (gathered by the caller, which may read git or file times; this
//! crate runs no processes). Out: a [`PeriodReport`] rendered as JSON, CSV or
//! HTML that prints cleanly to PDF (A4, repeated table headers, no rows split
//! across pages, no script, no external resources).
//!
//! Contents: blocks by group × category with the previous period of the same
//! length beside them; incidents opened by kind (both periods) and closed with
//! their time to close; every filter check of the period; policy changes.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::clock::format_ms;
use crate::error::Error;
use crate::reporting::{Closure, FilterCheck, KindCount};
use crate::store::Store;

/// Where the policy history came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistorySource {
    /// `git log` of the policy files (they are in a git repository).
    Git,
    /// The files' modification times (not in git: only the last change of
    /// each file is known).
    ModificationTimes,
}

/// One change to a policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// The file.
    pub file: String,
    /// Who (the commit's author), when known.
    pub who: Option<String>,
    /// What (the commit's subject, or "modified").
    pub summary: String,
}

/// The policy files' history as the caller found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyHistory {
    /// Git or modification times.
    pub source: HistorySource,
    /// Changes within the period, oldest first.
    pub changes: Vec<PolicyChange>,
}

/// Blocks of one group in one category, this period and the one before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockRow {
    /// The group (`""`: not identified).
    pub group: String,
    /// The category (`""`: none, e.g. an explicit deny).
    pub category: String,
    /// Blocks in the period.
    pub count: u64,
    /// Blocks in the previous period of the same length.
    pub previous: u64,
}

/// Incidents of one kind opened, this period and the one before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenedRow {
    /// The kind.
    pub kind: String,
    /// Opened in the period.
    pub count: u64,
    /// Opened in the previous period.
    pub previous: u64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct PeriodReport {
    /// The school's name.
    pub school: String,
    /// When the report was made.
    pub generated_ms: u64,
    /// The period's start (inclusive).
    pub since_ms: u64,
    /// The period's end (exclusive).
    pub until_ms: u64,
    /// The previous period's start (it ends at `since_ms`).
    pub previous_since_ms: u64,
    /// Blocks by group × category, busiest first.
    pub blocks: Vec<BlockRow>,
    /// Total blocks in the period.
    pub blocks_total: u64,
    /// Total blocks in the previous period.
    pub blocks_previous_total: u64,
    /// Incidents opened by kind.
    pub opened: Vec<OpenedRow>,
    /// Incidents closed in the period, with when each was opened.
    pub closed: Vec<Closure>,
    /// The median time from opening to closing, over `closed`.
    pub median_time_to_close_ms: Option<u64>,
    /// Filter checks started in the period, newest first.
    pub filter_checks: Vec<FilterCheck>,
    /// Policy changes in the period.
    pub policy: PolicyHistory,
}

fn merge_opened(now: Vec<KindCount>, before: Vec<KindCount>) -> Vec<OpenedRow> {
    let mut rows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for k in now {
        rows.entry(k.kind).or_default().0 += k.count;
    }
    for k in before {
        rows.entry(k.kind).or_default().1 += k.count;
    }
    rows.into_iter()
        .map(|(kind, (count, previous))| OpenedRow {
            kind,
            count,
            previous,
        })
        .collect()
}

impl PeriodReport {
    /// Builds the report for `[since_ms, until_ms)` from the store.
    pub fn build(
        store: &mut Store,
        school: &str,
        since_ms: u64,
        until_ms: u64,
        generated_ms: u64,
        policy: PolicyHistory,
    ) -> Result<PeriodReport, Error> {
        let length = until_ms.saturating_sub(since_ms);
        let previous_since_ms = since_ms.saturating_sub(length);
        let mut rows: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for b in store.block_counts(since_ms, until_ms)? {
            rows.entry((b.group, b.category)).or_default().0 += b.count;
        }
        for b in store.block_counts(previous_since_ms, since_ms)? {
            rows.entry((b.group, b.category)).or_default().1 += b.count;
        }
        let mut blocks: Vec<BlockRow> = rows
            .into_iter()
            .map(|((group, category), (count, previous))| BlockRow {
                group,
                category,
                count,
                previous,
            })
            .collect();
        blocks.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.group.cmp(&b.group))
                .then_with(|| a.category.cmp(&b.category))
        });
        let opened = merge_opened(
            store.incidents_opened(since_ms, until_ms)?,
            store.incidents_opened(previous_since_ms, since_ms)?,
        );
        let closed = store.incidents_closed(since_ms, until_ms)?;
        let mut times: Vec<u64> = closed.iter().map(Closure::time_to_close_ms).collect();
        times.sort_unstable();
        let median_time_to_close_ms = match times.len() {
            0 => None,
            n if n % 2 == 1 => Some(times[n / 2]),
            n => Some((times[n / 2 - 1] + times[n / 2]) / 2),
        };
        Ok(PeriodReport {
            school: school.to_string(),
            generated_ms,
            since_ms,
            until_ms,
            previous_since_ms,
            blocks_total: blocks.iter().map(|b| b.count).sum(),
            blocks_previous_total: blocks.iter().map(|b| b.previous).sum(),
            blocks,
            opened,
            closed,
            median_time_to_close_ms,
            filter_checks: store.filter_checks(since_ms, until_ms, 1_000)?,
            policy,
        })
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as one CSV table: `section,key,detail,current,previous`.
    /// Cells that a spreadsheet would run as a formula are prefixed with `'`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("section,key,detail,current,previous\n");
        let mut row = |cells: [&str; 5]| {
            let line: Vec<String> = cells.iter().map(|c| crate::csv::cell(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        };
        row([
            "period",
            &format_ms(self.since_ms),
            &format_ms(self.until_ms),
            "",
            &format_ms(self.previous_since_ms),
        ]);
        for b in &self.blocks {
            row([
                "blocks",
                &shown(&b.group, "(not identified)"),
                &shown(&b.category, "(no category)"),
                &b.count.to_string(),
                &b.previous.to_string(),
            ]);
        }
        row([
            "blocks-total",
            "",
            "",
            &self.blocks_total.to_string(),
            &self.blocks_previous_total.to_string(),
        ]);
        for o in &self.opened {
            row([
                "incidents-opened",
                &o.kind,
                "",
                &o.count.to_string(),
                &o.previous.to_string(),
            ]);
        }
        for c in &self.closed {
            row([
                "incident-closed",
                &c.number.to_string(),
                &c.kind,
                &hours(c.time_to_close_ms()),
                "",
            ]);
        }
        for f in &self.filter_checks {
            row([
                "filter-check",
                &f.id.to_string(),
                &format!("{} by {}", format_ms(f.check.started_ms), f.check.ran_by),
                if f.check.passed { "passed" } else { "failed" },
                &format!(
                    "under {} over {} errors {}",
                    f.check.under_blocked, f.check.over_blocked, f.check.errors
                ),
            ]);
        }
        for p in &self.policy.changes {
            row([
                "policy-change",
                &format_ms(p.at_ms),
                &p.file,
                &p.summary,
                p.who.as_deref().unwrap_or(""),
            ]);
        }
        out
    }

    /// The report as a standalone HTML page with print CSS.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        let title = format!(
            "Filtering review: {} to {}",
            day(self.since_ms),
            day(self.until_ms.saturating_sub(1))
        );
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{}</title><style>{STYLE}</style></head><body>\n<header><h1>{}</h1>\
             <p class=\"school\">{}</p><p>Period {} to {} (UTC), compared with the previous period \
             of the same length ({} to {}). Generated {}.</p></header>\n",
            esc(&title),
            esc(&title),
            esc(&self.school),
            esc(&format_ms(self.since_ms)),
            esc(&format_ms(self.until_ms)),
            esc(&format_ms(self.previous_since_ms)),
            esc(&format_ms(self.since_ms)),
            esc(&format_ms(self.generated_ms)),
        );
        // Summary.
        let failed_checks = self
            .filter_checks
            .iter()
            .filter(|f| !f.check.passed)
            .count();
        let _ = write!(
            h,
            "<section><h2>Summary</h2><dl class=\"summary\">\
             <dt>Blocks</dt><dd>{} ({} the period before: {})</dd>\
             <dt>Incidents opened</dt><dd>{}</dd><dt>Incidents closed</dt><dd>{}{}</dd>\
             <dt>Filter checks</dt><dd>{} run, {} failed</dd>\
             <dt>Policy changes</dt><dd>{}</dd></dl></section>",
            self.blocks_total,
            trend(self.blocks_total, self.blocks_previous_total),
            self.blocks_previous_total,
            self.opened.iter().map(|o| o.count).sum::<u64>(),
            self.closed.len(),
            self.median_time_to_close_ms
                .map(|m| format!(", median time to close {}", duration_words(m)))
                .unwrap_or_default(),
            self.filter_checks.len(),
            failed_checks,
            self.policy.changes.len(),
        );
        h.push('\n');
        self.html_blocks(&mut h);
        self.html_incidents(&mut h);
        self.html_checks(&mut h);
        self.html_policy(&mut h);
        h.push_str("<footer>hallpass filtering review. Sign-off: ______________________ (role) ______________ (date)</footer>\n</body></html>\n");
        h
    }

    fn html_blocks(&self, h: &mut String) {
        h.push_str("<section><h2>Blocks by category and group</h2>");
        if self.blocks.is_empty() {
            h.push_str("<p>No blocks in this period or the one before.</p></section>\n");
            return;
        }
        let groups: Vec<&str> = {
            let mut g: Vec<&str> = self.blocks.iter().map(|b| b.group.as_str()).collect();
            g.sort_unstable();
            g.dedup();
            g
        };
        let categories: Vec<&str> = {
            let mut c: Vec<&str> = self.blocks.iter().map(|b| b.category.as_str()).collect();
            c.sort_unstable();
            c.dedup();
            c
        };
        h.push_str("<table class=\"matrix\"><thead><tr><th>Category</th>");
        for g in &groups {
            let _ = write!(
                h,
                "<th class=\"n\">{}</th>",
                esc(&shown(g, "not identified"))
            );
        }
        h.push_str("<th class=\"n\">Total</th><th class=\"n\">Previous</th><th>Trend</th></tr></thead><tbody>");
        for c in &categories {
            let _ = write!(h, "<tr><th>{}</th>", esc(&shown(c, "(no category)")));
            let (mut total, mut previous) = (0, 0);
            for g in &groups {
                let cell = self
                    .blocks
                    .iter()
                    .find(|b| b.group == *g && b.category == *c);
                let n = cell.map_or(0, |b| b.count);
                total += n;
                previous += cell.map_or(0, |b| b.previous);
                let _ = write!(
                    h,
                    "<td class=\"n\">{}</td>",
                    if n == 0 { String::new() } else { n.to_string() }
                );
            }
            let _ = write!(
                h,
                "<td class=\"n\"><strong>{total}</strong></td><td class=\"n\">{previous}</td><td>{}</td></tr>",
                trend(total, previous)
            );
        }
        let _ = write!(
            h,
            "</tbody><tfoot><tr><th>Total</th>{}<td class=\"n\"><strong>{}</strong></td><td class=\"n\">{}</td><td>{}</td></tr></tfoot></table></section>",
            groups
                .iter()
                .map(|g| format!(
                    "<td class=\"n\">{}</td>",
                    self.blocks
                        .iter()
                        .filter(|b| b.group == *g)
                        .map(|b| b.count)
                        .sum::<u64>()
                ))
                .collect::<String>(),
            self.blocks_total,
            self.blocks_previous_total,
            trend(self.blocks_total, self.blocks_previous_total)
        );
        h.push('\n');
    }

    fn html_incidents(&self, h: &mut String) {
        h.push_str("<section><h2>Incidents</h2><h3>Opened</h3>");
        if self.opened.is_empty() {
            h.push_str("<p>None opened in this period or the one before.</p>");
        } else {
            h.push_str("<table><thead><tr><th>Kind</th><th class=\"n\">This period</th><th class=\"n\">Previous</th><th>Trend</th></tr></thead><tbody>");
            for o in &self.opened {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(&o.kind),
                    o.count,
                    o.previous,
                    trend(o.count, o.previous)
                );
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("<h3>Closed</h3>");
        if self.closed.is_empty() {
            h.push_str("<p>None closed in this period.</p></section>\n");
            return;
        }
        h.push_str("<table><thead><tr><th class=\"n\">Number</th><th>Kind</th><th>Opened</th><th>Closed</th><th class=\"n\">Time to close</th></tr></thead><tbody>");
        for c in &self.closed {
            let _ = write!(
                h,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                c.number,
                esc(&c.kind),
                esc(&format_ms(c.opened_ms)),
                esc(&format_ms(c.closed_ms)),
                esc(&duration_words(c.time_to_close_ms()))
            );
        }
        h.push_str("</tbody></table></section>\n");
    }

    fn html_checks(&self, h: &mut String) {
        h.push_str("<section><h2>Filter checks</h2>");
        if self.filter_checks.is_empty() {
            h.push_str(
                "<p class=\"warn\">No filter check was recorded in this period.</p></section>\n",
            );
            return;
        }
        h.push_str("<table><thead><tr><th>When</th><th>By</th><th>Result</th><th class=\"n\">Probes</th><th class=\"n\">Under-blocking</th><th class=\"n\">Over-blocking</th><th class=\"n\">Errors</th></tr></thead><tbody>");
        for f in &self.filter_checks {
            let c = &f.check;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&format_ms(c.started_ms)),
                esc(&c.ran_by),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "passed" } else { "FAILED" },
                c.probes,
                c.under_blocked,
                c.over_blocked,
                c.errors
            );
        }
        h.push_str("</tbody></table></section>\n");
    }

    fn html_policy(&self, h: &mut String) {
        let source = match self.policy.source {
            HistorySource::Git => "from the git history of the policy files",
            HistorySource::ModificationTimes => {
                "from the policy files' modification times (the files are not in a git repository, so only each file's last change is known)"
            }
        };
        let _ = write!(
            h,
            "<section><h2>Policy changes</h2><p class=\"note\">Taken {source}.</p>"
        );
        if self.policy.changes.is_empty() {
            h.push_str("<p>No changes in this period.</p></section>\n");
            return;
        }
        h.push_str("<table><thead><tr><th>When</th><th>File</th><th>Who</th><th>Change</th></tr></thead><tbody>");
        for p in &self.policy.changes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&format_ms(p.at_ms)),
                esc(&p.file),
                esc(p.who.as_deref().unwrap_or("")),
                esc(&p.summary)
            );
        }
        h.push_str("</tbody></table></section>\n");
    }
}

/// A4 pages, tables that repeat their header and never split a row, no colour
/// needed to read the result (words say pass/fail), nothing external.
const STYLE: &str = "@page{size:A4;margin:16mm 14mm}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;font-size:10.5pt;line-height:1.35;margin:0 auto;max-width:190mm}\
h1{font-size:18pt;margin:0 0 2mm}h2{font-size:13pt;border-bottom:1px solid #999;padding-bottom:1mm;margin-top:7mm}\
h3{font-size:11pt;margin:4mm 0 2mm}.school{font-size:12pt;font-weight:600;margin:0}\
table{border-collapse:collapse;width:100%;margin:2mm 0}th,td{border:1px solid #bbb;padding:1mm 2mm;text-align:left;vertical-align:top}\
thead th{background:#eee}tfoot th,tfoot td{border-top:2px solid #555}.n{text-align:right;font-variant-numeric:tabular-nums}\
.matrix td,.matrix th{font-size:9pt}dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:1mm 6mm}dt{font-weight:600}dd{margin:0}\
.fail{font-weight:700;color:#a00}.pass{color:#060}.warn{font-weight:600;color:#a00}.note{color:#444;font-size:9.5pt}\
footer{margin-top:10mm;border-top:1px solid #999;padding-top:2mm;font-size:9pt;color:#333}\
thead{display:table-header-group}tr,dl,h2,h3{break-inside:avoid;page-break-inside:avoid}h2,h3{break-after:avoid;page-break-after:avoid}\
@media print{body{max-width:none}a{color:inherit;text-decoration:none}}";

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shown(text: &str, empty: &str) -> String {
    if text.is_empty() {
        empty.to_string()
    } else {
        text.to_string()
    }
}

/// `2025-11-23`.
fn day(ms: u64) -> String {
    format_ms(ms).chars().take(10).collect()
}

/// The change against the previous period, in words (`+50%`, `new`, `-100%`).
pub fn trend(now: u64, before: u64) -> String {
    match (now, before) {
        (0, 0) => "no change".into(),
        (_, 0) => "new".into(),
        (n, b) => {
            let pct = (i128::from(n) - i128::from(b)) * 100 / i128::from(b);
            if pct > 0 {
                format!("+{pct}%")
            } else if pct == 0 {
                "no change".into()
            } else {
                format!("{pct}%")
            }
        }
    }
}

fn hours(ms: u64) -> String {
    format!("{:.1}h", ms as f64 / 3_600_000.0)
}

/// `3 days 4 hours`, `5 hours`, `12 minutes`.
pub fn duration_words(ms: u64) -> String {
    let minutes = ms / 60_000;
    let (days, hours, mins) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    let unit = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match (days, hours) {
        (0, 0) => unit(mins, "minute"),
        (0, h) => unit(h, "hour"),
        (d, 0) => unit(d, "day"),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_and_durations_read_as_words() {
        assert_eq!(trend(3, 2), "+50%");
        assert_eq!(trend(1, 2), "-50%");
        assert_eq!(trend(0, 4), "-100%");
        assert_eq!(trend(5, 0), "new");
        assert_eq!(trend(0, 0), "no change");
        assert_eq!(duration_words(5 * 86_400_000), "5 days");
        assert_eq!(duration_words(86_400_000 + 3 * 3_600_000), "1 day 3 hours");
        assert_eq!(duration_words(12 * 60_000), "12 minutes");
        assert_eq!(crate::csv::cell("=cmd()"), "'=cmd()");
        assert_eq!(crate::csv::cell("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(esc("<script>&'\""), "&lt;script&gt;&amp;&#39;&quot;");
    }
}
