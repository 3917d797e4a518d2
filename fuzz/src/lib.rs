//! The checks behind hallpass's fuzz targets, shared by the libFuzzer harnesses
//! (`fuzz_targets/`, built by cargo-fuzz) and by the corpus replay
//! (`tests/corpus.rs`, a plain `cargo test`).
//!
//! Each check takes arbitrary bytes and panics when an invariant breaks. They
//! assert invariants, not just "no panic".
#![forbid(unsafe_code)]

pub mod proxy_checks;

use policy::CanonicalUrl;
use policy::host::{
    CanonicalHost, MAX_LABEL_LEN, MAX_NAME_LEN, canonicalize, canonicalize_authority,
    canonicalize_without_fast_path,
};

/// `policy::host`: for any input, `canonicalize` and `canonicalize_authority`
/// never panic, the fast path agrees with the full parser, and every accepted
/// host is a well-formed fixed point.
pub fn canonical_host(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let fast = canonicalize(&text);
    let slow = canonicalize_without_fast_path(&text);
    assert_eq!(
        fast, slow,
        "fast path differs from the full parser on {text:?}"
    );
    if let Ok(host) = &fast {
        check_host(host, &text);
    }
    if let Ok((host, port)) = canonicalize_authority(&text) {
        check_host(&host, &text);
        assert_ne!(port, Some(0), "port 0 accepted in {text:?}");
    }
}

/// The invariants of an accepted host.
fn check_host(host: &CanonicalHost, input: &str) {
    let text = host.as_str();
    assert_eq!(
        canonicalize(text).as_ref(),
        Ok(host),
        "not idempotent: {input:?} -> {text:?}"
    );
    assert!(!text.is_empty(), "empty host from {input:?}");
    match host.ip() {
        Some(ip) => assert_eq!(
            CanonicalHost::from_ip(ip).as_str(),
            text,
            "ip text is not canonical for {input:?}"
        ),
        None => {
            assert!(text.len() <= MAX_NAME_LEN, "{text:?} is too long");
            assert!(!text.ends_with('.'), "{text:?} ends with a dot");
            for label in text.split('.') {
                assert!(!label.is_empty(), "{text:?} has an empty label");
                assert!(label.len() <= MAX_LABEL_LEN, "{text:?} has a long label");
                assert!(
                    label.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'),
                    "{text:?} has a byte outside [a-z0-9_-]"
                );
            }
        }
    }
}

/// `policy::url`: for any input, `CanonicalUrl::parse` never panics, and every
/// accepted URL is a fixed point whose matching form is lower-case, free of dot
/// segments and `//`, and whose redacted form carries no userinfo.
pub fn canonical_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Also try the input as a target behind a fixed origin, to reach the path
    // normaliser with fewer rejections.
    let attempts = [
        CanonicalUrl::parse(&text),
        CanonicalUrl::parse(&format!("http://example.com/{text}")),
    ];
    for url in attempts.into_iter().flatten() {
        check_url(&url, &text);
    }
}

/// The invariants of an accepted URL.
fn check_url(url: &CanonicalUrl, input: &str) {
    let shown = url.to_string();
    let again = CanonicalUrl::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} -> {shown:?} does not parse again: {e}"));
    assert_eq!(&again, url, "not idempotent: {input:?} -> {shown:?}");
    assert_eq!(
        again.to_string(),
        shown,
        "display not idempotent for {input:?}"
    );
    let path = url.path();
    assert!(path.starts_with('/'), "{path:?} does not start with '/'");
    assert!(!path.contains("//"), "{path:?} has '//'");
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "{path:?} has a dot segment"
    );
    let pq = url.path_and_query();
    assert!(
        !pq.bytes().any(|b| b.is_ascii_uppercase()),
        "{pq:?} has upper case"
    );
    assert!(pq.is_ascii(), "{pq:?} is not ascii");
    let rebuilt = CanonicalUrl::from_parts(
        url.scheme(),
        &format!("{}:{}", authority_host(url), url.port()),
        &pq,
    )
    .unwrap_or_else(|e| panic!("{input:?}: from_parts refused its own parts: {e}"));
    assert_eq!(&rebuilt, url, "from_parts differs for {input:?}");
    let redacted = url.redacted();
    assert!(
        CanonicalUrl::parse(&redacted).is_ok(),
        "redacted form {redacted:?} does not parse"
    );
    let _ = url.keyword_text();
}

/// The host as an authority spells it (IPv6 in brackets).
fn authority_host(url: &CanonicalUrl) -> String {
    if url.host().is_ipv6() {
        format!("[{}]", url.host())
    } else {
        url.host().to_string()
    }
}

/// Replays the files (or every file in the directories) named on the command
/// line through `check`: how the targets run without libFuzzer.
pub fn replay_args(check: fn(&[u8])) {
    let mut count = 0usize;
    for arg in std::env::args_os().skip(1) {
        count += replay_path(std::path::Path::new(&arg), check);
    }
    println!("{count} inputs replayed");
}

/// Replays one file, or every file in a directory; returns how many.
pub fn replay_path(path: &std::path::Path, check: fn(&[u8])) -> usize {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        entries.iter().map(|p| replay_path(p, check)).sum()
    } else {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&data);
        1
    }
}
