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
//!
//! **Prefilter.** Nearly every request matches no expression, and running the
//! set costs several hundred ns per request. So each expression's syntax tree is
//! read for literals one of which every match must contain (`/banner/` or
//! `/sponsor/`, ...; `/search?q=` in `^[0-9]+\.[0-9]+.../search\?q=[0-9]+$`),
//! and one aho-corasick automaton over all of them answers "could anything
//! match?" in one pass. Only when it says yes does the set run. Lists are ORed
//! and the policy decides, so the set is never skipped for any other reason.
//! When an expression has no such literal (say `^[a-z]+$`), or the subject is not
//! lower-case ASCII (case folding can map non-ASCII characters onto ASCII
//! ones), the set always runs.
use aho_corasick::packed;
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use regex_syntax::hir::{Hir, HirKind};

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

/// Shortest literal worth prefiltering on: shorter ones occur in most URLs.
const MIN_LITERAL: usize = 3;

/// Literals (ASCII, lower-case) one of which occurs, ignoring ASCII case, in
/// every match of `hir`; `None` when no such set is known.
///
/// `hir` is parsed case-sensitively. The set itself matches case-insensitively,
/// where every character stands for its case-fold class, so a case-insensitive
/// match holds, character by character, an equivalent of what a case-sensitive
/// match holds; on an ASCII subject, equivalent means equal ignoring ASCII
/// case. Non-ASCII literals are not used (a non-ASCII character such as the
/// Kelvin sign can fold onto an ASCII one).
fn required_literals(hir: &Hir) -> Option<Vec<String>> {
    match hir.kind() {
        HirKind::Literal(literal) => {
            let text = std::str::from_utf8(&literal.0).ok()?;
            (text.is_ascii() && !text.is_empty()).then(|| vec![text.to_ascii_lowercase()])
        }
        HirKind::Capture(capture) => required_literals(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => {
            required_literals(&repetition.sub)
        }
        // Every part of a concatenation matches, so any part's literals are
        // required: keep the part whose shortest literal is longest.
        HirKind::Concat(parts) => parts
            .iter()
            .filter_map(required_literals)
            .max_by_key(|literals| shortest(literals)),
        // One branch matches, so the union of every branch's literals.
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(required_literals(branch)?);
            }
            Some(all)
        }
        _ => None,
    }
}

fn shortest(literals: &[String]) -> usize {
    literals.iter().map(String::len).min().unwrap_or(0)
}

/// The literals of one expression worth prefiltering on, or `None`.
fn prefilter_literals(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let literals = required_literals(&hir)?;
    (shortest(&literals) >= MIN_LITERAL).then_some(literals)
}

/// All accepted expressions, compiled together.
#[derive(Debug, Default)]
pub(crate) struct Expressions {
    set: Option<RegexSet>,
    /// Over the required literals of every expression, lower-cased, for
    /// subjects that are lower-case ASCII; `None` when some expression has
    /// none, so the set always runs.
    prefilter: Option<Prefilter>,
    /// `(pattern, mask)` in set order.
    patterns: Vec<(String, Mask)>,
}

/// The literal search over lower-case ASCII subjects.
///
/// Case-sensitive over the lower-case literals: subjects are lower case
/// (canonical host, lower-cased path), and a subject with an upper-case byte
/// skips the prefilter instead. On the crawl stream (152-byte subjects, 5 real
/// UT1 expressions) aho-corasick's packed (SIMD) searcher measured about
/// 130 ns, a `regex` literal alternation about 200 ns, and a full
/// aho-corasick automaton about 1.6 µs, slower than the set's own `is_match`.
#[derive(Debug)]
enum Prefilter {
    /// The packed searcher, when the CPU and the pattern count allow it.
    Packed(packed::Searcher),
    /// Otherwise a `regex` alternation of the escaped literals (which picks
    /// its own literal engine).
    Alternation(regex::bytes::Regex),
}

impl Prefilter {
    fn build(literals: &[String]) -> Option<Prefilter> {
        if let Some(searcher) = packed::Config::new()
            .builder()
            .extend(literals.iter())
            .build()
        {
            return Some(Prefilter::Packed(searcher));
        }
        let alternation: Vec<String> = literals.iter().map(|l| regex::escape(l)).collect();
        regex::bytes::Regex::new(&alternation.join("|"))
            .ok()
            .map(Prefilter::Alternation)
    }

