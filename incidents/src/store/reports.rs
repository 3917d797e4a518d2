//! The store's filter-check and report methods: thin, checked wrappers over
//! the engines' queries.
use super::Store;
use crate::error::Error;
use crate::reporting::{BlockCount, Closure, FilterCheck, KindCount, NewFilterCheck};

/// The longest a listing of filter checks may be, whatever the caller asks.
const MAX_LISTED_CHECKS: u64 = 10_000;

impl Store {
    /// Stores a finished filter check and its probe results in one
    /// transaction. Returns its number.
    pub fn record_filter_check(&mut self, check: &NewFilterCheck) -> Result<u64, Error> {
        if check.ran_by.trim().is_empty() {
            return Err(Error::Internal("a filter check must say who ran it".into()));
        }
        self.engine.record_filter_check(check)
    }

    /// Filter checks started in `[since_ms, until_ms)`, newest first, at most
    /// `limit` (capped at 10,000), without their probe results.
    pub fn filter_checks(
        &mut self,
        since_ms: u64,
        until_ms: u64,
        limit: u64,
    ) -> Result<Vec<FilterCheck>, Error> {
        self.engine
            .filter_checks(since_ms, until_ms, limit.min(MAX_LISTED_CHECKS))
    }

    /// One filter check with every probe result, or `None`.
    pub fn filter_check(&mut self, id: u64) -> Result<Option<FilterCheck>, Error> {
        let Some(mut check) = self.engine.filter_check_by_id(id)? else {
            return Ok(None);
        };
        check.check.results = self.engine.filter_check_results(id)?;
        Ok(Some(check))
    }

    /// Block events in `[since_ms, until_ms)` counted by group and category
    /// (review requests and other non-block kinds are not counted).
    pub fn block_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<BlockCount>, Error> {
        let mut counts = self.engine.block_counts(since_ms, until_ms)?;
        counts.sort();
        Ok(counts)
    }

    /// Incidents opened in `[since_ms, until_ms)` counted by kind.
    pub fn incidents_opened(
        &mut self,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<Vec<KindCount>, Error> {
        let mut counts = self.engine.opened_counts(since_ms, until_ms)?;
        counts.sort();
        Ok(counts)
    }

    /// Incidents whose last close falls in `[since_ms, until_ms)` and that are
    /// still closed, oldest close first, with when each was opened.
    pub fn incidents_closed(
        &mut self,
        since_ms: u64,
        until_ms: u64,
    ) -> Result<Vec<Closure>, Error> {
        self.engine.closures(since_ms, until_ms)
    }
}
