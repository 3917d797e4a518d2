//! Canonical URLs: what URL rules and keyword rules are matched against.
//!
//! In: an absolute `http://` or `https://` URL ([`CanonicalUrl::parse`]), or the
//! scheme, authority and origin-form target of a request inside an intercepted
//! tunnel ([`CanonicalUrl::from_parts`]). Out: a [`CanonicalUrl`] whose host went
//! through [`crate::host`] and whose path and query are normalised for matching.
//! Refused, with a [`UrlError`]: other schemes, relative references, control
//! bytes or spaces, and every authority [`crate::host::canonicalize_authority`]
//! refuses.
//!
//! # Parsing is strict on purpose
//!
//! The proxy dials exactly the authority this module returns, so the authority
//! is found the way the WHATWG parser finds it in a well-formed URL (it runs from
//! `//` to the first `/`, `?` or `#`) and anything a browser would have to repair
//! first (`http:\\host`, `http:host`, a `\` in the authority, spaces) is refused
//! rather than guessed at. Browsers send well-formed targets, so only hand-made
//! requests meet these refusals.
//!
//! # Normalisation for matching (design §5)
//!
//! The path and the query are rewritten so that every spelling of a resource a
//! server treats alike matches the same rule:
//!
//! - `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded,
//!   and in the path `%2F` is read as `/` and a raw `\` as `/` (as browsers and
//!   several servers do); other escapes are kept, with malformed `%` written as
//!   `%25`, and bytes that may not appear raw (non-ASCII, `"`, `<`, `>`, `` ` ``,
//!   `{`, `}`) are percent-encoded;
//! - dot segments are removed (after decoding, so `%2e%2E` is `..`), `..` never
//!   climbs above the root, and runs of `/` are merged;
//! - the path and the query are **ASCII lower-cased**. List entries are
//!   lower-case and many servers (IIS, most CDNs in front of Windows origins,
//!   case-insensitive file systems) serve `/Foo` and `/foo` alike, so `/Foo` must
//!   not evade a `/foo` rule. Matching can only over-block by this, never
//!   under-block; the request is still forwarded with its original bytes;
//! - the fragment is dropped (it never reaches a server); an empty query is no
//!   query.
//!
//! The case-preserving variant of the same normalisation is kept for
//! [`CanonicalUrl::redacted`], because a person reading a log needs
//! `watch?v=dQw4w9WgXcQ`, not its lower-case shadow.
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::host::{CanonicalHost, HostError, canonicalize_authority};

/// The scheme of a request. Only the web schemes a proxy carries are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`
    Http,
    /// `https` (a CONNECT tunnel or an intercepted request)
    Https,
}

impl Scheme {
    /// The default port of the scheme.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request URL in the canonical form used for matching.
///
/// Equality and hashing compare the canonical (matching) form only: two URLs
/// that differ only in the case of their path are equal.
///
/// ```
/// use hallpass_policy::CanonicalUrl;
///
/// let url = CanonicalUrl::parse("HTTP://User:pw@WWW.Example.COM.:80/A/./b/../%43//d?Q=1#frag").unwrap();
/// assert_eq!(url.to_string(), "http://www.example.com/a/c/d?q=1");
/// assert_eq!(url.path_and_query(), "/a/c/d?q=1");
/// ```
#[derive(Clone, Debug)]
pub struct CanonicalUrl {
    scheme: Scheme,
    host: CanonicalHost,
    port: u16,
    /// The matching form of the path (lower-case).
    path: String,
    /// The matching form of the query (lower-case), `None` when absent or empty.
    query: Option<String>,
    /// The same normalisation with case kept, for [`CanonicalUrl::redacted`] and
    /// [`CanonicalUrl::keyword_text`].
    shown_path: String,
    /// The query with case kept.
    shown_query: Option<String>,
}

impl PartialEq for CanonicalUrl {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && self.path == other.path
            && self.query == other.query
    }
}

impl Eq for CanonicalUrl {}

impl Hash for CanonicalUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scheme.hash(state);
        self.host.hash(state);
        self.port.hash(state);
        self.path.hash(state);
        self.query.hash(state);
    }
}