    #[inline]
    fn is_match(&self, haystack: &[u8]) -> bool {
        match self {
            Prefilter::Packed(searcher) => searcher.find(haystack).is_some(),
            Prefilter::Alternation(regex) => regex.is_match(haystack),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Prefilter::Packed(searcher) => searcher.memory_usage(),
            // Not exposed by `regex`; the literals are a few hundred bytes.
            Prefilter::Alternation(_) => 0,
        }
    }
}

/// Subjects up to this long are assembled on the stack for the prefilter.
const STACK_SUBJECT: usize = 512;

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
        let mut literals = Vec::new();
        for (pattern, _) in &patterns {
            match prefilter_literals(pattern) {
                Some(found) => literals.extend(found),
                None => {
                    literals.clear();
                    break;
                }
            }
        }
        let prefilter = if literals.is_empty() {
            None
        } else {
            literals.sort();
            literals.dedup();
            Prefilter::build(&literals)
        };
        Ok(Expressions {
            set: Some(set),
            prefilter,
            patterns,
        })
    }

    /// Whether the prefilter proves that no expression matches `host + path_query`.
    #[inline]
    fn surely_no_match(&self, host: &str, path_query: &str) -> bool {
        let Some(prefilter) = &self.prefilter else {
            return false;
        };
        let length = host.len() + path_query.len();
        let plain = |text: &str| {
            text.bytes()
                .all(|byte| byte.is_ascii() && !byte.is_ascii_uppercase())
        };
        if !plain(host) || !plain(path_query) {
            return false;
        }
        if length <= STACK_SUBJECT {
            let mut buffer = [0u8; STACK_SUBJECT];
            buffer[..host.len()].copy_from_slice(host.as_bytes());
            buffer[host.len()..length].copy_from_slice(path_query.as_bytes());
            !prefilter.is_match(&buffer[..length])
        } else {
            !prefilter.is_match(subject(host, path_query).as_bytes())
        }
    }

    /// The lists whose expressions match `host + path_query`.
    #[inline]
    pub(crate) fn mask(&self, host: &str, path_query: &str) -> Mask {
        let Some(set) = &self.set else {
            return 0;
        };
        if self.surely_no_match(host, path_query) {
            return 0;
        }
        // A prefilter hit rarely means a match (`/images` is common), and
        // `is_match` stops at the first match with the lazy DFA, where
        // `matches` must find every pattern's: measured several times cheaper.
        let subject = subject(host, path_query);
        if !set.is_match(&subject) {
            return 0;
        }
        set.matches(&subject)
            .iter()
            .fold(0, |mask, index| mask | self.patterns[index].1)
    }

    /// The lists whose expressions match `host + path_query`, always running
    /// the set (for tests that check the prefilter changes nothing).
    #[cfg(test)]
    pub(crate) fn mask_unfiltered(&self, host: &str, path_query: &str) -> Mask {
        self.set.as_ref().map_or(0, |set| {
            set.matches(&subject(host, path_query))
                .iter()
                .fold(0, |mask, index| mask | self.patterns[index].1)
        })
    }

    /// Whether every expression has a prefilter literal.
    #[cfg(test)]
    pub(crate) fn is_prefiltered(&self) -> bool {
        self.prefilter.is_some()
    }

    /// `(pattern, mask)` for every expression that matches `host + path_query`.
    pub(crate) fn hits<'s>(
        &'s self,
        host: &str,
        path_query: &str,
    ) -> impl Iterator<Item = (&'s str, Mask)> {
        let matched: Vec<usize> = match &self.set {
            Some(set) => set
                .matches(&subject(host, path_query))
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        matched.into_iter().map(|index| {
            let (pattern, mask) = &self.patterns[index];
            (pattern.as_str(), *mask)
        })
    }

    /// Heap memory held by the pattern texts. The compiled set's own memory is
    /// bounded by [`EXPRESSION_SET_SIZE_LIMIT`] plus the DFA cache limit but not
    /// exposed by `regex`, so it is estimated as the pattern bytes times 64.
    pub(crate) fn heap_bytes(&self) -> usize {
        let texts: usize = self.patterns.iter().map(|(p, _)| p.capacity()).sum();
        self.patterns.capacity() * size_of::<(String, Mask)>()
            + texts * 65
            + self.prefilter.as_ref().map_or(0, Prefilter::heap_bytes)
    }

    /// Every stored mask, for per-list counts.
    pub(crate) fn masks(&self) -> impl Iterator<Item = Mask> + '_ {
        self.patterns.iter().map(|(_, mask)| *mask)
    }
}

