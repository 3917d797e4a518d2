//! The dashboard: blocks per day by category and by group (SVG), the most
//! blocked sites, open incidents by kind, the last filter check.
use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use incidents::{EventFilter, FilterCheck, IncidentFilter, IncidentKind, State as IState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::chart::Stacked;
use crate::db::scan_events;
use crate::pages::{DAY_MS, day, now_ms, site, withheld};
use crate::web::{self, AppError, AppState, Signed};

/// `?days=N`: how far back (1 to 90, default 14).
#[derive(Deserialize)]
pub struct Range {
    days: Option<String>,
}

/// What the dashboard counts.
pub struct Summary {
    /// The days shown, oldest first.
    pub days: Vec<String>,
    /// Category → blocks per day.
    pub by_category: BTreeMap<String, Vec<u64>>,
    /// Group → blocks per day.
    pub by_group: BTreeMap<String, Vec<u64>>,
    /// Most blocked sites, most first.
    pub top_sites: Vec<(String, u64)>,
    /// Blocks in the range.
    pub total: u64,
    /// Open (not closed) incidents by kind, and how many of them are new.
    pub open: Vec<(IncidentKind, u64, u64)>,
    /// The newest recorded filter check (without its probe results).
    pub last_check: Option<FilterCheck>,
}

/// `GET /`.
pub async fn show(
    State(app): State<AppState>,
    who: Signed,
    Query(range): Query<Range>,
) -> Result<Markup, AppError> {
    let days: u64 = match range.days.as_deref() {
        None | Some("") => 14,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=90).contains(d))
            .ok_or_else(|| AppError::bad("days must be a whole number from 1 to 90"))?,
    };
    let today = now_ms() / DAY_MS * DAY_MS;
    let since = today - (days - 1) * DAY_MS;
    let snap = app.ctx.snapshots.load_full();
    let summary = app
        .db
        .run(move |store| {
            let labels: Vec<String> = (0..days).map(|i| day(since + i * DAY_MS)).collect();
            let mut by_category: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut by_group: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut sites: HashMap<String, u64> = HashMap::new();
            let mut total = 0u64;
            let filter = EventFilter {
                since_ms: Some(since),
                ..EventFilter::default()
            };
            let n = usize::try_from(days).unwrap_or(1);
            scan_events(store, &filter, |ev| {
                let Ok(i) = usize::try_from((ev.time_ms - since) / DAY_MS) else {
                    return;
                };
                if i >= n {
                    return;
                }
                total += 1;
                let category = ev.category.clone().unwrap_or_else(|| "(none)".into());
                by_category.entry(category).or_insert_with(|| vec![0; n])[i] += 1;
                by_group
                    .entry(ev.group.clone())
                    .or_insert_with(|| vec![0; n])[i] += 1;
                let host = if withheld(&snap, ev) {
                    "(withheld: locked baseline)".to_string()
                } else {
                    site(ev)
                };
                *sites.entry(host).or_default() += 1;
            })?;
            let mut top_sites: Vec<(String, u64)> = sites.into_iter().collect();
            top_sites.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top_sites.truncate(10);
            let mut open: BTreeMap<IncidentKind, (u64, u64)> = BTreeMap::new();
            for i in store.incident_list(&IncidentFilter::default())? {
                if i.state != IState::Closed {
                    let e = open.entry(i.kind).or_default();
                    e.0 += 1;
                    if i.state == IState::New {
                        e.1 += 1;
                    }
                }
            }
            let last_check = store.filter_checks(0, u64::MAX, 1)?.into_iter().next();
            Ok(Summary {
                last_check,
                days: labels,
                by_category,
                by_group,
                top_sites,
                total,
                open: open.into_iter().map(|(k, (o, n))| (k, o, n)).collect(),
            })
        })
        .await?;
    let may_run = crate::pages::filter_checks::RUN_ROLES.contains(&who.staff.role);
    Ok(web::page(
        "Dashboard",
        Some(&who),
        render(&summary, days, may_run),
    ))
}

fn render(s: &Summary, days: u64, may_run: bool) -> Markup {
    let by_category = Stacked {
        title: format!("Blocks per day by category, last {days} days"),
        labels: s.days.clone(),
        series: s.by_category.clone().into_iter().collect(),
    }
    .top_series();
    let by_group = Stacked {
        title: format!("Blocks per day by group, last {days} days"),
        labels: s.days.clone(),
        series: s.by_group.clone().into_iter().collect(),
    }
    .top_series();
    html! {
        form.filters method="get" action="/" {
            label { "Days shown" input type="text" name="days" value=(days) size="3" inputmode="numeric"; }
            button type="submit" { "Show" }
            span.muted { (s.total) " blocked requests from " (s.days.first().map_or("", |d| d)) " to " (s.days.last().map_or("", |d| d)) " (UTC)" }
        }
        section.card id="last-filter-check" {
            h2 { "Last filter check" }
            @if let Some(c) = &s.last_check {
                p {
                    @if c.check.passed { span.verdict-allow { "PASS" } } @else { span.verdict-block { "FAIL" } }
                    " " (web::when(c.check.started_ms)) ", run by " strong { (c.check.ran_by) } ": "
                    (c.check.probes) " probes, under-blocking " (c.check.under_blocked)
                    ", over-blocking " (c.check.over_blocked) ", errors " (c.check.errors) ". "
                    a href={"/filter-checks/" (c.id)} { "Details" }
                }
            } @else {
                p.muted { "No filter check has been recorded yet."
                    @if may_run { " " a href="/filter-checks" { "Run one" } } }
            }
        }
        div.grid {
            section.card id="chart-category" { h2 { "Blocks per day by category" } (by_category.render()) }
            section.card id="chart-group" { h2 { "Blocks per day by group" } (by_group.render()) }
        }
        div.grid {
            section.card id="top-sites" {
                h2 { "Most blocked sites" }
                @if s.top_sites.is_empty() { p.muted { "No blocks in this period." } } @else {
                    table {
                        thead { tr { th { "Site" } th.num { "Blocks" } } }
                        tbody { @for (site, n) in &s.top_sites { tr { td { (site) } td.num { (n) } } } }
                    }
                }
            }
            section.card id="open-incidents" {
                h2 { "Open incidents by kind" }
                @if s.open.is_empty() { p.muted { "No open incidents." } } @else {
                    table {
                        thead { tr { th { "Kind" } th.num { "Open" } th.num { "Not yet looked at" } } }
                        tbody {
                            @for (kind, open, new) in &s.open {
                                tr {
                                    td { a href={"/incidents?kind=" (kind)} { (kind) } }
                                    td.num { (open) }
                                    td.num { (new) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
