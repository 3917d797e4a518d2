//! hallpass incidents: every block recorded, incidents raised, reviewed and signed off.
//!
//! What goes in and what comes out:
//! - [`intake::Intake`] takes [`policy::event::BlockEvent`]s (and
//!   [`model::AuthFailure`]s) from the proxy and acknowledges each one once it is
//!   committed to the store or, when the store is slow, down or the queue is full,
//!   once it is fsync'd to the on-disk [`spool`]. Nothing is dropped; the writer
//!   replays the spool, oldest first, when the store answers again.
//! - [`recorder::Recorder`] is a store connection that reopens itself after a
//!   failure, plus the rules: what the intake's writer (or the proxy's own
//!   event sink) records through.
//! - [`store::Store`] is the one schema on SQLite (the default, a file in the state
//!   directory) or PostgreSQL (a `postgres://` URL), migrated on open. It refuses a
//!   database whose schema is newer than this build.
//! - [`rules`] turns events into incidents: pure functions over an event and
//!   counts, configured by [`rules::Rules`].
//! - [`review`] moves an incident through new → under-review → action-taken →
//!   closed (and reopened), with principal and governor sign-off; every change is
//!   in the audit trail, invalid transitions and roles are refused with the current
//!   state and what is allowed.
//! - [`reporting`]: filter-check runs ([`Store::record_filter_check`]) and the
//!   per-period aggregates `hallpass report` and the console read.
//! - [`period_report`]: the termly review report (blocks by group × category
//!   with the previous period, incidents opened and closed, filter checks,
//!   policy changes) as JSON, CSV or printable HTML.
//! - [`alert`] pushes each urgent incident to the configured webhook at once,
//!   retried with back-off, its delivery state and last error kept on the
//!   incident; the alert never carries the URL.
//! - [`evidence`] builds the police export of an illegal incident (event rows, the
//!   SHA-256 of each row, times); [`retention`] prunes raw events after N days.
//!
//! The URL of an `illegal` incident is returned only to the safeguarding lead;
//! everyone else sees that the incident exists and its state, and every read of
//! such a URL is audited.
//!
//! Time is always an argument (milliseconds since the Unix epoch) or a
//! [`clock::Clock`] handed in; nothing here reads a global.
#![forbid(unsafe_code)]

pub mod alert;
pub mod clock;
pub mod csv;
pub mod duration;
pub mod error;
pub mod evidence;
pub mod intake;
pub mod model;
pub mod period_report;
pub mod recorder;
pub mod reporting;
pub mod retention;
pub mod review;
pub mod rules;
pub mod settings;
pub mod spool;
pub mod store;

pub use alert::{
    AlertMessage, AlertMetrics, AlertSettings, AlertState, AlertStatus, AlertWaker, Alerter,
    Channel, Mailer, SmtpSecurity, SmtpSettings,
};
pub use clock::{Clock, SystemClock};
pub use error::Error;
pub use intake::{Ack, Intake, IntakeOptions, IntakeWriter, MAX_BATCH, Metrics, Queued};
pub use model::{
    ActionTaken, Actor, AuditEntry, AuthFailure, EventFilter, Incident, IncidentFilter,
    IncidentKind, NewIncident, Role, SignOff, State, Subject, Urgency,
};
pub use recorder::{Recorder, RuleUpdates};
pub use reporting::{
    BlockCount, Closure, FilterCheck, FilterCheckResult, KindCount, NewFilterCheck,
};
pub use rules::{CheckAccounts, LockedCategories, RuleEngine, Rules};
pub use settings::{Settings, StoreLocation};
pub use store::Store;
