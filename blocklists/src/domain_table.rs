//! The compact domain table: canonical names in, list masks and walk hints out.
//!
//! Takes one [`Entry`] per name (a fingerprint, a mask and [`Flags`]) and
//! returns a read-only table. Refuses more than 2^16 distinct masks (the
//! palette index is 16 bits).
//!
//! **Fingerprints.** A name's fingerprint is chained over its labels from the
//! right: `h(com) = xxh3(com, SEED)`, `h(example.com) = xxh3(example, h(com))`.
//! So one right-to-left pass over a host yields the fingerprint of every
//! label-boundary suffix, each from one short label (xxh3's cheapest input
//! sizes), instead of re-hashing every suffix from its first byte.
//!
//! **Layout.** One `u64` per slot: a 45-bit tag from the fingerprint (never 0,
//! as 0 marks an empty slot), three flag bits, and a 16-bit index into a palette
//! of distinct masks. Real lists give a few hundred distinct masks for a million
//! names, so the palette stays in L1 and a slot costs 8 bytes. Slots are grouped
//! 8 to a 64-byte, 64-byte-aligned bucket, so a probe reads exactly one cache
//! line. The home bucket comes from the multiply-high reduction ("fastrange"),
//! so the bucket count need not be a power of two (rounding up would waste up to
//! half the memory). A full bucket spills into the next one, and its first slot
//! then carries [`OVERFLOW`]: a probe that finds neither its tag nor that bit
//! in the home bucket has proved a miss after one cache line, full bucket or not.
//!
//! **Flags.** [`Flags::descendants`] marks a name with a listed name below it
//! (`example.com` when `a.example.com` is listed), and every proper suffix of a
//! listed name is stored with it (with mask 0 when not listed itself). So a walk
//! from the shortest suffix (`com`, `example.com`, ...) may stop at the first
//! suffix that is absent or lacks the flag: nothing longer can be listed. Most
//! hosts are settled after one or two probes, and the first one (`com`) is
//! always in cache. [`Flags::urls`] marks a name with URL-prefix entries, so the
//! URL table is only read for those few hosts.
//!
//! **Fingerprint collisions.** The table stores tags, not names. Two names whose
//! tags meet on one probe path are treated as one: their masks and flags are
//! merged, and a lookup of either returns both. So a collision can only *add* a
//! list (or a flag, which costs one more probe) to a request, never remove one:
//! it may block something that was not listed (about 2^-42 per probe), but it
//! can never lift a block, and never stop a walk early. The locked baseline
//! therefore cannot be evaded through a collision.
use std::collections::HashMap;

use crate::{ListError, Mask};

/// Fixed seed, so fingerprints (and so the table) are the same on every run.
const SEED: u64 = 0x6861_6c6c_7061_7373; // "hallpass"

/// Odd constant (2^64 / golden ratio) that decorrelates the home bucket from the
/// stored tag bits, so names in one bucket still differ in nearly all tag bits.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// A listed name lies below this one (see [`Flags::descendants`]).
const DESCENDANTS: u64 = 1 << INDEX_BITS;
/// This name has URL-prefix entries (see [`Flags::urls`]).
const URLS: u64 = 1 << (INDEX_BITS + 1);
/// In a bucket's first slot: the bucket was full when some name whose probe
/// passed through it was stored further on, so a probe must go on.
const OVERFLOW: u64 = 1 << (INDEX_BITS + 2);
const FLAG_MASK: u64 = DESCENDANTS | URLS;
const TAG_SHIFT: u32 = INDEX_BITS + 3;

/// Slots per bucket: 8 × 8 bytes = one 64-byte cache line.
const BUCKET_SLOTS: usize = 8;

/// Names per 100 slots. At 70 % about 85 % of misses read one cache line and
/// the mean is about 1.26 lines (measured in the `many_entries_all_found_and_probe_lengths_stay_short`
/// test), for 11.4 bytes per name; at 75 % it is 78 % and 1.47 lines for
/// 10.7 bytes, at 60 % about 90 % for 13.3 bytes.
const LOAD_PERCENT: usize = 70;

/// The most distinct masks the palette can index.
pub(crate) const MAX_PALETTE: usize = 1 << INDEX_BITS;

/// What a name carries besides its mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// Some listed name (domain or URL-prefix host) is a proper subdomain of
    /// this one, so a suffix walk must go on past it.
    pub(crate) descendants: bool,
    /// This exact name has URL-prefix entries.
    pub(crate) urls: bool,
}

impl Flags {
    fn bits(self) -> u64 {
        (if self.descendants { DESCENDANTS } else { 0 }) | (if self.urls { URLS } else { 0 })
    }
}