/// Why a URL was refused.
///
/// Messages are lower-case, say what was expected and what was found, and never
/// quote the userinfo.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The host part was refused.
    #[error(transparent)]
    Host(#[from] HostError),
    /// No `scheme://` at the start.
    #[error("expected an absolute http:// or https:// url, found no scheme")]
    NotAbsolute,
    /// A scheme other than `http` or `https`.
    #[error("expected an absolute http:// or https:// url, found scheme '{found}'")]
    Scheme {
        /// The scheme, lower-cased (at most 32 characters).
        found: String,
    },
    /// A control byte (C0 or DEL) or a space in the URL or the target.
    #[error(
        "expected a url without control bytes or spaces, found {} at byte {at}",
        describe_byte(*.byte)
    )]
    ForbiddenByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the input.
        at: usize,
    },
    /// An origin-form target that does not start with `/`.
    #[error("expected a request target starting with '/', found {found}")]
    NotOriginForm {
        /// What the target starts with.
        found: String,
    },
    /// A `#` in an origin-form target (a request never carries a fragment).
    #[error("expected a request target without a fragment, found '#' at byte {at}")]
    Fragment {
        /// The offset of the `#`.
        at: usize,
    },
}

/// Describes a byte for an error message.
fn describe_byte(byte: u8) -> String {
    match byte {
        b' ' => "a space".to_owned(),
        0x21..=0x7e => format!("'{}'", char::from(byte)),
        _ => format!("byte 0x{byte:02x}"),
    }
}

/// Query keys whose values are replaced by `REDACTED` in [`CanonicalUrl::redacted`]
/// (compared after percent-decoding and ASCII lower-casing).
pub const SECRET_QUERY_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "session",
    "sessionid",
    "sid",
    "auth",
    "key",
    "api_key",
    "code",
    "secret",
];

/// Key endings that are redacted too (`refresh_token`, `client_secret`,
/// `new_password`, `x-api-key`...). Redacting a harmless value costs a log
/// reader little; logging a credential cannot be undone.
const SECRET_QUERY_KEY_ENDINGS: &[&str] = &[
    "token", "secret", "password", "passwd", "_key", "-key", "apikey",
];

