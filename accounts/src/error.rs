//! The crate's one error type.
//!
//! Messages are lower-case, name the file (and line) when a file is at fault, and
//! never contain a password or a password hash: no variant can hold either.
use std::path::PathBuf;

use crate::rules::PasswordProblem;

/// Who caused an [`Error`], so callers can pick an exit code or a log level.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The account file (or the settings) is wrong: the technician fixes it.
    Config,
    /// The request was wrong: an unknown account, a bad name, a weak password.
    Input,
    /// The file system, the random source or the hash failed.
    Internal,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The account file does not exist yet.
    #[error(
        "{}: no accounts file yet; add one with `hallpass users add NAME --group GROUP`",
        path.display()
    )]
    NotFound {
        /// The file that was expected.
        path: PathBuf,
    },
    /// The account file does not parse or breaks a rule, at this place.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// Other users may read the account file, and so the password hashes in it.
    #[error(
        "{}: mode {mode:04o} lets other users read the password hashes; expected 0600 (chmod 600 the file)",
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process changed the file after it was read; nothing was written.
    #[error(
        "{}: changed by another process since it was read; nothing was written, run the command again",
        path.display()
    )]
    Conflict {
        /// The file.
        path: PathBuf,
    },
    /// No account has this name.
    #[error("no account named {name:?}")]
    UnknownAccount {
        /// The name asked for.
        name: String,
    },
    /// An account with this name exists already.
    #[error("an account named {name:?} already exists")]
    AccountExists {
        /// The name.
        name: String,
    },
    /// The group is not one of the policy's groups.
    #[error("unknown group {group:?}; the policy's groups are: {}", known.join(", "))]
    UnknownGroup {
        /// The group asked for.
        group: String,
        /// Every group the policy defines.
        known: Vec<String>,
    },
    /// The account name breaks the naming rule.
    #[error("bad account name {name:?}: {reason}")]
    BadName {
        /// The name as given (names are not secret).
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The password breaks a [`PasswordRules`](crate::PasswordRules) rule.
    #[error("{0}")]
    Password(#[from] PasswordProblem),
    /// Hashing, the random source or the clock failed.
    #[error("{what}: {detail}")]
    Internal {
        /// What was being done.
        what: &'static str,
        /// The underlying error (never a secret).
        detail: String,
    },
}

impl Error {
    /// Who caused the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::Invalid { .. } | Error::Permissions { .. } => {
                ErrorKind::Config
            }
            Error::Conflict { .. }
            | Error::UnknownAccount { .. }
            | Error::AccountExists { .. }
            | Error::UnknownGroup { .. }
            | Error::BadName { .. }
            | Error::Password(_) => ErrorKind::Input,
            Error::Io { .. } | Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
