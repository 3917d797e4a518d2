//! The request path for one request on a listener: the stages in order.
//!
//! In: a request hyper parsed behind the framing guard. Out: its response: a page
//! of the proxy itself, a 400/407/431, a block page, a forwarded response, or the
//! `200` that opens a CONNECT tunnel. Each request loads exactly one policy
//! snapshot, gets one access-log line (and a `request` span at debug level: at
//! info the access line already carries who, group, URL and verdict, and
//! keeping span fields formatted cost ~15 % of the proxy's CPU per request),
//! and is wrapped so that a panic anywhere in it becomes a block page (fail
//! closed) instead of a dropped connection.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use policy::event::{BlockEvent, BlockKind};
use policy::host::CanonicalHost;
use policy::{Action, Band, CanonicalUrl, Verdict};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::auth::{self, Identity};
use crate::block::{BlockPage, PageKind, References};
use crate::ca::LeafCache;
use crate::events::EventQueue;
use crate::framing::{REJECTED_HEADER_NAME, REJECTED_PATH, UpgradeGate, Violation};
use crate::listen::{Active, PerIpLimit, Phase};
use crate::snapshot::Snapshot;
use crate::target::{self, Target, TargetError};
use crate::upstream::{Dialer, UpstreamTls};
use crate::{Body, Settings, filter, forward};

/// What the block page says when deciding failed and the proxy failed closed.
pub(crate) const FAIL_CLOSED_REASON: &str =
    "the web filter had a problem checking this page, so it was blocked to be safe";

/// Everything the stages share, for the life of the server.
pub(crate) struct Shared {
    pub settings: Settings,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    pub dialer: Dialer,
    pub upstream_tls: UpstreamTls,
    /// Verified upstream connections kept across tunnels.
    pub pool: crate::pool::Pool,
    pub leaves: Option<LeafCache>,
    pub events: EventQueue,
    pub references: References,
    pub active: Arc<Active>,
    pub phase: watch::Receiver<Phase>,
    pub next_conn: AtomicU64,
    pub connections: Arc<Semaphore>,
    pub per_ip: PerIpLimit,
    pub listen_addrs: Vec<SocketAddr>,
    /// Proxy logins: verifier, argon2 bound and sessions.
    pub auth: auth::Authenticator,
    /// What `/metrics` reports.
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
}

/// One client connection.
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    /// The client's address as the access log writes it, formatted once per
    /// connection instead of once per request.
    pub peer_text: Box<str>,
    /// The proxy address the client connected to.
    pub local: SocketAddr,
    /// The upstream connection of the last plain-HTTP request, kept for reuse by
    /// the next request to the same host on this client connection.
    pub plain_upstream: Mutex<Option<forward::PlainUpstream>>,
    /// Tells the framing guard how upgrade requests were answered.
    pub gate: Arc<UpgradeGate>,
    /// Requests handled so far (the guard numbers them the same way).
    pub requests: AtomicU64,
    /// The login verified on this connection: later requests without
    /// credentials keep it (tunnels carry their own copy of the identity).
    pub login: Mutex<Option<accounts::VerifiedAccount>>,
    /// The last authority a request named, canonicalised.
    pub authority: target::LastAuthority,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        ConnInfo {
            peer,
            peer_text: policy::host::ip_text(peer.ip()).into(),
            local,
            plain_upstream: Mutex::new(None),
            gate: Arc::default(),
            requests: AtomicU64::new(0),
            login: Mutex::new(None),
            authority: target::LastAuthority::default(),
        }
    }
}

/// What the access log says about one request.
#[derive(Default)]
pub(crate) struct Access {
    pub who: Option<Arc<str>>,
    pub group: Option<Arc<str>>,
    pub url: Option<String>,
    pub verdict: &'static str,
    /// What safe search forced on an allowed request (`Hallpass-Safe-Search`).
    pub safe_search: Option<HeaderValue>,
}

/// Why a request is refused with a page, for the page and the event.
pub(crate) struct Refusal<'a> {
    pub kind: BlockKind,
    pub page: PageKind,
    pub reason: &'a str,
    pub url: String,
    pub method: &'a str,
    pub verdict: Option<&'a Verdict>,
}

