//! Intercept: TLS towards the client with a leaf for the tunnel's name, and every
//! request inside decided again.
//!
//! In: an opened tunnel (the client side), its canonical name, the identity, and
//! for allowed tunnels how the upstream was reached before the `200` ([`reach`]:
//! a freshly dialled TCP stream, or a live connection for the host in the shared
//! [`pool`](crate::pool)). Out: served HTTP (h2 or HTTP/1.1, as ALPN chose)
//! where each request is normalised, decided on its full URL with a fresh
//! snapshot, and either answered with the block page or forwarded over verified
//! upstream TLS. Refused:
//! - an SNI naming another host than the CONNECT (the block page, under a leaf
//!   for the SNI name so the pupil can read why);
//! - any request whose `Host`/`:authority` names another site (domain fronting);
//! - an upstream whose certificate fails verification: every request gets an
//!   explanatory page (host, reason) and there is no way through;
//! - bytes that are not TLS: the tunnel is closed and logged.
//!
//! ALPN towards the client offers `h2` only when the upstream also negotiated it,
//! so a request is never translated to a protocol the origin did not choose; a
//! pooled connection is used only where a fresh one would have given the client
//! the same choice (see [`pool::Wire`](crate::pool)). A tunnel's upstream
//! connections go back to the pool when it closes, for the next tunnel to the
//! same host. For
//! h2 the streams per connection and the header list size are capped, and
//! `:authority` is checked by [`target::tunneled_url`] (the h2 crate does not
//! check it: measured).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use policy::event::BlockKind;
use policy::host::{CanonicalHost, canonicalize};
use policy::url::Scheme;
use policy::{Action, Band};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::auth::Identity;
use crate::block::PageKind;
use crate::forward::{self, client_response, upstream_request};
use crate::framing::{FramingGuard, UpgradeGate};
use crate::idle::Prefixed;
use crate::listen::{Phase, http1_builder};
use crate::pool::{self, Route, Rules, Sender, Wire};
use crate::request::{
    Access, CatchUnwind, ConnInfo, Refusal, ServedPage, Shared, log_access, plain_refusal,
    target_refusal, violation_response,
};
use crate::target::{self, TargetError, TunnelName};
use crate::upstream::UpstreamError;
use crate::{Body, filter, safe_search};

/// Most concurrent h2 streams one client connection may open.
const MAX_H2_STREAMS: u32 = 100;
/// Largest h2 header list, matching the HTTP/1.1 head limit.
const MAX_H2_HEADER_LIST: u32 = 64 * 1024;

/// The client side of a tunnel as hyper hands it over.
type TunnelIo = TokioIo<hyper::upgrade::Upgraded>;
/// The same, with the bytes read to sniff the protocol put back in front.
type ClientIo = Prefixed<TunnelIo>;

/// What the client sent first inside a tunnel.
enum Sniffed {
    /// A TLS record.
    Tls(ClientIo),
    /// What looks like an HTTP request line.
    Http(ClientIo),
}

/// Reads the first bytes of a tunnel: TLS is intercepted, plain HTTP is parsed
/// and filtered like any request, anything else is closed and logged.
async fn sniff(shared: &Shared, mut client: TunnelIo) -> Option<Sniffed> {
    let mut first = vec![0u8; 4096];
    let read = tokio::time::timeout(
        shared.settings.tls_handshake_timeout,
        client.read(&mut first),
    )
    .await;
    let n = match read {
        Ok(Ok(n)) if n > 0 => n,
        Ok(Ok(_)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tunnel read failed");
            return None;
        }
        Err(_) => {
            tracing::info!("tunnel closed: nothing sent in time");
            return None;
        }
    };
    first.truncate(n);
    let byte = first[0];
    let io = Prefixed::new(first, client);
    if byte == 0x16 {
        Some(Sniffed::Tls(io))
    } else if byte.is_ascii_uppercase() {
        Some(Sniffed::Http(io))
    } else {
        tracing::info!(first_byte = byte, "tunnel closed: neither TLS nor HTTP");
        None
    }
}

/// The client's ClientHello, read but not answered yet.
struct Hello {
    start: tokio_rustls::StartHandshake<ClientIo>,
    sni: Option<String>,
    offers_h2: bool,
}

