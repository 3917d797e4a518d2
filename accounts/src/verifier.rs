//! [`Verifier`]: checks a user name and password for the proxy.
//!
//! In: the user name and password from `Proxy-Authorization: Basic`, the client's
//! address and the time. Out: a [`VerifiedAccount`], or an [`AuthFailure`].
//!
//! Two paths:
//! - [`Verifier::check_cached`] is synchronous and cheap (a keyed hash and two
//!   table lookups, well under 2 µs): it answers only for logins that argon2
//!   verified within the cache TTL and whose account has not changed since.
//! - [`Verifier::verify_slow`] runs argon2id (tens of milliseconds, about 19 MiB):
//!   the proxy calls it inside `spawn_blocking`. At most `max_concurrent_hashes`
//!   run at once; others wait, so a flood of bad logins cannot take all memory.
//!
//! Refused, all with [`AuthFailure::Rejected`]: an unknown user (checked against a
//! dummy hash with the same cost, so the time taken does not reveal whether the
//! account exists), a wrong password, a disabled account (checked in full too).
//! Refused with [`AuthFailure::Throttled`], without running argon2: a user or
//! address backing off after repeated failures.
//!
//! Nothing here keeps a password: the cache key is a BLAKE2b MAC of user and
//! password under a random key made when the verifier is created, and no error or
//! `Debug` output holds either.
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::hash::{HashParams, hash_password, verify_password};
use crate::rules::MAX_NAME_LEN;
use crate::settings::Settings;
use crate::store::{Accounts, FileStamp};
use crate::throttle::Throttle;
use crate::verified_cache::{Key, VerifiedCache};
use crate::{Account, Error};

/// Where the verifier gets the time for the cache TTL. Passed in, so tests can
/// move time forward.
pub trait Clock: Send + Sync {
    /// A monotonic now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told: for tests of TTLs and back-off.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the real now.
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// The account name (lower-case, as stored).
    pub name: Arc<str>,
    /// The account's group: the caller maps it to a band with the policy.
    pub group: Arc<str>,
    /// When argon2 last verified this password. A cache hit keeps the time of
    /// the verification it remembers.
    pub verified_at: Instant,
}

impl VerifiedAccount {
    /// Whether the credential is older than `lifetime`
    /// ([`Settings::credential_lifetime`]): the proxy then asks again.
    pub fn is_expired(&self, now: Instant, lifetime: Duration) -> bool {
        now.saturating_duration_since(self.verified_at) >= lifetime
    }
}

/// Why a login failed. Deliberately coarse: the client gets the same reply for
/// every variant, and `Rejected` is the same for an unknown user, a wrong password
/// and a disabled account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The name and password do not open an enabled account.
    #[error("authentication failed")]
    ///
    /// Every rejection is worth an `auth-failure` event: the incident rules
    /// (`access`: 10 from one address within 5 minutes by default) decide what
    /// counts as repeated, and the back-off already bounds how often a name or
    /// an address can fail.
    Rejected,
    /// Too many recent failures for this name or address; the password was not
    /// checked.
    #[error("authentication failed; retry after {}s", retry_after.as_secs().max(1))]
    Throttled {
        /// How long until a try will be checked again.
        retry_after: Duration,
    },
}

/// What [`Verifier::reload_if_changed`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The file's stamp is the one already loaded.
    Unchanged,
    /// The file was read and swapped in.
    Reloaded {
        /// How many accounts there are now.
        accounts: usize,
        /// Cached logins dropped because their account changed or went.
        dropped: usize,
    },
}

/// Accounts and the logins verified against them, swapped together.
struct State {
    accounts: Arc<Accounts>,
    cache: VerifiedCache,
}

