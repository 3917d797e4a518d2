//! Authenticate: who is browsing, as an account and a group.
//!
//! In: the policy snapshot, the client's address, the request headers and what
//! the connection already knows (a login verified earlier on it). Out: an
//! [`Identity`] (an account name when there is a login, and always a group), or
//! a [`Denied`], which the caller answers with [`challenge`] (`407`,
//! `Proxy-Authenticate: Basic realm="hallpass"`) or [`throttled`] (`429` with
//! `Retry-After`), with nothing forwarded and no tunnel opened.
//!
//! The order, first match wins:
//! 1. `Proxy-Authorization: Basic` is parsed strictly ([`parse_basic`]): one
//!    header, the `Basic` scheme, padded standard base64, UTF-8, a colon, a
//!    non-empty user without control characters. Anything else is a `407`.
//! 2. Credentials are checked with [`Verifier::check_cached`] on the request
//!    path (a keyed hash, no argon2); on a miss [`Verifier::verify_slow`] runs
//!    inside `spawn_blocking`, at most `max_concurrent_hashes` at a time, so
//!    argon2 never stalls the async workers and a flood of bad logins holds
//!    neither all memory nor all blocking threads.
//! 3. A request without credentials on a connection that already logged in
//!    keeps that login (if the account is still enabled and in the same group).
//! 4. Otherwise the policy's `[[subnets]]` map the address to a group.
//! 5. Otherwise: `407`. There is no default group, and an account whose group
//!    the policy no longer has is refused the same way, never given a band.
//!
//! Every failure gets the same `407` (unknown user, wrong password, disabled
//! account, malformed header), so replies say nothing about which accounts
//! exist. A name or address the verifier is backing off gets a `429` instead,
//! the same for known and unknown names.
//!
//! After `credential_lifetime` (`[accounts]`) the proxy answers one `407` to an
//! account on an address even when the browser sends the right password again:
//! browsers re-send remembered Basic credentials silently, so only this makes
//! the browser ask the person again (see [`Sessions`]).
//!
//! Nothing here logs, stores or prints a password or a `Proxy-Authorization`
//! value; [`Credentials`] has a redacting `Debug` and wipes its buffer on drop.
//! The header is stripped before forwarding (see [`forward`](crate::forward)).
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use accounts::{AuthFailure, FileStamp, Reload, VerifiedAccount, Verifier};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use policy::{Band, GroupId, Policy};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::Body;

/// Who is browsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account name, when a login identified the person.
    pub who: Option<Arc<str>>,
    /// The group name. Kept as a name, not a [`GroupId`]: a tunnel outlives a
    /// policy reload, and ids are only meaningful within one snapshot.
    pub group: Arc<str>,
    /// The group's id in the policy the identity was made with: tried first,
    /// and used only when the policy at hand gives that id the same name.
    group_hint: Option<GroupId>,
}

impl Identity {
    /// The identity of a group of `policy`.
    fn of_group(who: Option<Arc<str>>, policy: &Policy, id: GroupId) -> Identity {
        Identity {
            who,
            group: policy.group(id).name.clone(),
            group_hint: Some(id),
        }
    }

    /// The group's id and band in `policy`, or `None` if a reload removed the group
    /// (the caller fails closed).
    pub fn resolve<'p>(&self, policy: &'p Policy) -> Option<(GroupId, &'p Band)> {
        let id = policy.group_id_hinted(&self.group, self.group_hint)?;
        Some((id, policy.band_of(id)))
    }
}

/// A user name and password from `Proxy-Authorization: Basic`. The password is
/// wiped when this is dropped and never shown by `Debug`.
pub struct Credentials {
    user: String,
    password: Zeroizing<Vec<u8>>,
}

impl Credentials {
    /// The user name as sent (the verifier folds case).
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither part is shown: people type passwords into the name field too.
        f.write_str("Credentials([redacted])")
    }
}

