//! Filter checks: the history of recorded runs (newest first), one run per
//! group and category, and the technician's "Run now" button.
//!
//! Every role sees the history: it is how senior staff and governors show
//! that filtering is effective, reasonable and appropriate. Only a
//! technician may start a run (`403` for everyone else, before anything
//! runs); the run goes in the background ([`crate::checks`]), one at a time,
//! and this page follows it (it reloads itself while a run is going, with a
//! `Refresh` header: the CSP allows no script).
use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use incidents::{FilterCheck, FilterCheckResult, Role};
use maud::{Markup, html};

use crate::checks::{self, Status};
use crate::pages::now_ms;
use crate::web::{self, AppError, AppState, FormData, Signed};

/// Who may start a run.
pub const RUN_ROLES: [Role; 1] = [Role::Technician];

/// Runs listed on the history page.
pub const HISTORY: u64 = 25;

/// Seconds between reloads of the page while a run is going.
const REFRESH_SECONDS: &str = "3";

/// A stored run with the groups it probed.
struct Row {
    check: FilterCheck,
    groups: Vec<String>,
}

/// `GET /filter-checks`.
pub async fn list(State(app): State<AppState>, who: Signed) -> Result<Response, AppError> {
    let rows = app
        .db
        .run(|store| {
            let mut rows = Vec::new();
            for check in store.filter_checks(0, u64::MAX, HISTORY)? {
                let groups = match store.filter_check(check.id)? {
                    Some(full) => groups(&full.check.results),
                    None => Vec::new(),
                };
                rows.push(Row { check, groups });
            }
            Ok(rows)
        })
        .await?;
    let status = app.checks.status();
    let may_run = RUN_ROLES.contains(&who.staff.role);
    let body = html! {
        (notice(&status))
        @if may_run {
            section.card.actions id="run" {
                @if app.ctx.filter_check.is_some() {
                    form method="post" action="/filter-checks/run" {
                        input type="hidden" name="csrf" value=(who.session.csrf);
                        button type="submit" id="run-now" { "Run now" }
                    }
                    span.muted { "Sends the probe suite through the running proxy as every group it can sign in as, and records the result with your name." }
                } @else {
                    p.muted { "Filter checks cannot be started from this console: it is not serving beside a proxy. Run `hallpass filter-check --record` instead." }
                }
            }
        }
        @if rows.is_empty() {
            p.muted id="no-checks" { "No filter check has been recorded yet." }
        } @else {
            table id="history" {
                thead { tr {
                    th { "When" } th { "Run by" } th { "Groups" } th { "Result" }
                    th.num { "Probes" } th.num { "Under-blocking" } th.num { "Over-blocking" } th.num { "Errors" } th {}
                } }
                tbody {
                    @for r in &rows {
                        tr id={"check-" (r.check.id)} {
                            td { (web::when(r.check.check.started_ms)) }
                            td { (r.check.check.ran_by) }
                            td { (r.groups.join(", ")) }
                            td { (verdict(r.check.check.passed)) }
                            td.num { (r.check.check.probes) }
                            td.num { (r.check.check.under_blocked) }
                            td.num { (r.check.check.over_blocked) }
                            td.num { (r.check.check.errors) }
                            td { a href={"/filter-checks/" (r.check.id)} { "Details" } }
                        }
                    }
                }
            }
            @if rows.len() as u64 == HISTORY {
                p.muted { "The newest " (HISTORY) " runs. `hallpass report` lists every run of a period." }
            }
        }
    };
    let mut response = web::page("Filter checks", Some(&who), body).into_response();
    if status.running.is_some() {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static("refresh"),
            HeaderValue::from_static(REFRESH_SECONDS),
        );
    }
    Ok(response)
}

/// The groups a run probed, in the order first probed.
fn groups(results: &[FilterCheckResult]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    results
        .iter()
        .filter(|r| seen.insert(r.group.clone()))
        .map(|r| r.group.clone())
        .collect()
}

fn verdict(passed: bool) -> Markup {
    html! {
        @if passed { span.verdict-allow { "PASS" } } @else { span.verdict-block { "FAIL" } }
    }
}

/// What this console knows about runs started here: one going, or how the
/// last one ended.
fn notice(status: &Status) -> Markup {
    html! {
        @if let Some(running) = &status.running {
            p.notice id="check-running" role="status" {
                "A filter check started by " strong { (running.by) } " at " (web::when(running.at_ms))
                " is running. This page reloads until it finishes."
            }
        } @else if let Some(last) = &status.last {
            @match &last.outcome {
                Ok((id, passed)) => p.notice id="check-finished" role="status" {
                    "The filter check " (last.started.by) " started at " (web::when(last.started.at_ms))
                    " finished: " (verdict(*passed)) ". "
                    a href={"/filter-checks/" (id)} id="check-finished-link" { "See run " (id) }
                },
                Err(why) => p.notice.error id="check-failed" role="alert" {
                    "The filter check " (last.started.by) " started at " (web::when(last.started.at_ms))
                    " could not run (nothing was recorded): " (why)
                },
            }
        }
    }
}

