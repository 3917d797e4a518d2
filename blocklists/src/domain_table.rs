//! The compact domain table: canonical names in, list masks out.
//!
//! Takes `(fingerprint, mask)` pairs, one per distinct canonical name, and
//! returns a read-only open-addressing table. Refuses more than 2^16 distinct
//! masks (the palette index is 16 bits).
//!
//! Layout, one `u64` per slot: the top 48 bits of the name's fingerprint (never
//! 0, as 0 marks an empty slot) and a 16-bit index into a palette of distinct
//! masks. Real lists give a few hundred distinct masks for a million names, so
//! the palette costs nothing, and a slot costs 8 bytes. With a load factor of
//! 3/4 that is about 10.7 bytes per name, against about 40 for a
//! `HashMap<Box<str>, u128>` before counting the strings.
//!
//! The capacity is `n * 4/3`, not rounded up to a power of two (rounding would
//! waste up to half the memory); the home slot is found with the
//! multiply-high reduction ("fastrange"), which maps a 64-bit hash onto
//! `0..capacity` without a division. Probing is linear: the next slots share the
//! cache line, which makes a miss (the common case for most parents) cheap.
//!
//! **Fingerprint collisions.** The table stores fingerprints, not names. Two
//! names whose fingerprints share the stored 48 bits are treated as one: their
//! masks are merged, and a lookup of either returns both lists. So a collision
//! can only *add* a list to a request, never remove one: it may block something
//! that was not listed (with probability about 2^-44 per probe), but it can never
//! lift a block. The locked baseline therefore cannot be evaded through a
//! collision.
use std::collections::HashMap;

use crate::{ListError, Mask};

/// Fixed seed, so fingerprints (and so the table) are the same on every run.
const SEED: u64 = 0x6861_6c6c_7061_7373; // "hallpass"

/// Odd constant (2^64 / golden ratio) that decorrelates the home slot from the
/// stored fingerprint bits, so names near each other in the table still differ
/// in nearly all 48 stored bits.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The most distinct masks the palette can index.
pub(crate) const MAX_PALETTE: usize = 1 << INDEX_BITS;

/// The 64-bit fingerprint of a canonical name.
#[inline]
pub(crate) fn fingerprint(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), SEED)
}

/// The stored 48-bit tag of a fingerprint, never 0.
#[inline]
fn tag(hash: u64) -> u64 {
    let tag = hash >> INDEX_BITS;
    if tag == 0 { 1 } else { tag }
}

/// The home slot of a fingerprint in a table of `capacity` slots.
#[inline]
fn home(hash: u64, capacity: usize) -> usize {
    ((u128::from(hash.wrapping_mul(MIX)) * capacity as u128) >> 64) as usize
}

/// A read-only fingerprint → mask table.
#[derive(Debug, Default)]
pub(crate) struct DomainTable {
    slots: Vec<u64>,
    palette: Vec<Mask>,
    len: usize,
}

impl DomainTable {
    /// Builds the table from `(fingerprint, mask)` pairs. Equal fingerprints
    /// (and equal tags) are merged by OR-ing their masks.
    pub(crate) fn build(mut pairs: Vec<(u64, Mask)>) -> Result<DomainTable, ListError> {
        pairs.sort_unstable_by_key(|&(hash, _)| hash);
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 |= later.1;
                true
            } else {
                false
            }
        });
        // At least one empty slot always remains, so every probe loop ends.
        let capacity = if pairs.is_empty() {
            0
        } else {
            pairs.len() + pairs.len() / 3 + 1
        };
        let mut table = DomainTable {
            slots: vec![0; capacity],
            palette: Vec::new(),
            len: 0,
        };
        let mut palette_index: HashMap<Mask, u64> = HashMap::new();
        for (hash, mask) in pairs {
            table.insert(hash, mask, &mut palette_index)?;
        }
        table.palette.shrink_to_fit();
        Ok(table)
    }

    fn insert(
        &mut self,
        hash: u64,
        mask: Mask,
        palette_index: &mut HashMap<Mask, u64>,
    ) -> Result<(), ListError> {
        let capacity = self.slots.len();
        let tag = tag(hash);
        let mut i = home(hash, capacity);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = (tag << INDEX_BITS) | self.palette_slot(mask, palette_index)?;
                self.len += 1;
                return Ok(());
            }
            if slot >> INDEX_BITS == tag {
                // Two names with one tag: merge, so a lookup of either sees both
                // (a collision adds lists, never removes them).
                let merged = self.palette[(slot & INDEX_MASK) as usize] | mask;
                self.slots[i] = (tag << INDEX_BITS) | self.palette_slot(merged, palette_index)?;
                return Ok(());
            }
            i += 1;
            if i == capacity {
                i = 0;
            }
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

    /// The mask stored for a fingerprint, 0 when absent.
    #[inline]
    pub(crate) fn get(&self, hash: u64) -> Mask {
        let capacity = self.slots.len();
        if capacity == 0 {
            return 0;
        }
        let tag = tag(hash);
        let mut i = home(hash, capacity);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return 0;
            }
            if slot >> INDEX_BITS == tag {
                return self.palette[(slot & INDEX_MASK) as usize];
            }
            i += 1;
            if i == capacity {
                i = 0;
            }
        }
    }

    /// Distinct entries stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap memory held, from capacities.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u64>() + self.palette.capacity() * size_of::<Mask>()
    }

    /// Every stored mask (one per distinct entry), for per-list counts.
    pub(crate) fn masks(&self) -> impl Iterator<Item = Mask> + '_ {
        self.slots
            .iter()
            .filter(|&&slot| slot != 0)
            .map(|&slot| self.palette[(slot & INDEX_MASK) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_misses() {
        let table = DomainTable::build(Vec::new()).expect("empty build");
        assert_eq!(table.get(fingerprint("example.com")), 0);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn duplicates_merge_masks() {
        let h = fingerprint("example.com");
        let table = DomainTable::build(vec![(h, 1), (h, 4), (fingerprint("b.test"), 2)])
            .expect("small build");
        assert_eq!(table.get(h), 5);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn tag_collision_adds_never_removes() {
        // Two different hashes with the same stored 48 bits.
        let a = 0xabcd_ef01_2345_0001_u64;
        let b = 0xabcd_ef01_2345_0002_u64;
        // Whether they merge depends on whether one's probe passes the other's
        // slot; either way each keeps its own list, and may gain the other's.
        for pairs in [vec![(a, 1), (b, 2)], vec![(b, 2), (a, 1)]] {
            let table = DomainTable::build(pairs).expect("small build");
            assert_eq!(table.get(a) & 1, 1);
            assert_eq!(table.get(b) & 2, 2);
            assert_eq!((table.get(a) | table.get(b)) & !3, 0);
        }
    }

    #[test]
    fn many_entries_all_found() {
        let names: Vec<String> = (0..50_000).map(|i| format!("n{i}.example")).collect();
        let pairs = names
            .iter()
            .enumerate()
            .map(|(i, name)| (fingerprint(name), 1u128 << (i % 7)))
            .collect();
        let table = DomainTable::build(pairs).expect("build");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.get(fingerprint(name)), 1u128 << (i % 7), "{name}");
        }
        assert_eq!(table.get(fingerprint("absent.example")), 0);
        assert!(table.heap_bytes() / names.len() <= 11);
    }
}