/// Why a `Proxy-Authorization` header was refused. The messages never repeat
/// the header's value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedCredentials {
    /// More than one `Proxy-Authorization` header: ambiguous.
    #[error("more than one Proxy-Authorization header")]
    Duplicate,
    /// Not `Basic <token>`.
    #[error("expected the Basic scheme followed by one token")]
    NotBasic,
    /// The token is not padded standard base64.
    #[error("the Basic token is not valid base64")]
    Base64,
    /// The decoded credentials are not UTF-8 (RFC 7617 `charset="UTF-8"`).
    #[error("the decoded credentials are not UTF-8")]
    NotUtf8,
    /// No `:` between user and password.
    #[error("the decoded credentials have no colon")]
    NoColon,
    /// The user name is empty.
    #[error("the user name is empty")]
    EmptyUser,
    /// The user name holds a control character.
    #[error("the user name holds a control character")]
    ControlInUser,
}

/// Parses `Proxy-Authorization: Basic` strictly. `Ok(None)` when the header is
/// absent.
pub fn parse_basic(headers: &HeaderMap) -> Result<Option<Credentials>, MalformedCredentials> {
    let mut values = headers.get_all(header::PROXY_AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(MalformedCredentials::Duplicate);
    }
    let bytes = value.as_bytes();
    let (scheme, token) = bytes
        .iter()
        .position(|&b| b == b' ')
        .map(|at| (&bytes[..at], &bytes[at + 1..]))
        .ok_or(MalformedCredentials::NotBasic)?;
    let token = token.trim_ascii();
    if !scheme.eq_ignore_ascii_case(b"basic") || token.is_empty() {
        return Err(MalformedCredentials::NotBasic);
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| MalformedCredentials::Base64)?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| MalformedCredentials::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(MalformedCredentials::NoColon)?;
    if user.is_empty() {
        return Err(MalformedCredentials::EmptyUser);
    }
    if user.chars().any(char::is_control) {
        return Err(MalformedCredentials::ControlInUser);
    }
    Ok(Some(Credentials {
        user: user.to_string(),
        password: Zeroizing::new(password.as_bytes().to_vec()),
    }))
}

/// Why nobody could be identified. The client sees only [`challenge`] or
/// [`throttled`]; the rest is for the event and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Back-off in force: answer `429` with this `Retry-After`.
    pub retry_after: Option<Duration>,
    /// A login was checked and rejected: worth an `auth-failure` event (the
    /// incident rules decide when failures are repeated enough for `access`).
    pub report: bool,
    /// The account tried, only when it exists (never a free-typed name, which
    /// may be a password typed in the wrong field).
    pub account: Option<Arc<str>>,
    /// For the log: what went wrong, without any secret.
    pub reason: &'static str,
}

impl Denied {
    fn challenge(reason: &'static str) -> Denied {
        Denied {
            retry_after: None,
            report: false,
            account: None,
            reason,
        }
    }

    /// The reply the client gets.
    pub fn response(&self) -> Response<Body> {
        match self.retry_after {
            Some(wait) => throttled(wait),
            None => challenge(),
        }
    }
}

/// When each account last had to type its password on each address: the start
/// of the browser's "session". `VerifiedAccount::verified_at` cannot serve here,
/// because a browser re-sends remembered credentials with every request, so a
/// re-verification would renew it without the person doing anything.
pub struct Sessions {
    lifetime: Duration,
    started: Mutex<HashMap<(Arc<str>, IpAddr), Instant>>,
}

/// The most sessions remembered. Past it, expired ones are dropped first; if
/// none are, the table is cleared (those browsers are then asked again only at
/// the next expiry: a lost reminder, never a wrong identity).
const MAX_SESSIONS: usize = 65_536;

impl Sessions {
    /// Sessions lasting `lifetime`.
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            lifetime,
            started: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a verified login of `account` from `ip` may browse now. `false`
    /// once per lifetime: the session is ended, the caller answers `407`, and the
    /// next verified login starts a new one.
    pub fn admit(&self, account: &Arc<str>, ip: IpAddr, now: Instant) -> bool {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (account.clone(), ip);
        match started.get(&key) {
            Some(&start) if now.saturating_duration_since(start) >= self.lifetime => {
                started.remove(&key);
                false
            }
            Some(_) => true,
            None => {
                if started.len() >= MAX_SESSIONS {
                    let lifetime = self.lifetime;
                    started.retain(|_, s| now.saturating_duration_since(*s) < lifetime);
                    if started.len() >= MAX_SESSIONS {
                        started.clear();
                    }
                }
                started.insert(key, now);
                true
            }
        }
    }
}