impl CanonicalUrl {
    /// Parses an absolute `http://` or `https://` URL (the scheme in any case).
    ///
    /// ```
    /// use hallpass_policy::url::{CanonicalUrl, Scheme};
    ///
    /// let url = CanonicalUrl::parse("https://b\u{fc}cher.de:8443/%7Euser/").unwrap();
    /// assert_eq!(url.scheme(), Scheme::Https);
    /// assert_eq!(url.host().as_str(), "xn--bcher-kva.de");
    /// assert_eq!(url.port(), 8443);
    /// assert_eq!(url.path(), "/~user/");
    /// assert!(CanonicalUrl::parse("ftp://example.com/").is_err());
    /// assert!(CanonicalUrl::parse("http:\\\\example.com/").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`UrlError`] for another scheme, a missing `//`, control bytes or
    /// spaces, or a refused authority.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        check_bytes(input)?;
        let (scheme, rest) = split_scheme(input)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        let target = match target.find('#') {
            Some(hash) => &target[..hash],
            None => target,
        };
        let (host, port) = canonicalize_authority(authority)?;
        Ok(Self::build(scheme, host, port, target))
    }

    /// Builds a URL from a scheme, an authority and an origin-form path and query
    /// (as inside an intercepted tunnel).
    ///
    /// ```
    /// use hallpass_policy::url::{CanonicalUrl, Scheme};
    ///
    /// let url = CanonicalUrl::from_parts(Scheme::Https, "Example.com", "/a%2Fb/%2e%2E/c?x=1").unwrap();
    /// assert_eq!(url.to_string(), "https://example.com/a/c?x=1");
    /// assert!(CanonicalUrl::from_parts(Scheme::Http, "example.com", "a/b").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`UrlError`] for a target that does not start with `/`, holds a `#`,
    /// control bytes or spaces, or for a refused authority.
    pub fn from_parts(
        scheme: Scheme,
        authority: &str,
        path_and_query: &str,
    ) -> Result<Self, UrlError> {
        let (host, port) = canonicalize_authority(authority)?;
        Self::from_host(scheme, host, port, path_and_query)
    }

    /// As [`from_parts`](Self::from_parts), for an authority already
    /// canonicalised (a caller that needed the host first does not pay for it
    /// twice); `port` `None` is the scheme's default.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] for a target that does not start with `/`, holds a `#`,
    /// control bytes or spaces.
    pub fn from_host(
        scheme: Scheme,
        host: CanonicalHost,
        port: Option<u16>,
        path_and_query: &str,
    ) -> Result<Self, UrlError> {
        check_bytes(path_and_query)?;
        if !path_and_query.starts_with('/') {
            let found = match path_and_query.bytes().next() {
                Some(byte) => describe_byte(byte),
                None => "nothing".to_owned(),
            };
            return Err(UrlError::NotOriginForm { found });
        }
        if let Some(at) = memchr::memchr(b'#', path_and_query.as_bytes()) {
            return Err(UrlError::Fragment { at });
        }
        Ok(Self::build(scheme, host, port, path_and_query))
    }

    /// A URL for a host only (a CONNECT target or a spliced tunnel): path `/`.
    pub fn for_host(scheme: Scheme, host: CanonicalHost, port: u16) -> Self {
        CanonicalUrl {
            scheme,
            host,
            port,
            path: "/".into(),
            query: None,
            shown_path: "/".into(),
            shown_query: None,
        }
    }

    /// Assembles a URL from a checked host and a target that is empty or starts
    /// with `/` or `?` (no fragment).
    fn build(scheme: Scheme, host: CanonicalHost, port: Option<u16>, target: &str) -> Self {
        let (raw_path, raw_query) = match memchr::memchr(b'?', target.as_bytes()) {
            Some(at) => (&target[..at], Some(&target[at + 1..])),
            None => (target, None),
        };
        // Most paths and queries are canonical already: one scan says so, and
        // they are copied rather than rebuilt (tests check that the full
        // normalisation leaves every such text unchanged).
        let shown_path = if is_canonical_path(raw_path) {
            raw_path.to_owned()
        } else {
            remove_dot_segments(&normalise_component(raw_path, Component::Path))
        };
        let shown_query = raw_query
            .map(|query| {
                if is_canonical_query(query) {
                    query.to_owned()
                } else {
                    normalise_component(query, Component::Query)
                }
            })
            .filter(|query| !query.is_empty());
        CanonicalUrl {
            scheme,
            host,
            port: port.unwrap_or(scheme.default_port()),
            path: shown_path.to_ascii_lowercase(),
            query: shown_query.as_deref().map(str::to_ascii_lowercase),
            shown_path,
            shown_query,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// The canonical host.
    pub fn host(&self) -> &CanonicalHost {
        &self.host
    }
    /// The port (the scheme's default when none was given).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The normalised path, always starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The normalised query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The normalised path and query as URL rules match them: `/path`, plus
    /// `?query` when there is one.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The text keyword rules are matched against: the host (as Unicode when it
    /// has punycode labels, so keywords in any script can match), then the path
    /// and `?query`, fully percent-decoded, with `+` read as a space, then
    /// lower-cased (Unicode). Bytes that are not UTF-8 become U+FFFD.
    ///
    /// ```
    /// use hallpass_policy::CanonicalUrl;
    ///
    /// let url = CanonicalUrl::parse("http://Example.com/Search?q=Bad+W%C3%96RD%21").unwrap();
    /// assert_eq!(url.keyword_text(), "example.com/search?q=bad wörd!");
    /// ```
    pub fn keyword_text(&self) -> String {
        let host = if self.host.as_str().contains("xn--") {
            url::quirks::domain_to_unicode(self.host.as_str())
        } else {
            self.host.as_str().to_owned()
        };
        let mut bytes = Vec::with_capacity(host.len() + self.shown_path.len() + 16);
        bytes.extend_from_slice(host.as_bytes());
        percent_decode_into(&self.shown_path, false, &mut bytes);
        if let Some(query) = &self.shown_query {
            bytes.push(b'?');
            percent_decode_into(query, true, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).to_lowercase()
    }

    /// The URL for logs and events: `scheme://host[:port]/path?query`, still
    /// percent-encoded, with the case of the path and query kept, no userinfo
    /// (it never enters a [`CanonicalUrl`]) and the value of every secret-looking
    /// query key replaced by `REDACTED`.
    ///
    /// The keys are [`SECRET_QUERY_KEYS`] and keys ending in `token`, `secret`,
    /// `password`, `passwd`, `_key`, `-key` or `apikey`, compared after
    /// percent-decoding and ASCII lower-casing. Pairs are split on `&` and `;`.
    ///
    /// ```
    /// use hallpass_policy::CanonicalUrl;
    ///
    /// let url = CanonicalUrl::parse("https://u:p@example.com/Login?user=ann&Pass%77ord=x&%74oken=y").unwrap();
    /// assert_eq!(
    ///     url.redacted(),
    ///     "https://example.com/Login?user=ann&Password=REDACTED&token=REDACTED"
    /// );
    /// ```
    pub fn redacted(&self) -> String {
        let mut out = String::with_capacity(self.shown_path.len() + 64);
        self.write_origin(&mut out);
        out.push_str(&self.shown_path);
        if let Some(query) = &self.shown_query {
            out.push('?');
            redact_query(query, &mut out);
        }
        out
    }

    /// Writes `scheme://host[:port]` (brackets around IPv6, the port only when it
    /// is not the scheme's default).
    fn write_origin(&self, out: &mut String) {
        out.push_str(self.scheme.as_str());
        out.push_str("://");
        if self.host.is_ipv6() {
            out.push('[');
            out.push_str(self.host.as_str());
            out.push(']');
        } else {
            out.push_str(self.host.as_str());
        }
        if self.port != self.scheme.default_port() {
            out.push(':');
            out.push_str(&self.port.to_string());
        }
    }
}

/// The canonical URL: `scheme://host[:port]/path[?query]` in matching form
/// (lower-case path and query, default port omitted). Use
/// [`CanonicalUrl::redacted`] for logs.
impl fmt::Display for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut origin = String::new();
        self.write_origin(&mut origin);
        f.write_str(&origin)?;
        f.write_str(&self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// Refuses control bytes (C0 and DEL) and spaces.
fn check_bytes(input: &str) -> Result<(), UrlError> {
    match input.bytes().position(|b| b <= b' ' || b == 0x7f) {
        Some(at) => Err(UrlError::ForbiddenByte {
            byte: input.as_bytes()[at],
            at,
        }),
        None => Ok(()),
    }
}

/// Splits `scheme://rest` into the scheme and `rest` (after the `//`).
fn split_scheme(input: &str) -> Result<(Scheme, &str), UrlError> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(UrlError::NotAbsolute);
    };
    let valid = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid {
        // Not a scheme (`host:1://`, `user:pw@host/x://`): quote nothing, the text
        // may hold a userinfo.
        return Err(UrlError::NotAbsolute);
    }
    if scheme.eq_ignore_ascii_case("http") {
        Ok((Scheme::Http, rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Ok((Scheme::Https, rest))
    } else {
        Err(UrlError::Scheme {
            found: scheme
                .chars()
                .take(32)
                .collect::<String>()
                .to_ascii_lowercase(),
        })
    }
}

/// Which part of a URL is being normalised.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Component {
    Path,
    Query,
}

/// RFC 3986 unreserved characters: their escapes mean the same as the raw byte.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that are written as `%XX` in the canonical form: everything outside
/// printable ASCII, and the printable bytes the WHATWG path and query
/// percent-encode sets encode (`"`, `<`, `>`, `` ` ``, `{`, `}`). `#` never gets
/// here (the fragment is cut or refused first).
const fn must_encode(byte: u8) -> bool {
    !(byte >= 0x21 && byte <= 0x7e) || matches!(byte, b'"' | b'<' | b'>' | b'`' | b'{' | b'}')
}

/// The value of an ASCII hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Pushes `%XX` (upper-case hex, as RFC 3986 §6.2.2.1 recommends).
fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// Decodes unreserved escapes (and, in the path, `%2F` and `\` as `/`), writes
/// malformed `%` as `%25` and encodes bytes that may not appear raw. Case is
/// kept; the result is ASCII.
fn normalise_component(raw: &str, component: Component) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
                _ => None,
            };
            match decoded {
                Some((hi, lo)) => {
                    let value = (hi << 4) | lo;
                    if is_unreserved(value) || (component == Component::Path && value == b'/') {
                        out.push(char::from(value));
                    } else {
                        push_escape(&mut out, value);
                    }
                    i += 3;
                }
                None => {
                    out.push_str("%25");
                    i += 1;
                }
            }
            continue;
        }
        if component == Component::Path && byte == b'\\' {
            out.push('/');
        } else if must_encode(byte) {
            push_escape(&mut out, byte);
        } else {
            out.push(char::from(byte));
        }
        i += 1;
    }
    out
}

