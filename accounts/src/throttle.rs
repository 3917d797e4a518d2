//! Failed-login counting with exponential back-off, per account name and per
//! client address.
//!
//! In: failures and successes with the time. Out: how long the next try must wait,
//! and whether a failure is worth reporting (an `auth-failure` event).
//!
//! Why both keys: per account stops guessing one password from many machines;
//! per address stops one machine trying one password on every account. Names
//! that are not accounts are counted like real ones, so back-off never tells an
//! attacker which names exist. IPv6 clients are counted per /64, since one host
//! can pick any address in its prefix.
//!
//! Both tables are bounded: a spray of made-up names cannot grow memory without
//! limit. When a table is full, entries with no back-off in force go first; if
//! every entry is backing off, the new key is not tracked (the other key still
//! is).
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::settings::ThrottleSettings;

/// The most names and the most addresses tracked at once.
const MAX_TRACKED: usize = 100_000;

#[derive(Copy, Clone, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The failure tables. Not thread-safe on its own: the verifier holds it in a
/// mutex.
#[derive(Debug)]
pub(crate) struct Throttle {
    settings: ThrottleSettings,
    accounts: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
    capacity: usize,
}

impl Throttle {
    pub(crate) fn new(settings: ThrottleSettings) -> Throttle {
        Throttle::with_capacity(settings, MAX_TRACKED)
    }

    fn with_capacity(settings: ThrottleSettings, capacity: usize) -> Throttle {
        Throttle {
            settings,
            accounts: HashMap::new(),
            addresses: HashMap::new(),
            capacity,
        }
    }

    /// How long `user` from `ip` must still wait, if at all.
    pub(crate) fn wait(&self, user: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let by_account = self.accounts.get(user).and_then(|f| self.wait_for(f, now));
        let by_address = self
            .addresses
            .get(&address_key(ip))
            .and_then(|f| self.wait_for(f, now));
        by_account.max(by_address)
    }

    /// Counts a failure against the account and the address.
    pub(crate) fn failure(&mut self, user: &str, ip: IpAddr, now: Instant) {
        let settings = self.settings;
        let capacity = self.capacity;
        bump(
            &mut self.accounts,
            user.to_owned(),
            now,
            &settings,
            capacity,
        );
        bump(
            &mut self.addresses,
            address_key(ip),
            now,
            &settings,
            capacity,
        );
    }

    /// A success clears the account's and the address's failures: the person
    /// got it right, and the account's own count still protects every other
    /// account from this address.
    pub(crate) fn success(&mut self, user: &str, ip: IpAddr) {
        self.accounts.remove(user);
        self.addresses.remove(&address_key(ip));
    }

    fn wait_for(&self, f: &Failures, now: Instant) -> Option<Duration> {
        let delay = delay(f.count, &self.settings)?;
        let until = f.last + delay;
        (now < until).then(|| until - now)
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }
}

/// The back-off after `count` failures: none below the threshold, then
/// `initial`, doubling, capped at `max`.
fn delay(count: u32, s: &ThrottleSettings) -> Option<Duration> {
    let over = count.checked_sub(s.after)?;
    let factor = 1u32.checked_shl(over).unwrap_or(u32::MAX);
    Some(s.initial.saturating_mul(factor).min(s.max))
}

/// Whether an entry's failures are old enough to forget.
fn forgotten(f: &Failures, now: Instant, s: &ThrottleSettings) -> bool {
    let keep = delay(f.count, s).unwrap_or_default().max(s.forget);
    now.saturating_duration_since(f.last) >= keep
}

