//! The [`Builder`]: list files and texts in, a compiled [`Matcher`] out.
//!
//! Takes any number of lists, each under a list id (`0..128`), and the
//! canonicaliser every host part goes through. Returns a [`LoadReport`] per file
//! or text, and finally a [`Matcher`]. Refuses list ids of 128 or more, unreadable
//! files, and (per line, reported and skipped) entries the canonicaliser or the
//! expression compiler refuses. The same entry in several lists, or twice in one
//! list, is stored once with the lists' masks OR-ed together.
use std::collections::BTreeMap;
use std::path::Path;

use crate::domain_table::{DomainTable, Flags, fingerprint, for_each_suffix_hash};
use crate::expressions::{Expressions, check_expression};
use crate::formats::{
    UrlEntry, find_list_file, numbered_lines, parse_domain_line, parse_hosts_line,
    parse_url_line_with, read_list_file,
};
use crate::matcher::is_ip_literal;
use crate::url_prefixes::UrlPrefixes;
use crate::{
    Canonicalize, LineProblem, ListCounts, ListError, LoadReport, MAX_LISTS, Mask, Matcher,
    NormalizePath, mask_ids,
};

/// Collects lists, then compiles them into a [`Matcher`].
///
/// Defaults: no lists. Loading is single-threaded and allocation-light: domain
/// entries are kept as 64-bit fingerprints from the start, never as strings.
pub struct Builder<'a> {
    canon: Canonicalize<'a>,
    /// For the paths of URL-prefix entries; `None` = lower-case only.
    paths: Option<NormalizePath<'a>>,
    /// Listed names, as fingerprints from the start, never as strings, with
    /// the one list each line came from ([`NO_LIST`] for a URL-prefix host):
    /// 16 bytes an entry, where a full mask would take 32.
    domains: Vec<(u64, u8, Flags)>,
    /// Fingerprints of every proper suffix of a listed name (walk-only
    /// entries), kept apart (8 bytes each) and deduplicated whenever the
    /// vector would grow, so a million names with a few shared parents cost
    /// about one slot per distinct parent.
    ancestors: Vec<u64>,
    urls: BTreeMap<UrlEntry, Mask>,
    expressions: BTreeMap<String, Mask>,
    /// A text method was given a bad list id; `build` reports it.
    bad_id: Option<u8>,
}

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("domains", &self.domains.len())
            .field("urls", &self.urls.len())
            .field("expressions", &self.expressions.len())
            .finish_non_exhaustive()
    }
}

/// Below this many ancestors, growing the vector is cheaper than deduplicating.
const COMPACT_ANCESTORS_FROM: usize = 1 << 16;

/// The list id of a builder entry that is in no list (a URL-prefix host).
const NO_LIST: u8 = u8::MAX;

fn problem(source: &str, line: u32, message: String) -> LineProblem {
    LineProblem {
        file: source.to_string(),
        line,
        message,
    }
}

fn check_id(id: u8) -> Result<Mask, ListError> {
    if usize::from(id) < MAX_LISTS {
        Ok(1 << id)
    } else {
        Err(ListError::ListIdOutOfRange { id })
    }
}

impl<'a> Builder<'a> {
    /// An empty builder whose entries' hosts go through `canon`. URL-prefix
    /// paths are only lower-cased; see [`Builder::with_path_normaliser`].
    pub fn new(canon: Canonicalize<'a>) -> Self {
        Builder {
            canon,
            paths: None,
            domains: Vec::new(),
            ancestors: Vec::new(),
            urls: BTreeMap::new(),
            expressions: BTreeMap::new(),
            bad_id: None,
        }
    }

    /// An empty builder whose entries' hosts go through `canon` and whose
    /// URL-prefix paths go through `paths` (then ASCII lower-casing), the
    /// normalisation request paths get, so dot segments and `%XX` escapes in a
    /// list mean what they mean in a request.
    ///
    /// ```
    /// use blocklists::Builder;
    /// let canon = |s: &str| -> Result<String, String> { Ok(s.to_ascii_lowercase()) };
    /// let paths = |p: &str| -> Result<String, String> { Ok(p.replace("/./", "/")) };
    /// let mut builder = Builder::with_path_normaliser(&canon, &paths);
    /// builder.add_urls_text(0, "urls", "example.com/a/./B\n");
    /// let m = builder.build().expect("small");
    /// assert_eq!(m.lookup("example.com", "/a/b/c"), 1);
    /// ```
    pub fn with_path_normaliser(canon: Canonicalize<'a>, paths: NormalizePath<'a>) -> Self {
        Builder {
            paths: Some(paths),
            ..Builder::new(canon)
        }
    }

    /// The bit for `id`, or 0 (and a deferred error) when it is out of range.
    fn bit(&mut self, id: u8) -> Mask {
        match check_id(id) {
            Ok(bit) => bit,
            Err(_) => {
                self.bad_id.get_or_insert(id);
                0
            }
        }
    }

