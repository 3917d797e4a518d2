//! Import: a third-party list tree in, a cleaned, canonical, deterministic tree out.
//!
//! Takes a UT1 / squidGuard tree (one folder per category) or a hosts file, and
//! the host canonicaliser. Writes a cleaned hosts file, or, per category, `domains`, `urls`,
//! `expressions` (and `very_restrictive_expression`, `usage` when present):
//! - every entry canonicalised; lines the canonicaliser or the expression
//!   compiler refuses are dropped and reported as `file:line: reason`;
//! - duplicates removed, and domain entries already covered by a parent in the
//!   same list dropped (`www.example.com` under `example.com`: matching is by
//!   suffix, so they can never change a result), as are URL prefixes whose host
//!   the same list already blocks whole;
//! - domains and URL prefixes sorted, expressions kept in their first-seen
//!   order, so re-importing a newer upstream gives a clean diff;
//! - files over [`COMPRESS_OVER_BYTES`] written gzip-compressed as `<name>.gz`
//!   (no timestamp in the header, so identical input gives identical bytes), and
//!   the other spelling of each file removed so a folder never holds both.
//!
//! Refuses (as a [`ListError`]): unreadable input, unwritable output. Symbolic
//! links and plain files at the top of a tree are skipped: UT1 ships aliases
//! (`porn -> adult`) that would otherwise import a category twice.
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::expressions::check_expression;
use crate::formats::{
    find_list_file, numbered_lines, parse_domain_line, parse_hosts_line, parse_url_line,
    read_list_file,
};
use crate::{Canonicalize, LineProblem, ListError};

/// Output files larger than this (256 KiB) are written gzip-compressed.
pub const COMPRESS_OVER_BYTES: usize = 256 * 1024;

/// What happened to one list file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    /// The input file.
    pub source: PathBuf,
    /// The file written (`<name>` or `<name>.gz`); `None` when nothing was left
    /// to write.
    pub output: Option<PathBuf>,
    /// Entries accepted from the input (before removing duplicates).
    pub accepted: usize,
    /// Entries written.
    pub written: usize,
    /// Exact duplicates removed.
    pub duplicates: usize,
    /// Entries removed because a parent domain in the same list covers them.
    pub covered: usize,
    /// Lines dropped, with their line numbers.
    pub problems: Vec<LineProblem>,
}

/// What happened to one category folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CategoryReport {
    /// The folder name (`gambling`).
    pub name: String,
    /// One report per list file found.
    pub files: Vec<FileReport>,
}

