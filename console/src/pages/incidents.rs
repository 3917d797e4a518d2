//! Incidents: the list, pupils' review requests, one incident with its audit
//! trail, and the review workflow's forms (start, record, close, reopen,
//! sign off).
//!
//! Roles and the illegal-URL rule are the incident store's: the forms shown
//! follow them, and a POST the store refuses changes nothing (`403`/`409`).
//! Lists never show an illegal incident's URL; opening an illegal incident
//! is audited for every role.
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use incidents::review::{may_review, may_sign};
use incidents::{ActionTaken, Incident, IncidentFilter, IncidentKind, Role, State as IState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::pages::now_ms;
use crate::web::{self, AppError, AppState, FormData, Signed};

/// The longest free-text field of the workflow forms (result, outcome, reason).
pub const MAX_TEXT: usize = 2_000;

/// `?state=&kind=` filters of the list.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
}

fn parse_opt<T: std::str::FromStr<Err = String>>(
    key: &str,
    v: &Option<String>,
) -> Result<Option<T>, AppError> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e| AppError::bad(format!("{key}: {e}"))),
    }
}

/// `GET /incidents`.
pub async fn list(
    State(app): State<AppState>,
    who: Signed,
    Query(q): Query<ListQuery>,
) -> Result<Markup, AppError> {
    let filter = IncidentFilter {
        state: parse_opt("state", &q.state)?,
        kind: parse_opt("kind", &q.kind)?,
        since_ms: None,
    };
    let f = filter.clone();
    let all = app.db.run(move |s| s.incident_list(&f)).await?;
    let body = html! {
        form.filters method="get" action="/incidents" {
            label { "State" select name="state" {
                option value="" { "any" }
                @for s in IState::ALL { option value=(s) selected[filter.state == Some(*s)] { (s) } }
            } }
            label { "Kind" select name="kind" {
                option value="" { "any" }
                @for k in IncidentKind::ALL { option value=(k) selected[filter.kind == Some(*k)] { (k) } }
            } }
            button type="submit" { "Show" }
        }
        (table(&all, false))
    };
    Ok(web::page("Incidents", Some(&who), body))
}

/// `GET /requests`: pupils' requests to review a block, with the page they
/// asked about (never an illegal URL: those are not review requests).
pub async fn requests(State(app): State<AppState>, who: Signed) -> Result<Markup, AppError> {
    let actor = who.actor();
    let all = app
        .db
        .run(move |s| {
            s.incidents(
                &IncidentFilter {
                    kind: Some(IncidentKind::ReviewRequest),
                    ..IncidentFilter::default()
                },
                &actor,
                now_ms(),
            )
        })
        .await?;
    let body = html! {
        p.muted { "A pupil asked for these blocks to be looked at again. Open one to record the decision." }
        (table(&all, true))
    };
    Ok(web::page("Review requests", Some(&who), body))
}

fn table(all: &[Incident], with_url: bool) -> Markup {
    html! {
        @if all.is_empty() { p.muted id="none" { "No incidents match." } } @else {
            table id="incidents" {
                thead { tr {
                    th.num { "No." } th { "Opened" } th { "Kind" } th { "State" } th { "Category" }
                    th { "About" } @if with_url { th { "Page" } } th { "Signed off" }
                } }
                tbody {
                    @for i in all {
                        tr {
                            td.num { a href={"/incidents/" (i.number)} { (i.number) } }
                            td { (web::when(i.opened_ms)) }
                            td { @if i.urgency == incidents::Urgency::Urgent { span.urgent { (i.kind) } } @else { (i.kind) } }
                            td { span class={"state state-" (i.state)} { (i.state) } }
                            td { (i.category.as_deref().unwrap_or("-")) }
                            td { (about(i)) }
                            @if with_url { td.url { (url_cell(i)) } }
                            td { (signoffs(i)) }
                        }
                    }
                }
            }
        }
    }
}