/// The expression subject: `host + path_query`, as squidGuard matches.
fn subject(host: &str, path_query: &str) -> String {
    let mut subject = String::with_capacity(host.len() + path_query.len());
    subject.push_str(host);
    subject.push_str(path_query);
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(pattern: &str) -> Option<Vec<String>> {
        prefilter_literals(pattern).map(|mut found| {
            found.sort();
            found
        })
    }

    #[test]
    fn required_literals_of_real_expressions() {
        let table: &[(&str, Option<&[&str]>)] = &[
            (
                r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/search\?q=[0-9]+$",
                Some(&["/search?q="]),
            ),
            (
                "(/banner/|/sponsor/|/event.ng/|/Advertisement/|adverts/)",
                Some(&[
                    "/advertisement/",
                    "/banner/",
                    "/event",
                    "/sponsor/",
                    "adverts/",
                ]),
            ),
            (r".*/ymsgr*\.exe", Some(&["/ymsg"])),
            ("(ab|x)yz", None),
            ("^[a-z]+$", None),
            ("a?bcd", Some(&["bcd"])),
            ("(abc)?def", Some(&["def"])),
            ("(abc)*", None),
            ("(abcd|[0-9])", None),
            ("caf\u{e9}", None),
        ];
        for &(pattern, expected) in table {
            let expected = expected.map(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>());
            assert_eq!(literals(pattern), expected, "{pattern}");
        }
    }

    #[test]
    fn the_prefilter_never_changes_a_result() {
        let patterns = [
            r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/search\?q=[0-9]+$",
            "(/banner/|/sponsor/|/event.ng/|/Advertisement/|adverts/)",
            r".*/ymsgr*\.exe",
            r"((google\..*/search.q=cache)|(images.google.[a-z]+/images.q=tbn))",
            "KELVIN",
        ];
        let expressions = Expressions::build(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), 1 << i))
                .collect(),
        )
        .expect("compiles");
        assert!(expressions.is_prefiltered());
        let subjects: &[(&str, &str)] = &[
            ("1.2.3.4", "/search?q=42"),
            ("x.test", "/ADVERTISEMENT/x"),
            ("x.test", "/advert"),
            ("x.test", "/event-ng/"),
            ("dl.test", "/a/ymsgrrr.exe"),
            ("www.google.fr", "/search?q=cache:x"),
            ("images.google.de", "/images?q=tbn:1"),
            // Across the host/path seam.
            ("google.", "x/search?q=cache"),
            ("x.test", "/kelvin"),
            ("x.test", "/KeLvIn"),
            ("X.TEST", "/BANNER/"),
            // U+212A KELVIN SIGN folds onto `k`: not ASCII, so the set runs.
            ("x.test", "/\u{212a}elvin"),
            ("x.test", "/nothing/here"),
            ("", ""),
        ];
        for &(host, path) in subjects {
            assert_eq!(
                expressions.mask(host, path),
                expressions.mask_unfiltered(host, path),
                "{host}{path}"
            );
        }
        assert_ne!(expressions.mask("x.test", "/\u{212a}elvin"), 0);
        assert_eq!(expressions.mask("x.test", "/nothing/here"), 0);
        let long = format!("/{}/banner/", "a".repeat(STACK_SUBJECT));
        assert_eq!(expressions.mask("x.test", &long), 1 << 1);
    }

    #[test]
    fn both_prefilter_engines_find_the_literals() {
        let literals = ["/banner/".to_string(), "q=cache".to_string()];
        let alternation = Prefilter::Alternation(
            regex::bytes::Regex::new("/banner/|q=cache").expect("literal alternation"),
        );
        let engines = [Prefilter::build(&literals).expect("builds"), alternation];
        for engine in &engines {
            assert!(engine.is_match(b"x.test/a/banner/b"));
            assert!(engine.is_match(b"google.fr/search?q=cache:1"));
            assert!(!engine.is_match(b"x.test/banner"));
        }
    }

    #[test]
    fn an_expression_without_literals_turns_the_prefilter_off() {
        let expressions = Expressions::build(vec![
            ("/banner/".to_string(), 1),
            ("^[a-z.]+/$".to_string(), 2),
        ])
        .expect("compiles");
        assert!(!expressions.is_prefiltered());
        assert_eq!(expressions.mask("a.test", "/"), 2);
        assert_eq!(expressions.mask("a.test", "/banner/"), 1);
    }
}
