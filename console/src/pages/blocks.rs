//! The block report: every blocked request in a date range, filtered by group,
//! account, category and site, on screen (the latest 500) and as CSV (all).
//!
//! URLs of locked-baseline hits on illegal content are withheld here for
//! every role: the safeguarding lead reads them on the incident, audited.
use std::collections::VecDeque;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use incidents::{EventFilter, Role};
use maud::{Markup, html};
use policy::event::BlockEvent;
use serde::Deserialize;

use crate::db::scan_events;
use crate::pages::{DAY_MS, day, now_ms, parse_day, site, withheld};
use crate::web::{self, AppError, AppState, Signed, check_field};

/// Who may read the block report: it names pupils and what they tried to
/// open, so governors (who see aggregates and incidents) do not.
pub const ROLES: [Role; 4] = [
    Role::Technician,
    Role::EsafetyOfficer,
    Role::SafeguardingLead,
    Role::Principal,
];

/// Rows shown on screen (the newest); the CSV has them all.
const SHOWN: usize = 500;
/// The most rows one CSV export holds.
const MAX_CSV_ROWS: usize = 500_000;
/// The longest range one report covers.
const MAX_DAYS: u64 = 400;

/// The report's filters, as the query string gives them.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    from: Option<String>,
    to: Option<String>,
    group: Option<String>,
    account: Option<String>,
    category: Option<String>,
    site: Option<String>,
}

/// Checked filters.
#[derive(Clone)]
struct Checked {
    from: String,
    to: String,
    store: EventFilter,
    group: Option<String>,
    site: Option<String>,
    raw: Filters,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filters {
    fn check(self) -> Result<Checked, AppError> {
        let today = day(now_ms());
        let from = nonempty(&self.from)
            .map_or_else(|| day(now_ms().saturating_sub(6 * DAY_MS)), str::to_string);
        let to = nonempty(&self.to).map_or(today, str::to_string);
        let since = parse_day(check_field("from", &from, 10)?)
            .ok_or_else(|| AppError::bad(format!("from: `{from}` is not a date (YYYY-MM-DD)")))?;
        let until = parse_day(check_field("to", &to, 10)?)
            .ok_or_else(|| AppError::bad(format!("to: `{to}` is not a date (YYYY-MM-DD)")))?
            + DAY_MS;
        if since >= until {
            return Err(AppError::bad("from is after to"));
        }
        if (until - since) / DAY_MS > MAX_DAYS {
            return Err(AppError::bad(format!(
                "the range is longer than {MAX_DAYS} days"
            )));
        }
        let name = |key: &str, v: &Option<String>| -> Result<Option<String>, AppError> {
            match nonempty(v) {
                None => Ok(None),
                Some(s) => {
                    check_field(key, s, 64)?;
                    accounts::check_name(s).map_err(|e| AppError::bad(format!("{key}: {e}")))?;
                    Ok(Some(s.to_string()))
                }
            }
        };
        let group = name("group", &self.group)?;
        let account = name("account", &self.account)?;
        let category = match nonempty(&self.category) {
            None => None,
            Some(c)
                if c.len() <= 64
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    }) =>
            {
                Some(c.to_string())
            }
            Some(_) => return Err(AppError::bad("category: expected a category name")),
        };
        let site = match nonempty(&self.site) {
            None => None,
            Some(s) => {
                check_field("site", s, 253)?;
                Some(
                    policy::host::canonicalize(s)
                        .map_err(|e| AppError::bad(format!("site: `{s}`: {e}")))?
                        .as_str()
                        .to_string(),
                )
            }
        };
        Ok(Checked {
            from,
            to,
            store: EventFilter {
                since_ms: Some(since),
                until_ms: Some(until),
                who: account,
                category,
                limit: None,
            },
            group,
            site,
            raw: self,
        })
    }
}