impl Shared {
    /// What a pooled upstream connection must satisfy now: the policy
    /// generation in effect and the destination rules.
    pub(crate) fn pool_rules(&self) -> crate::pool::Rules<'_> {
        crate::pool::Rules {
            generation: self.snapshots.load().generation,
            destinations: &self.dialer.destinations,
        }
    }

    /// Whether a host and port name this proxy (its listen addresses, or one of
    /// the configured names on a listening port).
    pub(crate) fn is_self(&self, host: &CanonicalHost, port: u16) -> bool {
        self.listen_addrs
            .iter()
            .filter(|a| a.port() == port)
            .any(|a| match host.ip() {
                // A wildcard listener answers on every local address; an internal
                // address on its port is this proxy (it is never dialled anyway).
                Some(ip) => {
                    a.ip() == ip
                        || a.ip().is_unspecified()
                            && (ip.is_loopback() || crate::upstream::special_range(ip).is_some())
                }
                None => self.settings.names.iter().any(|n| n == host.as_str()),
            })
    }

    /// `host:port` clients use to reach the proxy's own pages: the first
    /// configured name, else the address this client connected to (right even
    /// for a wildcard listener).
    pub(crate) fn own_authority(&self, conn: &ConnInfo) -> String {
        match self.settings.names.first() {
            Some(name) => format!("{name}:{}", conn.local.port()),
            None => conn.local.to_string(),
        }
    }

    /// The "ask for a review" link for a block.
    pub(crate) fn review_link(&self, conn: &ConnInfo, reference: &str, url: &str) -> String {
        match &self.settings.review_url {
            Some(template) => template
                .replace("{ref}", reference)
                .replace("{url}", &percent_encode(url)),
            None => format!("http://{}/review?ref={reference}", self.own_authority(conn)),
        }
    }

    /// Records a failed login as an `auth-failure` event (no page: the
    /// client only ever sees the 407/429). `account` is an existing account's
    /// name or `None`; no password or header value is in the event.
    pub(crate) fn auth_failure_event(
        &self,
        conn: &ConnInfo,
        account: Option<&str>,
        method: &http::Method,
        url: String,
    ) {
        let reference = self.references.next();
        self.events.emit(BlockEvent {
            reference: reference.clone(),
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            client_ip: conn.peer.ip(),
            who: account.map(str::to_string),
            group: String::new(),
            band: String::new(),
            method: method.to_string(),
            url,
            category: None,
            rule: None,
            kind: BlockKind::AuthFailure,
        });
        tracing::warn!(reference = %reference, "login failed");
    }

    /// Answers with a block (or explanatory) page and, for blocks, records the
    /// event first (see [`refusal_page`](Self::refusal_page)).
    pub(crate) async fn refuse(
        &self,
        conn: &ConnInfo,
        identity: Option<&Identity>,
        band: Option<&str>,
        r: Refusal<'_>,
    ) -> Response<Body> {
        self.refusal_page(conn, identity, band, r).await.response()
    }

    /// The page for a refusal, rendered once (a blocked tunnel serves it to every
    /// request inside). For a block, the event is durable (stored, or fsync'd
    /// to the spool) before this returns, so the reference on the page is never
    /// one the store could lose.
    pub(crate) async fn refusal_page(
        &self,
        conn: &ConnInfo,
        identity: Option<&Identity>,
        band: Option<&str>,
        r: Refusal<'_>,
    ) -> ServedPage {
        let reference = self.references.next();
        let now = SystemTime::now();
        if r.page != PageKind::Unreachable {
            self.metrics.block(r.kind, band, r.verdict);
            let event = BlockEvent {
                reference: reference.clone(),
                time_ms: now
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                client_ip: conn.peer.ip(),
                who: identity.and_then(|i| i.who.as_deref().map(str::to_string)),
                group: identity.map_or_else(String::new, |i| i.group.to_string()),
                band: band.unwrap_or_default().to_string(),
                method: r.method.to_string(),
                url: r.url.clone(),
                category: r
                    .verdict
                    .and_then(|v| v.category.as_deref().map(str::to_string)),
                rule: r.verdict.map(|v| format!("{} {}", v.rank, v.rule)),
                kind: r.kind,
            };
            let durable = self.events.record(event).await;
            tracing::info!(reference = %reference, kind = r.kind.as_str(), durable = ?durable, "blocked");
        }
        let review = self.review_link(conn, &reference, &r.url);
        let page = BlockPage {
            kind: r.page,
            url: &r.url,
            reason: r.reason,
            group: identity.map(|i| &*i.group),
            time: now,
            reference: &reference,
            review_link: Some(&review),
        };
        ServedPage {
            status: page.status(),
            html: page.render().into(),
            who: identity.and_then(|i| i.who.clone()),
            group: identity.map(|i| i.group.clone()),
            url: r.url.clone(),
        }
    }
}

/// A rendered page that can be served any number of times.
#[derive(Clone, Debug)]
pub(crate) struct ServedPage {
    pub status: StatusCode,
    pub html: bytes::Bytes,
    /// For the access log of each request it is served to.
    pub who: Option<Arc<str>>,
    pub group: Option<Arc<str>>,
    pub url: String,
}