async fn read_hello(shared: &Shared, client: ClientIo) -> Option<Hello> {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client);
    match tokio::time::timeout(shared.settings.tls_handshake_timeout, acceptor).await {
        Ok(Ok(start)) => {
            let hello = start.client_hello();
            let sni = hello.server_name().map(str::to_string);
            let offers_h2 = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == b"h2"));
            Some(Hello {
                start,
                sni,
                offers_h2,
            })
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "tunnel closed: not a TLS ClientHello");
            None
        }
        Err(_) => {
            tracing::info!("tunnel closed: no ClientHello in time");
            None
        }
    }
}

/// Completes the client handshake with a leaf for `name`.
async fn finish_handshake(
    shared: &Shared,
    hello: Hello,
    name: &CanonicalHost,
    h2: bool,
) -> Option<(TlsStream<ClientIo>, bool)> {
    let leaves = shared.leaves.as_ref()?;
    let asked = std::time::Instant::now();
    let leaf = match leaves.get(name).await {
        Ok(leaf) => {
            // A leaf minted before this call was served from the cache.
            shared.metrics.leaf(leaf.minted() < asked);
            leaf
        }
        Err(e) => {
            tracing::error!(error = %e, "leaf certificate could not be minted");
            return None;
        }
    };
    let config = leaf.config(h2 && hello.offers_h2);
    match tokio::time::timeout(
        shared.settings.tls_handshake_timeout,
        hello.start.into_stream(config),
    )
    .await
    {
        Ok(Ok(tls)) => {
            shared.metrics.tls_handshake(true);
            let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Some((tls, is_h2))
        }
        Ok(Err(e)) => {
            // Typically the device does not trust the school CA yet.
            shared.metrics.tls_handshake(false);
            tracing::info!(error = %e, "client TLS handshake failed");
            None
        }
        Err(_) => {
            shared.metrics.tls_handshake(false);
            tracing::info!("client TLS handshake timed out");
            None
        }
    }
}

/// A blocked tunnel: TLS with a leaf for the tunnel's name, the page for every request.
pub(crate) async fn serve_page(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    client: TunnelIo,
    page: ServedPage,
) {
    let client = match sniff(&shared, client).await {
        Some(Sniffed::Tls(client)) => client,
        Some(Sniffed::Http(client)) => {
            return serve_static(&shared, &conn, client, false, page).await;
        }
        None => return,
    };
    let Some(hello) = read_hello(&shared, client).await else {
        return;
    };
    // Mint for the name the client asked for when it is a valid name, so the page
    // is readable; the decision was made on the CONNECT name.
    let name = hello
        .sni
        .as_deref()
        .and_then(|s| canonicalize(s).ok())
        .unwrap_or(tunnel.host);
    let Some((tls, is_h2)) = finish_handshake(&shared, hello, &name, true).await else {
        return;
    };
    serve_static(&shared, &conn, tls, is_h2, page).await;
}

/// An allowed, intercepted tunnel.
pub(crate) async fn serve_intercepted(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    identity: Identity,
    client: TunnelIo,
    reached: Reached,
) {
    let client = match sniff(&shared, client).await {
        Some(Sniffed::Tls(client)) => client,
        Some(Sniffed::Http(client)) => {
            return serve_plain_tunnel(shared, conn, tunnel, identity, client, reached).await;
        }
        None => return,
    };
    let Some(hello) = read_hello(&shared, client).await else {
        return;
    };
    let band_name = {
        let snap = shared.snapshots.load();
        identity
            .resolve(&snap.policy)
            .map(|(_, b)| b.name.to_string())
    };
    let refuse = |kind, page, reason: String| {
        refuse_opening(
            &shared,
            &conn,
            &identity,
            band_name.as_deref(),
            &tunnel,
            kind,
            page,
            reason,
        )
    };

    if let Some(sni) = &hello.sni {
        match canonicalize(sni) {
            Ok(host) if host == tunnel.host => {}
            parsed => {
                let reason = format!(
                    "the connection asked for another site ({}) than the one it opened",
                    sni.chars().take(100).collect::<String>()
                );
                let page = refuse(BlockKind::Fronting, PageKind::Blocked, reason).await;
                let name = parsed.unwrap_or_else(|_| tunnel.host.clone());
                let Some((tls, is_h2)) = finish_handshake(&shared, hello, &name, true).await else {
                    return;
                };
                return serve_static(&shared, &conn, tls, is_h2, page).await;
            }
        }
    }

    let route = Route {
        host: tunnel.host.clone(),
        port: tunnel.port,
        addr: reached.addr,
    };
    let upstream = match Upstream::open_tls(&shared, route, reached, hello.offers_h2).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(error = %e, "upstream connection failed");
            let (kind, page_kind, reason) = forward::failure_words(&e);
            let page = refuse(kind, page_kind, reason).await;
            let Some((tls, is_h2)) = finish_handshake(&shared, hello, &tunnel.host, true).await
            else {
                return;
            };
            return serve_static(&shared, &conn, tls, is_h2, page).await;
        }
    };
    let Some((client_tls, client_h2)) =
        finish_handshake(&shared, hello, &tunnel.host, upstream.is_h2()).await
    else {
        return;
    };
    let ctx = Arc::new(TunnelCtx {
        shared: shared.clone(),
        conn,
        tunnel,
        identity,
        upstream,
        scheme: Scheme::Https,
        guarded: !client_h2,
        gate: Arc::default(),
        requests: AtomicU64::new(0),
    });
    let gate = ctx.gate.clone();
    let svc = service_fn(move |req| handle_tunneled(ctx.clone(), req));
    serve_client(&shared, client_tls, client_h2, Some(gate), svc).await;
}

