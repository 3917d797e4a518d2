//! Retention: raw events are pruned after a number of days; incidents stay until
//! an explicit delete ([`crate::Store::delete_incident`]).
//!
//! In: the store, the time now and the days to keep. Out: how many events went.
//! Events that an incident refers to are kept with it: they are its evidence.
use crate::error::Error;
use crate::store::Store;

/// Schools keep a year of logs for the annual filtering review.
pub const DEFAULT_KEEP_DAYS: u32 = 365;

const DAY_MS: u64 = 86_400_000;

/// The oldest time kept: `now - days`.
pub fn cutoff_ms(now_ms: u64, keep_days: u32) -> u64 {
    now_ms.saturating_sub(u64::from(keep_days) * DAY_MS)
}

/// Prunes raw events (and auth failures) older than `keep_days`.
pub fn prune(store: &mut Store, now_ms: u64, keep_days: u32) -> Result<u64, Error> {
    store.prune_events(cutoff_ms(now_ms, keep_days))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cutoff_saturates() {
        assert_eq!(super::cutoff_ms(5, 1), 0);
        assert_eq!(super::cutoff_ms(2 * super::DAY_MS, 1), super::DAY_MS);
    }
}