impl Checked {
    fn keeps(&self, ev: &BlockEvent) -> bool {
        if self.group.as_deref().is_some_and(|g| g != ev.group) {
            return false;
        }
        match &self.site {
            None => true,
            Some(s) => {
                let host = site(ev);
                host == *s
                    || host
                        .strip_suffix(s.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            }
        }
    }

    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("from", &self.from)
            .append_pair("to", &self.to);
        for (k, v) in [
            ("group", &self.raw.group),
            ("account", &self.raw.account),
            ("category", &self.raw.category),
            ("site", &self.raw.site),
        ] {
            if let Some(v) = nonempty(v) {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// `GET /blocks`.
pub async fn show(
    State(app): State<AppState>,
    who: Signed,
    Query(filters): Query<Filters>,
) -> Result<Markup, AppError> {
    who.require(&ROLES, "the block report")?;
    let checked = filters.check()?;
    let snap = app.ctx.snapshots.load_full();
    let filter = checked.store.clone();
    let kept = checked.clone();
    let (rows, total) = app
        .db
        .run(move |store| {
            let mut rows: VecDeque<BlockEvent> = VecDeque::with_capacity(SHOWN);
            let mut total = 0u64;
            scan_events(store, &filter, |ev| {
                if kept.keeps(ev) {
                    total += 1;
                    if rows.len() == SHOWN {
                        rows.pop_front();
                    }
                    rows.push_back(ev.clone());
                }
            })?;
            Ok((rows, total))
        })
        .await?;
    let policy = &snap.policy;
    let body = html! {
        form.filters method="get" action="/blocks" id="filters" {
            label { "From" input type="date" name="from" value=(checked.from); }
            label { "To" input type="date" name="to" value=(checked.to); }
            label { "Group" select name="group" {
                option value="" { "all" }
                @for g in policy.groups() {
                    option value=(g.name) selected[checked.group.as_deref() == Some(&*g.name)] { (g.name) }
                }
            } }
            label { "Account" input type="text" name="account" value=(nonempty(&checked.raw.account).unwrap_or("")) size="12"; }
            label { "Category" select name="category" {
                option value="" { "all" }
                @for c in policy.baseline().iter().chain(policy.categories()) {
                    option value=(c.name) selected[checked.store.category.as_deref() == Some(&*c.name)] { (c.name) }
                }
            } }
            label { "Site" input type="text" name="site" value=(nonempty(&checked.raw.site).unwrap_or("")) size="18"; }
            button type="submit" id="apply" { "Apply" }
            a.button.secondary href={"/blocks.csv?" (checked.query())} id="csv" { "Export CSV" }
        }
        p id="count" {
            strong { (total) } " blocked requests match."
            @if total > SHOWN as u64 { " The newest " (SHOWN) " are shown; the CSV export has all of them." }
        }
        @if rows.is_empty() { p.muted { "Nothing matches these filters." } } @else {
            table id="blocks" {
                thead { tr { th { "Time" } th { "Account" } th { "Group" } th { "Category" } th { "URL" } th { "Rule" } } }
                tbody {
                    @for ev in rows.iter().rev() {
                        tr {
                            td { (web::when(ev.time_ms)) }
                            td { (ev.who.as_deref().unwrap_or("-")) }
                            td { (ev.group) }
                            td { (ev.category.as_deref().unwrap_or("-")) }
                            @if withheld(&snap, ev) {
                                td.withheld { "withheld (locked baseline: see the incident)" }
                            } @else {
                                td.url { (ev.url) }
                            }
                            td.muted { (ev.rule.as_deref().unwrap_or(ev.kind.as_str())) }
                        }
                    }
                }
            }
        }
    };
    Ok(web::page("Block report", Some(&who), body))
}

/// `GET /blocks.csv`: every matching row.
pub async fn csv(
    State(app): State<AppState>,
    who: Signed,
    Query(filters): Query<Filters>,
) -> Result<Response, AppError> {
    who.require(&ROLES, "the block report")?;
    let checked = filters.check()?;
    let name = format!("hallpass-blocks-{}-to-{}.csv", checked.from, checked.to);
    let snap = app.ctx.snapshots.load_full();
    let filter = checked.store.clone();
    let bytes = app
        .db
        .run(move |store| {
            let mut out = csv::Writer::from_writer(Vec::new());
            let mut failure = None;
            let mut rows = 0usize;
            let header = [
                "time_utc",
                "account",
                "group",
                "band",
                "category",
                "url",
                "rule",
                "kind",
                "client_ip",
                "reference",
            ];
            if let Err(e) = out.write_record(header) {
                failure = Some(e.to_string());
            }
            scan_events(store, &filter, |ev| {
                if failure.is_some() || !checked.keeps(ev) {
                    return;
                }
                rows += 1;
                if rows > MAX_CSV_ROWS {
                    failure = Some(format!("more than {MAX_CSV_ROWS} rows: narrow the filters"));
                    return;
                }
                let url = if withheld(&snap, ev) {
                    "(withheld: locked baseline)".to_string()
                } else {
                    ev.url.clone()
                };
                let record = [
                    web::when(ev.time_ms),
                    ev.who.clone().unwrap_or_default(),
                    ev.group.clone(),
                    ev.band.clone(),
                    ev.category.clone().unwrap_or_default(),
                    url,
                    ev.rule.clone().unwrap_or_default(),
                    ev.kind.as_str().to_string(),
                    ev.client_ip.to_string(),
                    ev.reference.clone(),
                ];
                if let Err(e) = out.write_record(record.iter().map(|c| spreadsheet_safe(c))) {
                    failure = Some(e.to_string());
                }
            })?;
            match failure {
                Some(f) => Err(incidents::Error::Internal(f)),
                None => out
                    .into_inner()
                    .map_err(|e| incidents::Error::Internal(e.to_string())),
            }
        })
        .await
        .map_err(|e| match e {
            incidents::Error::Internal(m) => AppError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            other => AppError::from(other),
        })?;
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// A cell a spreadsheet will not run as a formula (the csv writer quotes it).
fn spreadsheet_safe(cell: &str) -> String {
    incidents::csv::defuse_formula(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("year5"), "year5");
    }

    #[test]
    fn filters_are_checked() {
        let f = Filters {
            from: Some("2026-01-01".into()),
            to: Some("2026-01-31".into()),
            site: Some("WWW.Example.COM".into()),
            ..Filters::default()
        };
        let c = f.check().expect("valid");
        assert_eq!(c.site.as_deref(), Some("www.example.com"));
        assert_eq!(c.store.until_ms, parse_day("2026-02-01"));
        for bad in [
            Filters {
                from: Some("2026-02-01".into()),
                to: Some("2026-01-01".into()),
                ..Filters::default()
            },
            Filters {
                from: Some("2020-01-01".into()),
                to: Some("2026-01-01".into()),
                ..Filters::default()
            },
            Filters {
                account: Some("Robert'); DROP".into()),
                ..Filters::default()
            },
            Filters {
                category: Some("<script>".into()),
                ..Filters::default()
            },
            Filters {
                site: Some("exa mple.com".into()),
                ..Filters::default()
            },
        ] {
            assert!(bad.check().is_err());
        }
    }
}