/// The login part of the proxy: the verifier, the bound on concurrent argon2
/// runs and the sessions. One per server.
pub struct Authenticator {
    verifier: Arc<Verifier>,
    hashing: Arc<Semaphore>,
    sessions: Sessions,
}

/// How long a login may wait for a hashing slot before it is told to retry: a
/// queue longer than this means a flood, and waiting longer helps nobody.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);

impl Authenticator {
    /// Logins checked by `verifier`, at most `max_concurrent_hashes` argon2 runs
    /// at once (the verifier bounds them too; this bound also keeps waiting
    /// logins off the blocking thread pool).
    pub fn new(verifier: Arc<Verifier>, max_concurrent_hashes: usize) -> Authenticator {
        let sessions = Sessions::new(verifier.credential_lifetime());
        Authenticator {
            verifier,
            hashing: Arc::new(Semaphore::new(max_concurrent_hashes.max(1))),
            sessions,
        }
    }

    /// The verifier (for reloads and metrics).
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Identifies the person behind a request; `bound` is the login this
    /// connection verified earlier, updated here.
    pub async fn identify(
        &self,
        policy: &Policy,
        client_ip: IpAddr,
        headers: &HeaderMap,
        bound: &Mutex<Option<VerifiedAccount>>,
    ) -> Result<Identity, Denied> {
        let set_bound = |login: Option<VerifiedAccount>| {
            *bound.lock().unwrap_or_else(PoisonError::into_inner) = login;
        };
        let credentials = match parse_basic(headers) {
            Ok(credentials) => credentials,
            Err(e) => {
                tracing::debug!(problem = %e, "malformed Proxy-Authorization");
                set_bound(None);
                return Err(Denied::challenge("malformed credentials"));
            }
        };
        if let Some(credentials) = credentials {
            // Different credentials on the same connection are checked afresh;
            // a failure also ends the earlier login on it.
            return match self.verify(&credentials, client_ip).await {
                Ok(login) => {
                    if !self.sessions.admit(&login.name, client_ip, Instant::now()) {
                        set_bound(None);
                        return Err(Denied::challenge("credential lifetime over"));
                    }
                    let identity = identity_for(policy, &login);
                    set_bound(identity.is_ok().then_some(login));
                    identity
                }
                Err(denied) => {
                    set_bound(None);
                    Err(denied)
                }
            };
        }
        let earlier = bound.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(login) = earlier {
            if self.still_valid(&login)
                && self.sessions.admit(&login.name, client_ip, Instant::now())
            {
                return identity_for(policy, &login);
            }
            set_bound(None);
            return Err(Denied::challenge("connection's login no longer valid"));
        }
        let id = policy
            .group_for_ip(client_ip)
            .ok_or(Denied::challenge("no login and no subnet"))?;
        Ok(Identity::of_group(None, policy, id))
    }

    /// Who is behind a request the proxy answers itself (the review link):
    /// a cached login, the connection's login, or the subnet. Never runs argon2
    /// and never counts a failure, because nothing is forwarded either way.
    pub fn identify_quietly(
        &self,
        policy: &Policy,
        client_ip: IpAddr,
        headers: &HeaderMap,
        bound: &Mutex<Option<VerifiedAccount>>,
    ) -> Option<Identity> {
        let login = match parse_basic(headers) {
            Ok(Some(c)) => self.verifier.check_cached(&c.user, &c.password),
            Ok(None) => bound
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .filter(|login| self.still_valid(login)),
            Err(_) => None,
        };
        match login {
            Some(login) => identity_for(policy, &login).ok(),
            None => policy
                .group_for_ip(client_ip)
                .map(|id| Identity::of_group(None, policy, id)),
        }
    }