/// One name for [`DomainTable::build`]: fingerprint, mask (0 when only its
/// flags matter) and flags.
pub(crate) type Entry = (u64, Mask, Flags);

/// The fingerprint of `label` given the fingerprint of the suffix to its right
/// (or [`SEED`] for the last label).
#[inline]
fn chain(label: &[u8], parent: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(label, parent)
}

/// The 64-bit fingerprint of a canonical name (chained over its labels).
#[inline]
pub(crate) fn fingerprint(name: &str) -> u64 {
    let mut hash = SEED;
    for_each_suffix_hash(name, |_, h| {
        hash = h;
        true
    });
    hash
}

/// Calls `visit(suffix start, fingerprint)` for each label-boundary suffix of
/// `name`, shortest first (`com`, `example.com`, `www.example.com`), while
/// `visit` returns `true`. The last call is the whole name (start 0).
#[inline]
pub(crate) fn for_each_suffix_hash(name: &str, mut visit: impl FnMut(usize, u64) -> bool) {
    let name = name.as_bytes();
    let mut hash = SEED;
    let mut end = name.len();
    loop {
        // A plain byte loop: labels are a few bytes long, and `str::rfind`'s
        // set-up cost more than the scan (~130 instructions a label, counted).
        let start = name[..end]
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(0, |dot| dot + 1);
        hash = chain(&name[start..end], hash);
        if !visit(start, hash) || start == 0 {
            return;
        }
        end = start - 1;
    }
}

/// The stored tag of a fingerprint, never 0.
#[inline]
fn tag(hash: u64) -> u64 {
    let tag = hash >> TAG_SHIFT;
    if tag == 0 { 1 } else { tag }
}

/// The home bucket of a fingerprint in a table of `buckets` buckets.
#[inline]
fn home(hash: u64, buckets: usize) -> usize {
    ((u128::from(hash.wrapping_mul(MIX)) * buckets as u128) >> 64) as usize
}

/// One cache line of slots.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket([u64; BUCKET_SLOTS]);

/// What a probe found: the name's mask and flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// The lists containing the name itself (0 when none).
    pub(crate) mask: Mask,
    /// The name's flags.
    pub(crate) flags: Flags,
}

/// A read-only fingerprint → (mask, flags) table.
#[derive(Debug, Default)]
pub(crate) struct DomainTable {
    buckets: Vec<Bucket>,
    palette: Vec<Mask>,
    /// Names with a non-zero mask (listed names, not walk-only ancestors).
    listed: usize,
}