/// Bytes that [`normalise_component`] copies unchanged into a path: not `%`,
/// not `\\`, not [`must_encode`].
static PATH_KEEPS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = !must_encode(byte) && byte != b'%' && byte != b'\\';
        b += 1;
    }
    table
};

/// Whether `remove_dot_segments(normalise_component(path))` is `path` itself:
/// it starts with `/`, every byte is kept as it is, and no segment but the
/// last is empty, and none is `.` or `..`.
fn is_canonical_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for (i, &byte) in bytes.iter().enumerate().skip(1) {
        if byte == b'/' {
            if matches!(&bytes[segment_start..i], b"" | b"." | b"..") {
                return false;
            }
            segment_start = i + 1;
        } else if !PATH_KEEPS[usize::from(byte)] {
            return false;
        }
    }
    !matches!(&bytes[segment_start..], b"." | b"..")
}

/// Whether `normalise_component(query)` is `query` itself: no `%` and no
/// byte to encode (`\\` is kept in a query).
fn is_canonical_query(query: &str) -> bool {
    query.bytes().all(|byte| byte != b'%' && !must_encode(byte))
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4, never above the root) and
/// merges runs of `/`. The input is empty or starts with `/`; so does the
/// output, which is `/` when nothing is left. A trailing `/`, `/.` or `/..` leaves
/// a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path.split('/').peekable();
    // The part before the first `/`: empty for every path that reaches here.
    let _ = segments.next();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                kept.pop();
                trailing_slash = last;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len().max(1));
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// Fully percent-decodes `text` into `out`; in a query, `+` becomes a space.
fn percent_decode_into(text: &str, plus_is_space: bool, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escape = if byte == b'%' {
            match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
                _ => None,
            }
        } else {
            None
        };
        match escape {
            Some((hi, lo)) => {
                out.push((hi << 4) | lo);
                i += 3;
            }
            None => {
                out.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                i += 1;
            }
        }
    }
}

