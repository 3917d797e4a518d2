//! The cache of recent successful logins, so argon2 runs once per user per TTL
//! rather than once per request.
//!
//! In: a 32-byte key (a keyed BLAKE2b of user and password, made by the
//! verifier; never the password) and the account's name and revision. Out: the
//! entry while it is younger than the TTL.
//!
//! Bounded: at most `capacity` entries; when full, the oldest goes. Insertion
//! order is expiry order (one TTL for all), so one queue serves both eviction and
//! expiry.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cache key: a MAC of user and password under a per-process random key.
pub(crate) type Key = [u8; 32];

/// One remembered login.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The account (its current record is looked up on every hit).
    pub(crate) account: Arc<str>,
    /// The account's revision when the password was verified.
    pub(crate) revision: u64,
    /// When argon2 verified it.
    pub(crate) verified_at: Instant,
    inserted: Instant,
    seq: u64,
}

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    map: HashMap<Key, Entry>,
    /// (key, seq) in insertion order. Items whose entry was replaced or dropped
    /// are skipped when they reach the front.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
    ttl: Duration,
    capacity: usize,
}

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> VerifiedCache {
        VerifiedCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            ttl,
            capacity,
        }
    }

    /// The entry for `key`, if it is younger than the TTL.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<&Entry> {
        self.map
            .get(key)
            .filter(|e| now.saturating_duration_since(e.inserted) < self.ttl)
    }

    /// Remembers a login, dropping expired entries and, when full, the oldest.
    pub(crate) fn insert(
        &mut self,
        key: Key,
        account: Arc<str>,
        revision: u64,
        verified_at: Instant,
        now: Instant,
    ) {
        if self.capacity == 0 {
            return;
        }
        self.drop_expired(now);
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.capacity {
                if !self.pop_oldest() {
                    break;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key,
            Entry {
                account,
                revision,
                verified_at,
                inserted: now,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Replaced and dropped entries leave stale queue items; rebuild the queue
        // before it grows far past the map.
        if self.order.len() > 2 * self.capacity.max(16) {
            self.compact();
        }
    }

    /// Keeps only entries for which `keep` is true; returns how many went.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| keep(e));
        before - self.map.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn drop_expired(&mut self, now: Instant) {
        while let Some(&(key, seq)) = self.order.front() {
            match self.map.get(&key) {
                Some(e) if e.seq == seq => {
                    if now.saturating_duration_since(e.inserted) < self.ttl {
                        return;
                    }
                    self.map.remove(&key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Removes the oldest live entry; false if there is none.
    fn pop_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let mut live: Vec<(Key, u64)> = self.map.iter().map(|(k, e)| (*k, e.seq)).collect();
        live.sort_by_key(|&(_, seq)| seq);
        self.order = live.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = VerifiedCache::new(Duration::from_secs(300), 10);
        c.insert(key(1), "a".into(), 7, t0, t0);
        assert_eq!(
            c.get(&key(1), t0 + Duration::from_secs(299))
                .map(|e| e.revision),
            Some(7)
        );
        assert!(c.get(&key(1), t0 + Duration::from_secs(300)).is_none());
        assert!(c.get(&key(2), t0).is_none());
    }

    #[test]
    fn full_cache_drops_the_oldest() {
        let t0 = Instant::now();
        let mut c = VerifiedCache::new(Duration::from_secs(300), 3);
        for i in 0..5 {
            c.insert(
                key(i),
                "a".into(),
                0,
                t0,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(0), t0).is_none() && c.get(&key(1), t0).is_none());
        assert!(c.get(&key(4), t0).is_some());
        // Re-inserting an existing key does not evict anything.
        c.insert(key(4), "a".into(), 1, t0, t0);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(2), t0).is_some());
    }

    #[test]
    fn the_queue_stays_bounded_under_churn() {
        let t0 = Instant::now();
        let mut c = VerifiedCache::new(Duration::from_secs(300), 16);
        for i in 0..10_000u32 {
            c.insert(key(i % 20), "a".into(), 0, t0, t0);
            c.retain(|_| i % 3 != 0);
        }
        assert!(c.len() <= 16);
        assert!(c.order.len() <= 2 * 16 + 1, "{}", c.order.len());
    }

    #[test]
    fn zero_capacity_turns_the_cache_off() {
        let t0 = Instant::now();
        let mut c = VerifiedCache::new(Duration::from_secs(300), 0);
        c.insert(key(1), "a".into(), 0, t0, t0);
        assert!(c.get(&key(1), t0).is_none());
    }
}
