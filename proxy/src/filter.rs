//! Decide: one list lookup plus the policy's precedence, failing closed.
//!
//! In: one [`Snapshot`], a group and a [`CanonicalUrl`]. Out: a [`Decision`] (the
//! [`Verdict`] and the list mask it was made from), or [`DecisionFailed`] when the
//! lookup or the policy panicked: the caller answers with the block page, so a
//! bug never lets a request through.
use std::panic::{AssertUnwindSafe, catch_unwind};

use policy::host::CanonicalHost;
use policy::{CanonicalUrl, GroupId, ListLookup, ListMask, Verdict};

use crate::snapshot::Snapshot;

/// A verdict and the lists that contain the URL.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The lists that contain the URL (for [`intercept`]).
    pub mask: ListMask,
}

/// Deciding failed: an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deciding {url} failed: {message}")]
pub struct DecisionFailed {
    /// The URL (redacted).
    pub url: String,
    /// The panic message.
    pub message: String,
}

/// Decides one URL for one group.
pub fn decide(
    snap: &Snapshot,
    group: GroupId,
    url: &CanonicalUrl,
) -> Result<Decision, DecisionFailed> {
    catch_unwind(AssertUnwindSafe(|| {
        let mask = snap.lists.lookup(url);
        Decision {
            verdict: snap.policy.decide(group, url, mask),
            mask,
        }
    }))
    .map_err(|panic| DecisionFailed {
        url: url.redacted(),
        message: panic_message(&*panic),
    })
}

/// Whether an allowed HTTPS host is intercepted. A panic counts as "intercept":
/// looking inside is the safer side.
pub fn intercept(snap: &Snapshot, host: &CanonicalHost, mask: ListMask) -> bool {
    catch_unwind(AssertUnwindSafe(|| snap.policy.intercept(host, mask))).unwrap_or(true)
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