impl DomainTable {
    /// Builds the table from entries. Equal fingerprints (and equal tags on one
    /// probe path) are merged by OR-ing masks and flags.
    #[cfg(test)]
    pub(crate) fn build(mut entries: Vec<Entry>) -> Result<DomainTable, ListError> {
        entries.sort_unstable_by_key(|&(hash, _, _)| hash);
        entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 |= later.1;
                earlier.2.descendants |= later.2.descendants;
                earlier.2.urls |= later.2.urls;
                true
            } else {
                false
            }
        });
        let distinct = entries.len();
        DomainTable::build_from(distinct, entries)
    }

    /// Builds from entries in any order, where `distinct` is the number of
    /// distinct fingerprints among them (it sizes the table). A fingerprint
    /// given twice is merged as [`DomainTable::build`] merges it: inserting
    /// walks the same probe path and finds the first copy before any empty slot.
    pub(crate) fn build_from(
        distinct: usize,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<DomainTable, ListError> {
        // At least one empty slot always remains, so every probe loop ends.
        let buckets = if distinct == 0 {
            0
        } else {
            (distinct * 100 / LOAD_PERCENT + 1).div_ceil(BUCKET_SLOTS)
        };
        let mut table = DomainTable {
            buckets: vec![Bucket::default(); buckets],
            palette: Vec::new(),
            listed: 0,
        };
        let mut palette_index: HashMap<Mask, u64> = HashMap::new();
        for (hash, mask, flags) in entries {
            table.insert(hash, mask, flags.bits(), &mut palette_index)?;
        }
        table.listed = table.masks().count();
        table.palette.shrink_to_fit();
        Ok(table)
    }

    fn insert(
        &mut self,
        hash: u64,
        mask: Mask,
        flags: u64,
        palette_index: &mut HashMap<Mask, u64>,
    ) -> Result<(), ListError> {
        let count = self.buckets.len();
        let tag = tag(hash);
        let mut b = home(hash, count);
        loop {
            for s in 0..BUCKET_SLOTS {
                let slot = self.buckets[b].0[s];
                let overflow = slot & OVERFLOW;
                if slot == 0 {
                    let index = self.palette_slot(mask, palette_index)?;
                    self.buckets[b].0[s] = (tag << TAG_SHIFT) | flags | index;
                    return Ok(());
                }
                if slot >> TAG_SHIFT == tag {
                    // Two names with one tag: merge, so a lookup of either sees
                    // both (a collision adds lists and flags, never removes them).
                    let merged = self.palette[(slot & INDEX_MASK) as usize] | mask;
                    let index = self.palette_slot(merged, palette_index)?;
                    self.buckets[b].0[s] =
                        (tag << TAG_SHIFT) | overflow | (slot & FLAG_MASK) | flags | index;
                    return Ok(());
                }
            }
            // Full, and the name is not here: it goes further on, and probes
            // that reach this bucket must follow it.
            self.buckets[b].0[0] |= OVERFLOW;
            b = if b + 1 == count { 0 } else { b + 1 };
        }
    }

    fn palette_slot(
        &mut self,
        mask: Mask,
        palette_index: &mut HashMap<Mask, u64>,
    ) -> Result<u64, ListError> {
        if let Some(&index) = palette_index.get(&mask) {
            return Ok(index);
        }
        if self.palette.len() >= MAX_PALETTE {
            return Err(ListError::TooManyCombinations {
                found: self.palette.len() + 1,
                limit: MAX_PALETTE,
            });
        }
        let index = self.palette.len() as u64;
        self.palette.push(mask);
        palette_index.insert(mask, index);
        Ok(index)
    }

    /// The slot stored for a fingerprint, if any.
    #[inline]
    fn slot(&self, hash: u64) -> Option<u64> {
        let count = self.buckets.len();
        if count == 0 {
            return None;
        }
        let tag = tag(hash);
        let mut b = home(hash, count);
        loop {
            let bucket = &self.buckets[b].0;
            // All eight compares at once, without branches (so the compiler
            // can use vector compares), then the first hit: one slot holds a
            // given tag per probe path, and it is the one insert merged into.
            let mut hits = 0u32;
            for (i, &slot) in bucket.iter().enumerate() {
                hits |= u32::from(slot >> TAG_SHIFT == tag) << i;
            }
            if hits != 0 {
                return Some(bucket[hits.trailing_zeros() as usize]);
            }
            if bucket[0] & OVERFLOW == 0 {
                return None;
            }
            b = if b + 1 == count { 0 } else { b + 1 };
        }
    }

    /// The mask and flags stored for a fingerprint; `None` when absent.
    #[inline]
    pub(crate) fn get(&self, hash: u64) -> Option<Found> {
        self.slot(hash).map(|slot| Found {
            mask: self.palette[(slot & INDEX_MASK) as usize],
            flags: Flags {
                descendants: slot & DESCENDANTS != 0,
                urls: slot & URLS != 0,
            },
        })
    }

    /// Listed names stored (walk-only ancestors and URL-only hosts not counted).
    pub(crate) fn len(&self) -> usize {
        self.listed
    }

    /// Heap memory held, from capacities.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>() + self.palette.capacity() * size_of::<Mask>()
    }

    /// Every non-zero stored mask (one per listed name), for per-list counts.
    pub(crate) fn masks(&self) -> impl Iterator<Item = Mask> + '_ {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.0.iter())
            .filter(|&&slot| slot != 0)
            .map(|&slot| self.palette[(slot & INDEX_MASK) as usize])
            .filter(|&mask| mask != 0)
    }

    /// How many buckets a probe for each fingerprint reads, for tests.
    #[cfg(test)]
    fn probe_length(&self, hash: u64) -> usize {
        let count = self.buckets.len();
        let tag = tag(hash);
        let mut b = home(hash, count);
        let mut read = 1;
        loop {
            let bucket = &self.buckets[b].0;
            if bucket.iter().any(|&slot| slot >> TAG_SHIFT == tag) || bucket[0] & OVERFLOW == 0 {
                return read;
            }
            read += 1;
            b = if b + 1 == count { 0 } else { b + 1 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Flags = Flags {
        descendants: false,
        urls: false,
    };

    fn mask_of(table: &DomainTable, name: &str) -> Mask {
        table.get(fingerprint(name)).map_or(0, |found| found.mask)
    }

    #[test]
    fn empty_table_misses() {
        let table = DomainTable::build(Vec::new()).expect("empty build");
        assert_eq!(table.get(fingerprint("example.com")), None);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn fingerprints_chain_over_labels_shortest_suffix_first() {
        let mut seen = Vec::new();
        for_each_suffix_hash("a.bc.d", |start, hash| {
            seen.push((start, hash));
            true
        });
        assert_eq!(
            seen,
            vec![
                (5, fingerprint("d")),
                (2, fingerprint("bc.d")),
                (0, fingerprint("a.bc.d")),
            ]
        );
        // Label boundaries are part of the fingerprint.
        assert_ne!(fingerprint("ab.c"), fingerprint("a.bc"));
        assert_ne!(fingerprint("a.b"), fingerprint("ab"));
        // Stopping early stops.
        let mut calls = 0;
        for_each_suffix_hash("x.y.z", |_, _| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn duplicates_merge_masks_and_flags() {
        let h = fingerprint("example.com");
        let urls = Flags {
            descendants: false,
            urls: true,
        };
        let below = Flags {
            descendants: true,
            urls: false,
        };
        let table = DomainTable::build(vec![
            (h, 1, urls),
            (h, 4, below),
            (fingerprint("b.test"), 2, NONE),
            (fingerprint("test"), 0, below),
        ])
        .expect("small build");
        let found = table.get(h).expect("present");
        assert_eq!(found.mask, 5);
        assert_eq!(
            found.flags,
            Flags {
                descendants: true,
                urls: true
            }
        );
        assert_eq!(table.len(), 2, "the mask-0 ancestor is not a listed name");
        assert_eq!(table.get(fingerprint("test")).map(|f| f.mask), Some(0));
    }

    #[test]
    fn tag_collision_adds_never_removes() {
        // Two different hashes with the same stored tag (and so, here, the
        // same home bucket too: the low bits differ only below the tag).
        let a = 0xabcd_ef01_2345_0001_u64;
        let b = 0xabcd_ef01_2345_0002_u64;
        let below = Flags {
            descendants: true,
            urls: false,
        };
        for entries in [
            vec![(a, 1, NONE), (b, 2, below)],
            vec![(b, 2, below), (a, 1, NONE)],
        ] {
            let table = DomainTable::build(entries).expect("small build");
            let (fa, fb) = (table.get(a).expect("a"), table.get(b).expect("b"));
            assert_eq!(fa.mask & 1, 1);
            assert_eq!(fb.mask & 2, 2);
            assert!(fb.flags.descendants, "a flag is never lost");
            assert_eq!((fa.mask | fb.mask) & !3, 0);
        }
    }

    #[test]
    fn full_buckets_spill_and_are_still_found() {
        // Hashes `k * MIX^-1` all have home bucket 0 (`hash * MIX = k` is tiny),
        // so 30 of them overflow bucket 0 into the next ones.
        let mut inverse = MIX;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(MIX.wrapping_mul(inverse)));
        }
        assert_eq!(MIX.wrapping_mul(inverse), 1);
        let mut entries: Vec<Entry> = (1..=30u64)
            .map(|k| (k.wrapping_mul(inverse), 1u128 << (k % 5), NONE))
            .collect();
        // Padding with ordinary names, so the table has many buckets.
        entries.extend((0..300).map(|i| (fingerprint(&format!("p{i}.test")), 1 << 6, NONE)));
        let table = DomainTable::build(entries.clone()).expect("build");
        assert!(table.buckets.len() > 40);
        assert_ne!(table.buckets[0].0[0] & OVERFLOW, 0, "bucket 0 overflowed");
        for &(hash, mask, _) in &entries {
            assert_eq!(table.get(hash).map(|f| f.mask), Some(mask));
        }
        let longest = (1..=30u64)
            .map(|k| table.probe_length(k.wrapping_mul(inverse)))
            .max();
        assert!(longest >= Some(4), "{longest:?}");
        assert_eq!(table.get(31u64.wrapping_mul(inverse)), None);
        assert_eq!(table.get(fingerprint("absent.example")), None);
    }

    #[test]
    fn many_entries_all_found_and_probe_lengths_stay_short() {
        let names: Vec<String> = (0..200_000).map(|i| format!("n{i}.example")).collect();
        let entries = names
            .iter()
            .enumerate()
            .map(|(i, name)| (fingerprint(name), 1u128 << (i % 7), NONE))
            .collect();
        let table = DomainTable::build(entries).expect("build");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(mask_of(&table, name), 1u128 << (i % 7), "{name}");
        }
        assert_eq!(table.get(fingerprint("absent.example")), None);
        assert!(
            table.heap_bytes() * 10 / names.len() <= 115,
            "under 11.5 B/name"
        );
        // Misses are the common probe: most must read one cache line.
        let misses: Vec<usize> = (0..100_000)
            .map(|i| table.probe_length(fingerprint(&format!("m{i}.absent"))))
            .collect();
        let one_line = misses.iter().filter(|&&n| n == 1).count();
        let mean = misses.iter().sum::<usize>() as f64 / misses.len() as f64;
        assert!(
            one_line * 100 >= misses.len() * 80,
            "{one_line} of {}",
            misses.len()
        );
        assert!(mean < 1.35, "mean buckets per miss {mean}");
    }
}
