//! The console's pages, one module each.
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use policy::event::BlockEvent;
use proxy::snapshot::Snapshot;

pub mod blocks;
pub mod dashboard;
pub mod filter_checks;
pub mod incidents;
pub mod login;
pub mod policy_view;

/// The one stylesheet (the CSP allows styles from this origin only).
pub async fn stylesheet() -> Response {
    let mut r = include_str!("console.css").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// Locked categories that protect the network rather than a child: their
/// blocks are not illegal content, so their URLs are shown like any other.
const SECURITY_CATEGORIES: [&str; 2] = ["malware", "phishing"];

/// Whether an event is a locked-baseline hit on illegal content (child abuse,
/// terrorism, or a category a school added to the baseline). Its URL is never
/// shown in reports: the safeguarding lead reads it on the incident, where
/// every read is audited.
pub fn withheld(snap: &Snapshot, ev: &BlockEvent) -> bool {
    let category = ev.category.as_deref();
    if category.is_some_and(|c| SECURITY_CATEGORIES.contains(&c)) {
        return false;
    }
    let locked_rule = ev
        .rule
        .as_deref()
        .is_some_and(|r| r.starts_with("baseline"));
    locked_rule || category.is_some_and(|c| snap.policy.baseline().iter().any(|b| &*b.name == c))
}

/// The host of an event's URL (as stored), or the URL itself when it does not parse.
pub fn site(ev: &BlockEvent) -> String {
    match policy::CanonicalUrl::parse(&ev.url) {
        Ok(u) => u.host().as_str().to_string(),
        Err(_) => ev.url.clone(),
    }
}

/// A day (`YYYY-MM-DD`, UTC) of a time in ms.
pub fn day(ms: u64) -> String {
    crate::web::when(ms)[..10].to_string()
}

/// Midnight UTC of a `YYYY-MM-DD` day, in ms; `None` if it is not a date.
pub fn parse_day(text: &str) -> Option<u64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).ok()?;
    let t = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(t).ok().map(|s| s * 1000)
}

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_print() {
        assert_eq!(parse_day("1970-01-02"), Some(DAY_MS));
        assert_eq!(day(DAY_MS + 5), "1970-01-02");
        for bad in ["2026-13-01", "2026-1-1", "yesterday", "", "2026-02-30"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
