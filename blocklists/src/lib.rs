//! hallpass block lists: list formats in, one compiled [`Matcher`] out.
//!
//! What goes in:
//! - UT1 / squidGuard category folders (`domains`, `urls`, `expressions`, each
//!   optionally gzip-compressed as `<name>.gz`),
//! - hosts files (`0.0.0.0 name`, `127.0.0.1 name`),
//! - the same formats as text, for tests and for lists embedded in a policy.
//!
//! Every list is loaded under a small integer id (`0..128`) chosen by the caller
//! (the policy numbers the lists it references). Every entry's host goes through
//! the caller's canonicaliser ([`Canonicalize`]), the same function the proxy uses
//! on requests, so a list entry and a request spelled differently still meet.
//!
//! What comes out: a [`Matcher`] that answers "which lists contain this request?"
//! as a [`Mask`] (bit `i` set = list `i` contains it), plus, for `explain`, the
//! entries that matched.
//!
//! What is refused: list ids of 128 or more, and unreadable files ([`ListError`]).
//! A bad *line* in a third-party list is not fatal: it is reported as a
//! [`LineProblem`] (`file:line: reason`) in the [`LoadReport`] and skipped.
//!
//! ```
//! use blocklists::Builder;
//! let canon = |s: &str| -> Result<String, String> { Ok(s.to_ascii_lowercase()) };
//! let mut builder = Builder::new(&canon);
//! builder.add_domains_text(3, "games", "example.com\n");
//! let matcher = builder.build().expect("one list, few masks");
//! assert_eq!(matcher.host_mask("www.example.com"), 1 << 3);
//! assert_eq!(matcher.host_mask("notexample.com"), 0);
//! ```
#![forbid(unsafe_code)]

mod builder;
mod domain_table;
mod expressions;
pub mod formats;
pub mod import;
mod matcher;
mod url_prefixes;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

pub use builder::Builder;
pub use expressions::{
    EXPRESSION_DFA_SIZE_LIMIT, EXPRESSION_SET_SIZE_LIMIT, EXPRESSION_SIZE_LIMIT,
};
pub use matcher::Matcher;

/// The host canonicaliser: `Ok(canonical host)` or `Err(reason)`.
///
/// `proxy::snapshot` passes `policy::host::canonicalize`, so list entries and
/// requests are put in one canonical form by one function.
pub type Canonicalize<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// The path normaliser for URL-prefix entries: `/path[?query]` in (original
/// case, starting with `/`), `Ok(normalised path[?query])` or `Err(reason)` out.
///
/// `proxy::snapshot` passes the normalisation request paths go through
/// (`policy::url`), so a list entry spelled `/a/./b` or `/%61` meets a request
/// for `/a/b` or `/a`. Without one, entry paths are only lower-cased.
pub type NormalizePath<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// A set of list ids: bit `i` is set when list `i` (`0..128`) contains the request.
pub type Mask = u128;

/// The highest number of lists one matcher can hold (the width of [`Mask`]).
pub const MAX_LISTS: usize = 128;

/// One bad line in a list file, reported and skipped.
///
/// Displays as `file:line: message`, the form editors and terminals link to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineProblem {
    /// The file (or text source name) the line came from.
    pub file: String,
    /// The 1-based line number.
    pub line: u32,
    /// What was wrong, lower-case, naming what was expected.
    pub message: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// What loading one file or text produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Lines accepted as entries (before duplicates are merged).
    pub entries: usize,
    /// Lines refused, each with its file and line number.
    pub problems: Vec<LineProblem>,
}

impl LoadReport {
    /// Adds another report's counts and problems to this one.
    pub fn merge(&mut self, other: LoadReport) {
        self.entries += other.entries;
        self.problems.extend(other.problems);
    }
}

/// How many distinct entries one list contributed to a [`Matcher`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCounts {
    /// The list id.
    pub id: u8,
    /// Distinct domain (and IP) entries.
    pub domains: usize,
    /// Distinct URL-prefix entries.
    pub urls: usize,
    /// Distinct expressions that compiled.
    pub expressions: usize,
}

/// Why a list could not be loaded or compiled at all.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file or folder could not be written (import).
    #[error("writing {path}: {source}")]
    Write {
        /// The path that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A gzip file is corrupt.
    #[error("decompressing {path}: {source}")]
    Gzip {
        /// The path that failed.
        path: PathBuf,
        /// The decoder's reason.
        source: std::io::Error,
    },
    /// Both `<name>` and `<name>.gz` exist, so it is unclear which one is meant.
    #[error("both {plain} and {gz} exist; expected only one of them")]
    Ambiguous {
        /// The uncompressed file.
        plain: PathBuf,
        /// The compressed file.
        gz: PathBuf,
    },
    /// A list id was 128 or more.
    #[error("list id {id} is out of range; expected 0..{MAX_LISTS}")]
    ListIdOutOfRange {
        /// The id given.
        id: u8,
    },
    /// More distinct combinations of lists than the domain table can index.
    #[error("{found} distinct list combinations; the domain table holds at most {limit}")]
    TooManyCombinations {
        /// How many were found.
        found: usize,
        /// The limit (2^16).
        limit: usize,
    },
    /// A table would exceed its index width.
    #[error("{what} exceeds {limit} bytes")]
    TooLarge {
        /// Which table.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The expressions compiled one by one but not together (the set is too large).
    #[error("compiling {count} expressions together: {reason}")]
    ExpressionSet {
        /// How many expressions were in the set.
        count: usize,
        /// The regex engine's reason.
        reason: String,
    },
}

/// Iterates over the bits set in a mask, lowest list id first.
pub fn mask_ids(mask: Mask) -> impl Iterator<Item = u8> {
    let mut rest = mask;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let id = rest.trailing_zeros() as u8;
        rest &= rest - 1;
        Some(id)
    })
}
