//! The policy, read-only: bands, groups, categories, approved services and
//! the locked baseline, each with where it is written; and the explain box
//! (a URL and a group → the verdict, the deciding policy line, every step).
use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};
use policy::{CanonicalUrl, Policy};

use crate::web::{self, AppError, AppState, FormData, Signed};

/// `GET /policy`.
pub async fn show(State(app): State<AppState>, who: Signed) -> Result<Markup, AppError> {
    let snap = app.ctx.snapshots.load_full();
    Ok(web::page(
        "Policy",
        Some(&who),
        render(&snap.policy, &who, None),
    ))
}

/// `POST /policy`: the explain box (a POST so the URL asked about stays out
/// of logs and history; it changes nothing).
pub async fn explain(
    State(app): State<AppState>,
    who: Signed,
    Extension(form): Extension<FormData>,
) -> Result<Markup, AppError> {
    form.only(&["url", "group"])?;
    let url_text = form.one("url", 2048)?.unwrap_or("").trim().to_string();
    let group_name = form.one("group", 64)?.unwrap_or("").to_string();
    let snap = app.ctx.snapshots.load_full();
    let policy = &snap.policy;
    let group = policy.group_id(&group_name).ok_or_else(|| {
        AppError::bad(format!(
            "group: `{group_name}` is not a group of the policy (known: {})",
            policy
                .groups()
                .iter()
                .map(|g| &*g.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let url = CanonicalUrl::parse(&url_text)
        .map_err(|e| AppError::bad(format!("url: cannot decide `{url_text}`: {e}")))?;
    let e = policy.explain(group, &url, &snap.lists);
    let v = &e.verdict;
    let verdict = html! {
        section.card id="explain-result" {
            h2 { "Verdict" }
            p {
                span class={"verdict-" (v.action)} id="verdict" { (v.action.as_str().to_uppercase()) }
                " " code { (url.to_string()) } " for group " strong { (e.group) } " (band " (e.band) ")"
            }
            dl.facts {
                dt { "Rule" } dd { (v.rank) " (rank " (v.rank as u8) ")" }
                @if let Some(c) = &v.category { dt { "Category" } dd { (c) } }
                @if let Some(s) = &v.service { dt { "Service" } dd { (s) } }
                @if let Some(m) = &v.matched { dt { "Matched" } dd { (m) } }
                dt { "Policy line" } dd { code id="policy-line" { (v.rule.to_string()) } }
                dt { "Reason shown" } dd { (v.reason) }
            }
            h2 { "Every step (the first match decides)" }
            table {
                thead { tr { th.num { "Rank" } th { "Rule" } th { "" } th { "Detail" } } }
                tbody { @for s in &e.steps { tr {
                    td.num { (s.rank as u8) } td { (s.rank) }
                    td { @if s.rank == v.rank { strong { "decides" } } @else if s.matched { "match" } @else { "-" } }
                    td { (s.detail) }
                } } }
            }
            @if !e.list_entries.is_empty() {
                h2 { "Lists containing it" }
                ul { @for (list, entry) in &e.list_entries { li { (list) ": " code { (entry) } } } }
            }
        }
    };
    Ok(web::page(
        "Policy",
        Some(&who),
        render(policy, &who, Some((verdict, url_text, group_name))),
    ))
}

fn lists_of(policy: &Policy, mask: policy::decide::ListMask) -> String {
    policy
        .lists()
        .iter()
        .filter(|l| l.id.bit() & mask != 0)
        .map(|l| l.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(policy: &Policy, who: &Signed, explained: Option<(Markup, String, String)>) -> Markup {
    let (result, url, group) = match explained {
        Some((m, u, g)) => (Some(m), u, g),
        None => (None, String::new(), String::new()),
    };
    html! {
        section.card id="explain" {
            h2 { "Explain a decision" }
            form.filters method="post" action="/policy" {
                input type="hidden" name="csrf" value=(who.session.csrf);
                label { "URL" input type="text" name="url" id="explain-url" value=(url) size="48" required maxlength="2048" placeholder="https://www.example.com/"; }
                label { "Group" select name="group" id="explain-group" {
                    @for g in policy.groups() { option value=(g.name) selected[group == *g.name] { (g.name) } }
                } }
                button type="submit" id="explain-go" { "Explain" }
            }
        }
        @if let Some(r) = result { (r) }
        p.muted { "Read-only. The technician changes " code { (policy.file()) } " and reloads hallpass." }
        section.card id="bands" {
            h2 { "Age bands" }
            table {
                thead { tr { th { "Band" } th { "Ages" } th { "Default" } th { "Blocked categories" } th { "Approved services" } th { "SafeSearch" } th { "YouTube" } } }
                tbody { @for b in policy.bands() {
                    tr {
                        td { strong { (b.name) } br; span.muted { (b.label) } }
                        td { (b.ages.0) @match b.ages.1 { Some(hi) => { "–" (hi) }, None => { "+" } } }
                        td { (b.default) }
                        td { (policy.band_blocks(&b.name).unwrap_or_default().iter().map(|(c, _)| c.name.to_string()).collect::<Vec<_>>().join(", ")) }
                        td { (policy.band_services(&b.name).unwrap_or_default().iter().map(|s| s.name.to_string()).collect::<Vec<_>>().join(", ")) }
                        td { @if b.safe_search { "forced" } @else { "-" } }
                        td { (format!("{:?}", b.youtube).to_lowercase()) }
                    }
                } }
            }
        }
        section.card id="groups" {
            h2 { "Groups" }
            table {
                thead { tr { th { "Group" } th { "Label" } th { "Band" } th { "Defined at" } } }
                tbody { @for g in policy.groups() { tr { td { (g.name) } td { (g.label) } td { (g.band) } td.muted { (g.at.to_string()) } } } }
            }
        }
        section.card id="baseline" {
            h2 { "Locked baseline (blocked for everyone; nothing lifts it)" }
            table {
                thead { tr { th { "Category" } th { "Lists" } th { "Defined at" } } }
                tbody { @for c in policy.baseline() { tr { td { (c.name) } td { (lists_of(policy, c.mask)) } td.muted { (c.at.to_string()) } } } }
            }
        }
        section.card id="categories" {
            h2 { "Categories" }
            table {
                thead { tr { th { "Category" } th { "Lists" } th { "Reason shown to pupils" } th { "Defined at" } } }
                tbody { @for c in policy.categories() { tr { td { (c.name) } td { (lists_of(policy, c.mask)) } td { (c.reason) } td.muted { (c.at.to_string()) } } } }
            }
        }
        section.card id="services" {
            h2 { "Approved services" }
            @if policy.services().is_empty() { p.muted { "None." } } @else {
                table {
                    thead { tr { th { "Service" } th { "Hosts" } th { "Defined at" } } }
                    tbody { @for s in policy.services() { tr { td { (s.name) } td { (s.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")) } td.muted { (s.at.to_string()) } } } }
                }
            }
        }
    }
}