/// Whether a query key (as written, maybe percent-encoded) names a secret.
fn is_secret_key(raw_key: &str) -> bool {
    let mut decoded = Vec::with_capacity(raw_key.len());
    percent_decode_into(raw_key, true, &mut decoded);
    let key = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    let key = key.trim();
    SECRET_QUERY_KEYS.contains(&key)
        || SECRET_QUERY_KEY_ENDINGS
            .iter()
            .any(|ending| key.ends_with(ending))
}

/// Copies a query into `out` with the values of secret keys replaced.
fn redact_query(query: &str, out: &mut String) {
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => {
                out.push_str(key);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
        let Some(separator) = tail.chars().next() else {
            break;
        };
        out.push(separator);
        rest = &tail[1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// The copy-as-is shortcut of `build` never changes a result: what
        /// it calls canonical, the full normalisation leaves unchanged.
        #[test]
        fn the_canonical_shortcuts_agree_with_full_normalisation(
            // Slash-separated runs of short segments (so that many inputs are
            // canonical), drawn from bytes that normalising keeps, changes or
            // encodes, dots and empty segments among them.
            text in "(/[.a-zA-Z0-9%\\\\?&= \"<>`{}~_\\-\u{7f}\u{e9}]{0,3}){0,6}/?"
        ) {
            if is_canonical_path(&text) {
                prop_assert_eq!(
                    remove_dot_segments(&normalise_component(&text, Component::Path)),
                    text.clone()
                );
            }
            if is_canonical_query(&text) {
                prop_assert_eq!(normalise_component(&text, Component::Query), text.clone());
            }
        }
    }

    #[test]
    fn canonical_paths_and_queries_are_recognised() {
        for path in [
            "/",
            "/a",
            "/a/",
            "/a/b.html",
            "/a/...",
            "/.well-known/x",
            "/A/B;c=d:e@f",
        ] {
            assert!(is_canonical_path(path), "{path:?}");
        }
        for path in [
            "", "a", "//", "/a//b", "/a/.", "/a/..", "/./a", "/../a", "/a%41", "/a\\b", "/a b",
            "/a\"b", "/\u{e9}",
        ] {
            assert!(!is_canonical_path(path), "{path:?}");
        }
        assert!(is_canonical_query("q=a&b=c\\d/./.."));
        assert!(!is_canonical_query("q=%41"));
        assert!(!is_canonical_query("q=<b>"));
    }

    #[test]
    fn dot_segments_and_slashes() {
        for (input, expected) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/a//b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/a/./b/../c", "/a/c"),
            ("/a/b/../../..", "/"),
            ("/a/...", "/a/..."),
            ("/a//", "/a/"),
        ] {
            assert_eq!(remove_dot_segments(input), expected, "{input:?}");
        }
    }

    #[test]
    fn component_escapes() {
        for (input, component, expected) in [
            ("/%7e%41", Component::Path, "/~A"),
            ("/a%2fb", Component::Path, "/a/b"),
            ("a%2fb", Component::Query, "a%2Fb"),
            ("/a\\b", Component::Path, "/a/b"),
            ("/%", Component::Path, "/%25"),
            ("/%g1", Component::Path, "/%25g1"),
            ("/%c3%a9", Component::Path, "/%C3%A9"),
            ("/\u{e9}", Component::Path, "/%C3%A9"),
            ("/a\"b", Component::Path, "/a%22b"),
            ("/a+b", Component::Path, "/a+b"),
        ] {
            assert_eq!(normalise_component(input, component), expected, "{input:?}");
        }
    }

    #[test]
    fn secret_keys() {
        for key in [
            "password",
            "PASSWORD",
            "%70assword",
            "sid",
            "refresh_token",
            "client_secret",
            "x-api-key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["q", "page", "user", "keyword", "sidebar"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
