//! [`Settings`]: the `[accounts]` section of `hallpass.toml`.
//!
//! In: TOML (every key optional). Out: validated settings. Refused, with the
//! reason: unknown keys, a minimum password length below the schools' rule (8 for
//! individual accounts, 4 for shared logins: settings may only raise them), hash
//! costs below OWASP's recommendation, and throttle or cache values that
//! contradict each other.
//!
//! ```toml
//! [accounts]
//! individual_min = 8          # staff and secondary pupils; may only be raised
//! shared_min = 4              # shared year-group logins (account name = group name)
//! cache_ttl = "5m"            # how long a verified password is remembered
//! cache_entries = 10000       # at most this many remembered logins (0: no cache)
//! credential_lifetime = "8h"  # after this the proxy asks the browser again
//! throttle_after = 5          # failures before back-off starts
//! throttle_initial = "1s"     # first back-off, doubled per further failure ...
//! throttle_max = "5m"         # ... up to this
//! throttle_forget = "15m"     # failures older than this (and the back-off) are forgotten
//! hash_memory_kib = 19456     # argon2id m for new hashes (OWASP: 19 MiB)
//! hash_iterations = 2         # argon2id t
//! hash_parallelism = 1        # argon2id p
//! max_concurrent_hashes = 2   # argon2 runs at once (default: the number of cores)
//! ```
use std::time::Duration;

use serde::Deserialize;

use crate::hash::HashParams;
use crate::rules::{MAX_PASSWORD_BYTES, PasswordRules};

/// How verified logins are remembered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a successful check is remembered. Default 5 minutes. A password
    /// change, a disabled or removed account drops the entry at the next reload
    /// of the file regardless.
    pub ttl: Duration,
    /// The most remembered logins; the oldest go first. Default 10,000 (about
    /// 1 MB). 0 turns the cache off.
    pub entries: usize,
}

/// How failed logins slow further tries down.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures (per account, and per client address) before back-off starts.
    /// Default 5: enough for a pupil's typos.
    pub after: u32,
    /// The first back-off; each further failure doubles it. Default 1 s.
    pub initial: Duration,
    /// The longest back-off. Default 5 minutes.
    pub max: Duration,
    /// Failures are forgotten this long after the last one (or after the
    /// back-off ends, if later). Default 15 minutes.
    pub forget: Duration,
}

/// The `[accounts]` settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct Settings {
    /// Minimum password lengths.
    pub passwords: PasswordRules,
    /// argon2id cost for new hashes.
    pub hash: HashParams,
    /// The verified-login cache.
    pub cache: CacheSettings,
    /// After this long the proxy asks the browser for credentials again (compare
    /// with [`VerifiedAccount::verified_at`](crate::VerifiedAccount)). Default 8
    /// hours: one school day.
    pub credential_lifetime: Duration,
    /// Failed-login back-off.
    pub throttle: ThrottleSettings,
    /// How many argon2 runs may go on at once. Each holds `hash_memory_kib` of
    /// memory, so this bounds the memory a flood of bad logins can take. Default:
    /// the number of cores.
    pub max_concurrent_hashes: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            passwords: PasswordRules::default(),
            hash: HashParams::OWASP,
            cache: CacheSettings {
                ttl: Duration::from_secs(5 * 60),
                entries: 10_000,
            },
            credential_lifetime: Duration::from_secs(8 * 3600),
            throttle: ThrottleSettings {
                after: 5,
                initial: Duration::from_secs(1),
                max: Duration::from_secs(5 * 60),
                forget: Duration::from_secs(15 * 60),
            },
            max_concurrent_hashes: default_concurrency(),
        }
    }
}

fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Settings {
    /// Every rule the settings break, one message each (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p = &self.passwords;
        if p.individual_min < PasswordRules::INDIVIDUAL_FLOOR {
            problems.push(format!(
                "individual_min must be at least {} (staff passwords have at least 8 characters), found {}",
                PasswordRules::INDIVIDUAL_FLOOR,
                p.individual_min
            ));
        }
        if p.shared_min < PasswordRules::SHARED_FLOOR {
            problems.push(format!(
                "shared_min must be at least {}, found {}",
                PasswordRules::SHARED_FLOOR,
                p.shared_min
            ));
        }
        for (key, value) in [
            ("individual_min", p.individual_min),
            ("shared_min", p.shared_min),
        ] {
            if value > MAX_PASSWORD_BYTES {
                problems.push(format!(
                    "{key} must be at most {MAX_PASSWORD_BYTES}, found {value}"
                ));
            }
        }
        let h = &self.hash;
        if h.memory_kib < HashParams::OWASP.memory_kib
            || h.iterations < HashParams::OWASP.iterations
        {
            problems.push(format!(
                "hash_memory_kib and hash_iterations must be at least {} and {} (OWASP's recommendation), found {} and {}",
                HashParams::OWASP.memory_kib,
                HashParams::OWASP.iterations,
                h.memory_kib,
                h.iterations
            ));
        }
        if h.memory_kib > HashParams::MAX_MEMORY_KIB
            || h.iterations > HashParams::MAX_ITERATIONS
            || h.parallelism == 0
            || h.parallelism > HashParams::MAX_PARALLELISM
        {
            problems.push(format!(
                "hash parameters must be at most m={}, t={}, 1<=p<={}",
                HashParams::MAX_MEMORY_KIB,
                HashParams::MAX_ITERATIONS,
                HashParams::MAX_PARALLELISM
            ));
        }
        if self.cache.ttl > Duration::from_secs(3600) {
            problems.push(format!(
                "cache_ttl must be at most 1h (a changed password must stop working soon), found {}s",
                self.cache.ttl.as_secs()
            ));
        }
        let t = &self.throttle;
        if t.after == 0 {
            problems.push("throttle_after must be at least 1".into());
        }
        if t.initial > t.max {
            problems.push("throttle_initial must not be longer than throttle_max".into());
        }
        if t.forget < t.max {
            problems.push("throttle_forget must not be shorter than throttle_max".into());
        }
        if self.max_concurrent_hashes == 0 {
            problems.push("max_concurrent_hashes must be at least 1".into());
        }
        problems
    }
}

