//! Expressions (squidGuard `expressions`): regular expressions in, list masks out.
//!
//! Takes expressions with their masks and returns one `regex::RegexSet`, matched
//! case-insensitively against `host + path_query` (`example.com/a?b`, no
//! scheme, as squidGuard matches). Refuses, at load time and per expression,
//! anything that does not compile or whose compiled form is larger than
//! [`EXPRESSION_SIZE_LIMIT`]: a list file must not be able to make every
//! request slow or exhaust memory. The `regex` crate matches in linear time, so
//! no expression can backtrack catastrophically.
//!
//! squidGuard expressions are POSIX extended regexes; the common subset
//! (alternation, classes, `\.`, `^`, `$`, `?`, `*`, `+`, `{m,n}`) means the same
//! in `regex` syntax. Back-references, which POSIX ERE lacks anyway, are refused.
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};

use crate::{ListError, Mask};

/// Compiled-size limit for one expression (256 KiB). The largest real UT1
/// expression (`strong_redirector`) compiles to well under this.
pub const EXPRESSION_SIZE_LIMIT: usize = 256 * 1024;

/// Compiled-size limit for all expressions together (8 MiB).
pub const EXPRESSION_SET_SIZE_LIMIT: usize = 8 * 1024 * 1024;

/// Lazy-DFA cache limit for the set (4 MiB): bounds the memory matching may use.
pub const EXPRESSION_DFA_SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// Compiles one expression alone, to find out whether it is acceptable.
pub(crate) fn check_expression(pattern: &str) -> Result<(), String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(EXPRESSION_SIZE_LIMIT)
        .dfa_size_limit(EXPRESSION_DFA_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(limit) => {
                format!("expression compiles to more than {limit} bytes (the limit)")
            }
            other => {
                let text = other.to_string();
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                format!(
                    "invalid expression: {}",
                    last.unwrap_or("unknown error").trim()
                )
            }
        })
}

/// All accepted expressions, compiled together.
#[derive(Debug, Default)]
pub(crate) struct Expressions {
    set: Option<RegexSet>,
    /// `(pattern, mask)` in set order.
    patterns: Vec<(String, Mask)>,
}

impl Expressions {
    /// Compiles already-checked, deduplicated expressions into one set.
    pub(crate) fn build(patterns: Vec<(String, Mask)>) -> Result<Expressions, ListError> {
        if patterns.is_empty() {
            return Ok(Expressions::default());
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|(p, _)| p.as_str()))
            .case_insensitive(true)
            .size_limit(EXPRESSION_SET_SIZE_LIMIT)
            .dfa_size_limit(EXPRESSION_DFA_SIZE_LIMIT)
            .build()
            .map_err(|error| ListError::ExpressionSet {
                count: patterns.len(),
                reason: error.to_string(),
            })?;
        Ok(Expressions {
            set: Some(set),
            patterns,
        })
    }

    /// The lists whose expressions match `subject` (`host + path_query`).
    pub(crate) fn mask(&self, subject: &str) -> Mask {
        let Some(set) = &self.set else {
            return 0;
        };
        set.matches(subject)
            .iter()
            .fold(0, |mask, index| mask | self.patterns[index].1)
    }

    /// `(pattern, mask)` for every expression that matches `subject`.
    pub(crate) fn hits<'s>(&'s self, subject: &str) -> impl Iterator<Item = (&'s str, Mask)> {
        let matched: Vec<usize> = match &self.set {
            Some(set) => set.matches(subject).into_iter().collect(),
            None => Vec::new(),
        };
        matched.into_iter().map(|index| {
            let (pattern, mask) = &self.patterns[index];
            (pattern.as_str(), *mask)
        })
    }

    /// Whether there are no expressions (lets lookups skip building the subject).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Heap memory held by the pattern texts. The compiled set's own memory is
    /// bounded by [`EXPRESSION_SET_SIZE_LIMIT`] plus the DFA cache limit but not
    /// exposed by `regex`, so it is estimated as the pattern bytes times 64.
    pub(crate) fn heap_bytes(&self) -> usize {
        let texts: usize = self.patterns.iter().map(|(p, _)| p.capacity()).sum();
        self.patterns.capacity() * size_of::<(String, Mask)>() + texts * 65
    }

    /// Every stored mask, for per-list counts.
    pub(crate) fn masks(&self) -> impl Iterator<Item = Mask> + '_ {
        self.patterns.iter().map(|(_, mask)| *mask)
    }
}
