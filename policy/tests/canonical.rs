//! Canonical hosts and URLs: the tables in `tests/data/*.toml` and the property
//! tests behind the invariant "every evasion spelling of a listed host gets that
//! host's verdict" (design §5, §8).
//!
//! The verdict depends only on the canonical host, so the property tests check
//! that every spelling canonicalises to the same [`CanonicalHost`], that
//! canonicalisation is idempotent, and that the fast path agrees with the full
//! parser.
use std::net::Ipv4Addr;

use hallpass_policy::host::{
    CanonicalHost, HostError, canonicalize, canonicalize_authority, canonicalize_without_fast_path,
};
use hallpass_policy::url::{CanonicalUrl, Scheme};
use proptest::prelude::*;
use serde::Deserialize;

// --- Tables ------------------------------------------------------------------

/// One row of a table. `why` names what the row guards against and is printed
/// when it fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    input: String,
    why: String,
    expect: Option<String>,
    port: Option<u16>,
    error: Option<String>,
    path_and_query: Option<String>,
    keyword: Option<String>,
    redacted: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

/// Loads a table; a missing or malformed table fails the test.
fn table(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let table: Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(!table.case.is_empty(), "{path}: no cases");
    table.case
}

/// Checks an error against a table row: the message contains the expected part
/// and follows the house style (lower-case start, says what it expected).
fn check_error(case: &Case, message: &str, failures: &mut Vec<String>) {
    let expected = case.error.as_deref().unwrap_or("<no error expected>");
    if !message.contains(expected) {
        failures.push(format!(
            "{:?} ({}): error {message:?} does not contain {expected:?}",
            case.input, case.why
        ));
    }
    if !message.starts_with("expected ") {
        failures.push(format!(
            "{:?}: error {message:?} does not start with 'expected'",
            case.input
        ));
    }
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn host_table() {
    let mut failures = Vec::new();
    for case in table("hosts.toml") {
        let got = canonicalize(&case.input);
        // The table also pins the full path, which the fast path must equal.
        let slow = canonicalize_without_fast_path(&case.input);
        if got != slow {
            failures.push(format!("{:?}: fast {got:?} != slow {slow:?}", case.input));
        }
        match (&got, &case.expect) {
            (Ok(host), Some(expect)) => {
                if host.as_str() != expect {
                    failures.push(format!(
                        "{:?} ({}): got {:?}, expected {expect:?}",
                        case.input,
                        case.why,
                        host.as_str()
                    ));
                }
            }
            (Ok(host), None) => failures.push(format!(
                "{:?} ({}): accepted as {:?}, expected an error",
                case.input,
                case.why,
                host.as_str()
            )),
            (Err(err), _) => check_error(&case, &err.to_string(), &mut failures),
        }
    }
    report(failures);
}

#[test]
fn authority_table() {
    let mut failures = Vec::new();
    for case in table("authorities.toml") {
        match (canonicalize_authority(&case.input), &case.expect) {
            (Ok((host, port)), Some(expect)) => {
                if host.as_str() != expect || port != case.port {
                    failures.push(format!(
                        "{:?} ({}): got {:?} {port:?}, expected {expect:?} {:?}",
                        case.input,
                        case.why,
                        host.as_str(),
                        case.port
                    ));
                }
            }
            (Ok((host, port)), None) => failures.push(format!(
                "{:?} ({}): accepted as {:?} {port:?}, expected an error",
                case.input,
                case.why,
                host.as_str()
            )),
            (Err(err), _) => {
                let message = err.to_string();
                if message.contains("s3cret") {
                    failures.push(format!(
                        "{:?}: error quotes the userinfo: {message}",
                        case.input
                    ));
                }
                check_error(&case, &message, &mut failures);
            }
        }
    }
    report(failures);
}

#[test]
fn url_table() {
    let mut failures = Vec::new();
    for case in table("urls.toml") {
        let url = match CanonicalUrl::parse(&case.input) {
            Ok(url) => url,
            Err(err) => {
                let message = err.to_string();
                if message.contains("s3cret") {
                    failures.push(format!(
                        "{:?}: error quotes the userinfo: {message}",
                        case.input
                    ));
                }
                check_error(&case, &message, &mut failures);
                continue;
            }
        };
        if case.error.is_some() {
            failures.push(format!(
                "{:?} ({}): accepted as {url}, expected an error",
                case.input, case.why
            ));
            continue;
        }
        let mut check = |what: &str, got: String, expected: &Option<String>| {
            if let Some(expected) = expected
                && &got != expected
            {
                failures.push(format!(
                    "{:?} ({}): {what} {got:?}, expected {expected:?}",
                    case.input, case.why
                ));
            }
        };
        check("display", url.to_string(), &case.expect);
        check("path_and_query", url.path_and_query(), &case.path_and_query);
        check("keyword_text", url.keyword_text(), &case.keyword);
        check("redacted", url.redacted(), &case.redacted);
        let redacted = url.redacted();
        if redacted.contains("s3cret") {
            failures.push(format!(
                "{:?}: redacted form shows userinfo: {redacted}",
                case.input
            ));
        }
    }
    report(failures);
}

// --- Lengths (generated: too long for a table) ---------------------------------

#[test]
fn label_of_63_bytes_is_accepted_and_64_refused() {
    let ok = format!("{}.com", "a".repeat(63));
    assert_eq!(canonicalize(&ok).map(|h| h.as_str().len()), Ok(67));
    let long = format!("{}.com", "a".repeat(64));
    assert_eq!(
        canonicalize(&long),
        Err(HostError::LabelTooLong { len: 64 })
    );
    assert_eq!(
        canonicalize_without_fast_path(&long),
        Err(HostError::LabelTooLong { len: 64 })
    );
}

#[test]
fn label_length_is_counted_as_an_a_label() {
    // 60 'ü' are 120 bytes of UTF-8 but a longer A-label; the limit is on the
    // A-label, which is what DNS carries.
    let unicode = format!("{}.de", "\u{fc}".repeat(60));
    assert!(matches!(
        canonicalize(&unicode),
        Err(HostError::LabelTooLong { .. })
    ));
}

#[test]
fn name_of_253_bytes_is_accepted_and_254_refused() {
    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253
    let label = "a".repeat(63);
    let ok = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    assert_eq!(ok.len(), 253);
    assert_eq!(canonicalize(&ok).map(|h| h.as_str().len()), Ok(253));
    assert_eq!(
        canonicalize(&format!("{ok}.")).map(|h| h.as_str().len()),
        Ok(253),
        "a trailing dot does not count"
    );
    let long = format!("{label}.{label}.{label}.{}", "b".repeat(62));
    assert_eq!(
        canonicalize(&long),
        Err(HostError::NameTooLong { len: 254 })
    );
    assert_eq!(
        canonicalize_without_fast_path(&long),
        Err(HostError::NameTooLong { len: 254 })
    );
}

#[test]
fn very_long_input_is_refused_without_quoting_all_of_it() {
    let huge = format!("{}!", "a.".repeat(50_000));
    let message = canonicalize(&huge)
        .map(|_| ())
        .expect_err("'!'")
        .to_string();
    assert!(message.len() < 300, "{} bytes", message.len());
}

#[test]
fn ip_accessor_and_text() {
    let v4 = canonicalize("0x7f.1").expect("hex ipv4");
    assert_eq!(v4.ip(), Some(Ipv4Addr::LOCALHOST.into()));
    assert_eq!(v4, CanonicalHost::from_ipv4(Ipv4Addr::LOCALHOST));
    let v6 = canonicalize("[2001:DB8::1]").expect("ipv6");
    assert!(v6.is_ipv6());
    assert_eq!(v6.as_str(), "2001:db8::1");
    assert_eq!(canonicalize("example.com").expect("name").ip(), None);
}

// --- Property tests -----------------------------------------------------------

/// A host name that canonicalises (lower-case, no `xn--` label, a TLD of letters).
fn host_name() -> impl Strategy<Value = String> {
    "([a-z0-9_][a-z0-9_-]{0,12}\\.){0,3}[a-z][a-z0-9-]{0,10}\\.[a-z]{2,6}"
        .prop_filter("canonical to begin with", |h| {
            canonicalize_without_fast_path(h).is_ok_and(|c| c.as_str() == h)
        })
}

/// How one character of a host is spelled.
#[derive(Clone, Copy, Debug)]
enum Spelling {
    AsIs,
    Upper,
    Percent,
    PercentLowerHex,
    Fullwidth,
    PercentFullwidth,
    ZeroWidthAfter,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    prop_oneof![
        3 => Just(Spelling::AsIs),
        2 => Just(Spelling::Upper),
        1 => Just(Spelling::Percent),
        1 => Just(Spelling::PercentLowerHex),
        1 => Just(Spelling::Fullwidth),
        1 => Just(Spelling::PercentFullwidth),
        1 => Just(Spelling::ZeroWidthAfter),
    ]
}

fn percent_encode_str(text: &str, lower_hex: bool) -> String {
    text.bytes()
        .map(|b| {
            if lower_hex {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The fullwidth form of an ASCII letter or digit.
fn fullwidth(ch: char) -> char {
    if ch.is_ascii_alphanumeric() {
        char::from_u32(u32::from(ch) - 0x20 + 0xFF00).unwrap_or(ch)
    } else {
        ch
    }
}

/// Spells `host` with one spelling per character (cycled) and the dots spelled
/// by `dot`.
fn spell(host: &str, spellings: &[Spelling], dot: &str) -> String {
    let mut out = String::new();
    for (i, ch) in host.chars().enumerate() {
        if ch == '.' {
            out.push_str(dot);
            continue;
        }
        let letter_or_digit = ch.is_ascii_alphanumeric();
        match spellings[i % spellings.len()] {
            Spelling::AsIs => out.push(ch),
            Spelling::Upper => out.push(ch.to_ascii_uppercase()),
            Spelling::Percent => out.push_str(&percent_encode_str(&ch.to_string(), false)),
            Spelling::PercentLowerHex => out.push_str(&percent_encode_str(&ch.to_string(), true)),
            Spelling::Fullwidth if letter_or_digit => out.push(fullwidth(ch)),
            Spelling::PercentFullwidth if letter_or_digit => {
                out.push_str(&percent_encode_str(&fullwidth(ch).to_string(), false));
            }
            Spelling::ZeroWidthAfter if letter_or_digit => {
                out.push(ch);
                out.push('\u{200B}');
            }
            _ => out.push(ch),
        }
    }
    out
}

fn dot_spelling() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("."),
        1 => Just("\u{3002}"),
        1 => Just("\u{FF0E}"),
        1 => Just("\u{FF61}"),
        1 => Just("%2e"),
        1 => Just("%2E"),
    ]
}

/// Every numeric spelling of an IPv4 address that browsers accept, for a
/// given address and radix choices.
fn ipv4_spellings(addr: Ipv4Addr, radices: &[u8]) -> Vec<String> {
    let value = u32::from(addr);
    let o = addr.octets();
    let num = |n: u32, i: usize| -> String {
        match radices[i % radices.len()] % 4 {
            0 => format!("{n}"),
            1 => format!("0x{n:x}"),
            2 => format!("0X{n:X}"),
            _ => format!("0{n:o}"),
        }
    };
    let b = |i: usize| u32::from(o[i]);
    vec![
        format!(
            "{}.{}.{}.{}",
            num(b(0), 0),
            num(b(1), 1),
            num(b(2), 2),
            num(b(3), 3)
        ),
        num(value, 0),
        format!("{}.{}", num(b(0), 1), num(value & 0x00ff_ffff, 2)),
        format!(
            "{}.{}.{}",
            num(b(0), 2),
            num(b(1), 3),
            num(value & 0xffff, 0)
        ),
        format!("{}.{}.{}.{}.", b(0), b(1), b(2), b(3)),
        format!("{value}"),
        format!("0x{value:08x}"),
        format!("0{value:o}"),
        format!("[::ffff:{addr}]"),
        format!("[::FFFF:{:x}:{:x}]", value >> 16, value & 0xffff),
        percent_encode_str(&addr.to_string(), false),
        addr.to_string().chars().map(fullwidth).collect(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Idempotence on arbitrary text: whatever is accepted is a fixed point.
    #[test]
    fn canonicalize_is_idempotent_on_any_text(input in any::<String>()) {
        if let Ok(host) = canonicalize(&input) {
            prop_assert_eq!(canonicalize(host.as_str()), Ok(host));
        }
    }

    /// Idempotence on host-shaped text (any case, escapes, dots, digits, IDNA).
    #[test]
    fn canonicalize_is_idempotent_on_host_like_text(
        input in "[a-zA-Z0-9._%\\-\u{fc}\u{3002}\u{ff41}\u{200b}:\\[\\]]{0,40}"
    ) {
        if let Ok(host) = canonicalize(&input) {
            prop_assert_eq!(canonicalize(host.as_str()), Ok(host.clone()));
            prop_assert!(host.as_str().len() <= 253);
            prop_assert!(!host.as_str().ends_with('.'));
            prop_assert!(!host.as_str().chars().any(|c| c.is_ascii_uppercase()));
        }
    }

    /// The fast path gives exactly what the full parser gives, on text that is
    /// mostly inside the fast path's alphabet (so both acceptance and every
    /// refusal reason are exercised).
    #[test]
    fn fast_path_equals_slow_path(input in "[a-z0-9._x-]{0,70}") {
        prop_assert_eq!(canonicalize(&input), canonicalize_without_fast_path(&input));
    }

    /// The same on arbitrary text.
    #[test]
    fn fast_path_equals_slow_path_on_any_text(input in any::<String>()) {
        prop_assert_eq!(canonicalize(&input), canonicalize_without_fast_path(&input));
    }

    /// The same on names near the length limits.
    #[test]
    fn fast_path_equals_slow_path_near_limits(
        labels in proptest::collection::vec(1usize..=66, 1..6),
        trailing_dot in any::<bool>(),
    ) {
        let mut name = labels
            .iter()
            .enumerate()
            .map(|(i, &len)| char::from(b'a' + (i % 26) as u8).to_string().repeat(len))
            .collect::<Vec<_>>()
            .join(".");
        if trailing_dot {
            name.push('.');
        }
        prop_assert_eq!(canonicalize(&name), canonicalize_without_fast_path(&name));
    }

    /// Every evasion spelling of a host canonicalises to the host.
    #[test]
    fn every_spelling_of_a_host_is_the_host(
        host in host_name(),
        spellings in proptest::collection::vec(spelling(), 1..8),
        dot in dot_spelling(),
        trailing_dot in any::<bool>(),
    ) {
        let expected = canonicalize(&host).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut spelled = spell(&host, &spellings, dot);
        if trailing_dot {
            spelled.push('.');
        }
        prop_assert_eq!(canonicalize(&spelled), Ok(expected), "spelled as {:?}", spelled);
    }

    /// ... and in an authority, behind userinfo and with the default ports.
    #[test]
    fn every_authority_spelling_of_a_host_is_the_host(
        host in host_name(),
        spellings in proptest::collection::vec(spelling(), 1..8),
        userinfo in prop::option::of("[a-zA-Z0-9:%@._-]{0,12}"),
        port in prop::option::of(prop_oneof![Just(80u16), Just(443u16), 1u16..]),
    ) {
        let expected = canonicalize(&host).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut authority = String::new();
        if let Some(userinfo) = &userinfo {
            authority.push_str(userinfo);
            authority.push('@');
        }
        authority.push_str(&spell(&host, &spellings, "."));
        if let Some(port) = port {
            authority.push_str(&format!(":{port}"));
        }
        prop_assert_eq!(
            canonicalize_authority(&authority),
            Ok((expected, port)),
            "authority {:?}", authority
        );
    }

    /// Every numeric spelling of an IPv4 address is the dotted quad.
    #[test]
    fn every_spelling_of_an_ipv4_address_is_the_dotted_quad(
        addr in any::<u32>().prop_map(Ipv4Addr::from),
        radices in proptest::collection::vec(any::<u8>(), 1..5),
    ) {
        let expected = CanonicalHost::from_ipv4(addr);
        for spelled in ipv4_spellings(addr, &radices) {
            prop_assert_eq!(canonicalize(&spelled), Ok(expected.clone()), "spelled as {:?}", spelled);
            let authority = format!("user@{spelled}:443");
            prop_assert_eq!(
                canonicalize_authority(&authority),
                Ok((expected.clone(), Some(443))),
                "authority {:?}", authority
            );
        }
    }

    /// IPv6 text is RFC 5952 (as `Ipv6Addr`'s Display) and canonicalises to itself.
    #[test]
    fn ipv6_is_rfc5952_and_idempotent(segments in any::<[u16; 8]>()) {
        let addr = std::net::Ipv6Addr::from(segments);
        let full = format!("[{}]", segments.map(|s| format!("{s:X}")).join(":"));
        let host = canonicalize(&full).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&host, &CanonicalHost::from_ipv6(addr));
        prop_assert_eq!(canonicalize(host.as_str()), Ok(host.clone()));
    }

    /// URL normalisation is idempotent, and the canonical path and query go
    /// through `from_parts` unchanged.
    #[test]
    fn url_normalisation_is_idempotent(
        scheme in prop_oneof![Just("http"), Just("HTTPS")],
        host in host_name(),
        port in prop::option::of(1u16..),
        path in "(/[a-zA-Z0-9._~%+!\\\\\u{e9}-]{0,8}|/\\.|/\\.\\.|/%2[eE]|/%2[fF]|//){0,8}",
        query in prop::option::of("[a-zA-Z0-9=&;%+/?._~-]{0,20}"),
        fragment in prop::option::of("[a-z#?/]{0,5}"),
    ) {
        let mut input = format!("{scheme}://{host}");
        if let Some(port) = port {
            input.push_str(&format!(":{port}"));
        }
        input.push_str(&path);
        if let Some(query) = &query {
            input.push('?');
            input.push_str(query);
        }
        if let Some(fragment) = &fragment {
            input.push('#');
            input.push_str(fragment);
        }
        let url = CanonicalUrl::parse(&input).map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        let again = CanonicalUrl::parse(&url.to_string())
            .map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(&again, &url);
        prop_assert_eq!(again.to_string(), url.to_string());
        let authority = format!("{}:{}", url.host(), url.port());
        let parts = CanonicalUrl::from_parts(url.scheme(), &authority, &url.path_and_query())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parts, &url);
        // The matching form has no upper case, no dot segments, no `//`.
        let pq = url.path_and_query();
        prop_assert!(!pq.chars().any(|c| c.is_ascii_uppercase()), "{}", pq);
        prop_assert!(!url.path().contains("//"), "{}", url.path());
        prop_assert!(!url.path().split('/').any(|s| s == "." || s == ".."), "{}", url.path());
        // The redacted form parses back to the same URL when nothing was redacted.
        if !url.redacted().contains("REDACTED") {
            let shown = CanonicalUrl::parse(&url.redacted())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(shown, url);
        }
    }

    /// Our host and port agree with the WHATWG parser (the `url` crate) on every
    /// URL we accept, so the proxy dials what a browser would.
    #[test]
    fn url_host_agrees_with_whatwg(
        userinfo in prop::option::of("[a-z0-9:]{1,8}"),
        host in "[a-zA-Z0-9%.\u{fc}\u{ff41}\u{3002}-]{1,20}",
        port in prop::option::of(1u16..),
        path in "(/[a-z.%]{0,5}){0,3}",
    ) {
        let mut input = String::from("http://");
        if let Some(userinfo) = &userinfo {
            input.push_str(userinfo);
            input.push('@');
        }
        input.push_str(&host);
        if let Some(port) = port {
            input.push_str(&format!(":{port}"));
        }
        input.push_str(&path);
        if let Ok(ours) = CanonicalUrl::parse(&input) {
            let theirs = url::Url::parse(&input)
                .map_err(|e| TestCaseError::fail(format!("{input}: whatwg refused: {e}")))?;
            let their_host = theirs.host_str().unwrap_or_default();
            prop_assert_eq!(ours.host().as_str(), their_host.trim_end_matches('.'));
            prop_assert_eq!(Some(ours.port()), theirs.port_or_known_default());
        }
    }
}

#[test]
fn from_parts_matches_parse() {
    let parsed = CanonicalUrl::parse("https://Example.com:8443/A/%2E%2e/b?X=1").expect("valid url");
    let parts = CanonicalUrl::from_parts(Scheme::Https, "example.com:8443", "/A/%2E%2e/b?X=1")
        .expect("valid parts");
    assert_eq!(parsed, parts);
    assert_eq!(parts.to_string(), "https://example.com:8443/b?x=1");
}

#[test]
fn from_parts_refuses_what_an_origin_form_target_cannot_hold() {
    for (target, error) in [
        ("", "starting with '/', found nothing"),
        ("a/b", "starting with '/', found 'a'"),
        ("*", "starting with '/', found '*'"),
        ("/a#b", "without a fragment, found '#' at byte 2"),
        ("/a b", "found a space at byte 2"),
    ] {
        let message = CanonicalUrl::from_parts(Scheme::Http, "example.com", target)
            .map(|u| u.to_string())
            .expect_err(target)
            .to_string();
        assert!(message.contains(error), "{target:?}: {message}");
    }
}

#[test]
fn for_host_is_the_root() {
    let url = CanonicalUrl::for_host(Scheme::Https, canonicalize("[::1]").expect("ipv6"), 8443);
    assert_eq!(url.to_string(), "https://[::1]:8443/");
    assert_eq!(url.path_and_query(), "/");
    assert_eq!(url.redacted(), "https://[::1]:8443/");
}

/// Regression guard: the request data the proxy sees in practice (real crawl
/// URLs) must all parse, and canonicalise idempotently. Fails, rather than
/// skips, when the shared data is missing.
#[test]
fn real_request_urls_parse_and_are_idempotent() {
    let path = format!(
        "{}/../../shared/data/requests/cliqz-top500-adguard-subset/requests.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the shared request data is required)"));
    let mut parsed = 0usize;
    let mut refused = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}: {line}"));
        let Some(url) = record.get("url").and_then(|u| u.as_str()) else {
            continue;
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            continue;
        }
        match CanonicalUrl::parse(url) {
            Ok(canonical) => {
                parsed += 1;
                let again = CanonicalUrl::parse(&canonical.to_string());
                assert_eq!(again.as_ref(), Ok(&canonical), "{url}");
            }
            Err(err) => refused.push(format!("{url}: {err}")),
        }
    }
    assert!(parsed > 10_000, "only {parsed} urls parsed");
    // Real URLs occasionally carry raw spaces or other refused bytes; they must
    // stay rare.
    assert!(
        refused.len() * 1000 <= parsed,
        "{} refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
}