/// Plain HTTP inside an allowed tunnel (a client using CONNECT for port 80):
/// every request is parsed behind the framing guard and decided like any other.
async fn serve_plain_tunnel(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    identity: Identity,
    client: ClientIo,
    reached: Reached,
) {
    let route = Route {
        host: tunnel.host.clone(),
        port: tunnel.port,
        addr: reached.addr,
    };
    let upstream = match Upstream::open_plain(&shared, route, reached).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(error = %e, "upstream connection failed");
            return;
        }
    };
    let ctx = Arc::new(TunnelCtx {
        shared: shared.clone(),
        conn,
        tunnel,
        identity,
        upstream,
        scheme: Scheme::Http,
        guarded: true,
        gate: Arc::default(),
        requests: AtomicU64::new(0),
    });
    let gate = ctx.gate.clone();
    let svc = service_fn(move |req| handle_tunneled(ctx.clone(), req));
    serve_client(&shared, client, false, Some(gate), svc).await;
}

/// The page for a tunnel refused while it opens (SNI, upstream TLS), with its
/// event durable.
#[allow(clippy::too_many_arguments)]
async fn refuse_opening(
    shared: &Shared,
    conn: &ConnInfo,
    identity: &Identity,
    band_name: Option<&str>,
    tunnel: &TunnelName,
    kind: BlockKind,
    page: PageKind,
    reason: String,
) -> ServedPage {
    shared
        .refusal_page(
            conn,
            Some(identity),
            band_name,
            Refusal {
                kind,
                page,
                reason: &reason,
                url: request_url_text(tunnel),
                method: "CONNECT",
                verdict: None,
            },
        )
        .await
}

fn request_url_text(tunnel: &TunnelName) -> String {
    crate::request::connect_url(&tunnel.host, tunnel.port).redacted()
}

async fn serve_static<I>(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    io: I,
    is_h2: bool,
    page: ServedPage,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let page = Arc::new(page);
    let conn = conn.clone();
    let metrics = shared.metrics.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let page = page.clone();
        let conn = conn.clone();
        let metrics = metrics.clone();
        let started = std::time::Instant::now();
        async move {
            let violation = violation_response(&req);
            let verdict = if violation.is_some() {
                "refused"
            } else {
                "block"
            };
            let mut response = violation.unwrap_or_else(|| page.response());
            crate::verdict_headers::mark(&mut response, verdict, None);
            let access = Access {
                who: page.who.clone(),
                group: page.group.clone(),
                url: Some(page.url.clone()),
                verdict,
                safe_search: None,
            };
            log_access(
                &tracing::Span::current(),
                &conn,
                req.method().as_str(),
                &access,
                response.status(),
            );
            metrics.request(access.verdict, started.elapsed());
            Ok::<_, Infallible>(response)
        }
    });
    serve_client(shared, io, is_h2, None, svc).await;
}