/// Checks proxy logins. `Send + Sync`: one per process, shared by every
/// connection.
pub struct Verifier {
    state: RwLock<State>,
    throttle: Mutex<Throttle>,
    hashing: HashSlots,
    /// The cache's MAC, already keyed with a random per-process key (so cache
    /// keys mean nothing outside this process). Cloned per lookup: keying costs
    /// a BLAKE2b block, cloning a copy.
    mac: Blake2bMac<U32>,
    /// Verified in place of a missing account's hash, with the same cost.
    dummy_hash: String,
    credential_lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("accounts", &self.accounts().len())
            .field("cached", &self.cached_logins())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over `accounts`. Makes the cache key and the dummy hash (one
    /// argon2 run with `settings.hash`), so it takes as long as one login.
    pub fn new(
        accounts: Accounts,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Verifier, Error> {
        Verifier::with_hash_params(accounts, settings, &settings.hash, clock)
    }

    /// As [`Verifier::new`] with the dummy hash made with `params`.
    fn with_hash_params(
        accounts: Accounts,
        settings: &Settings,
        params: &HashParams,
        clock: Arc<dyn Clock>,
    ) -> Result<Verifier, Error> {
        let mut mac_key = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(mac_key.as_mut())
            .map_err(|e| Error::Internal {
                what: "the operating system's random source",
                detail: e.to_string(),
            })?;
        let mut dummy_password = Zeroizing::new([0u8; 16]);
        OsRng
            .try_fill_bytes(dummy_password.as_mut())
            .map_err(|e| Error::Internal {
                what: "the operating system's random source",
                detail: e.to_string(),
            })?;
        let dummy_hash = hash_password(dummy_password.as_ref(), params)?;
        let mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(mac_key.as_ref())
            .expect("a 32-byte key is within BLAKE2b's 64-byte key limit");
        Ok(Verifier {
            state: RwLock::new(State {
                accounts: Arc::new(accounts),
                cache: VerifiedCache::new(settings.cache.ttl, settings.cache.entries),
            }),
            throttle: Mutex::new(Throttle::new(settings.throttle)),
            hashing: HashSlots::new(settings.max_concurrent_hashes),
            mac,
            dummy_hash,
            credential_lifetime: settings.credential_lifetime,
            clock,
        })
    }

    /// The accounts in use.
    pub fn accounts(&self) -> Arc<Accounts> {
        self.read().accounts.clone()
    }

    /// [`Settings::credential_lifetime`], for [`VerifiedAccount::is_expired`].
    pub fn credential_lifetime(&self) -> Duration {
        self.credential_lifetime
    }

    /// How many logins are remembered (for a metric).
    pub fn cached_logins(&self) -> usize {
        self.read().cache.len()
    }

    /// The cheap path: a login argon2 verified within the TTL, whose account
    /// still exists, is enabled and has not changed. Never runs argon2; `None`
    /// means "ask [`Verifier::verify_slow`]", not "wrong".
    pub fn check_cached(&self, user: &str, password: &[u8]) -> Option<VerifiedAccount> {
        let mut folded = [0u8; MAX_NAME_LEN];
        let user = fold_name(user, &mut folded)?;
        let key = self.cache_key(user, password);
        let now = self.clock.now();
        let state = self.read();
        let entry = state.cache.get(&key, now)?;
        let account = state.accounts.get(&entry.account)?;
        // The cache is also purged on reload; this check makes a stale entry
        // harmless even if one slipped in between (see verify_slow).
        if account.disabled() || account.revision() != entry.revision {
            return None;
        }
        Some(VerifiedAccount {
            name: account.name_arc().clone(),
            group: account.group_arc().clone(),
            verified_at: entry.verified_at,
        })
    }

    /// The full check with argon2id. Blocking and slow by design: call it from
    /// `spawn_blocking`. `now` is the time of the request (for back-off).
    pub fn verify_slow(
        &self,
        user: &str,
        password: &[u8],
        client_ip: IpAddr,
        now: Instant,
    ) -> Result<VerifiedAccount, AuthFailure> {
        let mut folded = [0u8; MAX_NAME_LEN];
        // A name that cannot be an account is throttled and checked like any
        // other, under a fixed key so it takes no extra memory.
        let user = fold_name(user, &mut folded).unwrap_or("\u{0}invalid");
        if let Some(retry_after) = self.throttled(user, client_ip, now) {
            return Err(AuthFailure::Throttled { retry_after });
        }
        let account: Option<Account> = self.read().accounts.get(user).cloned();
        let phc = account.as_ref().map_or(&*self.dummy_hash, |a| &**a.hash());
        let matches = {
            let _slot = self.hashing.acquire();
            verify_password(password, phc)
        };
        match account {
            // Disabled accounts were checked in full above, so they take as long
            // as enabled ones and fail the same way.
            Some(account) if matches && !account.disabled() => {
                self.lock_throttle().success(user, client_ip);
                self.remember(user, password, &account, now);
                Ok(VerifiedAccount {
                    name: account.name_arc().clone(),
                    group: account.group_arc().clone(),
                    verified_at: now,
                })
            }
            _ => {
                self.lock_throttle().failure(user, client_ip, now);
                Err(AuthFailure::Rejected)
            }
        }
    }

    /// How long `user` from `client_ip` must wait before a try is checked, if at
    /// all.
    pub fn throttled(&self, user: &str, client_ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut folded = [0u8; MAX_NAME_LEN];
        let user = fold_name(user, &mut folded).unwrap_or("\u{0}invalid");
        self.lock_throttle().wait(user, client_ip, now)
    }

    /// Swaps in new accounts, dropping every cached login whose account was
    /// removed or changed (password, group, disabled). Returns how many went.
    pub fn replace_accounts(&self, accounts: Accounts) -> usize {
        let mut state = self.write();
        let dropped = state.cache.retain(|entry| {
            accounts
                .get(&entry.account)
                .is_some_and(|a| !a.disabled() && a.revision() == entry.revision)
        });
        state.accounts = Arc::new(accounts);
        dropped
    }

    /// Reloads `path` if its [`FileStamp`] differs from the loaded file's. On any
    /// error the accounts in use stay as they are (the caller logs the error and
    /// keeps serving).
    pub fn reload_if_changed(&self, path: &Path) -> Result<Reload, Error> {
        let on_disk = FileStamp::of(path)?;
        if on_disk.is_some() && on_disk == self.read().accounts.stamp() {
            return Ok(Reload::Unchanged);
        }
        let accounts = Accounts::load(path)?;
        let count = accounts.len();
        let dropped = self.replace_accounts(accounts);
        Ok(Reload::Reloaded {
            accounts: count,
            dropped,
        })
    }

    fn remember(&self, user: &str, password: &[u8], account: &Account, now: Instant) {
        let key = self.cache_key(user, password);
        let mut state = self.write();
        // Only if the account is still the one argon2 checked: a reload during
        // the (long) hash must not let the old password back in.
        let current = state.accounts.get(user).map(Account::revision);
        if current == Some(account.revision()) {
            let inserted = self.clock.now();
            state.cache.insert(
                key,
                account.name_arc().clone(),
                account.revision(),
                now,
                inserted,
            );
        }
    }

    /// BLAKE2b-256 MAC of the name's length, the name and the password. The
    /// length prefix keeps ("ab", "c...") and ("a", "bc...") apart.
    fn cache_key(&self, user: &str, password: &[u8]) -> Key {
        let mut mac = self.mac.clone();
        // Names are at most MAX_NAME_LEN (64) bytes, so the length fits a byte.
        mac.update(&[user.len() as u8]);
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-changed (each
        // write is one assignment or one cache operation), so poisoning is ignored.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// ASCII-lower-cases `user` into `buf`: people type `Year3`, accounts are
/// lower-case. `None` if it is too long to be an account name.
fn fold_name<'a>(user: &str, buf: &'a mut [u8; MAX_NAME_LEN]) -> Option<&'a str> {
    let out = buf.get_mut(..user.len())?;
    out.copy_from_slice(user.as_bytes());
    out.make_ascii_lowercase();
    // ASCII lower-casing keeps UTF-8 valid, so this always succeeds.
    std::str::from_utf8(out).ok()
}

/// A counting semaphore bounding concurrent argon2 runs (each holds its memory
/// cost for the whole run).
struct HashSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct HashSlot<'a>(&'a HashSlots);

impl HashSlots {
    fn new(slots: usize) -> HashSlots {
        HashSlots {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> HashSlot<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        HashSlot(self)
    }
}

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
pub(crate) fn test_verifier(
    accounts: Accounts,
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> Verifier {
    Verifier::with_hash_params(accounts, settings, &crate::hash::TEST_PARAMS, clock)
        .expect("verifier")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::TEST_PARAMS;
    use crate::password::Password;
    use crate::rules::PasswordRules;
    use std::net::Ipv4Addr;
    use time::OffsetDateTime;

    const GROUPS: &[&str] = &["year3", "staff"];
    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 20));

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_757_000_000 + secs).expect("valid time")
    }

