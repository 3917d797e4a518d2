//! List file formats: one line of text in, one canonical entry (or a reason) out.
//!
//! Takes lines of UT1 / squidGuard `domains` and `urls` files and of hosts files,
//! plus a [`Canonicalize`] function for the host part. Returns canonical entries.
//! Refuses (as an `Err(reason)` for that line, never a panic): entries the
//! canonicaliser refuses, lines with more than one field where one is expected,
//! and hosts-file lines that map a name to an address that is not a block
//! address (those are redirections, not blocks).
//!
//! Blank lines and `#` comments yield nothing. Files may be gzip-compressed
//! (`<name>.gz`); [`read_list_file`] decompresses them, refusing output over
//! [`MAX_LIST_BYTES`] so that a corrupt or hostile file cannot exhaust memory.
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{Canonicalize, ListError, NormalizePath};

/// The largest list file accepted, after decompression (512 MiB). UT1's largest
/// file (`adult/domains`, all parts together) is about 150 MB.
pub const MAX_LIST_BYTES: u64 = 512 * 1024 * 1024;

/// A URL-prefix entry: `host/path`, lower-case, host canonical.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UrlEntry {
    /// The canonical host.
    pub host: String,
    /// The path prefix, lower-case, starting with `/` (`/` alone = the whole host).
    pub path: String,
}

impl std::fmt::Display for UrlEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.host, self.path)
    }
}

/// Numbered lines (1-based), with a trailing `\r` removed.
pub fn numbered_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.split('\n').enumerate().map(|(index, line)| {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        (number, line.strip_suffix('\r').unwrap_or(line))
    })
}

/// Removes a `#` comment that starts the line or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Runs the canonicaliser and checks that it returned something usable.
fn canonical_host(canon: Canonicalize<'_>, host: &str) -> Result<String, String> {
    let canonical = canon(host).map_err(|reason| format!("{host:?}: {reason}"))?;
    if canonical.is_empty() {
        return Err(format!("{host:?}: the canonical host is empty"));
    }
    Ok(canonical)
}

/// One line of a squidGuard `domains` file.
///
/// `None` for blank and comment lines. A leading `.` is accepted and dropped
/// (squidGuard treats `.example.com` like `example.com`).
pub fn parse_domain_line(line: &str, canon: Canonicalize<'_>) -> Option<Result<String, String>> {
    let line = strip_comment(line).trim();
    if line.is_empty() {
        return None;
    }
    if line.contains(char::is_whitespace) {
        return Some(Err(format!("expected one domain per line, found {line:?}")));
    }
    if line.contains('/') {
        return Some(Err(format!(
            "expected a domain, found {line:?} (a URL prefix belongs in a `urls` file)"
        )));
    }
    let name = line.strip_prefix('.').unwrap_or(line);
    Some(canonical_host(canon, name))
}

/// One line of a squidGuard `urls` file: `host/path` without a scheme.
///
/// `None` for blank and comment lines. The entry is lower-cased. A scheme
/// (`http://`) is tolerated and dropped; so is a `#fragment`, which browsers
/// never send (so `a.com/#top` is the whole of `a.com`, as in squidGuard).
/// The path is lower-cased but not otherwise normalised; see
/// [`parse_url_line_with`].
pub fn parse_url_line(line: &str, canon: Canonicalize<'_>) -> Option<Result<UrlEntry, String>> {
    parse_url_line_with(line, canon, None)
}

/// Like [`parse_url_line`], with the path (and query) put through `paths`
/// when given (the normaliser request paths go through, so `/a/../b` and
/// `/%62` in a list meet `/b` in a request), then ASCII lower-cased as request
/// paths are. A path `paths` refuses is a problem for that line.
pub fn parse_url_line_with(
    line: &str,
    canon: Canonicalize<'_>,
    paths: Option<NormalizePath<'_>>,
) -> Option<Result<UrlEntry, String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if line.contains(char::is_whitespace) {
        return Some(Err(format!(
            "expected one URL prefix per line, found {line:?}"
        )));
    }
    let mut rest = line;
    for scheme in ["http://", "https://"] {
        if rest
            .get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        {
            rest = &rest[scheme.len()..];
        }
    }
    if let Some(hash) = rest.find('#') {
        rest = &rest[..hash];
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(split);
    if host.is_empty() {
        return Some(Err(format!("expected host/path, found {line:?} (no host)")));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let path = match paths {
        None => path.to_lowercase(),
        Some(normalise) => match normalise(&path) {
            Ok(normal) => normal.to_ascii_lowercase(),
            Err(reason) => return Some(Err(format!("{path:?}: {reason}"))),
        },
    };
    Some(canonical_host(canon, &host.to_lowercase()).map(|host| UrlEntry { host, path }))
}

/// Names in the standard hosts-file preamble. They are never blocks.
const PREAMBLE_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Whether a hosts-file address sends the name nowhere (0.0.0.0, 127.0.0.0/8,
/// `::`, `::1`): only such lines are blocks.
fn is_block_address(address: &str) -> bool {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_unspecified() || v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_unspecified() || v6.is_loopback(),
        Err(_) => false,
    }
}

/// One line of a hosts file: `address name [name...]`.
///
/// `Ok(vec![])` for blank lines, comments and the localhost preamble
/// (`127.0.0.1 localhost`, `::1 ip6-localhost`, `0.0.0.0 0.0.0.0`, ...). Otherwise
/// one result per name. A line whose address is not a block address (say
/// `10.0.0.1 intranet`) is a redirection, not a block: `Err`.
pub fn parse_hosts_line(
    line: &str,
    canon: Canonicalize<'_>,
) -> Result<Vec<Result<String, String>>, String> {
    let mut fields = strip_comment(line).split_whitespace();
    let Some(address) = fields.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = fields
        .filter(|name| !PREAMBLE_NAMES.contains(&name.to_ascii_lowercase().as_str()))
        .collect();
    if names.is_empty() {
        if line.split_whitespace().count() < 2 {
            return Err(format!("expected `address name`, found {:?}", line.trim()));
        }
        return Ok(Vec::new());
    }
    if !is_block_address(address) {
        return Err(format!(
            "address {address:?} does not block (expected 0.0.0.0, 127.x.x.x, :: or ::1)"
        ));
    }
    Ok(names
        .into_iter()
        .map(|name| canonical_host(canon, name))
        .collect())
}

/// Reads a list file as text, decompressing it when the name ends in `.gz`.
///
/// Bytes that are not UTF-8 become U+FFFD, which the canonicaliser then refuses
/// with the right line number, instead of failing the whole file.
pub fn read_list_file(path: &Path) -> Result<String, ListError> {
    let file = fs::File::open(path).map_err(|source| ListError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    let limited_read = if path.extension().is_some_and(|ext| ext == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .take(MAX_LIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ListError::Gzip {
                path: path.to_path_buf(),
                source,
            })
    } else {
        file.take(MAX_LIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ListError::Io {
                path: path.to_path_buf(),
                source,
            })
    };
    limited_read?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(ListError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "larger than {MAX_LIST_BYTES} bytes (the limit for one list file)"
            )),
        });
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// Finds `<dir>/<name>` or `<dir>/<name>.gz`. `None` when neither exists;
/// an error when both do (which one is meant is unclear).
pub fn find_list_file(dir: &Path, name: &str) -> Result<Option<PathBuf>, ListError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    match (plain.is_file(), gz.is_file()) {
        (true, true) => Err(ListError::Ambiguous { plain, gz }),
        (true, false) => Ok(Some(plain)),
        (false, true) => Ok(Some(gz)),
        (false, false) => Ok(None),
    }
}
