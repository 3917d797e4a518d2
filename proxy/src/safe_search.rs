//! Safe search: force the search engines' own filters for bands that ask for it.
//!
//! In: the band's settings ([`Band::safe_search`], [`Band::youtube`]), the canonical
//! host and the request's original path and query. Out: a [`Rewrite`]: a new path
//! and query (for search pages) and headers to add. Nothing else of the request is
//! touched; hosts that are not search engines get an empty rewrite.
//!
//! | Engine | Hosts | What is forced |
//! |---|---|---|
//! | Google | `google.<tld>`, `www.google.<tld>` | `safe=active` on `/search`, `/images`, `/webhp`, `/complete/search` |
//! | Bing | `bing.com`, `www.bing.com` | `adlt=strict` on `/search`, `/images/search`, `/videos/search` |
//! | DuckDuckGo | `duckduckgo.com`, `html.`/`lite.`/`links.duckduckgo.com` | `kp=1` on every request with a `q` |
//! | YouTube | `youtube.com`, `www.`/`m.`/`music.youtube.com`, `youtubei.googleapis.com`, `youtube.googleapis.com`, `www.youtube-nocookie.com` | header `YouTube-Restrict: Strict` or `Moderate` |
//!
//! Any parameter of the same name the client sent (however it is percent-encoded)
//! is removed first, so `safe=off` cannot win. This only works on requests the
//! proxy can see: plain HTTP and intercepted HTTPS.
use http::{HeaderName, HeaderValue};
use policy::Band;
use policy::host::CanonicalHost;
use policy::policy::YoutubeMode;

/// What to change in a forwarded request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The new path and query, when it changes.
    pub path_and_query: Option<String>,
    /// Headers to set (replacing any the client sent).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The YouTube restriction header (Google's documented name).
pub const YOUTUBE_RESTRICT: HeaderName = HeaderName::from_static("youtube-restrict");

/// Works out the rewrite for one request.
pub fn rewrite(band: &Band, host: &CanonicalHost, path_and_query: &str) -> Rewrite {
    let mut out = Rewrite::default();
    let host = host.as_str();
    if band.safe_search {
        if let Some((key, value)) = forced_parameter(host, path_and_query) {
            out.path_and_query = Some(set_query_parameter(path_and_query, key, value));
        }
    }
    if is_youtube(host) {
        let value = match band.youtube {
            YoutubeMode::Off => None,
            YoutubeMode::Moderate => Some("Moderate"),
            YoutubeMode::Strict => Some("Strict"),
        };
        if let Some(value) = value {
            out.headers
                .push((YOUTUBE_RESTRICT, HeaderValue::from_static(value)));
        }
    }
    out
}

fn path_of(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// The parameter to force for a search request, if this is one.
fn forced_parameter(host: &str, path_and_query: &str) -> Option<(&'static str, &'static str)> {
    let path = path_of(path_and_query);
    if is_google(host) {
        let search = ["/search", "/images", "/webhp", "/complete/search"]
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
        return search.then_some(("safe", "active"));
    }
    if matches!(host, "bing.com" | "www.bing.com") {
        let search = [
            "/search",
            "/images/search",
            "/videos/search",
            "/AS/Suggestions",
        ]
        .contains(&path);
        return search.then_some(("adlt", "strict"));
    }
    if matches!(
        host,
        "duckduckgo.com" | "html.duckduckgo.com" | "lite.duckduckgo.com" | "links.duckduckgo.com"
    ) {
        let has_query = query_pairs(path_and_query).any(|(k, _)| k == "q");
        return has_query.then_some(("kp", "1"));
    }
    None
}

/// `google.<tld>` or `www.google.<tld>`, where the tld is one or two short labels
/// (`com`, `co.uk`, `com.au`): Google's country sites.
fn is_google(host: &str) -> bool {
    let rest = host.strip_prefix("www.").unwrap_or(host);
    let Some(tld) = rest.strip_prefix("google.") else {
        return false;
    };
    let labels: Vec<&str> = tld.split('.').collect();
    (1..=2).contains(&labels.len())
        && labels
            .iter()
            .all(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_youtube(host: &str) -> bool {
    matches!(
        host,
        "youtube.com"
            | "www.youtube.com"
            | "m.youtube.com"
            | "music.youtube.com"
            | "youtubei.googleapis.com"
            | "youtube.googleapis.com"
            | "www.youtube-nocookie.com"
    )
}

/// The query's `key=value` pairs with keys percent-decoded (values untouched).
fn query_pairs(path_and_query: &str) -> impl Iterator<Item = (String, &str)> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), v)
    })
}