    /// The cheap path, then argon2 off the async workers.
    async fn verify(
        &self,
        credentials: &Credentials,
        client_ip: IpAddr,
    ) -> Result<VerifiedAccount, Denied> {
        if let Some(login) = self
            .verifier
            .check_cached(&credentials.user, &credentials.password)
        {
            return Ok(login);
        }
        let account = self.existing_account(&credentials.user);
        let throttled = |retry_after: Duration| Denied {
            retry_after: Some(retry_after),
            report: false,
            account: account.clone(),
            reason: "throttled",
        };
        // Answered at once, without a hashing slot or a blocking thread.
        if let Some(wait) = self
            .verifier
            .throttled(&credentials.user, client_ip, Instant::now())
        {
            return Err(throttled(wait));
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(HASH_QUEUE_WAIT, self.hashing.clone().acquire_owned()).await
        else {
            tracing::warn!("login queue full: asking the client to retry");
            return Err(throttled(Duration::from_secs(1)));
        };
        let verifier = self.verifier.clone();
        let user = credentials.user.clone();
        let password = Zeroizing::new(credentials.password.to_vec());
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verifier.verify_slow(&user, &password, client_ip, Instant::now())
        })
        .await;
        match checked {
            Ok(Ok(login)) => Ok(login),
            Ok(Err(AuthFailure::Rejected)) => Err(Denied {
                retry_after: None,
                report: true,
                account,
                reason: "rejected",
            }),
            Ok(Err(AuthFailure::Throttled { retry_after })) => Err(throttled(retry_after)),
            // A panic in the hasher: fail closed with the ordinary reply.
            Err(e) => {
                tracing::error!(error = %e, "password check failed: refusing");
                Err(Denied::challenge("password check failed"))
            }
        }
    }

    /// The stored name of the account `user` names, if there is one.
    fn existing_account(&self, user: &str) -> Option<Arc<str>> {
        let folded = user.to_ascii_lowercase();
        self.verifier
            .accounts()
            .get(&folded)
            .map(|a| Arc::from(a.name()))
    }

    /// Whether a login verified earlier on a connection still stands: the account
    /// exists, is enabled and is in the same group.
    fn still_valid(&self, login: &VerifiedAccount) -> bool {
        self.verifier
            .accounts()
            .get(&login.name)
            .is_some_and(|a| !a.disabled() && a.group() == &*login.group)
    }
}

/// The identity of a verified login, if the policy still has its group.
fn identity_for(policy: &Policy, login: &VerifiedAccount) -> Result<Identity, Denied> {
    let Some(id) = policy.group_id(&login.group) else {
        tracing::warn!(
            account = %login.name,
            group = %login.group,
            "login refused: the account's group is not in the policy"
        );
        return Err(Denied::challenge("account's group not in the policy"));
    };
    Ok(Identity {
        who: Some(login.name.clone()),
        group: login.group.clone(),
        group_hint: Some(id),
    })
}

/// Keeps the verifier's accounts in step with `<state_dir>/accounts.toml`:
/// every `every`, the file's [`FileStamp`] is compared with the last one seen
/// and, when it changed, the file is reloaded. A broken file is logged once per
/// version (with its file:line) and the last good accounts stay in use.
pub async fn poll_accounts(verifier: Arc<Verifier>, path: PathBuf, every: Duration) {
    let mut seen = FileStamp::of(&path).ok().flatten();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = match FileStamp::of(&path) {
            Ok(stamp) => stamp,
            Err(e) => {
                tracing::warn!(error = %e, "cannot stat the accounts file");
                continue;
            }
        };
        if now == seen {
            continue;
        }
        seen = now;
        if now.is_none() {
            tracing::warn!(
                path = %path.display(),
                "the accounts file is gone: keeping the accounts loaded"
            );
            continue;
        }
        let (v, p) = (verifier.clone(), path.clone());
        match tokio::task::spawn_blocking(move || v.reload_if_changed(&p)).await {
            Ok(Ok(Reload::Reloaded { accounts, dropped })) => {
                tracing::info!(accounts, dropped, "accounts reloaded");
            }
            Ok(Ok(Reload::Unchanged)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "accounts reload failed: keeping the last good accounts");
            }
            Err(e) => tracing::error!(error = %e, "accounts reload task failed"),
        }
    }
}