    fn accounts() -> Accounts {
        let mut a = Accounts::new();
        let rules = PasswordRules::default();
        let pw = |s: &str| Password::new(s.into());
        a.add(
            "year3",
            "year3",
            &pw("tiger"),
            GROUPS,
            &rules,
            &TEST_PARAMS,
            t(0),
        )
        .expect("add");
        a.add(
            "j.smith",
            "staff",
            &pw("correct horse"),
            GROUPS,
            &rules,
            &TEST_PARAMS,
            t(0),
        )
        .expect("add");
        a
    }

    fn setup() -> (Verifier, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let v = test_verifier(accounts(), &Settings::default(), clock.clone());
        (v, clock)
    }

    #[test]
    fn is_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Verifier>();
    }

    #[test]
    fn right_password_is_verified_then_cached() {
        let (v, clock) = setup();
        let now = clock.now();
        assert!(
            v.check_cached("year3", b"tiger").is_none(),
            "miss before any check"
        );
        let who = v
            .verify_slow("year3", b"tiger", IP, now)
            .expect("right password");
        assert_eq!((&*who.name, &*who.group), ("year3", "year3"));
        assert_eq!(who.verified_at, now);
        let hit = v.check_cached("year3", b"tiger").expect("hit");
        assert_eq!(hit, who);
        // Case-folded name, same entry.
        assert!(v.check_cached("Year3", b"tiger").is_some());
        // A different password is a miss, not a hit for the other entry.
        assert!(v.check_cached("year3", b"tigers").is_none());
        assert!(v.check_cached("j.smith", b"tiger").is_none());
        assert_eq!(v.cached_logins(), 1);
    }

    #[test]
    fn unknown_user_wrong_password_and_disabled_fail_alike() {
        let (v, clock) = setup();
        let mut a = accounts();
        a.set_disabled("j.smith", true, t(1)).expect("disable");
        v.replace_accounts(a);
        let now = clock.now();
        let unknown = v.verify_slow("nobody", b"tiger", IP, now);
        let wrong = v.verify_slow("year3", b"lion", IP, now);
        let disabled = v.verify_slow("j.smith", b"correct horse", IP, now);
        let expected = Err(AuthFailure::Rejected);
        assert_eq!(unknown, expected);
        assert_eq!(wrong, expected);
        assert_eq!(disabled, expected);
        assert_eq!(
            unknown.clone().map_err(|e| e.to_string()),
            wrong.clone().map_err(|e| e.to_string())
        );
        assert!(
            v.check_cached("j.smith", b"correct horse").is_none(),
            "nothing cached"
        );
        // Over-long and non-ASCII names are just unknown.
        let long = "x".repeat(500);
        assert_eq!(v.verify_slow(&long, b"p", IP, now), expected);
        assert!(v.check_cached(&long, b"p").is_none());
    }

    #[test]
    fn cache_expires_after_the_ttl() {
        let (v, clock) = setup();
        v.verify_slow("year3", b"tiger", IP, clock.now())
            .expect("ok");
        clock.advance(Duration::from_secs(299));
        assert!(v.check_cached("year3", b"tiger").is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            v.check_cached("year3", b"tiger").is_none(),
            "expired at 5 minutes"
        );
    }

    #[test]
    fn cache_is_cleared_when_the_account_changes() {
        let clock = Arc::new(ManualClock::new());
        // One set of hashes throughout: re-adding an account makes a new salt,
        // which is a change.
        let base = accounts();
        let v = test_verifier(base.clone(), &Settings::default(), clock.clone());
        let rules = PasswordRules::default();
        let login = |v: &Verifier| {
            v.replace_accounts(base.clone());
            v.verify_slow("year3", b"tiger", IP, clock.now())
                .expect("ok");
            v.verify_slow("j.smith", b"correct horse", IP, clock.now())
                .expect("ok");
            assert!(v.check_cached("year3", b"tiger").is_some());
            assert!(v.check_cached("j.smith", b"correct horse").is_some());
        };

        // Reloading an unchanged file keeps every entry.
        login(&v);
        assert_eq!(v.replace_accounts(base.clone()), 0);
        assert_eq!(v.cached_logins(), 2);

        // A password change drops that account's entry only, even within the
        // same second as the previous change.
        let mut a = base.clone();
        a.set_password(
            "year3",
            &Password::new("lion".into()),
            &rules,
            &TEST_PARAMS,
            t(0),
        )
        .expect("passwd");
        assert_eq!(v.replace_accounts(a), 1);
        assert!(v.check_cached("year3", b"tiger").is_none());
        assert!(v.check_cached("j.smith", b"correct horse").is_some());

        // Disabled.
        login(&v);
        let mut b = base.clone();
        b.set_disabled("year3", true, t(9)).expect("disable");
        assert_eq!(v.replace_accounts(b), 1);
        assert!(v.check_cached("year3", b"tiger").is_none());

        // Removed.
        login(&v);
        let mut c = base.clone();
        c.remove("year3").expect("remove");
        assert_eq!(v.replace_accounts(c), 1);
        assert!(v.check_cached("year3", b"tiger").is_none());
        assert_eq!(
            v.verify_slow("year3", b"tiger", IP, clock.now()),
            Err(AuthFailure::Rejected)
        );
    }

    #[test]
    fn throttling_backs_off_and_resets_on_success() {
        let (v, clock) = setup();
        let now = clock.now();
        for _ in 0..5 {
            assert_eq!(
                v.verify_slow("year3", b"wrong", IP, now),
                Err(AuthFailure::Rejected)
            );
        }
        assert_eq!(v.throttled("year3", IP, now), Some(Duration::from_secs(1)));
        // Throttled: even the right password is not checked.
        assert_eq!(
            v.verify_slow("year3", b"tiger", IP, now),
            Err(AuthFailure::Throttled {
                retry_after: Duration::from_secs(1)
            })
        );
        let later = now + Duration::from_secs(1);
        assert!(v.verify_slow("year3", b"wrong", IP, later).is_err());
        assert_eq!(
            v.throttled("year3", IP, later),
            Some(Duration::from_secs(2)),
            "doubled"
        );
        let later = later + Duration::from_secs(2);
        v.verify_slow("year3", b"tiger", IP, later)
            .expect("right password after the wait");
        assert_eq!(v.throttled("year3", IP, later), None, "success resets");
        // Unknown names back off the same way, so back-off reveals nothing.
        for _ in 0..5 {
            let _ = v.verify_slow(
                "nobody",
                b"x",
                IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
                later,
            );
        }
        assert!(
            v.throttled("nobody", IpAddr::V4(Ipv4Addr::new(10, 9, 9, 8)), later)
                .is_some()
        );
    }

    #[test]
    fn reload_keeps_the_last_good_accounts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = crate::file_path(dir.path());
        let mut a = accounts();
        a.save(&path).expect("save");
        let clock = Arc::new(ManualClock::new());
        let v = test_verifier(
            Accounts::load(&path).expect("load"),
            &Settings::default(),
            clock.clone(),
        );
        assert_eq!(v.reload_if_changed(&path).expect("stat"), Reload::Unchanged);
        v.verify_slow("year3", b"tiger", IP, clock.now())
            .expect("ok");

        // `hallpass users disable year3` in another process.
        let mut b = Accounts::load(&path).expect("load");
        b.set_disabled("year3", true, t(3)).expect("disable");
        b.save(&path).expect("save");
        assert_eq!(
            v.reload_if_changed(&path).expect("reload"),
            Reload::Reloaded {
                accounts: 2,
                dropped: 1
            }
        );
        assert!(v.check_cached("year3", b"tiger").is_none());

        // A broken file: the error names it, the old accounts stay.
        std::fs::write(&path, "version = 1\n[[account]]\nname = \n").expect("corrupt");
        let e = v.reload_if_changed(&path).expect_err("corrupt file");
        assert!(e.to_string().contains("accounts.toml:3:"), "{e}");
        assert_eq!(v.accounts().len(), 2);
        v.verify_slow("j.smith", b"correct horse", IP, clock.now())
            .expect("still served");
    }

    #[test]
    fn credentials_expire_after_their_lifetime() {
        let t0 = Instant::now();
        let who = VerifiedAccount {
            name: "a".into(),
            group: "g".into(),
            verified_at: t0,
        };
        let life = Duration::from_secs(8 * 3600);
        assert!(!who.is_expired(t0 + life - Duration::from_secs(1), life));
        assert!(who.is_expired(t0 + life, life));
    }

    #[test]
    fn secrets_never_appear_in_debug_or_display() {
        let (v, clock) = setup();
        v.verify_slow("year3", b"tiger", IP, clock.now())
            .expect("ok");
        let failure = v
            .verify_slow("year3", b"s3cret-guess", IP, clock.now())
            .expect_err("wrong");
        let outputs = [
            format!("{v:?}"),
            format!("{failure:?} {failure}"),
            format!("{:?}", v.check_cached("year3", b"tiger")),
            format!("{:?}", v.accounts()),
            format!("{:?}", Password::new("s3cret-guess".into())),
        ];
        for text in outputs {
            assert!(
                !text.contains("tiger") && !text.contains("s3cret"),
                "{text}"
            );
            assert!(!text.contains("$argon2"), "{text}");
        }
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        // Same parameters as new hashes, so unknown users take as long.
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let v = Verifier::new(Accounts::new(), &Settings::default(), clock).expect("verifier");
        assert!(v.dummy_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
