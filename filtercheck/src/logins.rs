//! The logins a filter check probes with: one proxy account per group.
//!
//! In: `filter-check-logins.toml` in the state directory, next to the accounts
//! and the CA key:
//!
//! ```toml
//! [year3]
//! account = "check-year3"     # an account of group year3 (hallpass users add)
//! password = "..."
//! ```
//!
//! Out: group → (account, password). Refused: unknown keys, and (on Unix) a
//! file that anyone but its owner can read or write, since it holds
//! passwords. A missing file is no logins at all (groups are then identified
//! by the checking machine's subnet only). Passwords never appear in messages.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "filter-check-logins.toml";

/// One group's login.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account name.
    pub account: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("account", &self.account)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// Where the logins file lives in a state directory.
pub fn file_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the logins file; a missing file is an empty map.
pub fn load(path: &Path) -> Result<BTreeMap<String, Login>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::Logins(format!("{}: {e}", path.display()))),
    };
    check_private(path)?;
    toml::from_str(&text).map_err(|e| {
        // toml's message quotes the offending line, which may hold a password:
        // say where, never what.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        Error::Logins(match line {
            Some(l) => format!(
                "{}:{l}: not a valid logins file (expected [group] tables with account and password)",
                path.display()
            ),
            None => format!("{}: not a valid logins file", path.display()),
        })
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Logins(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Logins(format!(
            "{}: holds passwords but its mode is {:o}: run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_by_others_is_refused_and_errors_never_show_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert!(load(&path).expect("missing is empty").is_empty());
        std::fs::write(
            &path,
            "[year3]\naccount = \"c3\"\npassword = \"s3cret-pw\"\n",
        )
        .expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = load(&path).expect_err("world-readable").to_string();
            assert!(e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let logins = load(&path).expect("load");
        assert_eq!(logins["year3"].account, "c3");
        assert!(!format!("{:?}", logins).contains("s3cret-pw"));
        std::fs::write(
            &path,
            "[year3]\naccount = \"c3\"\npasword = \"s3cret-pw\"\n",
        )
        .expect("write");
        let e = load(&path).expect_err("typo").to_string();
        assert!(e.contains(":3:") && !e.contains("s3cret-pw"), "{e}");
    }
}