/// Removes every `key` parameter (compared after percent-decoding) and appends
/// `key=value`. Everything else keeps its original bytes and order.
pub fn set_query_parameter(path_and_query: &str, key: &str, value: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|pair| percent_decode(pair.split_once('=').map_or(pair, |(k, _)| k)) != key)
        .collect();
    let forced = format!("{key}={value}");
    kept.push(&forced);
    format!("{path}?{}", kept.join("&"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(safe_search: bool, youtube: YoutubeMode) -> Band {
        Band {
            name: "ks2".into(),
            label: "KS2".into(),
            ages: (7, Some(11)),
            default: policy::Action::Allow,
            safe_search,
            youtube,
        }
    }

    fn host(name: &str) -> CanonicalHost {
        policy::host::canonicalize(name).expect("test host")
    }

    #[test]
    fn query_parameters_are_forced_and_client_values_removed() {
        assert_eq!(
            set_query_parameter("/search?q=cats&safe=off", "safe", "active"),
            "/search?q=cats&safe=active"
        );
        assert_eq!(
            set_query_parameter("/search?q=cats&%73afe=off&x", "safe", "active"),
            "/search?q=cats&x&safe=active"
        );
        assert_eq!(
            set_query_parameter("/search", "safe", "active"),
            "/search?safe=active"
        );
        assert_eq!(
            set_query_parameter("/search?safe=images&safe=off&q=a%26b", "safe", "active"),
            "/search?q=a%26b&safe=active"
        );
    }

    #[test]
    fn google_hosts() {
        for yes in [
            "google.com",
            "www.google.co.uk",
            "google.de",
            "www.google.com.au",
        ] {
            assert!(is_google(yes), "{yes}");
        }
        for no in [
            "google.evil.example.com",
            "notgoogle.com",
            "mail.google.com",
            "google.com.evil.test",
            "google",
        ] {
            assert!(!is_google(no), "{no}");
        }
    }

    #[test]
    fn rewrites_per_engine() {
        let on = band(true, YoutubeMode::Strict);
        let r = rewrite(&on, &host("www.google.co.uk"), "/search?q=x&safe=off");
        assert_eq!(r.path_and_query.as_deref(), Some("/search?q=x&safe=active"));
        assert_eq!(
            rewrite(&on, &host("www.google.com"), "/maps?q=x").path_and_query,
            None
        );
        assert_eq!(
            rewrite(&on, &host("www.bing.com"), "/search?q=x&adlt=off")
                .path_and_query
                .as_deref(),
            Some("/search?q=x&adlt=strict")
        );
        assert_eq!(
            rewrite(&on, &host("duckduckgo.com"), "/?q=x&kp=-2")
                .path_and_query
                .as_deref(),
            Some("/?q=x&kp=1")
        );
        assert_eq!(
            rewrite(&on, &host("duckduckgo.com"), "/about").path_and_query,
            None
        );
        let yt = rewrite(&on, &host("www.youtube.com"), "/watch?v=1");
        assert_eq!(
            yt.headers,
            vec![(YOUTUBE_RESTRICT, HeaderValue::from_static("Strict"))]
        );
        assert_eq!(yt.path_and_query, None);
    }

    #[test]
    fn bands_without_safe_search_are_untouched() {
        let off = band(false, YoutubeMode::Off);
        assert_eq!(
            rewrite(&off, &host("www.google.com"), "/search?q=x"),
            Rewrite::default()
        );
        assert_eq!(
            rewrite(&off, &host("www.youtube.com"), "/"),
            Rewrite::default()
        );
        let moderate = band(false, YoutubeMode::Moderate);
        assert_eq!(
            rewrite(&moderate, &host("m.youtube.com"), "/").headers[0].1,
            "Moderate"
        );
    }
}