/// Serves the client side of a tunnel with h2 or HTTP/1.1 (behind the framing
/// guard), draining on shutdown like a listener connection.
async fn serve_client<I, S, F>(
    shared: &Arc<Shared>,
    io: I,
    is_h2: bool,
    gate: Option<Arc<UpgradeGate>>,
    svc: S,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future = F,
        > + Send
        + 'static,
    F: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut phase = shared.phase.clone();
    if is_h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_H2_STREAMS)
            .max_header_list_size(MAX_H2_HEADER_LIST)
            .keep_alive_interval(Some(shared.settings.idle_timeout / 2))
            .keep_alive_timeout(shared.settings.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(connection);
        drive(connection, &mut phase, |c| c.graceful_shutdown()).await;
    } else {
        let mut guard = FramingGuard::new(io, shared.settings.limits);
        if let Some(gate) = gate {
            guard = guard.with_upgrade_gate(gate);
        }
        let connection = http1_builder(shared)
            .serve_connection(TokioIo::new(guard), svc)
            .with_upgrades();
        tokio::pin!(connection);
        drive(connection, &mut phase, |c| c.graceful_shutdown()).await;
    }
}

/// Polls a hyper connection to its end, asking it to finish gracefully when the
/// server starts draining and dropping it when the server stops.
async fn drive<C, E>(
    mut connection: std::pin::Pin<&mut C>,
    phase: &mut tokio::sync::watch::Receiver<Phase>,
    graceful: impl Fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = false;
    loop {
        let now = *phase.borrow();
        if now == Phase::Stopped {
            return;
        }
        if now == Phase::Draining && !draining {
            draining = true;
            graceful(connection.as_mut());
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "tunnel connection ended with an error");
                }
                return;
            }
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
}

/// One intercepted tunnel, shared by its requests.
struct TunnelCtx {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    identity: Identity,
    upstream: Upstream,
    /// `https` inside TLS, `http` for plain HTTP inside a tunnel.
    scheme: Scheme,
    /// HTTP/1.1 behind the framing guard: the guard's synthetic request is honoured.
    guarded: bool,
    /// Tells the framing guard how upgrade requests were answered (HTTP/1.1).
    gate: Arc<UpgradeGate>,
    /// Requests handled so far in this tunnel.
    requests: AtomicU64,
}

async fn handle_tunneled(
    ctx: Arc<TunnelCtx>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let span = tracing::debug_span!(
        "request",
        method = %method,
        host = %ctx.tunnel.host,
        group = %ctx.identity.group,
        band = tracing::field::Empty,
        verdict = tracing::field::Empty,
    );
    let span_in = span.clone();
    let started = std::time::Instant::now();
    async move {
        let number = ctx.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut access = Access {
            who: ctx.identity.who.clone(),
            group: Some(ctx.identity.group.clone()),
            ..Access::default()
        };
        let routed = {
            let routing = std::pin::pin!(route_tunneled(&ctx, req, &mut access));
            CatchUnwind(routing).await
        };
        let mut response = match routed {
            Ok(response) => response,
            Err(message) => {
                tracing::error!(panic = %message, "request handling panicked: failing closed");
                access.verdict = "block";
                ctx.shared
                    .refuse(
                        &ctx.conn,
                        Some(&ctx.identity),
                        None,
                        Refusal {
                            kind: BlockKind::DecisionFailed,
                            page: PageKind::Blocked,
                            reason: crate::request::FAIL_CLOSED_REASON,
                            url: access.url.clone().unwrap_or_default(),
                            method: &method,
                            verdict: None,
                        },
                    )
                    .await
            }
        };
        ctx.gate.settle(
            number,
            response.status() == http::StatusCode::SWITCHING_PROTOCOLS,
        );
        crate::verdict_headers::mark(&mut response, access.verdict, access.safe_search.take());
        log_access(&span_in, &ctx.conn, &method, &access, response.status());
        ctx.shared
            .metrics
            .request(access.verdict, started.elapsed());
        Ok(response)
    }
    .instrument(span)
    .await
}

