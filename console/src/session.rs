//! Server-side sessions: random 256-bit ids, a CSRF token per session, idle
//! and absolute timeouts.
//!
//! In: the cookie value a browser sends. Out: the session it names (signed-in
//! staff, or an anonymous one that only carries the sign-in form's CSRF token).
//! Refused: any cookie value that is not exactly 64 lowercase hex digits, ids
//! that were never issued, and sessions past their idle timeout or lifetime.
//! Nothing about a session is in the cookie but its id, so a forged or edited
//! cookie names no session.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use incidents::Role;
use subtle::ConstantTimeEq;

/// The most sessions kept at once. Anonymous ones (a sign-in form was shown)
/// are dropped oldest first past this, so unauthenticated requests cannot
/// grow memory without bound; signed-in staff are never evicted for them.
const MAX_SESSIONS: usize = 10_000;

/// A session id: 32 random bytes from the OS.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never log a live session id.
        f.write_str("SessionId(…)")
    }
}

impl SessionId {
    /// The cookie value: 64 lowercase hex digits.
    pub fn to_cookie(self) -> String {
        hex(&self.0)
    }

    /// Reads a cookie value; `None` for anything but 64 lowercase hex digits.
    pub fn from_cookie(text: &str) -> Option<SessionId> {
        unhex(text).map(SessionId)
    }
}

/// Who is signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    /// The account name.
    pub name: String,
    /// The role `[console.roles]` gives it.
    pub role: Role,
}

/// A session as a request sees it.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Who signed in; `None` before sign-in.
    pub staff: Option<Staff>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf.len() == token.len() && bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

struct Entry {
    staff: Option<Staff>,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Every live session.
pub struct Sessions {
    map: Mutex<HashMap<SessionId, Entry>>,
    idle: Duration,
    lifetime: Duration,
}

impl Sessions {
    /// Sessions that end after `idle` unused or `lifetime` after sign-in.
    pub fn new(idle: Duration, lifetime: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn alive(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) < self.idle
            && now.saturating_duration_since(e.created) < self.lifetime
    }

    /// A new anonymous session (for the sign-in form).
    pub fn start(&self, now: Instant) -> anyhow::Result<Session> {
        self.insert(None, now)
    }

    fn insert(&self, staff: Option<Staff>, now: Instant) -> anyhow::Result<Session> {
        let id = SessionId(random()?);
        let csrf = hex(&random()?);
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, e| self.alive(e, now));
        }
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .filter(|(_, e)| e.staff.is_none())
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    map.remove(&id);
                }
                None => anyhow::bail!("too many signed-in console sessions"),
            }
        }
        map.insert(
            id,
            Entry {
                staff: staff.clone(),
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Ok(Session { id, staff, csrf })
    }

    /// The live session `id` names, marking it used. An expired one is removed.
    pub fn get(&self, id: SessionId, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        let entry = map.get_mut(&id)?;
        if !self.alive(entry, now) {
            map.remove(&id);
            return None;
        }
        entry.last_seen = now;
        Some(Session {
            id,
            staff: entry.staff.clone(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Signs `staff` in: the old session (if any) ends and a new id and CSRF
    /// token are issued, so an id planted before sign-in is worth nothing after.
    pub fn sign_in(
        &self,
        old: Option<SessionId>,
        staff: Staff,
        now: Instant,
    ) -> anyhow::Result<Session> {
        if let Some(old) = old {
            self.end(old);
        }
        self.insert(Some(staff), now)
    }

    /// Ends a session.
    pub fn end(&self, id: SessionId) {
        self.lock().remove(&id);
    }

    /// How many sessions are live (signed in or not).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn random() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the operating system's random source: {e}"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff() -> Staff {
        Staff {
            name: "j.smith".into(),
            role: Role::EsafetyOfficer,
        }
    }

    #[test]
    fn ids_round_trip_and_forgeries_are_refused() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let now = Instant::now();
        let s = sessions.start(now).expect("start");
        let cookie = s.id.to_cookie();
        assert_eq!(cookie.len(), 64);
        assert_eq!(SessionId::from_cookie(&cookie), Some(s.id));
        for bad in [
            "",
            "00",
            &cookie.to_uppercase(),
            &format!("{cookie}0"),
            &cookie[1..],
        ] {
            assert_eq!(SessionId::from_cookie(bad), None, "{bad}");
        }
        // A well-formed id that was never issued names nothing.
        let forged = SessionId::from_cookie(&"ab".repeat(32)).expect("well-formed");
        assert!(sessions.get(forged, now).is_none());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&"0".repeat(64)));
    }

    #[test]
    fn sign_in_rotates_and_timeouts_end_sessions() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let t0 = Instant::now();
        let anon = sessions.start(t0).expect("start");
        let signed = sessions
            .sign_in(Some(anon.id), staff(), t0)
            .expect("sign in");
        assert_ne!(signed.id, anon.id);
        assert_ne!(signed.csrf, anon.csrf);
        assert!(sessions.get(anon.id, t0).is_none(), "old id is dead");
        // Used every 50 s, it lives until the lifetime ends.
        let mut t = t0;
        for _ in 0..11 {
            t += Duration::from_secs(50);
            assert!(sessions.get(signed.id, t).is_some());
        }
        t += Duration::from_secs(50);
        assert!(sessions.get(signed.id, t).is_none(), "past the lifetime");
        // Idle for longer than the idle timeout: gone.
        let other = sessions.sign_in(None, staff(), t).expect("sign in");
        assert!(
            sessions
                .get(other.id, t + Duration::from_secs(61))
                .is_none()
        );
        assert!(sessions.is_empty());
    }

    #[test]
    fn anonymous_sessions_are_bounded_and_never_evict_staff() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let now = Instant::now();
        let staff_session = sessions.sign_in(None, staff(), now).expect("sign in");
        for _ in 0..MAX_SESSIONS + 50 {
            sessions.start(now).expect("start");
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(staff_session.id, now).is_some());
    }
}
