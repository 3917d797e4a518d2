//! Block: the page a pupil sees, the same for HTTP and inside HTTPS.
//!
//! In: what was refused (a redacted URL), why (the verdict's pupil-facing reason
//! or an upstream problem), the group, the time and the event's reference. Out: a
//! `403` (or `502` for an unreachable site) HTML response with no script, no
//! cookies, no external resources, `Content-Security-Policy: default-src 'none'`
//! (plus inline style only) and `nosniff`. Everything shown is HTML-escaped: URLs
//! are chosen by whoever links the pupil to them.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::Body;

/// The `Content-Security-Policy` of every page the proxy serves itself.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Which page to show.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// The policy (or a proxy rule) blocked the request: 403.
    Blocked,
    /// The site's certificate failed verification: 403, no way through.
    UpstreamCertificate,
    /// The site could not be reached: 502.
    Unreachable,
}

/// Everything a block page shows.
#[derive(Clone, Debug)]
pub struct BlockPage<'a> {
    /// Which page.
    pub kind: PageKind,
    /// The refused URL, redacted (no userinfo, no secrets).
    pub url: &'a str,
    /// Why, in words a pupil understands.
    pub reason: &'a str,
    /// The group the request was decided for, if known.
    pub group: Option<&'a str>,
    /// When.
    pub time: SystemTime,
    /// The block event's reference.
    pub reference: &'a str,
    /// The "ask for a review" link, if any.
    pub review_link: Option<&'a str>,
}

impl BlockPage<'_> {
    /// The status code of this page.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            PageKind::Blocked | PageKind::UpstreamCertificate => StatusCode::FORBIDDEN,
            PageKind::Unreachable => StatusCode::BAD_GATEWAY,
        }
    }

    /// The page as HTML.
    pub fn render(&self) -> String {
        let (title, lead) = match self.kind {
            PageKind::Blocked => (
                "This page is blocked",
                "Sorry, this page can't be opened at school.",
            ),
            PageKind::UpstreamCertificate => (
                "This site isn't safe to open",
                "This site's security certificate could not be checked, so the page can't be opened. This is not something you did wrong.",
            ),
            PageKind::Unreachable => (
                "This site can't be reached",
                "The school's web filter could not reach this site just now.",
            ),
        };
        let mut html = String::with_capacity(2048);
        html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        html.push_str(
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
        );
        html.push_str(title);
        html.push_str("</title>\n<style>");
        html.push_str(STYLE);
        html.push_str("</style></head>\n<body><main>\n<h1>");
        html.push_str(title);
        html.push_str("</h1>\n<p class=\"lead\">");
        html.push_str(lead);
        html.push_str("</p>\n<dl>\n");
        row(
            &mut html,
            "Page",
            &format!("<code>{}</code>", escape(&shorten(self.url, 300))),
        );
        row(&mut html, "Why", &escape(self.reason));
        if let Some(group) = self.group {
            row(&mut html, "Your group", &escape(group));
        }
        row(&mut html, "When", &escape(&format_time(self.time)));
        row(
            &mut html,
            "Reference",
            &format!("<strong>{}</strong>", escape(self.reference)),
        );
        html.push_str("</dl>\n");
        if self.kind == PageKind::Blocked {
            html.push_str(
                "<p>If you need this page for your school work, you can ask for it to be checked. ",
            );
            html.push_str("A member of staff will look at it.</p>\n");
            if let Some(link) = self.review_link {
                let _ = writeln!(
                    html,
                    "<p><a class=\"button\" href=\"{}\">Ask for a review</a></p>",
                    escape(link)
                );
            }
        }
        html.push_str(
            "<p class=\"small\">You can also tell your teacher the reference number above.</p>\n",
        );
        html.push_str("</main></body></html>\n");
        html
    }

    /// The page as a complete response.
    pub fn response(&self) -> Response<Body> {
        page_response(self.status(), self.render())
    }
}

/// An HTML response with the headers every proxy page carries.
pub fn page_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(crate::full_body(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn row(html: &mut String, name: &str, value_html: &str) {
    let _ = writeln!(html, "<dt>{name}</dt><dd>{value_html}</dd>");
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f6fb;color:#1d2433;margin:0}\
main{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 8px #0002}\
h1{font-size:1.6rem;margin-top:0}.lead{font-size:1.15rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}\
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}.button{display:inline-block;background:#2456c9;color:#fff;\
padding:.6rem 1rem;border-radius:8px;text-decoration:none}.small{color:#555;font-size:.9rem}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max_chars).collect();
    short.push('…');
    short
}

/// `2026-11-23 10:31:05 UTC`. The proxy has no time-zone database; UTC is
/// unambiguous for the staff who read the reference back.
pub fn format_time(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
    {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("{secs} s after 1970 UTC"),
    }
}

/// Makes block references: short, readable aloud, unique across restarts.
///
/// Each is 50 bits in Crockford base-32 (`K3PZ-7Q2M-A1`): the start time in
/// milliseconds times 256 plus a counter, so two processes started a millisecond
/// apart do not collide until one has made 256 blocks per millisecond.
#[derive(Debug)]
pub struct References {
    next: AtomicU64,
}

impl References {
    /// Starts at `start` (normally the process start time).
    pub fn new(start: SystemTime) -> Self {
        let ms = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        References {
            next: AtomicU64::new(ms << 8),
        }
    }

    /// The next reference.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & ((1 << 50) - 1);
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut out = String::with_capacity(12);
        for i in (0..10).rev() {
            out.push(char::from(ALPHABET[((n >> (i * 5)) & 31) as usize]));
            if i == 6 || i == 2 {
                out.push('-');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(url: &str, reason: &str) -> String {
        BlockPage {
            kind: PageKind::Blocked,
            url,
            reason,
            group: Some("year4"),
            time: UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000),
            reference: "K3PZ-7Q2M-A1",
            review_link: Some("http://proxy/review?ref=K3PZ-7Q2M-A1&x=\"y\""),
        }
        .render()
    }

    #[test]
    fn everything_shown_is_escaped() {
        let html = page(
            "http://evil.test/<script>alert(1)</script>?a=\"'",
            "because <b>",
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;?a=&quot;&#39;"),
            "{html}"
        );
        assert!(html.contains("because &lt;b&gt;"));
        assert!(html.contains("href=\"http://proxy/review?ref=K3PZ-7Q2M-A1&amp;x=&quot;y&quot;\""));
        assert!(
            !html.contains("<script") && !html.contains("src=") && !html.contains("http://fonts")
        );
    }

    #[test]
    fn page_shows_what_why_group_when_and_reference() {
        let html = page("http://games.test/", "this site is for games");
        for want in [
            "http://games.test/",
            "this site is for games",
            "year4",
            "2026-11-18",
            "K3PZ-7Q2M-A1",
            "Ask for a review",
        ] {
            assert!(html.contains(want), "missing {want}: {html}");
        }
    }

    #[test]
    fn response_headers_lock_the_page_down() {
        let r = BlockPage {
            kind: PageKind::Blocked,
            url: "u",
            reason: "r",
            group: None,
            time: UNIX_EPOCH,
            reference: "x",
            review_link: None,
        }
        .response();
        assert_eq!(r.status(), 403);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.starts_with("default-src 'none'"));
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!r.headers().contains_key(header::SET_COOKIE));
    }

    #[test]
    fn references_are_unique_and_readable() {
        let refs = References::new(UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000));
        let a = refs.next();
        let b = refs.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert!(
            a.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{a}"
        );
    }
}
