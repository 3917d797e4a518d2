//! `[incidents]` in `hallpass.toml`: where the store is, how long raw events are
//! kept, the intake's limits and the incident rules.
//!
//! In: the table's TOML (every key optional) and, for paths, the state directory.
//! Out: a [`StoreLocation`] and [`crate::IntakeOptions`]. Refused: unknown keys, a
//! store that is neither `sqlite`, `sqlite:PATH` nor a `postgres://` URL, a zero
//! queue capacity or a zero retention.
//!
//! ```toml
//! [incidents]
//! store = "sqlite"                       # or "postgres://hallpass@db.school/hallpass"
//! retention_days = 365
//! [incidents.rules]
//! repeat_count = 5
//! repeat_window = "10m"
//! [incidents.alerts]
//! webhook = "http://alerts.school.lan:8099/hallpass"   # urgent incidents, POSTed as JSON
//! console_url = "http://hallpass.school.lan:8080"
//! [incidents.alerts.smtp]                # and/or mailed (see `alert::SmtpSettings`)
//! server = "mail.school.example"
//! from = "hallpass@school.example"
//! to = ["dsl@school.example"]
//! ```
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::intake::IntakeOptions;
use crate::rules::Rules;

/// The SQLite file's name in the state directory.
pub const SQLITE_FILE: &str = "incidents.sqlite3";
/// The spool's name in the state directory.
pub const SPOOL_FILE: &str = "incidents.spool.jsonl";

/// The `[incidents]` settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite` (the state directory's `incidents.sqlite3`), `sqlite:PATH`
    /// (relative to the state directory), or a `postgres://` URL.
    pub store: String,
    /// Raw events older than this many days are pruned (incidents are kept).
    pub retention_days: u32,
    /// Events the intake queue holds before spooling to disk.
    pub queue_capacity: usize,
    /// How long `submit` waits for the store before spooling and acknowledging.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub ack_timeout: Duration,
    /// How often a down store is retried.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub retry_every: Duration,
    /// The incident rules.
    pub rules: Rules,
    /// Where urgent incidents are pushed (`[incidents.alerts]`).
    pub alerts: crate::alert::AlertSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            store: "sqlite".into(),
            // A school year plus the annual review.
            retention_days: 365,
            queue_capacity: 8192,
            // Long enough for a healthy commit (a few ms), short enough that a
            // pupil never waits on a stalled database.
            ack_timeout: Duration::from_millis(250),
            retry_every: Duration::from_secs(2),
            rules: Rules::default(),
            alerts: crate::alert::AlertSettings::default(),
        }
    }
}

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StoreLocation {
    /// Shows the location with any password removed (it goes to logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreLocation::Postgres(url) => write!(f, "{}", redact_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Settings {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.queue_capacity == 0 {
            return Err(Error::Settings(
                "queue_capacity must be at least 1, found 0".into(),
            ));
        }
        if self.retention_days == 0 {
            return Err(Error::Settings(
                "retention_days must be at least 1, found 0 (events would be pruned as they arrive)".into(),
            ));
        }
        self.alerts.webhook_target()?;
        self.alerts.mailer()?;
        if self.alerts.max_attempts == 0 {
            return Err(Error::Settings(
                "alerts.max_attempts must be at least 1, found 0".into(),
            ));
        }
        Ok(())
    }

    /// Where the store is, with paths resolved against `state_dir`.
    pub fn location(&self, state_dir: &Path) -> Result<StoreLocation, Error> {
        let store = self.store.trim();
        if store == "sqlite" {
            Ok(StoreLocation::Sqlite(state_dir.join(SQLITE_FILE)))
        } else if let Some(path) = store.strip_prefix("sqlite:") {
            Ok(StoreLocation::Sqlite(state_dir.join(path)))
        } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(store.to_string()))
        } else {
            Err(Error::Settings(format!(
                "store: expected `sqlite`, `sqlite:PATH` or a postgres:// URL, found `{}`",
                redact_password(store)
            )))
        }
    }

    /// The intake's options, with the spool in `state_dir`.
    pub fn intake_options(&self, state_dir: &Path) -> IntakeOptions {
        IntakeOptions {
            capacity: self.queue_capacity,
            ack_timeout: self.ack_timeout,
            retry_every: self.retry_every,
            ..IntakeOptions::new(state_dir.join(SPOOL_FILE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_refusals() {
        let dir = Path::new("/var/lib/hallpass");
        let mut s = Settings::default();
        assert_eq!(
            s.location(dir).expect("sqlite"),
            StoreLocation::Sqlite(dir.join(SQLITE_FILE))
        );
        s.store = "postgres://u:secret@db/hallpass".into();
        let loc = s.location(dir).expect("postgres");
        assert_eq!(loc.to_string(), "postgres://u:***@db/hallpass");
        s.store = "mysql://db".into();
        assert!(s.location(dir).is_err());
        s.queue_capacity = 0;
        assert!(s.validate().is_err());
    }
}