/// Adds a failure to `key`'s count (restarting a forgotten count). Returns the
/// new count, or `None` if the table is full of entries that are backing off.
fn bump<K: Hash + Eq>(
    table: &mut HashMap<K, Failures>,
    key: K,
    now: Instant,
    s: &ThrottleSettings,
    capacity: usize,
) -> Option<u32> {
    if !table.contains_key(&key) && table.len() >= capacity {
        table.retain(|_, f| !forgotten(f, now, s));
        if table.len() >= capacity {
            table.retain(|_, f| delay(f.count, s).is_some());
        }
        if table.len() >= capacity {
            return None;
        }
    }
    let f = table.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    if forgotten(f, now, s) {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    Some(f.count)
}

/// IPv4 addresses (also IPv4-mapped IPv6) as they are; IPv6 by /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            after: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            forget: Duration::from_secs(900),
        }
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 20));
    const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 21));

    #[test]
    fn back_off_starts_at_the_threshold_and_doubles_to_the_cap() {
        let t0 = Instant::now();
        let mut th = Throttle::new(settings());
        let mut waits = Vec::new();
        for _ in 1..=20u32 {
            th.failure("year3", IP, t0);
            waits.push(th.wait("year3", IP, t0).map(|d| d.as_secs()));
        }
        assert_eq!(&waits[..4], &[None, None, None, None]);
        assert_eq!(
            &waits[4..14],
            &[1, 2, 4, 8, 16, 32, 64, 128, 256, 300].map(Some)
        );
        assert_eq!(waits[19], Some(300), "capped");
        // The wait runs down with time.
        assert_eq!(
            th.wait("year3", IP, t0 + Duration::from_secs(100)),
            Some(Duration::from_secs(200))
        );
        assert_eq!(th.wait("year3", IP, t0 + Duration::from_secs(300)), None);
    }

    #[test]
    fn account_and_address_are_counted_separately() {
        let t0 = Instant::now();
        let mut th = Throttle::new(settings());
        // One machine, many names: the address backs off.
        for name in ["a", "b", "c", "d", "e"] {
            th.failure(name, IP, t0);
        }
        assert!(th.wait("f", IP, t0).is_some());
        assert!(th.wait("f", OTHER_IP, t0).is_none());
        // One name, many machines: the account backs off.
        let mut th = Throttle::new(settings());
        for last in 1..=5u8 {
            th.failure("j.smith", IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), t0);
        }
        assert!(th.wait("j.smith", OTHER_IP, t0).is_some());
        assert!(th.wait("year3", OTHER_IP, t0).is_none());
    }

    #[test]
    fn success_resets_and_old_failures_are_forgotten() {
        let t0 = Instant::now();
        let mut th = Throttle::new(settings());
        for _ in 0..6 {
            th.failure("year3", IP, t0);
        }
        assert!(th.wait("year3", IP, t0).is_some());
        th.success("year3", IP);
        assert!(th.wait("year3", IP, t0).is_none());
        th.failure("year3", IP, t0);
        assert!(th.wait("year3", IP, t0).is_none(), "counting starts again");

        let mut th = Throttle::new(settings());
        for _ in 0..4 {
            th.failure("year3", IP, t0);
        }
        let later = t0 + Duration::from_secs(901);
        th.failure("year3", IP, later);
        assert!(
            th.wait("year3", IP, later).is_none(),
            "the first four were forgotten"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let t0 = Instant::now();
        let mut th = Throttle::new(settings());
        for i in 1..=5u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            th.failure(&format!("user{i}"), ip, t0);
        }
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        let other_prefix: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(th.wait("x", same_prefix, t0).is_some());
        assert!(th.wait("x", other_prefix, t0).is_none());
        let mapped: IpAddr = "::ffff:10.1.4.20".parse().expect("ip");
        assert_eq!(address_key(mapped), IP);
    }

    #[test]
    fn tables_are_bounded() {
        let t0 = Instant::now();
        let mut th = Throttle::with_capacity(settings(), 10);
        for i in 0..100u32 {
            th.failure(&format!("made-up-{i}"), IpAddr::V4(Ipv4Addr::from(i)), t0);
        }
        let (names, addresses) = th.tracked();
        assert!(names <= 10 && addresses <= 10, "{names} {addresses}");
    }
}