async fn route_tunneled(
    ctx: &TunnelCtx,
    mut req: Request<Incoming>,
    access: &mut Access,
) -> Response<Body> {
    if ctx.guarded {
        if let Some(response) = violation_response(&req) {
            access.verdict = "refused";
            return response;
        }
    }
    // WebSocket and other upgrades work over HTTP/1.1 upstreams only.
    let client_upgrade = (ctx.guarded
        && !ctx.upstream.is_h2()
        && req.method() != http::Method::CONNECT
        && forward::upgrade_request(req.headers()).is_some())
    .then(|| hyper::upgrade::on(&mut req));
    let shared = &ctx.shared;
    let snap = shared.snapshots.load_full();
    let method = req.method().to_string();
    let Some((group, band)) = ctx.identity.resolve(&snap.policy) else {
        access.verdict = "block";
        return shared
            .refuse(
                &ctx.conn,
                Some(&ctx.identity),
                None,
                Refusal {
                    kind: BlockKind::DecisionFailed,
                    page: PageKind::Blocked,
                    reason: "your group is not in the school's filtering policy any more",
                    url: request_url_text(&ctx.tunnel),
                    method: &method,
                    verdict: None,
                },
            )
            .await;
    };
    tracing::Span::current().record("band", &*band.name);
    let refuse = |kind, reason, url, verdict| Refusal {
        kind,
        page: PageKind::Blocked,
        reason,
        url,
        method: &method,
        verdict,
    };
    let (parts, body) = req.into_parts();
    if parts.method == http::Method::CONNECT {
        access.verdict = "refused";
        return plain_refusal(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT inside a tunnel is not allowed",
        );
    }
    let url = match target::tunneled_url(&parts, &ctx.tunnel, ctx.scheme) {
        Ok(url) => url,
        Err(TargetError::Fronting { found, .. }) => {
            access.verdict = "block";
            access.url = Some(request_url_text(&ctx.tunnel));
            let reason =
                format!("the page asked for another site ({found}) than the one it opened");
            return shared
                .refuse(
                    &ctx.conn,
                    Some(&ctx.identity),
                    Some(&band.name),
                    refuse(
                        BlockKind::Fronting,
                        &reason,
                        request_url_text(&ctx.tunnel),
                        None,
                    ),
                )
                .await;
        }
        Err(e) => {
            access.verdict = "refused";
            return target_refusal(&e);
        }
    };
    access.url = Some(url.redacted());
    let decision = match filter::decide(&snap, group, &url) {
        Ok(decision) => decision,
        Err(e) => {
            tracing::error!(error = %e, "decision failed: blocking");
            access.verdict = "block";
            return shared
                .refuse(
                    &ctx.conn,
                    Some(&ctx.identity),
                    Some(&band.name),
                    refuse(
                        BlockKind::DecisionFailed,
                        crate::request::FAIL_CLOSED_REASON,
                        url.redacted(),
                        None,
                    ),
                )
                .await;
        }
    };
    access.verdict = decision.verdict.action.as_str();
    if decision.verdict.action == Action::Block {
        return shared
            .refuse(
                &ctx.conn,
                Some(&ctx.identity),
                Some(&band.name),
                refuse(
                    BlockKind::Policy,
                    &decision.verdict.reason,
                    url.redacted(),
                    Some(&decision.verdict),
                ),
            )
            .await;
    }
    let band: Band = band.clone();
    access.safe_search = crate::request::forced_search(&band, &url, &parts);
    match forward_tunneled(ctx, &url, &band, parts, body, client_upgrade).await {
        Ok(response) => response,
        Err(e) => {
            access.verdict = if e.is_refusal() { "block" } else { "error" };
            forward::upstream_failure_page(
                shared,
                &ctx.conn,
                &ctx.identity,
                &band,
                &url,
                &method,
                &e,
            )
            .await
        }
    }
}

async fn forward_tunneled(
    ctx: &TunnelCtx,
    url: &policy::CanonicalUrl,
    band: &Band,
    parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, UpstreamError> {
    let original = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let rewrite = safe_search::rewrite(band, url.host(), &original);
    let path_and_query = rewrite.path_and_query.as_deref().unwrap_or(&original);
    let invalid = |e: http::uri::InvalidUri| UpstreamError::Exchange {
        host: url.host().to_string(),
        message: e.to_string(),
    };
    let upgrade = client_upgrade
        .as_ref()
        .and_then(|_| forward::upgrade_request(&parts.headers));
    let extra = forward::with_upgrade(rewrite.headers, upgrade.as_ref());
    let body = crate::request_body(body);
    let request = if ctx.upstream.is_h2() {
        let uri: Uri = format!(
            "https://{}{path_and_query}",
            target::host_header_text(url.host(), url.port(), ctx.scheme)
        )
        .parse()
        .map_err(invalid)?;
        upstream_request(parts, body, uri, Version::HTTP_2, None, &extra)?
    } else {
        let uri: Uri = path_and_query.parse().map_err(invalid)?;
        let host = forward::host_value(url.host(), url.port(), ctx.scheme)?;
        upstream_request(parts, body, uri, Version::HTTP_11, Some(host), &extra)?
    };
    let mut response = ctx.upstream.send(request).await?;
    if let (Some(client), Some(_)) = (client_upgrade, &upgrade) {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upstream = hyper::upgrade::on(&mut response);
            forward::splice_upgraded(&ctx.shared, client, upstream);
            return Ok(forward::switching_response(response));
        }
    }
    Ok(client_response(response))
}

