//! Verdict headers: what the proxy decided, on every response it sends for a
//! decided request, so a filter check can tell a block from an allow without
//! the internet.
//!
//! In: the request's access record (its verdict) and, for allowed requests, the
//! safe-search rewrite applied. Out: two response headers.
//!
//! | Header | Value | When |
//! |---|---|---|
//! | `Hallpass-Verdict` | `block` | the proxy's own block page (policy, locked baseline, a refused destination, fail-closed) |
//! | `Hallpass-Verdict` | `allow` | the origin's response, relayed; or the proxy's 502 page when an allowed site could not be reached |
//! | `Hallpass-Safe-Search` | `safe=active`, `youtube-restrict=Strict`, ... | the parameters and headers the proxy forced on the request it sent (or tried to send) upstream |
//!
//! Any copy of either header an origin sends is removed first, so an origin can
//! neither fake a block nor claim an enforcement that did not happen. Responses
//! that were never decided (407, 400, the proxy's own pages) carry neither.
//! The headers tell the browser nothing it could not see already (a block page
//! is a block page; Google sees `safe=active` in the URL).
use http::{HeaderName, HeaderValue, Response};

use crate::Body;
use crate::safe_search::Rewrite;

/// The verdict header: `allow` or `block`.
pub const VERDICT: HeaderName = HeaderName::from_static("hallpass-verdict");
/// The safe-search header: what the proxy forced, comma-separated.
pub const SAFE_SEARCH: HeaderName = HeaderName::from_static("hallpass-safe-search");

/// Sets the headers on a decided request's response. `access_verdict` is the
/// access log's verdict: `allow`, `error` (allowed, the site unreachable) or
/// `block`; anything else (a refused or unauthenticated request) gets neither.
pub(crate) fn mark(
    response: &mut Response<Body>,
    access_verdict: &str,
    forced: Option<HeaderValue>,
) {
    let headers = response.headers_mut();
    // `insert` replaces every value an origin may have sent; what is not
    // inserted is removed, so an origin can never speak for the filter.
    let value = match access_verdict {
        "allow" | "error" => "allow",
        "block" => "block",
        _ => {
            headers.remove(VERDICT);
            headers.remove(SAFE_SEARCH);
            return;
        }
    };
    headers.insert(VERDICT, HeaderValue::from_static(value));
    match forced.filter(|_| value == "allow") {
        Some(forced) => headers.insert(SAFE_SEARCH, forced),
        None => headers.remove(SAFE_SEARCH),
    };
}

/// The `Hallpass-Safe-Search` value describing a rewrite, or `None` when it
/// forces nothing.
pub fn describe(rewrite: &Rewrite) -> Option<HeaderValue> {
    let mut parts = Vec::new();
    if let Some(pq) = &rewrite.path_and_query {
        // The forced parameter is always the last one (set_query_parameter
        // appends it).
        if let Some(last) = pq.rsplit('&').next().and_then(|p| {
            p.rsplit_once('?')
                .map_or(Some(p), |(_, q)| Some(q))
                .filter(|q| !q.is_empty())
        }) {
            parts.push(last.to_string());
        }
    }
    for (name, value) in &rewrite.headers {
        parts.push(format!("{name}={}", value.to_str().unwrap_or("?")));
    }
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safe_search::YOUTUBE_RESTRICT;

    fn response_with(origin_headers: &[(&str, &str)]) -> Response<Body> {
        let mut r = Response::new(crate::full_body(""));
        for (n, v) in origin_headers {
            r.headers_mut().insert(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        r
    }

    #[test]
    fn an_origin_cannot_fake_a_verdict_or_an_enforcement() {
        let mut r = response_with(&[
            ("hallpass-verdict", "block"),
            ("hallpass-safe-search", "safe=active"),
        ]);
        mark(&mut r, "allow", None);
        assert_eq!(r.headers()[VERDICT], "allow");
        assert!(!r.headers().contains_key(SAFE_SEARCH));
        let mut r = response_with(&[("hallpass-verdict", "allow")]);
        mark(&mut r, "auth", None);
        assert!(!r.headers().contains_key(VERDICT));
    }

    #[test]
    fn unreachable_allowed_sites_say_allow_and_blocks_say_block() {
        let mut r = response_with(&[]);
        mark(&mut r, "error", HeaderValue::from_str("safe=active").ok());
        assert_eq!(r.headers()[VERDICT], "allow");
        assert_eq!(r.headers()[SAFE_SEARCH], "safe=active");
        let mut r = response_with(&[]);
        mark(&mut r, "block", HeaderValue::from_str("safe=active").ok());
        assert_eq!(r.headers()[VERDICT], "block");
        assert!(!r.headers().contains_key(SAFE_SEARCH));
    }

    #[test]
    fn rewrites_are_described() {
        let r = Rewrite {
            path_and_query: Some("/search?q=a&safe=active".into()),
            headers: vec![(YOUTUBE_RESTRICT, HeaderValue::from_static("Strict"))],
        };
        assert_eq!(
            describe(&r).expect("value"),
            "safe=active, youtube-restrict=Strict"
        );
        let r = Rewrite {
            path_and_query: Some("/search?safe=active".into()),
            headers: vec![],
        };
        assert_eq!(describe(&r).expect("value"), "safe=active");
        assert_eq!(describe(&Rewrite::default()), None);
    }
}
