//! The account file, `<state_dir>/accounts.toml`, and the changes `hallpass users`
//! makes to it.
//!
//! In: the file's path (or text), and for changes a name, a group, a password and
//! the time. Out: [`Accounts`], sorted by name, each with an argon2id hash; on save,
//! the file written atomically with the previous version kept as
//! `accounts.toml.bak`.
//!
//! Refused when loading, each with `file:line:col`: TOML errors, unknown keys, a
//! `version` other than 1, bad or duplicate names, an account named after a group
//! it is not in, hashes that are not argon2id, times that are not RFC 3339 UTC; a
//! file other users can read. When saving: a file that changed on disk since it
//! was read (two `hallpass users` at once), so neither change is lost silently.
//!
//! ```toml
//! # hallpass accounts: managed by `hallpass users`.
//! version = 1
//!
//! [[account]]
//! name = "year3"
//! group = "year3"
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$...$..."
//! created = 2025-09-01T08:00:00Z
//! changed = 2025-09-01T08:00:00Z
//! disabled = false
//! ```
//!
//! # Why the write is safe
//!
//! A save writes a temporary file in the same folder (mode 0600, created
//! exclusively), fsyncs it, links the current file to `accounts.toml.bak`, renames
//! the temporary file over `accounts.toml` and fsyncs the folder. A crash at any
//! point leaves either the old or the new file complete under the real name; at
//! worst a stray `.accounts.toml.*.tmp` that nothing reads.
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml::Spanned;
use toml::value::{Datetime, Offset};

use crate::Error;
use crate::hash::{HashParams, check_phc, hash_password};
use crate::password::Password;
use crate::rules::{PasswordRules, check_name};

/// The account file's name inside the state directory.
pub const FILE_NAME: &str = "accounts.toml";
/// The previous version, kept by every save.
pub const BACKUP_FILE_NAME: &str = "accounts.toml.bak";
/// The only file format version this build reads and writes.
const FORMAT_VERSION: u32 = 1;

/// `<state_dir>/accounts.toml`.
pub fn file_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// One account. The hash is never shown: `Debug` prints `[redacted]` for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    name: Arc<str>,
    group: Arc<str>,
    hash: Arc<str>,
    created: OffsetDateTime,
    changed: OffsetDateTime,
    disabled: bool,
    /// See [`Account::revision`]; computed whenever a field changes, because a
    /// cache hit compares it on every request.
    revision: u64,
}

impl Account {
    /// The login name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy group (which decides the band).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// When the account was added (UTC, whole seconds).
    pub fn created(&self) -> OffsetDateTime {
        self.created
    }

    /// When the password, the group or the disabled flag last changed.
    pub fn changed(&self) -> OffsetDateTime {
        self.changed
    }