/// How the upstream of an intercepted tunnel was reached before the `200`.
pub(crate) struct Reached {
    /// The checked address every connection of the tunnel goes to.
    addr: SocketAddr,
    /// The policy generation the address was checked under.
    generation: u64,
    /// The connection dialled for the tunnel, or `None` when the pool held a
    /// live connection for the host and nothing was dialled.
    stream: Option<TcpStream>,
}

/// Reaches the upstream of a tunnel that will be intercepted. The name is
/// resolved and every address checked as for any dial; then a live pooled
/// connection for this host and port to one of those addresses counts as
/// reached, and otherwise the addresses are dialled in order.
pub(crate) async fn reach(
    shared: &Shared,
    host: &CanonicalHost,
    port: u16,
    generation: u64,
) -> Result<Reached, UpstreamError> {
    if !shared.dialer.destinations.port_allowed(port) {
        return Err(UpstreamError::PortNotAllowed(port));
    }
    let addrs = shared.dialer.resolve_checked(host, port).await?;
    let rules = Rules {
        generation,
        destinations: &shared.dialer.destinations,
    };
    if let Some(addr) = shared.pool.reachable(host, port, &addrs, &rules) {
        return Ok(Reached {
            addr,
            generation,
            stream: None,
        });
    }
    let (stream, addr) = shared.dialer.dial_checked(host, &addrs).await?;
    shared.metrics.upstream(false);
    Ok(Reached {
        addr,
        generation,
        stream: Some(stream),
    })
}

/// A connection a tunnel holds, with what giving it back to the pool needs.
struct Held<S> {
    wire: Wire,
    /// The policy generation its address was checked under.
    checked_at: u64,
    /// It carried a login bound to the connection (NTLM, Negotiate): it serves
    /// this tunnel alone and is never pooled.
    pinned: bool,
    sender: S,
}