impl ServedPage {
    pub(crate) fn response(&self) -> Response<Body> {
        let mut response = crate::block::page_response(self.status, String::new());
        *response.body_mut() = crate::full_body(self.html.clone());
        response
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A plain-text refusal (400/431/...) that closes the connection.
pub(crate) fn plain_refusal(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(crate::full_body(format!(
        "{} {}: {message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The response to the framing guard's synthetic request.
pub(crate) fn violation_response(req: &Request<Incoming>) -> Option<Response<Body>> {
    // The synthetic request's path first: a string comparison, where the
    // header lookup hashes a name. A client's own request can never carry
    // the header (the guard refuses it), so the path alone decides nothing.
    if req.uri().path() != REJECTED_PATH {
        return None;
    }
    let code = req.headers().get(REJECTED_HEADER_NAME)?;
    let violation = code
        .to_str()
        .ok()
        .and_then(Violation::from_code)
        .unwrap_or(Violation::BadRequestLine);
    tracing::info!(
        violation = violation.code(),
        "request refused before parsing"
    );
    let status = StatusCode::from_u16(violation.status()).unwrap_or(StatusCode::BAD_REQUEST);
    Some(plain_refusal(status, &violation.to_string()))
}

/// A target the normaliser refused.
pub(crate) fn target_refusal(e: &TargetError) -> Response<Body> {
    plain_refusal(StatusCode::BAD_REQUEST, &e.to_string())
}

/// hyper's entry point for a request on a listener.
pub(crate) fn handle_plain(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> {
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        host = tracing::field::Empty,
        group = tracing::field::Empty,
        band = tracing::field::Empty,
        verdict = tracing::field::Empty,
    );
    let method = req.method().clone();
    let span_in = span.clone();
    let started = std::time::Instant::now();
    async move {
        let number = conn
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut access = Access::default();
        // Pinned in this future rather than boxed: no allocation per request
        // for the large routing future.
        let routed = {
            let routing = std::pin::pin!(route_plain(&shared, &conn, req, &mut access));
            CatchUnwind(routing).await
        };
        let mut response = match routed {
            Ok(response) => response,
            Err(message) => {
                tracing::error!(panic = %message, "request handling panicked: failing closed");
                access.verdict = "block";
                shared
                    .refuse(
                        &conn,
                        None,
                        None,
                        Refusal {
                            kind: BlockKind::DecisionFailed,
                            page: PageKind::Blocked,
                            reason: crate::request::FAIL_CLOSED_REASON,
                            url: access.url.clone().unwrap_or_default(),
                            method: method.as_str(),
                            verdict: None,
                        },
                    )
                    .await
            }
        };
        // Whatever happened, the framing guard learns whether this request
        // switched protocols, so it never waits forever.
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS
            || method == http::Method::CONNECT && response.status().is_success();
        conn.gate.settle(number, switched);
        crate::verdict_headers::mark(&mut response, access.verdict, access.safe_search.take());
        log_access(&span_in, &conn, method.as_str(), &access, response.status());
        shared.metrics.request(access.verdict, started.elapsed());
        Ok(response)
    }
    .instrument(span)
}

/// One access-log line (target `hallpass::access`), JSON under the binary's subscriber.
pub(crate) fn log_access(
    span: &tracing::Span,
    conn: &ConnInfo,
    method: &str,
    access: &Access,
    status: StatusCode,
) {
    span.record("verdict", access.verdict);
    tracing::info!(
        target: "hallpass::access",
        client = &*conn.peer_text,
        who = access.who.as_deref().unwrap_or("-"),
        group = access.group.as_deref().unwrap_or("-"),
        method,
        url = access.url.as_deref().unwrap_or("-"),
        verdict = access.verdict,
        status = status.as_u16(),
    );
}

async fn route_plain(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    access: &mut Access,
) -> Response<Body> {
    if let Some(response) = violation_response(&req) {
        access.verdict = "refused";
        return response;
    }
    // Taken before the request is split: an allowed upgrade is spliced once
    // the origin answers 101.
    let client_upgrade = (req.method() != http::Method::CONNECT
        && forward::upgrade_request(req.headers()).is_some())
    .then(|| hyper::upgrade::on(&mut req));
    let snap = shared.snapshots.load_full();
    let (parts, body) = req.into_parts();
    let target = match target::classify_on(&parts, |h, p| shared.is_self(h, p), &conn.authority) {
        Ok(target) => target,
        Err(e) => {
            tracing::info!(error = %e, "request target refused");
            access.verdict = "refused";
            return target_refusal(&e);
        }
    };
    if let Target::Local { path_and_query } = &target {
        access.verdict = "local";
        return crate::pages::serve(shared, conn, &snap, &parts, path_and_query).await;
    }
    // Nothing below (decide, dial, tunnel) runs before the identity is known.
    let identity = match shared
        .auth
        .identify(&snap.policy, conn.peer.ip(), &parts.headers, &conn.login)
        .await
    {
        Ok(identity) => identity,
        Err(denied) => {
            tracing::info!(reason = denied.reason, "no identity");
            access.verdict = "auth";
            shared.metrics.auth_failure(denied.reason);
            if denied.report {
                let url = match &target {
                    Target::Connect { host, port } => target::authority_text(host, *port),
                    Target::Forward(url) => url.redacted(),
                    Target::Local { .. } => String::new(),
                };
                shared.auth_failure_event(conn, denied.account.as_deref(), &parts.method, url);
            }
            return denied.response();
        }
    };
    access.who = identity.who.clone();
    access.group = Some(identity.group.clone());
    // The debug-level `request` span (see the module); looked up once.
    let span = tracing::Span::current();
    span.record("group", &*identity.group);
    // A clone of a standard method allocates nothing.
    let method_owned = parts.method.clone();
    let method = method_owned.as_str();
    let Some((group, band)) = identity.resolve(&snap.policy) else {
        access.verdict = "block";
        return shared
            .refuse(
                conn,
                Some(&identity),
                None,
                Refusal {
                    kind: BlockKind::DecisionFailed,
                    page: PageKind::Blocked,
                    reason: "your group is not in the school's filtering policy any more",
                    url: String::new(),
                    method,
                    verdict: None,
                },
            )
            .await;
    };
    span.record("band", &*band.name);
    match target {
        Target::Local { .. } => unreachable_local(),
        Target::Connect { host, port } => {
            span.record("host", host.as_str());
            access.url = Some(target::authority_text(&host, port));
            let req = Request::from_parts(parts, body);
            crate::connect::handle(
                shared.clone(),
                conn.clone(),
                snap,
                identity,
                host,
                port,
                req,
                access,
            )
            .await
        }
        Target::Forward(url) => {
            span.record("host", url.host().as_str());
            access.url = Some(url.redacted());
            let decision = match filter::decide(&snap, group, &url) {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::error!(error = %e, "decision failed: blocking");
                    access.verdict = "block";
                    return shared
                        .refuse(
                            conn,
                            Some(&identity),
                            Some(&band.name),
                            Refusal {
                                kind: BlockKind::DecisionFailed,
                                page: PageKind::Blocked,
                                reason: crate::request::FAIL_CLOSED_REASON,
                                url: url.redacted(),
                                method,
                                verdict: None,
                            },
                        )
                        .await;
                }
            };
            access.verdict = decision.verdict.action.as_str();
            if decision.verdict.action == Action::Block {
                return shared
                    .refuse(
                        conn,
                        Some(&identity),
                        Some(&band.name),
                        Refusal {
                            kind: BlockKind::Policy,
                            page: PageKind::Blocked,
                            reason: &decision.verdict.reason,
                            url: url.redacted(),
                            method,
                            verdict: Some(&decision.verdict),
                        },
                    )
                    .await;
            }
            let band = band.clone();
            access.safe_search = forced_search(&band, &url, &parts);
            match forward::plain(shared, conn, &url, &band, parts, body, client_upgrade).await {
                Ok(response) => response,
                Err(e) => {
                    access.verdict = if e.is_refusal() { "block" } else { "error" };
                    forward::upstream_failure_page(shared, conn, &identity, &band, &url, method, &e)
                        .await
                }
            }
        }
    }
}

/// The `Hallpass-Safe-Search` value for an allowed request: what the
/// forwarder's rewrite forces, computed from the same inputs.
pub(crate) fn forced_search(
    band: &Band,
    url: &CanonicalUrl,
    parts: &http::request::Parts,
) -> Option<HeaderValue> {
    let original = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    crate::verdict_headers::describe(&crate::safe_search::rewrite(band, url.host(), original))
}

/// `Target::Local` returns before identification; this arm cannot be reached.
fn unreachable_local() -> Response<Body> {
    plain_refusal(StatusCode::BAD_REQUEST, "unexpected local request")
}

/// Turns a panic inside a request future into an error value, so the connection
/// task survives and the client gets a block page.
pub(crate) struct CatchUnwind<'a, F>(pub Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(filter::panic_message(&*panic))),
        }
    }
}

/// The URL a CONNECT decides on.
pub(crate) fn connect_url(host: &CanonicalHost, port: u16) -> CanonicalUrl {
    CanonicalUrl::for_host(policy::url::Scheme::Https, host.clone(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_inside_a_request_becomes_an_error_value() {
        let panicking = async {
            if std::hint::black_box(true) {
                panic!("decision exploded");
            }
            1
        };
        let result = CatchUnwind(std::pin::pin!(panicking)).await;
        assert_eq!(result, Err("decision exploded".to_string()));
        assert_eq!(CatchUnwind(std::pin::pin!(async { 2 })).await, Ok(2));
    }
}
