//! URL-prefix entries (`host/path`): a host and a normalised path in, list masks out.
//!
//! Takes [`UrlEntry`] values with their masks and returns a table keyed by the
//! same fingerprint as the domain table, probed during the same suffix walk over
//! the request host, and only for hosts whose domain-table slot is flagged as
//! having URL-prefix entries (so most walks never touch this table). Refuses nothing (entries were validated by `formats`).
//!
//! **Why not aho-corasick.** A URL-prefix hit must start at a label boundary of
//! the host and end at a segment boundary of the path. An automaton over
//! `host/path` strings finds substrings anywhere, so every hit would have to be
//! re-checked, and it costs about 120 bytes per pattern. Here the host part is
//! looked up exactly, once per suffix the domain walk visits anyway (so the
//! label boundary holds by construction, and the fingerprint is already
//! computed), and only that host's few prefixes are compared. Lookups stay
//! exact, and memory is the entries themselves.
//!
//! **Segment boundary.** The entry path `/foo` matches the request paths `/foo`,
//! `/foo/x` and `/foo?q`, never `/foobar`. An entry that ends in `/` matches
//! everything below it. An entry that contains a query (`/search?q=x`) also
//! stops at `&`, so `?q=x` matches `?q=x&page=2` but not `?q=xy`.
use std::collections::HashMap;

use crate::domain_table::fingerprint;
use crate::formats::UrlEntry;
use crate::{ListError, Mask};

/// One host's entry in the open-addressing host index. `count == 0` = empty.
#[derive(Clone, Copy, Debug, Default)]
struct HostSlot {
    hash: u64,
    host_start: u32,
    host_len: u32,
    first_prefix: u32,
    count: u32,
}

/// One path prefix: a span of `text` and a palette index.
#[derive(Clone, Copy, Debug)]
struct Prefix {
    start: u32,
    len: u32,
    mask: u32,
}

/// Host fingerprint → that host's path prefixes, in flat arrays: about 40
/// bytes per entry plus its text, against about 130 for nested maps of strings.
#[derive(Debug, Default)]
pub(crate) struct UrlPrefixes {
    /// Every host and path, back to back.
    text: String,
    /// Open addressing, linear probing, capacity `hosts * 4/3 + 1`.
    hosts: Vec<HostSlot>,
    /// Grouped by host, sorted by path within a host.
    prefixes: Vec<Prefix>,
    palette: Vec<Mask>,
}

/// Whether the request `path_query` starts with the entry `prefix` and the match
/// ends at a path-segment boundary.
pub(crate) fn prefix_matches(prefix: &str, path_query: &str) -> bool {
    let Some(rest) = path_query.strip_prefix(prefix) else {
        return false;
    };
    if rest.is_empty() || prefix.ends_with('/') {
        return true;
    }
    match rest.as_bytes()[0] {
        b'/' | b'?' => true,
        b'&' => prefix.contains('?'),
        _ => false,
    }
}

fn offset(value: usize) -> Result<u32, ListError> {
    u32::try_from(value).map_err(|_| ListError::TooLarge {
        what: "URL-prefix text",
        limit: u32::MAX as usize,
    })
}

impl UrlPrefixes {
    /// Builds the table from entries sorted by host then path, each once.
    pub(crate) fn build(
        entries: impl IntoIterator<Item = (UrlEntry, Mask)>,
    ) -> Result<UrlPrefixes, ListError> {
        let mut table = UrlPrefixes::default();
        let mut palette_index: HashMap<Mask, u32> = HashMap::new();
        let mut host_slots: Vec<HostSlot> = Vec::new();
        let mut current_host: Option<String> = None;
        for (entry, mask) in entries {
            if current_host.as_deref() != Some(entry.host.as_str()) {
                host_slots.push(HostSlot {
                    hash: fingerprint(&entry.host),
                    host_start: offset(table.text.len())?,
                    host_len: offset(entry.host.len())?,
                    first_prefix: offset(table.prefixes.len())?,
                    count: 0,
                });
                table.text.push_str(&entry.host);
                current_host = Some(entry.host);
            }
            let mask_index = match palette_index.get(&mask) {
                Some(&index) => index,
                None => {
                    let index = offset(table.palette.len())?;
                    table.palette.push(mask);
                    palette_index.insert(mask, index);
                    index
                }
            };
            table.prefixes.push(Prefix {
                start: offset(table.text.len())?,
                len: offset(entry.path.len())?,
                mask: mask_index,
            });
            table.text.push_str(&entry.path);
            if let Some(slot) = host_slots.last_mut() {
                slot.count += 1;
            }
        }
        table.place_hosts(host_slots);
        table.text.shrink_to_fit();
        table.prefixes.shrink_to_fit();
        table.palette.shrink_to_fit();
        Ok(table)
    }

