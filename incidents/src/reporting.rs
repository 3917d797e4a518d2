//! Filter-check records and the aggregates the termly report reads.
//!
//! In: a finished filter check ([`NewFilterCheck`], built by the filter-check
//! runner from its probe results) for [`Store::record_filter_check`]. Out: stored
//! runs ([`FilterCheck`]) and, for a period, block counts by group × category,
//! incidents opened by kind and incidents closed with their time to close. The
//! numbers are computed by the database (`GROUP BY`), the same on SQLite and
//! PostgreSQL, so a year of events never has to be loaded to count it.
//!
//! [`Store::record_filter_check`]: crate::Store::record_filter_check
use serde::{Deserialize, Serialize};

/// One probe of a filter check, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCheckResult {
    /// The group the probe was sent as.
    pub group: String,
    /// That group's band.
    pub band: String,
    /// `block` (a blocked category), `baseline` (a locked-baseline test
    /// entry), `allow` (a site that must stay open) or `safe-search`.
    pub kind: String,
    /// The category probed (for `block`/`baseline`), the site's label (for
    /// `allow`) or the engine (for `safe-search`).
    pub category: String,
    /// The URL requested through the proxy.
    pub url: String,
    /// What had to happen: `blocked`, `allowed` or `enforced`.
    pub expected: String,
    /// What happened: `blocked`, `allowed`, `allowed-unreachable`, `enforced`,
    /// `not-enforced` or `error`.
    pub outcome: String,
    /// The HTTP status the proxy answered with, when it answered.
    pub status: Option<u16>,
    /// Whether the probe passed.
    pub pass: bool,
    /// Why, in words (the header seen, the error).
    pub detail: String,
}

/// A finished filter check to store: who ran it, when, against what, and
/// every probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFilterCheck {
    /// When the run started (ms since the Unix epoch).
    pub started_ms: u64,
    /// When it finished.
    pub finished_ms: u64,
    /// Who ran it (an account or the operating-system user; `timer` for the
    /// weekly run).
    pub ran_by: String,
    /// The proxy address probed.
    pub proxy: String,
    /// The probe suite file.
    pub suite: String,
    /// The policy file the suite was judged against.
    pub policy: String,
    /// Probes sent.
    pub probes: u64,
    /// Probes that failed (any reason).
    pub failures: u64,
    /// Must-block probes (categories and the locked baseline) that got through.
    pub under_blocked: u64,
    /// Must-allow probes that were blocked.
    pub over_blocked: u64,
    /// Probes that got no verdict (login refused, no answer, not a hallpass reply).
    pub errors: u64,
    /// Whether every probe passed.
    pub passed: bool,
    /// Every probe, in the order sent.
    pub results: Vec<FilterCheckResult>,
}

/// A stored filter check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCheck {
    /// The run's number in the store.
    pub id: u64,
    /// What was recorded. `results` is empty in listings
    /// ([`Store::filter_checks`](crate::Store::filter_checks)) and filled by
    /// [`Store::filter_check`](crate::Store::filter_check).
    #[serde(flatten)]
    pub check: NewFilterCheck,
}

/// Blocks of one group in one category over a period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockCount {
    /// The group (`""` when the block happened before anyone was identified).
    pub group: String,
    /// The category (`""` for blocks that had none: an explicit deny, a refused
    /// destination).
    pub category: String,
    /// How many block events.
    pub count: u64,
}

/// Incidents of one kind opened over a period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KindCount {
    /// The incident kind.
    pub kind: String,
    /// How many.
    pub count: u64,
}

/// An incident closed within a period (the last close, when it was reopened
/// and closed again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// The incident number.
    pub number: u64,
    /// Its kind.
    pub kind: String,
    /// When it was opened.
    pub opened_ms: u64,
    /// When it was closed.
    pub closed_ms: u64,
}

impl Closure {
    /// Milliseconds from opening to closing.
    pub fn time_to_close_ms(&self) -> u64 {
        self.closed_ms.saturating_sub(self.opened_ms)
    }
}