    /// Records a canonical name with its mask (and whether it has URL-prefix
    /// entries), and every proper suffix as a walk-only ancestor, so a suffix
    /// walk that stops where nothing is listed below never stops above it. IP
    /// addresses are looked up whole, so they have no ancestors.
    fn add_name(&mut self, name: &str, mask: Mask, urls: bool) {
        let flags = Flags {
            descendants: false,
            urls,
        };
        // `mask` is one list's bit (or 0): stored as that list's id.
        let list = if mask == 0 {
            NO_LIST
        } else {
            mask.trailing_zeros() as u8
        };
        if is_ip_literal(name) {
            self.domains.push((fingerprint(name), list, flags));
            return;
        }
        for_each_suffix_hash(name, |start, hash| {
            if start == 0 {
                self.domains.push((hash, list, flags));
            } else {
                if self.ancestors.len() == self.ancestors.capacity()
                    && self.ancestors.len() >= COMPACT_ANCESTORS_FROM
                {
                    self.ancestors.sort_unstable();
                    self.ancestors.dedup();
                }
                self.ancestors.push(hash);
            }
            true
        });
    }

    /// Loads a UT1 / squidGuard category folder: `domains`, `urls` and
    /// `expressions`, each optional, each possibly gzip-compressed as
    /// `<name>.gz`. Other files (`usage`, `very_restrictive_expression`) are
    /// ignored, as squidGuard does.
    ///
    /// Errors: `id` out of range, the folder unreadable, a file unreadable or
    /// both `<name>` and `<name>.gz` present.
    pub fn add_squidguard_dir(&mut self, id: u8, dir: &Path) -> Result<LoadReport, ListError> {
        check_id(id)?;
        std::fs::read_dir(dir).map_err(|source| ListError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut report = LoadReport::default();
        if let Some(path) = find_list_file(dir, "domains")? {
            let text = read_list_file(&path)?;
            report.merge(self.add_domains_text(id, &path.display().to_string(), &text));
        }
        if let Some(path) = find_list_file(dir, "urls")? {
            let text = read_list_file(&path)?;
            report.merge(self.add_urls_text(id, &path.display().to_string(), &text));
        }
        if let Some(path) = find_list_file(dir, "expressions")? {
            let text = read_list_file(&path)?;
            report.merge(self.add_expressions_text(id, &path.display().to_string(), &text));
        }
        Ok(report)
    }

    /// Loads a hosts file (possibly `.gz`). See [`Builder::add_hosts_text`].
    pub fn add_hosts_file(&mut self, id: u8, path: &Path) -> Result<LoadReport, ListError> {
        check_id(id)?;
        let text = read_list_file(path)?;
        Ok(self.add_hosts_text(id, &path.display().to_string(), &text))
    }

    /// Loads `domains` text: one domain or IP address per line. A domain matches
    /// itself and every subdomain; an IP address matches only itself.
    pub fn add_domains_text(&mut self, id: u8, source: &str, text: &str) -> LoadReport {
        let bit = self.bit(id);
        let mut report = LoadReport::default();
        for (number, line) in numbered_lines(text) {
            match parse_domain_line(line, self.canon) {
                None => {}
                Some(Ok(name)) => {
                    self.add_name(&name, bit, false);
                    report.entries += 1;
                }
                Some(Err(message)) => report.problems.push(problem(source, number, message)),
            }
        }
        report
    }

    /// Loads `urls` text: one `host/path` prefix per line (see
    /// [`crate::formats::parse_url_line_with`]).
    pub fn add_urls_text(&mut self, id: u8, source: &str, text: &str) -> LoadReport {
        let bit = self.bit(id);
        let mut report = LoadReport::default();
        for (number, line) in numbered_lines(text) {
            match parse_url_line_with(line, self.canon, self.paths) {
                None => {}
                Some(Ok(entry)) => {
                    *self.urls.entry(entry).or_default() |= bit;
                    report.entries += 1;
                }
                Some(Err(message)) => report.problems.push(problem(source, number, message)),
            }
        }
        report
    }

    /// Loads `expressions` text: one regular expression per line. An invalid
    /// expression, or one over [`crate::EXPRESSION_SIZE_LIMIT`], is a problem
    /// and skipped. Lines starting with `#` are comments.
    pub fn add_expressions_text(&mut self, id: u8, source: &str, text: &str) -> LoadReport {
        let bit = self.bit(id);
        let mut report = LoadReport::default();
        for (number, line) in numbered_lines(text) {
            let pattern = line.trim();
            if pattern.is_empty() || pattern.starts_with('#') {
                continue;
            }
            if let Some(mask) = self.expressions.get_mut(pattern) {
                *mask |= bit;
                report.entries += 1;
                continue;
            }
            match check_expression(pattern) {
                Ok(()) => {
                    self.expressions.insert(pattern.to_string(), bit);
                    report.entries += 1;
                }
                Err(message) => report.problems.push(problem(source, number, message)),
            }
        }
        report
    }

    /// Loads hosts-file text (see [`crate::formats::parse_hosts_line`]): every
    /// name mapped to a block address is a domain entry; the localhost preamble
    /// is not.
    pub fn add_hosts_text(&mut self, id: u8, source: &str, text: &str) -> LoadReport {
        let bit = self.bit(id);
        let mut report = LoadReport::default();
        for (number, line) in numbered_lines(text) {
            match parse_hosts_line(line, self.canon) {
                Ok(names) => {
                    for name in names {
                        match name {
                            Ok(name) => {
                                self.add_name(&name, bit, false);
                                report.entries += 1;
                            }
                            Err(message) => report.problems.push(problem(source, number, message)),
                        }
                    }
                }
                Err(message) => report.problems.push(problem(source, number, message)),
            }
        }
        report
    }

    /// Compiles everything loaded into a [`Matcher`].
    ///
    /// Errors: a list id of 128 or more was given to a text method, more than
    /// 2^16 distinct list combinations, or the expressions too large together.
    pub fn build(mut self) -> Result<Matcher, ListError> {
        if let Some(id) = self.bad_id {
            return Err(ListError::ListIdOutOfRange { id });
        }
        // URL-prefix hosts get a slot flagged `urls` (mask 0: a URL prefix
        // never blocks the whole host), so a lookup reads the URL table only
        // for them.
        let mut previous: Option<&str> = None;
        let url_hosts: Vec<String> = self
            .urls
            .keys()
            .filter_map(|entry| {
                let new = previous != Some(entry.host.as_str());
                previous = Some(entry.host.as_str());
                new.then(|| entry.host.clone())
            })
            .collect();
        for host in &url_hosts {
            self.add_name(host, 0, true);
        }
        let descendants = Flags {
            descendants: true,
            urls: false,
        };
        // Sorted, so the table is filled in hash order (its home buckets in
        // order: cache-friendly) and its size counts distinct names only; no
        // combined vector of full entries is ever made (that copy, 32 bytes per
        // name and parent, was most of the memory a reload needed).
        let mut names = self.domains;
        names.sort_unstable_by_key(|&(hash, _, _)| hash);
        let mut ancestors = self.ancestors;
        ancestors.sort_unstable();
        ancestors.dedup();
        let distinct = count_distinct(&names, &ancestors);
        let entries = names
            .into_iter()
            .map(|(hash, list, flags)| {
                let mask = if list == NO_LIST { 0 } else { 1 << list };
                (hash, mask, flags)
            })
            .chain(ancestors.into_iter().map(|hash| (hash, 0, descendants)));
        let domains = DomainTable::build_from(distinct, entries)?;
        let urls = UrlPrefixes::build(self.urls)?;
        let expressions = Expressions::build(self.expressions.into_iter().collect())?;
        let counts = count_lists(&domains, &urls, &expressions);
        Ok(Matcher::new(domains, urls, expressions, counts))
    }
}

/// How many distinct fingerprints two sorted lists hold together.
fn count_distinct(names: &[(u64, u8, Flags)], ancestors: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    let mut last = None;
    while i < names.len() || j < ancestors.len() {
        let next = match (names.get(i), ancestors.get(j)) {
            (Some(&(a, _, _)), Some(&b)) if a <= b => {
                i += 1;
                a
            }
            (Some(_), Some(&b)) | (None, Some(&b)) => {
                j += 1;
                b
            }
            (Some(&(a, _, _)), None) => {
                i += 1;
                a
            }
            (None, None) => break,
        };
        if last != Some(next) {
            n += 1;
            last = Some(next);
        }
    }
    n
}

/// Per-list distinct entry counts, for every list id that has any entry.
fn count_lists(
    domains: &DomainTable,
    urls: &UrlPrefixes,
    expressions: &Expressions,
) -> Vec<ListCounts> {
    let mut counts: Vec<ListCounts> = (0..MAX_LISTS)
        .map(|id| ListCounts {
            id: id as u8,
            ..ListCounts::default()
        })
        .collect();
    // Count per distinct mask first: a million entries share a few hundred masks.
    let mut per_mask: std::collections::HashMap<Mask, [usize; 3]> = Default::default();
    for mask in domains.masks() {
        per_mask.entry(mask).or_default()[0] += 1;
    }
    for mask in urls.masks() {
        per_mask.entry(mask).or_default()[1] += 1;
    }
    for mask in expressions.masks() {
        per_mask.entry(mask).or_default()[2] += 1;
    }
    for (mask, [d, u, e]) in per_mask {
        for id in mask_ids(mask) {
            let c = &mut counts[usize::from(id)];
            c.domains += d;
            c.urls += u;
            c.expressions += e;
        }
    }
    counts.retain(|c| c.domains + c.urls + c.expressions > 0);
    counts
}

#[cfg(test)]
mod count_tests {
    use super::*;

    #[test]
    fn distinct_counts_each_fingerprint_once_across_both_lists() {
        let f = Flags {
            descendants: false,
            urls: false,
        };
        let names = [(1, 0, f), (1, 3, f), (4, 0, f), (9, NO_LIST, f)];
        assert_eq!(count_distinct(&names, &[1, 2, 4, 5]), 5);
        assert_eq!(count_distinct(&names, &[]), 3);
        assert_eq!(count_distinct(&[], &[7, 8]), 2);
        assert_eq!(count_distinct(&[], &[]), 0);
    }
}