    fn place_hosts(&mut self, host_slots: Vec<HostSlot>) {
        if host_slots.is_empty() {
            return;
        }
        let capacity = host_slots.len() + host_slots.len() / 3 + 1;
        self.hosts = vec![HostSlot::default(); capacity];
        for slot in host_slots {
            let mut i = home(slot.hash, capacity);
            while self.hosts[i].count != 0 {
                i = if i + 1 == capacity { 0 } else { i + 1 };
            }
            self.hosts[i] = slot;
        }
    }

    fn span(&self, start: u32, len: u32) -> &str {
        let start = start as usize;
        self.text.get(start..start + len as usize).unwrap_or("")
    }

    /// Calls `hit(entry path, mask)` for every prefix of `host` (exact host,
    /// fingerprint `hash`) that matches `path_query`.
    #[inline]
    pub(crate) fn for_each_hit(
        &self,
        hash: u64,
        host: &str,
        path_query: &str,
        mut hit: impl FnMut(&str, Mask),
    ) {
        let capacity = self.hosts.len();
        if capacity == 0 {
            return;
        }
        let mut i = home(hash, capacity);
        loop {
            let slot = &self.hosts[i];
            if slot.count == 0 {
                return;
            }
            if slot.hash == hash && self.span(slot.host_start, slot.host_len) == host {
                let first = slot.first_prefix as usize;
                for prefix in &self.prefixes[first..first + slot.count as usize] {
                    let path = self.span(prefix.start, prefix.len);
                    if prefix_matches(path, path_query) {
                        hit(path, self.palette[prefix.mask as usize]);
                    }
                }
                return;
            }
            i = if i + 1 == capacity { 0 } else { i + 1 };
        }
    }

    /// Heap memory held, from capacities.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.hosts.capacity() * size_of::<HostSlot>()
            + self.prefixes.capacity() * size_of::<Prefix>()
            + self.palette.capacity() * size_of::<Mask>()
    }

    /// Every stored mask (one per distinct entry), for per-list counts.
    pub(crate) fn masks(&self) -> impl Iterator<Item = Mask> + '_ {
        self.prefixes
            .iter()
            .map(|prefix| self.palette[prefix.mask as usize])
    }
}

/// The home slot of a fingerprint (multiply-high reduction, as in the domain table).
#[inline]
fn home(hash: u64, capacity: usize) -> usize {
    ((u128::from(hash.rotate_left(32)) * capacity as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn segment_boundaries() {
        let table: &[(&str, &str, bool)] = &[
            ("/foo", "/foo", true),
            ("/foo", "/foo/x", true),
            ("/foo", "/foo?q=1", true),
            ("/foo", "/foobar", false),
            ("/foo", "/fo", false),
            ("/foo/", "/foo/", true),
            ("/foo/", "/foo/bar", true),
            ("/foo/", "/foo", false),
            ("/", "/anything", true),
            ("/search?q=x", "/search?q=x", true),
            ("/search?q=x", "/search?q=x&page=2", true),
            ("/search?q=x", "/search?q=xy", false),
            ("/a.html", "/a.html", true),
            ("/a.html", "/a.htmlx", false),
            ("/foo", "/foo&x", false),
        ];
        for &(prefix, path, expected) in table {
            assert_eq!(prefix_matches(prefix, path), expected, "{prefix} vs {path}");
        }
    }
}