impl<S> Held<S> {
    fn new(wire: Wire, checked_at: u64, sender: S) -> Self {
        Held {
            wire,
            checked_at,
            pinned: false,
            sender,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The upstream side of one intercepted tunnel. Every connection goes to the
/// address checked when the tunnel opened and is verified for the tunnel's own
/// host name. A connection serves one tunnel at a time: taken from the shared
/// [`pool`](crate::pool) (or dialled) when the tunnel needs one, kept while the
/// tunnel lasts (its h2 connection, or the HTTP/1.1 connection its requests take
/// one after another), and given back when the tunnel closes (the pool hands an
/// HTTP/1.1 connection out again only once its last response was read to its end).
struct Upstream {
    shared: Arc<Shared>,
    route: Route,
    /// Whether connections speak TLS (false for plain HTTP in a tunnel).
    tls: bool,
    /// The h2 connection, replaced when the origin closes it (GOAWAY after idle).
    h2: Option<Mutex<Held<http2::SendRequest<Body>>>>,
    /// The tunnel's HTTP/1.1 connection between its requests.
    own: Mutex<Option<Held<http1::SendRequest<Body>>>>,
}

impl Upstream {
    fn new(shared: &Arc<Shared>, route: Route, tls: bool) -> Upstream {
        Upstream {
            shared: shared.clone(),
            route,
            tls,
            h2: None,
            own: Mutex::new(None),
        }
    }

    /// The upstream of a TLS tunnel whose client offered h2 (`offers_h2`) or
    /// not: on the connection dialled before the `200`; else on a pooled h2
    /// connection for a client offering h2, or pooled HTTP/1.1 connections
    /// where a fresh connection would have given HTTP/1.1 too; else on a new
    /// connection to the checked address. Upstream TLS is verified for the
    /// tunnel's name whenever a connection is new.
    async fn open_tls(
        shared: &Arc<Shared>,
        route: Route,
        reached: Reached,
        offers_h2: bool,
    ) -> Result<Upstream, UpstreamError> {
        let mut upstream = Upstream::new(shared, route, true);
        let (stream, checked_at) = match reached.stream {
            Some(stream) => (stream, reached.generation),
            None => {
                let rules = shared.pool_rules();
                if offers_h2 {
                    if let Some(sender) = shared.pool.take_http2(&upstream.route, &rules) {
                        shared.metrics.upstream(true);
                        let held = Held::new(Wire::TlsH2, rules.generation, sender);
                        upstream.h2 = Some(Mutex::new(held));
                        return Ok(upstream);
                    }
                }
                if shared
                    .pool
                    .has(&upstream.route, Wire::http1_for_offer(offers_h2), &rules)
                {
                    // Each request takes a pooled connection (or dials one).
                    return Ok(upstream);
                }
                upstream.dial_again().await?
            }
        };
        let tls = shared
            .upstream_tls
            .connect(&upstream.route.host, stream, offers_h2)
            .await?;
        let wire = Wire::tls(offers_h2, tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        let host = &upstream.route.host;
        if wire.is_h2() {
            let sender = forward::handshake_http2(shared, host, tls).await?;
            upstream.h2 = Some(Mutex::new(Held::new(wire, checked_at, sender)));
        } else {
            let sender = forward::handshake_http1(shared, host, tls).await?;
            *lock(&upstream.own) = Some(Held::new(wire, checked_at, sender));
        }
        Ok(upstream)
    }

    /// The upstream of plain HTTP inside a tunnel: on the connection dialled
    /// before the `200`, else on pooled or new connections per request.
    async fn open_plain(
        shared: &Arc<Shared>,
        route: Route,
        reached: Reached,
    ) -> Result<Upstream, UpstreamError> {
        let upstream = Upstream::new(shared, route, false);
        if let Some(stream) = reached.stream {
            let sender = forward::handshake_http1(shared, &upstream.route.host, stream).await?;
            *lock(&upstream.own) = Some(Held::new(Wire::Plain, reached.generation, sender));
        }
        Ok(upstream)
    }

    fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    fn failed(&self, e: hyper::Error) -> UpstreamError {
        UpstreamError::Exchange {
            host: self.route.host.to_string(),
            message: e.to_string(),
        }
    }

    async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        let binds = pool::binds_connection(request.headers());
        if let Some(h2) = &self.h2 {
            return self.send_h2(h2, request, binds).await;
        }
        let (mut held, replay) = match self.take_http1().await {
            // A kept connection may turn out closed (see `forward::Replay`).
            Some(held) => (held, forward::Replay::of(&request)),
            None => (self.dial_http1().await?, None),
        };
        let response = match held.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                let again = forward::request_again(e, replay).map_err(|e| self.failed(e))?;
                // Once, on a new connection, whose failure is final.
                held = self.dial_http1().await?;
                held.sender
                    .send_request(again)
                    .await
                    .map_err(|e| self.failed(e))?
            }
        };
        held.pinned |= binds || pool::binds_connection(response.headers());
        self.give_back(held);
        Ok(response)
    }

    async fn send_h2(
        &self,
        slot: &Mutex<Held<http2::SendRequest<Body>>>,
        request: Request<Body>,
        binds: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let current = lock(slot).sender.clone();
        let mut sender = if current.is_closed() {
            self.replace_h2(slot).await?
        } else {
            current
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                // Only a request that never went out is retried on h2.
                let unsent = forward::request_again(e, None).map_err(|e| self.failed(e))?;
                let mut fresh = self.replace_h2(slot).await?;
                fresh
                    .send_request(unsent)
                    .await
                    .map_err(|e| self.failed(e))?
            }
        };
        if binds || pool::binds_connection(response.headers()) {
            lock(slot).pinned = true;
        }
        Ok(response)
    }