/// The `407` every authentication failure gets: the same reply each time, so it
/// says nothing about which part failed.
pub fn challenge() -> Response<Body> {
    let mut response = Response::new(crate::full_body(
        "Proxy authentication required: sign in to the school's web filter.\n",
    ));
    *response.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"hallpass\""),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `429` for a name or address in back-off: the same for known and unknown
/// names. Chosen over a `407` so the browser does not prompt again (and burn
/// another try) before the wait is over.
pub fn throttled(retry_after: Duration) -> Response<Body> {
    // Rounded up: a client that waits exactly this long is not refused again.
    let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
    let mut response = Response::new(crate::full_body(format!(
        "Too many failed sign-ins: wait {secs} seconds, then try again.\n"
    )));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                header::PROXY_AUTHORIZATION,
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        map
    }

    fn basic(raw: &[u8]) -> Vec<u8> {
        let mut v = b"Basic ".to_vec();
        v.extend(
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .bytes(),
        );
        v
    }

    #[test]
    fn basic_credentials_are_parsed_strictly() {
        use MalformedCredentials::*;
        let ok = parse_basic(&headers(&[&basic(b"Year3:ti:ger")]))
            .expect("valid")
            .expect("present");
        assert_eq!(ok.user(), "Year3");
        assert_eq!(&**ok.password, b"ti:ger");
        assert!(parse_basic(&headers(&[b"bAsIc eTM6cA=="])).is_ok());
        assert!(parse_basic(&HeaderMap::new()).expect("absent").is_none());
        let cases: &[(&[&[u8]], MalformedCredentials)] = &[
            (&[b"Bearer abc"], NotBasic),
            (&[b"Basic"], NotBasic),
            (&[b"Basic "], NotBasic),
            (&[b"Basic eTM6cA"], Base64), // unpadded
            (&[b"Basic eTM6c!=="], Base64),
            (&[&basic(b"\xff:pw")], NotUtf8),
            (&[&basic(b"u:\xff")], NotUtf8),
            (&[&basic(b"nocolon")], NoColon),
            (&[&basic(b":pw")], EmptyUser),
            (&[&basic(b"a\x07b:pw")], ControlInUser),
            (&[&basic(b"a:b"), &basic(b"a:b")], Duplicate),
        ];
        for (values, expected) in cases {
            let got = parse_basic(&headers(values)).map(|_| ());
            assert_eq!(got, Err(*expected), "{values:?}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_or_errors() {
        let c = parse_basic(&headers(&[&basic(b"staffer:hunter22")]))
            .expect("valid")
            .expect("present");
        let text = format!("{c:?}");
        assert!(
            !text.contains("hunter22") && !text.contains("staffer"),
            "{text}"
        );
        let e = parse_basic(&headers(&[&basic(b"hunter22")])).map(|_| ());
        assert!(!format!("{e:?}").contains("hunter22"));
    }

    #[test]
    fn a_session_ends_once_per_lifetime() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let who: Arc<str> = "j.smith".into();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!(sessions.admit(&who, ip, t0));
        assert!(sessions.admit(&who, ip, t0 + Duration::from_secs(59)));
        // Over: one refusal (the browser asks the person), then a new session.
        assert!(!sessions.admit(&who, ip, t0 + Duration::from_secs(60)));
        assert!(sessions.admit(&who, ip, t0 + Duration::from_secs(61)));
        // Another address has its own session.
        assert!(sessions.admit(&who, [10, 0, 0, 2].into(), t0 + Duration::from_secs(200)));
    }

    #[test]
    fn replies_are_407_or_429() {
        let r = challenge();
        assert_eq!(r.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert!(r.headers().contains_key(header::PROXY_AUTHENTICATE));
        let r = throttled(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