/// `GET /filter-checks/{id}`: one run, per group and category.
pub async fn detail(
    State(app): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
) -> Result<Markup, AppError> {
    let id: u64 = id
        .parse()
        .map_err(|_| AppError::bad(format!("`{id}` is not a filter check number")))?;
    let run = app
        .db
        .run(move |store| store.filter_check(id))
        .await?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                format!("no filter check number {id}"),
            )
        })?;
    let c = &run.check;
    let lines = filtercheck::report::lines(&c.results);
    let mut bands: Vec<(String, String)> = Vec::new();
    for r in &c.results {
        if !bands.iter().any(|(g, _)| g == &r.group) {
            bands.push((r.group.clone(), r.band.clone()));
        }
    }
    let seconds = c.finished_ms.saturating_sub(c.started_ms).div_ceil(1000);
    let body = html! {
        section.card id="summary" {
            dl.facts {
                dt { "Result" } dd id="result" { (verdict(c.passed)) }
                dt { "Run by" } dd id="ran-by" { (c.ran_by) }
                dt { "Started" } dd { (web::when(c.started_ms)) " (" (seconds) " s)" }
                dt { "Proxy" } dd { (c.proxy) }
                dt { "Suite" } dd { code { (c.suite) } }
                dt { "Policy" } dd { code { (c.policy) } }
                dt { "Probes" } dd { (c.probes) " sent, " (c.failures) " failed" }
                dt { "Under-blocking" } dd id="under-blocked" { (c.under_blocked) span.muted { " must-block probes that got through" } }
                dt { "Over-blocking" } dd id="over-blocked" { (c.over_blocked) span.muted { " must-allow probes that were blocked" } }
                dt { "Errors" } dd id="errors" { (c.errors) span.muted { " probes with no verdict from the proxy" } }
            }
        }
        @if c.results.is_empty() {
            p.error { "No group could be checked: no probe was sent." }
        }
        @for (group, band) in &bands {
            section.card.group id={"group-" (group)} {
                h2 { "Group " (group) " " span.muted { "(band " (band) ")" } }
                table {
                    thead { tr { th { "Checks" } th { "Category" } th.num { "Passed" } th { "Result" } th { "Failures" } } }
                    tbody {
                        @for l in lines.iter().filter(|l| &l.group == group) {
                            tr {
                                td { (kind_label(&l.kind)) }
                                td { (l.category) }
                                td.num { (l.probes - l.failed.len()) "/" (l.probes) }
                                td {
                                    @if l.pass() { span.verdict-allow { "PASS" } }
                                    @else { span.verdict-block { (failure_label(&l.kind)) } }
                                }
                                td.url { @for (url, outcome) in &l.failed { div { (url) " " span.muted { (outcome) } } } }
                            }
                        }
                    }
                }
            }
        }
        @if !c.results.is_empty() {
            details.card id="probes" {
                summary { "Every probe (" (c.results.len()) ")" }
                table {
                    thead { tr { th { "Group" } th { "Category" } th { "URL" } th { "Expected" } th { "Outcome" } th.num { "Status" } th { "Detail" } } }
                    tbody {
                        @for r in &c.results {
                            tr {
                                td { (r.group) } td { (r.category) } td.url { (r.url) } td { (r.expected) }
                                td { @if r.pass { (r.outcome) } @else { span.verdict-block { (r.outcome) } } }
                                td.num { (r.status.map_or_else(|| "-".to_string(), |s| s.to_string())) }
                                td { (r.detail) }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/filter-checks" { "All filter checks" } }
    };
    Ok(web::page(&format!("Filter check {id}"), Some(&who), body))
}

fn kind_label(kind: &str) -> &str {
    match kind {
        "baseline" => "locked baseline: blocked",
        "block" => "blocked",
        "allow" => "stays open",
        "safe-search" => "safe search forced",
        other => other,
    }
}

fn failure_label(kind: &str) -> &'static str {
    match kind {
        "baseline" | "block" => "FAIL: under-blocking",
        "allow" => "FAIL: over-blocking",
        "safe-search" => "FAIL: not enforced",
        _ => "FAIL",
    }
}

/// `POST /filter-checks/run`: a technician starts a run. Answers at once
/// (`303` to the history, which follows the run); `409` while another run
/// is going; `403` for every other role.
pub async fn run_now(
    State(app): State<AppState>,
    who: Signed,
    Extension(form): Extension<FormData>,
) -> Result<Response, AppError> {
    who.require(&RUN_ROLES, "running a filter check")?;
    form.only(&[])?;
    let Some(setup) = app.ctx.filter_check.clone() else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "filter checks cannot be started from this console: it is not serving beside a proxy",
        ));
    };
    let ticket = app
        .checks
        .try_start(&who.staff.name, now_ms())
        .map_err(|running| {
            AppError::new(
                StatusCode::CONFLICT,
                format!(
                    "a filter check is already running: {} started it at {}. Its result appears on the filter checks page when it finishes.",
                    running.by,
                    web::when(running.at_ms)
                ),
            )
        })?;
    let by = who.staff.name.clone();
    let snap = app.ctx.snapshots.load_full();
    let db = app.db.clone();
    tracing::info!(account = %by, proxy = %setup.proxy, "console: filter check started");
    tokio::spawn(async move {
        let outcome = checks::run(&setup, snap, &by, &db).await;
        match &outcome {
            Ok((id, passed)) => {
                tracing::info!(account = %by, id, passed, "console: filter check recorded")
            }
            Err(why) => {
                tracing::warn!(account = %by, error = %why, "console: filter check could not run")
            }
        }
        ticket.finish(outcome);
    });
    Ok(Redirect::to("/filter-checks").into_response())
}