/// The TOML form: every key optional, unknown keys refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    individual_min: Option<usize>,
    shared_min: Option<usize>,
    cache_ttl: Option<String>,
    cache_entries: Option<usize>,
    credential_lifetime: Option<String>,
    throttle_after: Option<u32>,
    throttle_initial: Option<String>,
    throttle_max: Option<String>,
    throttle_forget: Option<String>,
    hash_memory_kib: Option<u32>,
    hash_iterations: Option<u32>,
    hash_parallelism: Option<u32>,
    max_concurrent_hashes: Option<usize>,
}

impl TryFrom<RawSettings> for Settings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Settings, String> {
        let d = Settings::default();
        let duration = |key: &str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => parse_duration(&text).map_err(|e| format!("{key}: {e}")),
        };
        let settings = Settings {
            passwords: PasswordRules {
                individual_min: raw.individual_min.unwrap_or(d.passwords.individual_min),
                shared_min: raw.shared_min.unwrap_or(d.passwords.shared_min),
            },
            hash: HashParams {
                memory_kib: raw.hash_memory_kib.unwrap_or(d.hash.memory_kib),
                iterations: raw.hash_iterations.unwrap_or(d.hash.iterations),
                parallelism: raw.hash_parallelism.unwrap_or(d.hash.parallelism),
            },
            cache: CacheSettings {
                ttl: duration("cache_ttl", raw.cache_ttl, d.cache.ttl)?,
                entries: raw.cache_entries.unwrap_or(d.cache.entries),
            },
            credential_lifetime: duration(
                "credential_lifetime",
                raw.credential_lifetime,
                d.credential_lifetime,
            )?,
            throttle: ThrottleSettings {
                after: raw.throttle_after.unwrap_or(d.throttle.after),
                initial: duration("throttle_initial", raw.throttle_initial, d.throttle.initial)?,
                max: duration("throttle_max", raw.throttle_max, d.throttle.max)?,
                forget: duration("throttle_forget", raw.throttle_forget, d.throttle.forget)?,
            },
            max_concurrent_hashes: raw.max_concurrent_hashes.unwrap_or(d.max_concurrent_hashes),
        };
        let problems = settings.problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// `"250ms"`, `"10s"`, `"5m"`, `"8h"`: the duration syntax of `hallpass.toml`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(unit_at);
    let expected =
        || format!("expected a duration like \"10s\", \"250ms\" or \"5m\", found {text:?}");
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(expected()),
    };
    if d.is_zero() {
        return Err(format!("a duration must be more than zero, found {text:?}"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        accounts: Settings,
    }

    fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str::<Wrapper>(text)
            .map(|w| w.accounts)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_section_gives_the_defaults() {
        assert_eq!(parse("[accounts]\n"), Ok(Settings::default()));
        let s = Settings::default();
        assert_eq!(s.passwords.individual_min, 8);
        assert_eq!(s.passwords.shared_min, 4);
        assert_eq!(s.hash, HashParams::OWASP);
        assert_eq!(s.cache.ttl, Duration::from_secs(300));
        assert!(s.problems().is_empty());
    }

    #[test]
    fn values_are_read() {
        let s = parse(
            "[accounts]\nindividual_min = 12\ncache_ttl = \"90s\"\nthrottle_after = 3\nmax_concurrent_hashes = 2\n",
        )
        .expect("valid");
        assert_eq!(s.passwords.individual_min, 12);
        assert_eq!(s.cache.ttl, Duration::from_secs(90));
        assert_eq!(s.throttle.after, 3);
        assert_eq!(s.max_concurrent_hashes, 2);
    }

    #[test]
    fn minimums_can_only_be_raised() {
        let e = parse("[accounts]\nindividual_min = 6\n").expect_err("below the floor");
        assert!(e.contains("individual_min must be at least 8"), "{e}");
        // Located at the `[accounts]` table; the message names the key.
        assert!(e.contains("line 1"), "{e}");
        let e = parse("[accounts]\nshared_min = 2\n").expect_err("below the floor");
        assert!(e.contains("shared_min must be at least 4"), "{e}");
        let e = parse("[accounts]\nhash_memory_kib = 4096\n").expect_err("weak hash");
        assert!(e.contains("OWASP"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let e = parse("[accounts]\nindividual_minimum = 9\n").expect_err("unknown key");
        assert!(e.contains("unknown field `individual_minimum`"), "{e}");
        let e = parse("[accounts]\ncache_ttl = \"5 minutes\"\n").expect_err("bad duration");
        assert!(e.contains("cache_ttl: expected a duration"), "{e}");
        let e = parse("[accounts]\nthrottle_max = \"20m\"\n").expect_err("forget < max");
        assert!(e.contains("throttle_forget"), "{e}");
    }
}
