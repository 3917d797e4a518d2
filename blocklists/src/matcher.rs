//! The compiled [`Matcher`]: a canonical host and path in, a [`Mask`] of lists out.
//!
//! Takes a host that is already canonical (the proxy canonicalises every request
//! before it gets here) and, for [`Matcher::lookup`], the normalised, lower-case
//! `path?query`. Returns the lists that contain the request. Refuses nothing: an
//! unknown host simply matches no list.
//!
//! One walk over the host's label-boundary suffixes (`a.b.example.com`,
//! `b.example.com`, `example.com`, `com`) fingerprints each suffix once and uses
//! that fingerprint for both the domain table and the URL-prefix table. IP
//! addresses are looked up exactly: `1.2.3.4` is not a subdomain of `3.4`.
use crate::domain_table::{DomainTable, fingerprint};
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
fn is_ip_literal(host: &str) -> bool {
    if host.contains(':') {
        return true;
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
}

/// Calls `visit` with the host itself and then each parent at a label boundary,
/// down to the last label. IP literals are visited once, whole.
#[inline]
fn for_each_suffix(host: &str, mut visit: impl FnMut(&str)) {
    if is_ip_literal(host) {
        visit(host);
        return;
    }
    let mut rest = host;
    loop {
        visit(rest);
        match rest.find('.') {
            Some(dot) => rest = &rest[dot + 1..],
            None => break,
        }
    }
}

/// The expression subject: `host + path_query`, as squidGuard matches.
fn subject(host: &str, path_query: &str) -> String {
    let mut subject = String::with_capacity(host.len() + path_query.len());
    subject.push_str(host);
    subject.push_str(path_query);
    subject
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
        for_each_suffix(host, |suffix| mask |= self.domains.get(fingerprint(suffix)));
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
        if self.urls.is_empty() {
            mask = self.host_mask(host);
        } else {
            for_each_suffix(host, |suffix| {
                let hash = fingerprint(suffix);
                mask |= self.domains.get(hash);
                self.urls
                    .for_each_hit(hash, suffix, path_query, |_, hit| mask |= hit);
            });
        }
        if !self.expressions.is_empty() {
            mask |= self.expressions.mask(&subject(host, path_query));
        }
        mask
    }

    /// For `explain`: `(list id, entry as stored)` for every entry that matched,
    /// sorted. A domain entry is shown as the suffix of `host` that matched (the
    /// table keeps fingerprints, not names), a URL prefix as `host/path`, an
    /// expression as its text.
    pub fn matched_entries(&self, host: &str, path_query: &str) -> Vec<(u8, String)> {
        let mut found = Vec::new();
        for_each_suffix(host, |suffix| {
            let hash = fingerprint(suffix);
            for id in mask_ids(self.domains.get(hash)) {
                found.push((id, suffix.to_string()));
            }
            self.urls
                .for_each_hit(hash, suffix, path_query, |prefix, mask| {
                    for id in mask_ids(mask) {
                        found.push((id, format!("{suffix}{prefix}")));
                    }
                });
        });
        for (pattern, mask) in self.expressions.hits(&subject(host, path_query)) {
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
