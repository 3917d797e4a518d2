//! hallpass accounts: who may log in to the proxy (and, later, the staff console),
//! and the checks that decide whether a user name and password are right.
//!
//! In: the account file `<state_dir>/accounts.toml` ([`Accounts::load`]), the
//! `[accounts]` settings of `hallpass.toml` ([`Settings`]) and, per request, a user
//! name and password. Out: a [`VerifiedAccount`] (name, group, when it was
//! verified) or an [`AuthFailure`] that is the same for an unknown user, a wrong
//! password and a disabled account.
//!
//! Refused: account names outside `[a-z0-9._-]{1,64}`, groups the policy does not
//! know (the caller says which groups exist), passwords that break the
//! [`PasswordRules`], account files that do not parse, carry unknown keys, are not
//! argon2id, or that other users may read.
//!
//! # The two kinds of account
//!
//! - An **individual** account (staff, secondary pupils) belongs to one person. Its
//!   password has at least [`PasswordRules::individual_min`] characters (8 by
//!   default; the setting can only raise it).
//! - A **shared year-group login** is an account whose name equals its group's
//!   name: account `year3` in group `year3`, used by a whole class on a primary
//!   school's machines. Its password has at least [`PasswordRules::shared_min`]
//!   characters (4 by default), because six-year-olds type it. An account may only
//!   be named after a group if it is in that group, so `explain --as year3` and
//!   the login `year3` always mean the same band.
//!
//! # How the proxy uses it
//!
//! ```no_run
//! use std::net::{IpAddr, Ipv4Addr};
//! use std::sync::Arc;
//! use std::time::Instant;
//! use accounts::{Accounts, Settings, SystemClock, Verifier};
//!
//! # fn main() -> Result<(), accounts::Error> {
//! let path = accounts::file_path(std::path::Path::new("/var/lib/hallpass"));
//! let verifier = Verifier::new(Accounts::load(&path)?, &Settings::default(), Arc::new(SystemClock))?;
//! let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 20));
//! // Per request: the cheap path first (no argon2) ...
//! let who = match verifier.check_cached("year3", b"tiger") {
//!     Some(who) => Ok(who),
//!     // ... then argon2id, which the proxy runs inside `spawn_blocking`.
//!     None => verifier.verify_slow("year3", b"tiger", ip, Instant::now()),
//! };
//! // Every few seconds: pick up `hallpass users` changes, keeping the last good
//! // accounts if the file is broken.
//! let _ = verifier.reload_if_changed(&path);
//! # let _ = who;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod hash;
mod password;
mod rules;
mod settings;
mod store;
mod throttle;
mod verified_cache;
mod verifier;

pub use error::{Error, ErrorKind};
pub use hash::HashParams;
pub use password::Password;
pub use rules::{MAX_NAME_LEN, MAX_PASSWORD_BYTES, PasswordProblem, PasswordRules, check_name};
pub use settings::{CacheSettings, Settings, ThrottleSettings};
pub use store::{Account, Accounts, BACKUP_FILE_NAME, FILE_NAME, FileStamp, file_path, rfc3339};
pub use verifier::{
    AuthFailure, Clock, ManualClock, Reload, SystemClock, VerifiedAccount, Verifier,
};

/// The wall-clock time type account records use (`created`, `changed`), re-exported
/// so callers need no direct dependency on `time`.
pub use time::OffsetDateTime;