fn about(i: &Incident) -> String {
    match (&i.subject.who, i.subject.group.is_empty()) {
        (Some(w), false) => format!("{w} ({})", i.subject.group),
        (Some(w), true) => w.clone(),
        (None, false) => format!("group {}", i.subject.group),
        (None, true) => "-".into(),
    }
}

fn url_cell(i: &Incident) -> Markup {
    html! {
        @if let Some(u) = &i.url { (u) }
        @else if i.url_withheld { span.withheld id="url-withheld" { "withheld: only the safeguarding lead sees this URL" } }
        @else { "-" }
    }
}

fn signoffs(i: &Incident) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &i.principal_signoff {
        parts.push(format!("principal {}", s.by));
    }
    if let Some(s) = &i.governor_signoff {
        parts.push(format!("governor {}", s.by));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn number(text: &str) -> Result<u64, AppError> {
    text.parse()
        .map_err(|_| AppError::bad(format!("`{text}` is not an incident number")))
}

/// `GET /incidents/{number}`: audited for illegal incidents, whoever looks.
pub async fn detail(
    State(app): State<AppState>,
    who: Signed,
    Path(n): Path<String>,
) -> Result<Markup, AppError> {
    let n = number(&n)?;
    let actor = who.actor();
    let (i, trail) = app
        .db
        .run(move |s| {
            let i = s.view_incident(n, &actor, now_ms())?;
            let trail = s.audit_trail(n)?;
            Ok((i, trail))
        })
        .await?;
    let role = who.staff.role;
    let csrf = &who.session.csrf;
    let reviewer = may_review(role, i.kind).is_ok();
    let signer = may_sign(i.number, role, i.state).is_ok()
        && match role {
            Role::Principal => i.principal_signoff.is_none(),
            Role::Governor => i.governor_signoff.is_none(),
            _ => false,
        };
    let action = |step: &str| format!("/incidents/{}/{step}", i.number);
    let body = html! {
        section.card id="facts" {
            dl.facts {
                dt { "Kind" } dd { (i.kind) @if i.urgency == incidents::Urgency::Urgent { " " span.urgent { "urgent" } } }
                dt { "State" } dd { span class={"state state-" (i.state)} id="state" { (i.state) } }
                dt { "Opened" } dd { (web::when(i.opened_ms)) }
                dt { "Reported by / to" } dd { (i.reported_by) " → " (i.reported_to) }
                dt { "About" } dd { (about(&i)) @if !i.subject.identifiable { " " span.muted { "(a shared login or a classroom subnet: not one identified person)" } } }
                dt { "Category" } dd { (i.category.as_deref().unwrap_or("-")) }
                dt { "URL" } dd.url id="url" { (url_cell(&i)) }
                dt { "What happened" } dd { (i.description) }
                dt { "Blocked requests" } dd { (i.references.len()) }
                dt { "Review" } dd {
                    @if let Some(r) = &i.review_result { (r) } @else { "-" }
                    @if let Some(d) = i.review_date_ms { " " span.muted { "(" (web::when(d)) ")" } }
                }
                dt { "Actions taken" } dd { @if i.actions.is_empty() { "-" } @else { (i.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")) } }
                dt { "Outcome" } dd { (i.outcome.as_deref().unwrap_or("-")) }
                dt { "Principal sign-off" } dd id="principal-signoff" { @if let Some(s) = &i.principal_signoff { (s.by) " at " (web::when(s.at_ms)) } @else { "-" } }
                dt { "Governor sign-off" } dd id="governor-signoff" { @if let Some(s) = &i.governor_signoff { (s.by) " at " (web::when(s.at_ms)) } @else { "-" } }
            }
        }
        @if reviewer && i.state == IState::New {
            section.card.actions {
                form method="post" action=(action("start")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="start-review" { "Start review" }
                }
            }
        }
        @if reviewer && matches!(i.state, IState::New | IState::UnderReview) {
            section.card {
                h2 { "Record the review" }
                form.stack method="post" action=(action("review")) id="review-form" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Result of the review" textarea name="result" id="result" required maxlength=(MAX_TEXT) {} }
                    fieldset { legend { "Actions taken" }
                        div.checks { @for a in ActionTaken::ALL {
                            label { input type="checkbox" name="action" value=(a) id={"action-" (a)}; (a) }
                        } }
                    }
                    label { "Outcome (optional)" textarea name="outcome" id="outcome" maxlength=(MAX_TEXT) {} }
                    button type="submit" id="record-review" { "Record review" }
                }
            }
        }
        @if reviewer && i.state == IState::ActionTaken {
            section.card {
                h2 { "Close" }
                form.stack method="post" action=(action("close")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Outcome (optional)" textarea name="outcome" id="close-outcome" maxlength=(MAX_TEXT) {} }
                    button type="submit" id="close" { "Close incident" }
                }
            }
        }
        @if reviewer && i.state == IState::Closed {
            section.card {
                h2 { "Reopen" }
                form.stack method="post" action=(action("reopen")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Why it is reopened" textarea name="reason" id="reason" required maxlength=(MAX_TEXT) {} }
                    button type="submit" id="reopen" { "Reopen (clears sign-offs)" }
                }
            }
        }
        @if signer {
            section.card.actions {
                h2 { "Sign off" }
                p { "You confirm, as " (role) ", that this review was done and recorded." }
                form method="post" action=(action("sign")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="sign" { "Sign off as " (role) }
                }
            }
        }
        section.card id="audit" {
            h2 { "Audit trail" }
            table {
                thead { tr { th { "When" } th { "Who" } th { "Role" } th { "What" } th { "Detail" } } }
                tbody { @for e in &trail { tr {
                    td { (web::when(e.at_ms)) } td { (e.actor) } td { (e.role) } td { (e.action) } td { (e.detail) }
                } } }
            }
        }
    };
    Ok(web::page(
        &format!("Incident {}", i.number),
        Some(&who),
        body,
    ))
}

/// `POST /incidents/{number}/{step}`: one workflow step, as the signed-in
/// person; the store checks the role and the state and audits the change.
pub async fn act(
    State(app): State<AppState>,
    who: Signed,
    Path((n, step)): Path<(String, String)>,
    Extension(form): Extension<FormData>,
) -> Result<Response, AppError> {
    let n = number(&n)?;
    let actor = who.actor();
    let text = |key: &str| -> Result<Option<String>, AppError> {
        Ok(form
            .one(key, MAX_TEXT)?
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    };
    let now = now_ms();
    match step.as_str() {
        "start" => {
            form.only(&[])?;
            app.db.run(move |s| s.start_review(n, &actor, now)).await?;
        }
        "review" => {
            form.only(&["result", "action", "outcome"])?;
            let result = text("result")?
                .ok_or_else(|| AppError::bad("result: say what the review found"))?;
            let mut actions = Vec::new();
            for a in form.all("action") {
                let a: ActionTaken = a
                    .parse()
                    .map_err(|e| AppError::bad(format!("action: {e}")))?;
                if !actions.contains(&a) {
                    actions.push(a);
                }
            }
            let outcome = text("outcome")?;
            app.db
                .run(move |s| {
                    s.record_review(n, &actor, &result, &actions, outcome.as_deref(), now)
                })
                .await?;
        }
        "close" => {
            form.only(&["outcome"])?;
            let outcome = text("outcome")?;
            app.db
                .run(move |s| s.close(n, &actor, outcome.as_deref(), now))
                .await?;
        }
        "reopen" => {
            form.only(&["reason"])?;
            let reason = text("reason")?
                .ok_or_else(|| AppError::bad("reason: say why the incident is reopened"))?;
            app.db
                .run(move |s| s.reopen(n, &actor, &reason, now))
                .await?;
        }
        "sign" => {
            form.only(&[])?;
            app.db.run(move |s| s.sign(n, &actor, now)).await?;
        }
        other => {
            return Err(AppError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no workflow step `{other}`"),
            ));
        }
    }
    tracing::info!(incident = n, step = %step, account = %who.staff.name, role = %who.staff.role, "console: incident changed");
    Ok(Redirect::to(&format!("/incidents/{n}")).into_response())
}
