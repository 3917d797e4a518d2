//! The evidence export for the police: an illegal incident's event rows, the
//! SHA-256 of each row, and times.
//!
//! In: the incident (with its URL: only the safeguarding lead gets here) and its
//! stored events. Out: an [`Evidence`] record whose `row` strings are exactly
//! what was hashed, so anyone can re-check a row with `sha256sum`. Nothing here
//! fetches or previews the URL.
use policy::event::BlockEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::format_ms;
use crate::model::Incident;

/// One event row of the export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvidenceRow {
    /// The event reference shown on the block page.
    pub reference: String,
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The stored row as compact JSON: the bytes that were hashed.
    pub row: String,
    /// SHA-256 of `row`, lower-case hex.
    pub sha256: String,
}

/// An evidence export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The incident, URL included.
    pub incident: Incident,
    /// Who exported it.
    pub exported_by: String,
    /// When, ms since the epoch.
    pub exported_ms: u64,
    /// When, RFC 3339 UTC.
    pub exported_at: String,
    /// The event rows, oldest first.
    pub rows: Vec<EvidenceRow>,
}

impl Evidence {
    pub(crate) fn build(
        incident: Incident,
        events: &[BlockEvent],
        by: &str,
        now_ms: u64,
    ) -> Evidence {
        let rows = events
            .iter()
            .map(|ev| {
                // Field order is the struct's, so the same row always hashes the same.
                let row = serde_json::to_string(ev).unwrap_or_default();
                EvidenceRow {
                    reference: ev.reference.clone(),
                    time_ms: ev.time_ms,
                    time: format_ms(ev.time_ms),
                    sha256: sha256_hex(row.as_bytes()),
                    row,
                }
            })
            .collect();
        Evidence {
            incident,
            exported_by: by.to_string(),
            exported_ms: now_ms,
            exported_at: format_ms(now_ms),
            rows,
        }
    }
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