    /// Replaces the tunnel's h2 connection: with a pooled one for the same
    /// route, or a new one to the same checked address (never re-resolved).
    async fn replace_h2(
        &self,
        slot: &Mutex<Held<http2::SendRequest<Body>>>,
    ) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let pooled = {
            let rules = self.shared.pool_rules();
            self.shared
                .pool
                .take_http2(&self.route, &rules)
                .map(|sender| Held::new(Wire::TlsH2, rules.generation, sender))
        };
        let fresh = match pooled {
            Some(held) => {
                self.shared.metrics.upstream(true);
                held
            }
            None => {
                let (stream, checked_at) = self.dial_again().await?;
                let host = &self.route.host;
                let tls = self.shared.upstream_tls.connect(host, stream, true).await?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(UpstreamError::Exchange {
                        host: host.to_string(),
                        message: "the site no longer offers HTTP/2 on a new connection".into(),
                    });
                }
                let sender = forward::handshake_http2(&self.shared, host, tls).await?;
                Held::new(Wire::TlsH2, checked_at, sender)
            }
        };
        let sender = fresh.sender.clone();
        *lock(slot) = fresh;
        Ok(sender)
    }

    /// A ready HTTP/1.1 connection: the tunnel's own, else a pooled one.
    async fn take_http1(&self) -> Option<Held<http1::SendRequest<Body>>> {
        let own = lock(&self.own).take();
        if let Some(mut held) = own {
            // Requests in a tunnel come one after another, so its previous
            // response is over or about to be; a connection that stays busy
            // (or closed) is let go.
            let wait = self.shared.settings.connect_timeout;
            if let Ok(Ok(())) = tokio::time::timeout(wait, held.sender.ready()).await {
                return Some(held);
            }
        }
        let rules = self.shared.pool_rules();
        let (wire, sender) =
            self.shared
                .pool
                .take_http1(&self.route, Wire::http1(self.tls), &rules)?;
        self.shared.metrics.upstream(true);
        Some(Held::new(wire, rules.generation, sender))
    }

    /// Keeps a connection for the tunnel's next request once its response head
    /// is in; it goes to the pool when the tunnel closes.
    fn give_back(&self, held: Held<http1::SendRequest<Body>>) {
        let earlier = lock(&self.own).replace(held);
        // Only one request is in flight per tunnel, so there is none; if there
        // were, it is pooled as at the tunnel's end.
        if let Some(earlier) = earlier {
            self.release(earlier, Sender::Http1);
        }
    }

    /// Hands a connection the tunnel no longer needs to the pool, unless it
    /// carries a connection-bound login (then it closes).
    fn release<S>(&self, held: Held<S>, sender: fn(S) -> Sender) {
        if held.pinned {
            return;
        }
        let rules = self.shared.pool_rules();
        let (wire, checked_at) = (held.wire, held.checked_at);
        let pool = &self.shared.pool;
        pool.put(&self.route, wire, sender(held.sender), checked_at, &rules);
    }

    /// A TCP connection to the address checked when the tunnel opened, checked
    /// against the rules in effect now; with the generation of that check.
    async fn dial_again(&self) -> Result<(TcpStream, u64), UpstreamError> {
        let generation = self.shared.snapshots.load().generation;
        let (host, addr) = (&self.route.host, self.route.addr);
        self.shared.dialer.check_addr(host, addr)?;
        let stream =
            self.shared
                .dialer
                .dial_addr(addr)
                .await
                .map_err(|source| UpstreamError::Connect {
                    host: host.to_string(),
                    source,
                })?;
        self.shared.metrics.upstream(false);
        Ok((stream, generation))
    }

    /// Another HTTP/1.1 connection to the same checked address (never
    /// re-resolved); over TLS only `http/1.1` is offered.
    async fn dial_http1(&self) -> Result<Held<http1::SendRequest<Body>>, UpstreamError> {
        let (stream, checked_at) = self.dial_again().await?;
        let host = &self.route.host;
        if !self.tls {
            let sender = forward::handshake_http1(&self.shared, host, stream).await?;
            return Ok(Held::new(Wire::Plain, checked_at, sender));
        }
        let tls = self
            .shared
            .upstream_tls
            .connect(host, stream, false)
            .await?;
        let sender = forward::handshake_http1(&self.shared, host, tls).await?;
        Ok(Held::new(Wire::TlsH1Offered, checked_at, sender))
    }
}

impl Drop for Upstream {
    /// The tunnel closed: its connections go back to the pool, unless they
    /// carry a connection-bound login.
    fn drop(&mut self) {
        if let Some(slot) = self.h2.take() {
            let held = slot.into_inner().unwrap_or_else(|p| p.into_inner());
            self.release(held, Sender::Http2);
        }
        if let Some(held) = lock(&self.own).take() {
            self.release(held, Sender::Http1);
        }
    }
}