    /// Whether logins are refused.
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Whether this is a shared year-group login (its name is its group's).
    pub fn is_shared(&self) -> bool {
        PasswordRules::is_shared(&self.name, &self.group)
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn group_arc(&self) -> &Arc<str> {
        &self.group
    }

    pub(crate) fn hash(&self) -> &Arc<str> {
        &self.hash
    }

    /// A fingerprint of everything a login depends on. A cached login stays good
    /// only while its account's revision is unchanged; it covers the hash itself,
    /// so two changes within one second (the resolution of `changed`) still count.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Builds an account and its revision.
    fn new(
        name: Arc<str>,
        group: Arc<str>,
        hash: Arc<str>,
        (created, changed): (OffsetDateTime, OffsetDateTime),
        disabled: bool,
    ) -> Account {
        let mut account = Account {
            name,
            group,
            hash,
            created,
            changed,
            disabled,
            revision: 0,
        };
        account.update_revision();
        account
    }

    fn update_revision(&mut self) {
        let mut h = std::hash::DefaultHasher::new();
        (&*self.name, &*self.group, &*self.hash, self.disabled).hash(&mut h);
        self.changed.unix_timestamp().hash(&mut h);
        self.revision = h.finish();
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("hash", &format_args!("[redacted]"))
            .field("created", &self.created)
            .field("changed", &self.changed)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// What identifies one version of a file on disk, cheaply: size, modification
/// time, device and inode. Every save renames a new file into place, so the inode
/// changes even when the size and the time (coarse on some file systems) do not.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of the file at `path` now, or `None` if there is no file.
    pub fn of(path: &Path) -> Result<Option<FileStamp>, Error> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileStamp::from_metadata(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn from_metadata(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            device,
            inode,
        }
    }
}

/// Every account, sorted by name, and the stamp of the file they were read from.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    list: Vec<Account>,
    by_name: HashMap<Arc<str>, usize>,
    stamp: Option<FileStamp>,
}

impl Accounts {
    /// No accounts (a state directory that has no file yet).
    pub fn new() -> Accounts {
        Accounts::default()
    }

    /// Reads and checks the file at `path`. A missing file is
    /// [`Error::NotFound`]; a file other users may read is
    /// [`Error::Permissions`].
    pub fn load(path: &Path) -> Result<Accounts, Error> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        // The stamp comes from the open file, so it describes exactly the bytes
        // read even if a save renames a new file into place meanwhile.
        let meta = file.metadata().map_err(Error::io(path))?;
        check_mode(path, &meta)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(Error::io(path))?;
        let mut accounts = Accounts::parse(path, &text)?;
        accounts.stamp = Some(FileStamp::from_metadata(&meta));
        Ok(accounts)
    }

    /// Reads `path`, or gives no accounts if there is no file yet (what
    /// `hallpass users add` starts from).
    pub fn load_or_new(path: &Path) -> Result<Accounts, Error> {
        match Accounts::load(path) {
            Err(Error::NotFound { .. }) => Ok(Accounts::new()),
            other => other,
        }
    }

    /// Parses and checks account-file text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Accounts, Error> {
        let invalid = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            Error::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().to_owned()))?;
        if *raw.version.get_ref() != FORMAT_VERSION {
            return Err(invalid(
                raw.version.span(),
                format!(
                    "expected version = {FORMAT_VERSION}, found {}",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut accounts = Accounts::new();
        let mut seen = std::collections::HashSet::new();
        for raw in raw.account {
            let name_at = raw.name.span();
            let account = raw.into_account().map_err(|(span, m)| invalid(span, m))?;
            if !seen.insert(account.name.clone()) {
                return Err(invalid(
                    name_at,
                    format!("account {:?} is listed twice", account.name()),
                ));
            }
            accounts.list.push(account);
        }
        accounts.list.sort_by(|a, b| a.name.cmp(&b.name));
        accounts.reindex();
        Ok(accounts)
    }

    /// The account called `name` (exact, lower-case).
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// Every account, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.list.iter()
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The stamp of the file these accounts were loaded from or last saved to.
    pub fn stamp(&self) -> Option<FileStamp> {
        self.stamp
    }

    /// Adds an account. Refused: a bad or taken name, a group not in
    /// `known_groups` (the error lists them), an account named after a different
    /// group, a password that breaks `rules`.
    #[allow(clippy::too_many_arguments)] // each is one fact the caller must decide
    pub fn add(
        &mut self,
        name: &str,
        group: &str,
        password: &Password,
        known_groups: &[&str],
        rules: &PasswordRules,
        params: &HashParams,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        check_name(name)?;
        if self.by_name.contains_key(name) {
            return Err(Error::AccountExists { name: name.into() });
        }
        if !known_groups.contains(&group) {
            return Err(Error::UnknownGroup {
                group: group.into(),
                known: known_groups.iter().map(|g| (*g).to_owned()).collect(),
            });
        }
        if known_groups.contains(&name) && name != group {
            return Err(Error::BadName {
                name: name.into(),
                reason: format!(
                    "{name:?} is a group's name, so it can only be that group's shared login (--group {name})"
                ),
            });
        }
        rules.check(name, group, password)?;
        let now = whole_seconds_utc(now);
        let hash = hash_password(password.expose().as_bytes(), params)?;
        self.insert(Account::new(
            name.into(),
            group.into(),
            hash.into(),
            (now, now),
            false,
        ));
        Ok(())
    }

    /// Sets a new password (checked against `rules`).
    pub fn set_password(
        &mut self,
        name: &str,
        password: &Password,
        rules: &PasswordRules,
        params: &HashParams,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        let account = self.get_mut(name)?;
        rules.check(&account.name, &account.group, password)?;
        account.hash = hash_password(password.expose().as_bytes(), params)?.into();
        account.changed = whole_seconds_utc(now);
        account.update_revision();
        Ok(())
    }

    /// Disables or enables an account. Returns whether anything changed.
    pub fn set_disabled(
        &mut self,
        name: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<bool, Error> {
        let account = self.get_mut(name)?;
        if account.disabled == disabled {
            return Ok(false);
        }
        account.disabled = disabled;
        account.changed = whole_seconds_utc(now);
        account.update_revision();
        Ok(true)
    }

    /// Removes an account and returns it.
    pub fn remove(&mut self, name: &str) -> Result<Account, Error> {
        let Some(&i) = self.by_name.get(name) else {
            return Err(Error::UnknownAccount { name: name.into() });
        };
        let removed = self.list.remove(i);
        self.reindex();
        Ok(removed)
    }

    /// The file's text: a header comment, `version`, then one `[[account]]` each.
    pub fn to_toml(&self) -> Result<String, Error> {
        let file = OutFile {
            version: FORMAT_VERSION,
            account: self
                .list
                .iter()
                .map(OutAccount::from_account)
                .collect::<Result<_, _>>()?,
        };
        let body = toml::to_string(&file).map_err(|e| Error::Internal {
            what: "writing the accounts file",
            detail: e.to_string(),
        })?;
        Ok(format!(
            "# hallpass accounts: managed by `hallpass users` (add, passwd, disable, enable,\n\
             # remove, list). Keep this file mode 0600: the hashes are secrets too.\n{body}"
        ))
    }

    /// Writes the accounts to `path` atomically (see the module docs), keeping the
    /// previous file as `accounts.toml.bak` beside it, and creating the folder
    /// (mode 0700) if needed. Refused with [`Error::Conflict`] when the file on
    /// disk is not the one these accounts were loaded from.
    pub fn save(&mut self, path: &Path) -> Result<FileStamp, Error> {
        let dir = parent_dir(path);
        create_private_dir(&dir)?;
        if FileStamp::of(path)? != self.stamp {
            return Err(Error::Conflict {
                path: path.to_path_buf(),
            });
        }
        let temp = write_temp(&dir, path, self.to_toml()?.as_bytes())?;
        commit(&temp, path).inspect_err(|_| {
            // Best effort: a leftover temporary file is harmless, only untidy.
            let _ = std::fs::remove_file(&temp);
        })?;
        let stamp = FileStamp::of(path)?.ok_or_else(|| Error::NotFound {
            path: path.to_path_buf(),
        })?;
        self.stamp = Some(stamp);
        Ok(stamp)
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Account, Error> {
        match self.by_name.get(name) {
            Some(&i) => Ok(&mut self.list[i]),
            None => Err(Error::UnknownAccount { name: name.into() }),
        }
    }

    fn insert(&mut self, account: Account) {
        let at = self
            .list
            .partition_point(|a| a.name.as_ref() < account.name.as_ref());
        self.list.insert(at, account);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_name = self
            .list
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
    }
}

/// Refuses a file that other users may read (unix only).
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(Error::io(dir))
}

/// Step 1 of a save: the new content, complete and on disk, under a temporary
/// name nothing reads.
fn write_temp(dir: &Path, path: &Path, content: &[u8]) -> Result<PathBuf, Error> {
    let base = path
        .file_name()
        .map_or_else(|| FILE_NAME.into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".{base}.{}.{nanos}.tmp", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created 0600: the hashes are never readable by others, not even briefly.
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(Error::io(&temp))?;
    file.write_all(content).map_err(Error::io(&temp))?;
    file.sync_all().map_err(Error::io(&temp))?;
    Ok(temp)
}

/// Step 2 of a save: keep the old file as the backup, move the new one into
/// place, and make both renames durable.
fn commit(temp: &Path, path: &Path) -> Result<(), Error> {
    let dir = parent_dir(path);
    let backup = dir.join(BACKUP_FILE_NAME);
    if path.exists() {
        match std::fs::remove_file(&backup) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    path: backup,
                    source: e,
                });
            }
            _ => {}
        }
        // A hard link keeps the old inode (and its 0600 mode) without copying;
        // copy where links are not supported.
        if std::fs::hard_link(path, &backup).is_err() {
            std::fs::copy(path, &backup).map_err(Error::io(&backup))?;
        }
    }
    std::fs::rename(temp, path).map_err(Error::io(path))?;
    // The renames live in the folder: fsync it so they survive a power cut.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(&dir))
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// A time as RFC 3339 (`2025-09-01T08:00:00Z`), the form the file uses: for
/// listings.
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which no clock produces.
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `now` in UTC, to the second: what the file stores.
fn whole_seconds_utc(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<u32>,
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: Spanned<String>,
    group: Spanned<String>,
    hash: Spanned<String>,
    created: Spanned<Datetime>,
    changed: Spanned<Datetime>,
    #[serde(default)]
    disabled: bool,
}

type Located = (std::ops::Range<usize>, String);

impl RawAccount {
    fn into_account(self) -> Result<Account, Located> {
        let name = self.name.get_ref();
        check_name(name).map_err(|e| (self.name.span(), e.to_string()))?;
        let group = self.group.get_ref();
        if group.is_empty() {
            return Err((self.group.span(), "the group is empty".into()));
        }
        check_phc(self.hash.get_ref())
            .map_err(|m| (self.hash.span(), format!("account {name:?}: {m}")))?;
        let created = utc_time(&self.created)?;
        let changed = utc_time(&self.changed)?;
        Ok(Account::new(
            name.as_str().into(),
            group.as_str().into(),
            self.hash.get_ref().as_str().into(),
            (created, changed),
            self.disabled,
        ))
    }
}

/// A TOML date-time that is a full RFC 3339 time in UTC.
fn utc_time(value: &Spanned<Datetime>) -> Result<OffsetDateTime, Located> {
    let dt = value.get_ref();
    let expected = || {
        (
            value.span(),
            format!("expected an RFC 3339 time in UTC like 2025-09-01T08:00:00Z, found {dt}"),
        )
    };
    let utc = matches!(
        dt.offset,
        Some(Offset::Z) | Some(Offset::Custom { minutes: 0 })
    );
    if dt.date.is_none() || dt.time.is_none() || !utc {
        return Err(expected());
    }
    OffsetDateTime::parse(&dt.to_string(), &Rfc3339).map_err(|_| expected())
}

#[derive(Serialize)]
struct OutFile {
    version: u32,
    account: Vec<OutAccount>,
}

#[derive(Serialize)]
struct OutAccount {
    name: String,
    group: String,
    hash: String,
    created: Datetime,
    changed: Datetime,
    disabled: bool,
}

impl OutAccount {
    fn from_account(a: &Account) -> Result<OutAccount, Error> {
        Ok(OutAccount {
            name: a.name.to_string(),
            group: a.group.to_string(),
            hash: a.hash.to_string(),
            created: toml_time(a.created)?,
            changed: toml_time(a.changed)?,
            disabled: a.disabled,
        })
    }
}

fn toml_time(t: OffsetDateTime) -> Result<Datetime, Error> {
    let internal = |detail: String| Error::Internal {
        what: "formatting a time",
        detail,
    };
    let text = t.format(&Rfc3339).map_err(|e| internal(e.to_string()))?;
    text.parse()
        .map_err(|e: toml::value::DatetimeParseError| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::TEST_PARAMS;

    const GROUPS: &[&str] = &["year3", "year4", "staff"];

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_757_000_000 + secs).expect("valid time")
    }

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned())
    }

    fn sample() -> Accounts {
        let mut a = Accounts::new();
        let rules = PasswordRules::default();
        a.add(
            "year3",
            "year3",
            &pw("tiger"),
            GROUPS,
            &rules,
            &TEST_PARAMS,
            t(0),
        )
        .expect("add year3");
        a.add(
            "j.smith",
            "staff",
            &pw("correct horse"),
            GROUPS,
            &rules,
            &TEST_PARAMS,
            t(1),
        )
        .expect("add j.smith");
        a
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_path(&dir.path().join("state"));
        let mut a = sample();
        a.save(&path).expect("save");
        let b = Accounts::load(&path).expect("load");
        assert_eq!(a.list, b.list);
        assert_eq!(b.stamp(), a.stamp());
        let names: Vec<_> = b.iter().map(Account::name).collect();
        assert_eq!(names, ["j.smith", "year3"]);
        assert!(b.get("year3").expect("year3").is_shared());
        assert!(!b.get("j.smith").expect("j.smith").is_shared());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("created = 2025-09-04T"), "{text}");
        assert!(
            text.contains("[[account]]") && text.contains("version = 1"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let path = file_path(&state);
        let mut a = sample();
        a.save(&path).expect("save");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state), 0o700);
        a.set_disabled("year3", true, t(5)).expect("disable");
        a.save(&path).expect("second save");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state.join(BACKUP_FILE_NAME)), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_path(dir.path());
        sample().save(&path).expect("save");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Accounts::load(&path).expect_err("world-readable");
        assert!(matches!(e, Error::Permissions { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("0644"), "{e}");
    }

    #[test]
    fn every_save_keeps_the_previous_file_as_backup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_path(dir.path());
        let mut a = sample();
        a.save(&path).expect("first save");
        assert!(
            !dir.path().join(BACKUP_FILE_NAME).exists(),
            "nothing to back up yet"
        );
        let first = std::fs::read_to_string(&path).expect("read");
        a.remove("j.smith").expect("remove");
        a.save(&path).expect("second save");
        let backup = std::fs::read_to_string(dir.path().join(BACKUP_FILE_NAME)).expect("backup");
        assert_eq!(backup, first);
        assert_eq!(Accounts::load(&path).expect("load").len(), 1);
    }

    /// A crash after the temporary file is written but before the rename: the
    /// real file is untouched, the leftover is ignored, and the next save works.
    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_path(dir.path());
        let mut a = sample();
        a.save(&path).expect("save");
        let before = std::fs::read_to_string(&path).expect("read");

        let mut changed = a.clone();
        changed.remove("year3").expect("remove");
        let temp = write_temp(
            dir.path(),
            &path,
            changed.to_toml().expect("text").as_bytes(),
        )
        .expect("temp");
        // ... crash: no commit. A half-written temporary file would do no harm either.
        std::fs::write(dir.path().join(".accounts.toml.1.2.tmp"), "[[acc").expect("junk");

        assert!(temp.exists());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
        assert_eq!(Accounts::load(&path).expect("old file loads").len(), 2);
        a.set_disabled("year3", true, t(9)).expect("disable");
        a.save(&path).expect("a later save still works");
        assert!(
            Accounts::load(&path)
                .expect("load")
                .get("year3")
                .expect("year3")
                .disabled()
        );
    }

    #[test]
    fn a_concurrent_change_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = file_path(dir.path());
        sample().save(&path).expect("save");
        let mut first = Accounts::load(&path).expect("load");
        let mut second = Accounts::load(&path).expect("load");
        first.remove("year3").expect("remove");
        first.save(&path).expect("first writer wins");
        second.set_disabled("j.smith", true, t(3)).expect("disable");
        let e = second.save(&path).expect_err("second writer is told");
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
        assert!(Accounts::load(&path).expect("load").get("year3").is_none());
    }

    fn parse_error(text: &str) -> (usize, String) {
        match Accounts::parse(Path::new("/state/accounts.toml"), text) {
            Err(e @ Error::Invalid { line, .. }) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(&format!("/state/accounts.toml:{line}:")),
                    "{message}"
                );
                (line, message)
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn corrupted_files_give_file_and_line() {
        let good = sample().to_toml().expect("text");
        let lines: Vec<&str> = good.lines().collect();
        let hash_line = lines
            .iter()
            .position(|l| l.starts_with("hash"))
            .expect("hash")
            + 1;

        // Truncated mid-file (a disk filled up, an editor crashed).
        let cut = &good[..good.find("changed").expect("changed") + 9];
        let (line, message) = parse_error(cut);
        assert!(line > 3, "{message}");

        // A damaged hash.
        let damaged = good.replacen("$argon2id$", "$argon2i$", 1);
        let (line, message) = parse_error(&damaged);
        assert_eq!(line, hash_line, "{message}");
        assert!(message.contains("expected an argon2id hash"), "{message}");
        assert!(
            !message.contains("$argon2"),
            "the hash is not repeated: {message}"
        );

        // An unknown key.
        let (line, message) =
            parse_error(&good.replacen("disabled = false", "disabled = false\nadmin = true", 1));
        assert!(message.contains("unknown field `admin`"), "{message}");
        assert!(line > 3);

        // A bad name, a local time, a wrong version, a duplicate.
        let (_, message) =
            parse_error(&good.replacen("name = \"j.smith\"", "name = \"J Smith\"", 1));
        assert!(message.contains("bad account name"), "{message}");
        let (_, message) = parse_error(&good.replacen("Z\n", "\n", 1));
        assert!(message.contains("RFC 3339 time in UTC"), "{message}");
        let (line, message) = parse_error(&good.replacen("version = 1", "version = 2", 1));
        assert_eq!(line, 3, "{message}");
        let (line, message) =
            parse_error(&good.replacen("name = \"j.smith\"", "name = \"year3\"", 1));
        assert!(message.contains("listed twice"), "{message}");
        let second_year3 = good.rfind("name = \"year3\"").expect("year3");
        assert_eq!(line, line_column(&good, second_year3).0);
        // Not TOML at all.
        let (line, _) = parse_error("version = 1\n\n[[account]\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn changes_follow_the_rules() {
        let mut a = sample();
        let rules = PasswordRules::default();
        let e = a
            .add(
                "k.jones",
                "staff",
                &pw("short"),
                GROUPS,
                &rules,
                &TEST_PARAMS,
                t(2),
            )
            .expect_err("short staff password");
        assert!(matches!(e, Error::Password(_)), "{e}");
        let e = a
            .add(
                "k.jones",
                "year9",
                &pw("long enough"),
                GROUPS,
                &rules,
                &TEST_PARAMS,
                t(2),
            )
            .expect_err("unknown group");
        assert_eq!(
            e.to_string(),
            "unknown group \"year9\"; the policy's groups are: year3, year4, staff"
        );
        let e = a
            .add(
                "year4",
                "staff",
                &pw("long enough"),
                GROUPS,
                &rules,
                &TEST_PARAMS,
                t(2),
            )
            .expect_err("named after another group");
        assert!(e.to_string().contains("--group year4"), "{e}");
        let e = a
            .add(
                "year3",
                "year3",
                &pw("long enough"),
                GROUPS,
                &rules,
                &TEST_PARAMS,
                t(2),
            )
            .expect_err("taken");
        assert!(matches!(e, Error::AccountExists { .. }), "{e}");
        assert!(matches!(
            a.remove("nobody"),
            Err(Error::UnknownAccount { .. })
        ));

        let before = a.get("j.smith").expect("j.smith").clone();
        a.set_password(
            "j.smith",
            &pw("a new password"),
            &rules,
            &TEST_PARAMS,
            t(60),
        )
        .expect("passwd");
        let after = a.get("j.smith").expect("j.smith");
        assert_ne!(before.revision(), after.revision());
        assert_eq!(after.changed(), t(60));
        assert_eq!(after.created(), before.created());
        assert!(crate::hash::verify_password(
            b"a new password",
            after.hash()
        ));
        assert!(!a.set_disabled("j.smith", false, t(61)).expect("no-op"));
        assert!(a.set_disabled("j.smith", true, t(61)).expect("disable"));
    }

    #[test]
    fn debug_hides_the_hash() {
        let a = sample();
        let text = format!("{a:?}");
        assert!(!text.contains("$argon2"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
