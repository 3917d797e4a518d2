//! The compiled [`Matcher`]: a canonical host and path in, a [`Mask`] of lists out.
//!
//! Takes a host that is already canonical (the proxy canonicalises every request
//! before it gets here) and, for [`Matcher::lookup`], the normalised, lower-case
//! `path?query`. Returns the lists that contain the request. Refuses nothing: an
//! unknown host simply matches no list.
//!
//! One walk over the host's label-boundary suffixes, shortest first (`com`,
//! `example.com`, `b.example.com`, `a.b.example.com`), chains each suffix's
//! fingerprint from its parent's and reads one domain-table slot per suffix.
//! That slot answers three questions: which lists contain this name, whether it
//! has URL-prefix entries (only then is the URL table read), and whether any
//! listed name lies below it (if not, the walk stops: no longer suffix can be
//! listed). IP addresses are looked up exactly: `1.2.3.4` is not a subdomain of
//! `3.4`.
use crate::domain_table::{DomainTable, Found, fingerprint, for_each_suffix_hash};
use crate::expressions::Expressions;
use crate::url_prefixes::UrlPrefixes;
use crate::{ListCounts, Mask, mask_ids};

/// The lists, compiled for lookups. Read-only and `Send + Sync`: one matcher is
/// shared by every connection through the snapshot.
#[derive(Debug)]
pub struct Matcher {
    domains: DomainTable,
    urls: UrlPrefixes,
    expressions: Expressions,
    counts: Vec<ListCounts>,
}

/// Whether a canonical host is an IP literal: IPv6 text contains `:`, and a
/// canonical domain never ends in an all-digit label (the URL standard reads
/// such a name as IPv4), so a numeric last label means a dotted quad.
#[inline]
pub(crate) fn is_ip_literal(host: &str) -> bool {
    // Byte scans rather than `str` char patterns, as in `for_each_suffix_hash`.
    let host = host.as_bytes();
    if host.contains(&b':') {
        return true;
    }
    let last = host
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(host, |dot| &host[dot + 1..]);
    !last.is_empty() && last.iter().all(u8::is_ascii_digit)
}

/// Calls `visit(suffix, fingerprint, found)` for each label-boundary suffix of
/// `host` that the domain table holds, shortest first, and stops after the
/// first suffix below which nothing is listed. IP literals are visited once,
/// whole. Every suffix that can hold a listed name is visited, so OR-ing what
/// `visit` sees gives every list containing the host.
#[inline]
fn walk<'h>(table: &DomainTable, host: &'h str, mut visit: impl FnMut(&'h str, u64, Found)) {
    if is_ip_literal(host) {
        let hash = fingerprint(host);
        if let Some(found) = table.get(hash) {
            visit(host, hash, found);
        }
        return;
    }
    for_each_suffix_hash(host, |start, hash| match table.get(hash) {
        Some(found) => {
            visit(&host[start..], hash, found);
            found.flags.descendants
        }
        None => false,
    });
}

impl Matcher {
    pub(crate) fn new(
        domains: DomainTable,
        urls: UrlPrefixes,
        expressions: Expressions,
        counts: Vec<ListCounts>,
    ) -> Matcher {
        Matcher {
            domains,
            urls,
            expressions,
            counts,
        }
    }

    /// The lists whose domain entries contain `host`.
    ///
    /// `host` is already canonical (lower-case A-labels, dotted-quad IPv4, or
    /// IPv6 text without brackets). A domain entry matches at a label boundary:
    /// `example.com` matches `a.example.com`, never `notexample.com` or
    /// `example.com.evil.test`. An IP entry matches only that address.
    ///
    /// ```
    /// # use blocklists::Builder;
    /// # let canon = |s: &str| -> Result<String, String> { Ok(s.to_ascii_lowercase()) };
    /// let mut builder = Builder::new(&canon);
    /// builder.add_domains_text(0, "t", "example.com\n10.0.0.1\n");
    /// let m = builder.build().expect("small");
    /// assert_eq!(m.host_mask("a.example.com"), 1);
    /// assert_eq!(m.host_mask("example.com.evil.test"), 0);
    /// assert_eq!(m.host_mask("10.0.0.1"), 1);
    /// ```
    #[inline]
    pub fn host_mask(&self, host: &str) -> Mask {
        let mut mask = 0;
        walk(&self.domains, host, |_, _, found| mask |= found.mask);
        mask
    }

    /// All lists containing the request: domain hits, URL-prefix hits (label
    /// boundary on the host, segment boundary on the path) and expression hits.
    ///
    /// `path_query` is the normalised, lower-case path plus `?query` if any; it
    /// starts with `/`.
    #[inline]
    pub fn lookup(&self, host: &str, path_query: &str) -> Mask {
        let mut mask = 0;
        walk(&self.domains, host, |suffix, hash, found| {
            mask |= found.mask;
            if found.flags.urls {
                self.urls
                    .for_each_hit(hash, suffix, path_query, |_, hit| mask |= hit);
            }
        });
        mask | self.expressions.mask(host, path_query)
    }

    /// The lists whose expressions match `host + path_query` (the expression
    /// part of [`Matcher::lookup`], for measuring it alone).
    #[inline]
    pub fn expression_mask(&self, host: &str, path_query: &str) -> Mask {
        self.expressions.mask(host, path_query)
    }

    /// For `explain`: `(list id, entry as stored)` for every entry that matched,
    /// sorted. A domain entry is shown as the suffix of `host` that matched (the
    /// table keeps fingerprints, not names), a URL prefix as `host/path`, an
    /// expression as its text.
    pub fn matched_entries(&self, host: &str, path_query: &str) -> Vec<(u8, String)> {
        let mut found = Vec::new();
        walk(&self.domains, host, |suffix, hash, slot| {
            for id in mask_ids(slot.mask) {
                found.push((id, suffix.to_string()));
            }
            self.urls
                .for_each_hit(hash, suffix, path_query, |prefix, mask| {
                    for id in mask_ids(mask) {
                        found.push((id, format!("{suffix}{prefix}")));
                    }
                });
        });
        for (pattern, mask) in self.expressions.hits(host, path_query) {
            for id in mask_ids(mask) {
                found.push((id, pattern.to_string()));
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Heap memory the matcher holds, computed from capacities (the compiled
    /// expression set is estimated; see the `expressions` module).
    pub fn heap_bytes(&self) -> usize {
        self.domains.heap_bytes()
            + self.urls.heap_bytes()
            + self.expressions.heap_bytes()
            + self.counts.capacity() * size_of::<ListCounts>()
    }

    /// Distinct domain (and IP) entries across all lists.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Distinct entries per list id, for every list that has any, by id.
    pub fn list_counts(&self) -> Vec<ListCounts> {
        self.counts.clone()
    }
}
