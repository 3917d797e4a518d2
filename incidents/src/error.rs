//! The one error type of this crate.
//!
//! Each variant says who caused it, as the design asks: the caller's request
//! (`NotFound`, `InvalidTransition`, `Forbidden`, `Conflict`), a settings file the
//! technician wrote (`Settings`), the database (`Sqlite`, `Postgres`, `Schema`),
//! the local disk (`Spool`), or our own bug (`Internal`). Messages are lower-case
//! and name what was expected and what was found.
use std::path::PathBuf;

use crate::model::{Role, State};

/// Everything that can go wrong in the incident store, intake and workflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite store failed.
    #[error("sqlite store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store failed (refused, dropped, or a statement failed).
    #[error("postgresql store: {0}")]
    Postgres(#[from] postgres::Error),
    /// The database holds a schema this build cannot use.
    #[error("store schema: {0}")]
    Schema(String),
    /// A stored value could not be read back (a row written by something else).
    #[error("store row: {0}")]
    BadRow(String),
    /// No incident has this number.
    #[error("no incident number {0}")]
    NotFound(u64),
    /// The workflow does not allow this step from the current state.
    #[error(
        "incident {number} is {current}: cannot {requested}; allowed from {current}: {allowed}"
    )]
    InvalidTransition {
        /// The incident.
        number: u64,
        /// Its state now.
        current: State,
        /// What was asked (e.g. `close`).
        requested: &'static str,
        /// The steps allowed from `current`, comma-separated (or `none`).
        allowed: String,
    },
    /// The caller's role may not do this.
    #[error("role {role} may not {action}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// What was refused.
        action: &'static str,
        /// Who may, when that helps.
        hint: Option<String>,
    },
    /// Someone else changed the incident between our read and our write.
    #[error("incident {0} was changed by someone else meanwhile; read it again and retry")]
    Conflict(u64),
    /// A settings value is invalid.
    #[error("incident settings: {0}")]
    Settings(String),
    /// The spool file could not be written or read.
    #[error("spool {path}: {source}")]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed recently and is not retried yet.
    #[error("the incident store is down; retrying shortly")]
    StoreDown,
    /// The intake's writer is gone (shut down or crashed).
    #[error("the incident writer has stopped")]
    WriterStopped,
    /// An invariant of this crate did not hold (our bug).
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the store itself failed (down, refused, timed out), as opposed to a
    /// refused request: the intake spools on these and retries later.
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Error::Sqlite(_) | Error::Postgres(_) | Error::Schema(_)
        )
    }
}