/// Every category real folder under `tree`, sorted by name. Symbolic links and
/// plain files are skipped (UT1's aliases).
pub fn category_dirs(tree: &Path) -> Result<Vec<String>, ListError> {
    let io = |source| ListError::Io {
        path: tree.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(tree).map_err(io)? {
        let entry = entry.map_err(io)?;
        // `file_type` does not follow symbolic links.
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Imports the named categories (or, with `None`, every real folder) of the
/// squidGuard tree `source` into `destination/<category>/`.
pub fn import_squidguard_tree(
    source: &Path,
    destination: &Path,
    categories: Option<&[&str]>,
    canon: Canonicalize<'_>,
) -> Result<Vec<CategoryReport>, ListError> {
    let names: Vec<String> = match categories {
        Some(names) => names.iter().map(|n| n.to_string()).collect(),
        None => category_dirs(source)?,
    };
    let mut reports = Vec::new();
    for name in names {
        let files = import_squidguard_dir(&source.join(&name), &destination.join(&name), canon)?;
        reports.push(CategoryReport { name, files });
    }
    Ok(reports)
}

/// Imports one squidGuard category folder into `destination`.
pub fn import_squidguard_dir(
    source: &Path,
    destination: &Path,
    canon: Canonicalize<'_>,
) -> Result<Vec<FileReport>, ListError> {
    let meta = fs::symlink_metadata(source).map_err(|source_error| ListError::Io {
        path: source.to_path_buf(),
        source: source_error,
    })?;
    if !meta.is_dir() {
        return Err(ListError::Io {
            path: source.to_path_buf(),
            source: std::io::Error::other("expected a category folder (not a link or a file)"),
        });
    }
    create_dir(destination)?;
    let mut reports = Vec::new();
    let mut blocked_whole = HashSet::new();
    if let Some(path) = find_list_file(source, "domains")? {
        let text = read_list_file(&path)?;
        let (names, mut report) = clean_domains(&path, &text, |line| {
            parse_domain_line(line, canon).map(|r| r.map(|name| vec![name]))
        });
        blocked_whole = names.iter().cloned().collect();
        report.output = write_list(destination, "domains", &join_lines(&names))?;
        reports.push(report);
    }
    if let Some(path) = find_list_file(source, "urls")? {
        let text = read_list_file(&path)?;
        let (lines, mut report) = clean_urls(&path, &text, canon, &blocked_whole);
        report.output = write_list(destination, "urls", &join_lines(&lines))?;
        reports.push(report);
    }
    for name in ["expressions", "very_restrictive_expression"] {
        if let Some(path) = find_list_file(source, name)? {
            let text = read_list_file(&path)?;
            let (lines, mut report) = clean_expressions(&path, &text);
            report.output = write_list(destination, name, &join_lines(&lines))?;
            reports.push(report);
        }
    }
    if let Some(path) = find_list_file(source, "usage")? {
        let text = read_list_file(&path)?;
        write_list(destination, "usage", &text)?;
    }
    Ok(reports)
}

/// Imports a hosts file into the hosts file `destination` (or `destination.gz`
/// when over [`COMPRESS_OVER_BYTES`]), one `0.0.0.0 name` line per name.
pub fn import_hosts_file(
    source: &Path,
    destination: &Path,
    canon: Canonicalize<'_>,
) -> Result<FileReport, ListError> {
    let text = read_list_file(source)?;
    let (names, mut report) =
        clean_domains(source, &text, |line| match parse_hosts_line(line, canon) {
            Ok(names) if names.is_empty() => None,
            Ok(names) => Some(names.into_iter().collect::<Result<Vec<_>, _>>()),
            Err(reason) => Some(Err(reason)),
        });
    let (Some(dir), Some(name)) = (destination.parent(), destination.file_name()) else {
        return Err(ListError::Write {
            path: destination.to_path_buf(),
            source: std::io::Error::other("expected a file path"),
        });
    };
    create_dir(dir)?;
    let lines: Vec<String> = names.iter().map(|name| format!("0.0.0.0 {name}")).collect();
    report.output = write_list(dir, &name.to_string_lossy(), &join_lines(&lines))?;
    Ok(report)
}

fn create_dir(path: &Path) -> Result<(), ListError> {
    fs::create_dir_all(path).map_err(|source| ListError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn join_lines(lines: &[String]) -> String {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn line_problem(path: &Path, line: u32, message: String) -> LineProblem {
    LineProblem {
        file: path.display().to_string(),
        line,
        message,
    }
}

/// Whether a canonical name is an IP literal (no parent to be covered by).
fn is_ip(name: &str) -> bool {
    name.contains(':') || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether a proper parent of `name` (at a label boundary) is in `set`.
fn covered_by_parent(name: &str, set: &HashSet<String>) -> bool {
    if is_ip(name) {
        return false;
    }
    let mut rest = name;
    while let Some(dot) = rest.find('.') {
        rest = &rest[dot + 1..];
        if set.contains(rest) {
            return true;
        }
    }
    false
}

/// Parses, canonicalises, dedupes and sorts domain-like lines.
fn clean_domains(
    path: &Path,
    text: &str,
    parse: impl Fn(&str) -> Option<Result<Vec<String>, String>>,
) -> (Vec<String>, FileReport) {
    let mut report = FileReport {
        source: path.to_path_buf(),
        ..FileReport::default()
    };
    let mut all = BTreeSet::new();
    for (number, line) in numbered_lines(text) {
        match parse(line) {
            None => {}
            Some(Ok(names)) => {
                for name in names {
                    report.accepted += 1;
                    if !all.insert(name) {
                        report.duplicates += 1;
                    }
                }
            }
            Some(Err(message)) => report.problems.push(line_problem(path, number, message)),
        }
    }
    let set: HashSet<String> = all.iter().cloned().collect();
    let kept: Vec<String> = all
        .into_iter()
        .filter(|name| !covered_by_parent(name, &set))
        .collect();
    report.covered = set.len() - kept.len();
    report.written = kept.len();
    (kept, report)
}

/// Parses, canonicalises, dedupes and sorts URL prefixes; drops those whose host
/// the same list blocks whole.
fn clean_urls(
    path: &Path,
    text: &str,
    canon: Canonicalize<'_>,
    blocked_whole: &HashSet<String>,
) -> (Vec<String>, FileReport) {
    let mut report = FileReport {
        source: path.to_path_buf(),
        ..FileReport::default()
    };
    let mut all = BTreeSet::new();
    for (number, line) in numbered_lines(text) {
        match parse_url_line(line, canon) {
            None => {}
            Some(Ok(entry)) => {
                report.accepted += 1;
                let whole = blocked_whole.contains(&entry.host)
                    || covered_by_parent(&entry.host, blocked_whole);
                if whole {
                    report.covered += 1;
                } else if !all.insert(entry.to_string()) {
                    report.duplicates += 1;
                }
            }
            Some(Err(message)) => report.problems.push(line_problem(path, number, message)),
        }
    }
    let kept: Vec<String> = all.into_iter().collect();
    report.written = kept.len();
    (kept, report)
}

/// Checks and dedupes expressions, keeping their first-seen order.
fn clean_expressions(path: &Path, text: &str) -> (Vec<String>, FileReport) {
    let mut report = FileReport {
        source: path.to_path_buf(),
        ..FileReport::default()
    };
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for (number, line) in numbered_lines(text) {
        let pattern = line.trim();
        if pattern.is_empty() || pattern.starts_with('#') {
            continue;
        }
        match check_expression(pattern) {
            Ok(()) => {
                report.accepted += 1;
                if seen.insert(pattern.to_string()) {
                    kept.push(pattern.to_string());
                } else {
                    report.duplicates += 1;
                }
            }
            Err(message) => report.problems.push(line_problem(path, number, message)),
        }
    }
    report.written = kept.len();
    (kept, report)
}

/// Writes `dir/name`, or `dir/name.gz` when the text is over
/// [`COMPRESS_OVER_BYTES`], and removes the other spelling. Nothing is written
/// for empty text. Returns the path written.
fn write_list(dir: &Path, name: &str, text: &str) -> Result<Option<PathBuf>, ListError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ListError::Write { path, source }
    };
    for stale in [&plain, &gz] {
        if stale.exists() {
            fs::remove_file(stale).map_err(write_error(stale))?;
        }
    }
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() <= COMPRESS_OVER_BYTES {
        fs::write(&plain, text).map_err(write_error(&plain))?;
        return Ok(Some(plain));
    }
    let file = fs::File::create(&gz).map_err(write_error(&gz))?;
    // mtime 0 and no file name in the header: identical input, identical bytes.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::best());
    encoder
        .write_all(text.as_bytes())
        .map_err(write_error(&gz))?;
    encoder.finish().map_err(write_error(&gz))?;
    Ok(Some(gz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_by_parent_walks_labels() {
        let set: HashSet<String> = ["example.com".to_string(), "1.2.3.4".to_string()].into();
        assert!(covered_by_parent("www.example.com", &set));
        assert!(!covered_by_parent("example.com", &set));
        assert!(!covered_by_parent("notexample.com", &set));
        assert!(!covered_by_parent("9.1.2.3", &set));
    }
}
