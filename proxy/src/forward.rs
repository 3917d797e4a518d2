//! Forward: re-framed requests to the origin and its responses back.
//!
//! In: an allowed request (parts and streaming body), its canonical URL and the
//! band. Out: the origin's response with hop-by-hop headers and `Alt-Svc`
//! removed, or an [`UpstreamError`]. What is sent upstream is rebuilt:
//! origin-form (or absolute for h2) URI, `Host` from the canonical authority,
//! without the hop-by-hop headers (`Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`), without
//! `Proxy-Authorization`, and without the client's `Content-Length`,
//! `Transfer-Encoding` and `Expect`: hyper frames the body itself, so the
//! client's framing never reaches an origin. Bodies are streamed, never buffered.
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use policy::event::BlockKind;
use policy::host::CanonicalHost;
use policy::url::Scheme;
use policy::{Band, CanonicalUrl};

use crate::auth::Identity;
use crate::block::PageKind;
use crate::framing::REJECTED_HEADER_NAME;
use crate::idle::{Activity, Clock, SpliceEnd, splice};
use crate::listen::Phase;
use crate::request::{ConnInfo, Refusal, Shared};
use crate::upstream::UpstreamError;
use crate::{Body, safe_search, target};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus
/// the proxy's own credentials and framing, which hyper rebuilds.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers, including every header `Connection` names.
/// Most messages carry none: one pass over the names finds that, cheaper than
/// nine removals (this runs twice for every forwarded request).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The request an origin gets.
pub(crate) fn upstream_request(
    mut parts: Parts,
    body: Body,
    uri: Uri,
    version: Version,
    host_header: Option<HeaderValue>,
    extra: &[(HeaderName, HeaderValue)],
) -> Result<Request<Body>, UpstreamError> {
    strip_hop_by_hop(&mut parts.headers);
    // Rarely present: one pass over the names finds that, cheaper than a
    // hashed removal of each.
    let dropped = [header::CONTENT_LENGTH, header::EXPECT, REJECTED_HEADER_NAME];
    if parts.headers.keys().any(|name| dropped.contains(name)) {
        for name in &dropped {
            parts.headers.remove(name);
        }
    }
    match host_header {
        // Replaces every `Host` the client sent.
        Some(value) => {
            parts.headers.insert(header::HOST, value);
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    for (name, value) in extra {
        parts.headers.insert(name.clone(), value.clone());
    }
    parts.uri = uri;
    parts.version = version;
    Ok(Request::from_parts(parts, body))
}

/// The response a client gets: hop-by-hop headers and `Alt-Svc` removed (a
/// client told about HTTP/3 would try QUIC, which the proxy cannot see into).
pub(crate) fn client_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if parts.headers.keys().any(|name| name == header::ALT_SVC) {
        parts.headers.remove(header::ALT_SVC);
    }
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

/// The `Host` value of a forwarded request (see [`target::host_header_text`]).
pub(crate) fn host_value(
    host: &CanonicalHost,
    port: u16,
    scheme: Scheme,
) -> Result<HeaderValue, UpstreamError> {
    let text = target::host_header_text(host, port, scheme);
    HeaderValue::from_str(&text).map_err(|e| UpstreamError::Exchange {
        host: text,
        message: e.to_string(),
    })
}

/// An origin-form URI (`/path?query`) from a path and query.
fn origin_form(pq: http::uri::PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(pq);
    // A path and query alone is always a valid origin-form URI.
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

/// A kept upstream connection of a client connection (plain HTTP).
pub(crate) struct PlainUpstream {
    host: CanonicalHost,
    port: u16,
    /// The `Host` its requests carry, built once per connection rather than
    /// once per request.
    host_header: HeaderValue,
    sender: http1::SendRequest<Body>,
}

/// Forwards an allowed plain-HTTP request.
pub(crate) async fn plain(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    url: &CanonicalUrl,
    band: &Band,
    parts: Parts,
    body: Incoming,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<Body>, UpstreamError> {
    let original = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rewrite = safe_search::rewrite(band, url.host(), original);
    let uri = match (&rewrite.path_and_query, parts.uri.path_and_query()) {
        (Some(rewritten), _) => rewritten
            .parse()
            .map_err(|e: http::uri::InvalidUri| exchange(url.host(), e))?,
        // Unchanged: the client's own path and query, already parsed (a
        // reference-counted copy, not a second parse).
        (None, Some(pq)) => origin_form(pq.clone()),
        (None, None) => Uri::from_static("/"),
    };
    // The kept connection, if it goes to the same host and port (any other
    // is closed by dropping it).
    let kept = conn
        .plain_upstream
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .filter(|k| &k.host == url.host() && k.port == url.port());
    let host_header = match &kept {
        Some(k) => k.host_header.clone(),
        None => host_value(url.host(), url.port(), Scheme::Http)?,
    };
    let upgrade = client_upgrade
        .as_ref()
        .and_then(|_| upgrade_request(&parts.headers));
    let extra = with_upgrade(rewrite.headers, upgrade.as_ref());
    let body = crate::request_body(body);
    let req = upstream_request(
        parts,
        body,
        uri,
        Version::HTTP_11,
        Some(host_header.clone()),
        &extra,
    )?;

    let (mut sender, reused) = match kept {
        Some(k) if k.sender.is_ready() => (k.sender, true),
        _ => (dial_plain(shared, url.host(), url.port()).await?, false),
    };
    let replay = reused.then(|| Replay::of(&req)).flatten();
    let mut response = match sender.try_send_request(req).await {
        Ok(response) => response,
        Err(e) => {
            let again = request_again(e, replay).map_err(|e| exchange(url.host(), e))?;
            // Once, on a fresh connection, whose failure is final.
            sender = dial_plain(shared, url.host(), url.port()).await?;
            sender
                .send_request(again)
                .await
                .map_err(|e| exchange(url.host(), e))?
        }
    };
    if let (Some(client), Some(_)) = (client_upgrade, &upgrade) {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The upstream connection now belongs to the upgraded stream.
            let upstream = hyper::upgrade::on(&mut response);
            splice_upgraded(shared, client, upstream);
            return Ok(switching_response(response));
        }
    }
    *conn
        .plain_upstream
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(PlainUpstream {
        host: url.host().clone(),
        port: url.port(),
        host_header,
        sender,
    });
    Ok(client_response(response))
}

/// A copy of a request that may be sent again if the kept connection it went
/// out on turns out to be closed. An origin may close an idle keep-alive
/// connection at the moment a request is written to it; the request then gets
/// no answer, and the pupil would see an error page for a page that works.
/// RFC 9110 §9.2.2 lets a client repeat an idempotent request then, as
/// browsers do: only a method that is idempotent (GET, HEAD, OPTIONS, TRACE,
/// PUT, DELETE) with no body (a streamed body cannot be replayed), only when
/// the connection had served an earlier request and closed before any answer,
/// and only once, on a new connection.
pub(crate) struct Replay {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// The copy, for a request that may be repeated.
    pub(crate) fn of(req: &Request<Body>) -> Option<Replay> {
        use hyper::body::Body as _;
        if !req.method().is_idempotent() || !req.body().is_end_stream() {
            return None;
        }
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    /// The request again, with its empty body.
    pub(crate) fn request(self) -> Request<Body> {
        let mut req = Request::new(crate::full_body(""));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}

/// What to send on a new connection after a send on a kept one failed: the
/// request itself when it never went out (the origin had closed the
/// connection), else its [`Replay`] when repeating it is safe; otherwise the
/// error stands.
pub(crate) fn request_again(
    mut e: hyper::client::conn::TrySendError<Request<Body>>,
    replay: Option<Replay>,
) -> Result<Request<Body>, hyper::Error> {
    if let Some(unsent) = e.take_message() {
        return Ok(unsent);
    }
    let e = e.into_error();
    match replay.filter(|_| closed_before_answer(&e)) {
        Some(replay) => Ok(replay.request()),
        None => Err(e),
    }
}

/// Whether a failed exchange on a kept connection ended with the origin
/// closing it before any of an answer came: end of stream (over TLS, one
/// without `close_notify` is an `UnexpectedEof`), or a reset.
pub(crate) fn closed_before_answer(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = err.source();
    }
    false
}

/// The `Upgrade` value of an upgrade request: `Upgrade` plus a `Connection`
/// token `upgrade`, and no body (the framing guard's rule, so both agree on which
/// requests may switch protocols).
pub(crate) fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let has_body = headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING);
    (connection_upgrade && !has_body).then(|| upgrade.clone())
}

/// Adds `Upgrade` and `Connection: upgrade` back after the hop-by-hop strip.
pub(crate) fn with_upgrade(
    mut extra: Vec<(HeaderName, HeaderValue)>,
    upgrade: Option<&HeaderValue>,
) -> Vec<(HeaderName, HeaderValue)> {
    if let Some(value) = upgrade {
        extra.push((header::UPGRADE, value.clone()));
        extra.push((header::CONNECTION, HeaderValue::from_static("upgrade")));
    }
    extra
}

/// The `101` a client gets: the origin's, with `Upgrade`/`Connection` kept.
pub(crate) fn switching_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, _body) = response.into_parts();
    let upgrade = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::ALT_SVC);
    if let Some(value) = upgrade {
        parts.headers.insert(header::UPGRADE, value);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    Response::from_parts(parts, crate::full_body(""))
}

/// Once both sides have switched, copies bytes both ways (idle timeout applies).
pub(crate) fn splice_upgraded(shared: &Arc<Shared>, client: OnUpgrade, upstream: OnUpgrade) {
    let idle = shared.settings.idle_timeout;
    crate::connect::spawn_tunnel(shared, async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "protocol switch failed");
                return;
            }
        };
        match splice(TokioIo::new(client), TokioIo::new(upstream), idle).await {
            SpliceEnd::Closed(up, down) => tracing::debug!(up, down, "upgraded connection closed"),
            SpliceEnd::Idle => tracing::debug!("upgraded connection idle: closed"),
            SpliceEnd::Failed(e) => tracing::debug!(error = %e, "upgraded connection failed"),
        }
    });
}

fn exchange(host: &CanonicalHost, e: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Exchange {
        host: host.to_string(),
        message: e.to_string(),
    }
}

async fn dial_plain(
    shared: &Arc<Shared>,
    host: &CanonicalHost,
    port: u16,
) -> Result<http1::SendRequest<Body>, UpstreamError> {
    let (stream, _addr) = shared.dialer.dial(host, port).await?;
    handshake_http1(shared, host, stream).await
}

/// An HTTP/1.1 client connection on a connected stream, driven by its own task
/// that ends when the connection closes, goes idle, or the server stops.
pub(crate) async fn handshake_http1<S>(
    shared: &Arc<Shared>,
    host: &CanonicalHost,
    stream: S,
) -> Result<http1::SendRequest<Body>, UpstreamError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let clock = Clock::new();
    let io = TokioIo::new(Activity::new(stream, clock.clone()));
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| exchange(host, e))?;
    spawn_driver(shared, connection.with_upgrades(), clock);
    Ok(sender)
}

/// An HTTP/2 client connection, as [`handshake_http1`].
pub(crate) async fn handshake_http2<S>(
    shared: &Arc<Shared>,
    host: &CanonicalHost,
    stream: S,
) -> Result<hyper::client::conn::http2::SendRequest<Body>, UpstreamError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let clock = Clock::new();
    let io = TokioIo::new(Activity::new(stream, clock.clone()));
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| exchange(host, e))?;
    spawn_driver(shared, connection, clock);
    Ok(sender)
}

/// Drives a client connection in a task of its own, and closes it when it
/// goes idle or the server stops.
///
/// The closing is a second task that aborts the first: the connection's task
/// polls only the connection. Selecting over the connection, the idle clock
/// and the server phase in one task polled all three on every wake-up, about
/// 3 % of an allowed request's instructions; the watcher wakes only when its
/// timer fires, the phase changes or the connection ends.
fn spawn_driver<C, E>(shared: &Arc<Shared>, connection: C, clock: Arc<Clock>)
where
    C: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let idle = shared.settings.idle_timeout;
    let mut phase = shared.phase.clone();
    let mut driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut driver => return,
            () = clock.expired(idle) => tracing::debug!("upstream connection idle: closed"),
            _ = phase.wait_for(|p| *p == Phase::Stopped) => {}
        }
        driver.abort();
    });
}

/// The page for an upstream that was refused (403, a block event) or could not
/// be reached (502, no event).
pub(crate) async fn upstream_failure_page(
    shared: &Shared,
    conn: &ConnInfo,
    identity: &Identity,
    band: &Band,
    url: &CanonicalUrl,
    method: &str,
    e: &UpstreamError,
) -> Response<Body> {
    tracing::info!(error = %e, "upstream failed");
    let (kind, page, reason) = failure_words(e);
    shared
        .refuse(
            conn,
            Some(identity),
            Some(&band.name),
            Refusal {
                kind,
                page,
                reason: &reason,
                url: url.redacted(),
                method,
                verdict: None,
            },
        )
        .await
}

/// How an upstream failure is shown.
pub(crate) fn failure_words(e: &UpstreamError) -> (BlockKind, PageKind, String) {
    match e {
        UpstreamError::PortNotAllowed(port) => {
            (BlockKind::Destination, PageKind::Blocked, format!("the web filter does not open connections to port {port}"))
        }
        UpstreamError::Forbidden { .. } => (
            BlockKind::Destination,
            PageKind::Blocked,
            "this address points inside the school network or at the filter itself, which the web filter does not open".into(),
        ),
        UpstreamError::Tls { reason, .. } => (BlockKind::UpstreamCertificate, PageKind::UpstreamCertificate, reason.clone()),
        UpstreamError::Resolve { .. } | UpstreamError::NoAddress(_) => {
            (BlockKind::Destination, PageKind::Unreachable, "the site's name could not be found".into())
        }
        UpstreamError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            (BlockKind::Destination, PageKind::Unreachable, "the site did not answer in time".into())
        }
        UpstreamError::Connect { .. } => (BlockKind::Destination, PageKind::Unreachable, "the site refused the connection".into()),
        UpstreamError::Exchange { .. } => {
            (BlockKind::Destination, PageKind::Unreachable, "the site closed the connection before answering".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic dTpw"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_other_messages_are_left_as_they_are() {
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name} was kept");
            assert!(h.contains_key(header::ACCEPT));
        }
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::COOKIE, HeaderValue::from_static("a=1"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn an_upstream_request_carries_one_host_and_none_of_the_clients_framing() {
        let build = |pairs: &[(&str, &str)], host: Option<&'static str>| {
            let mut req = http::Request::builder().uri("http://a.test/x");
            for (n, v) in pairs {
                req = req.header(*n, *v);
            }
            let (parts, ()) = req.body(()).expect("a request").into_parts();
            let out = upstream_request(
                parts,
                crate::full_body(""),
                Uri::from_static("/x"),
                Version::HTTP_11,
                host.map(HeaderValue::from_static),
                &[],
            )
            .expect("built");
            let mut names: Vec<String> = out
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                .collect();
            names.sort();
            names
        };
        let framing = [
            ("host", "A.test"),
            ("host", "b.test"),
            ("content-length", "0"),
            ("expect", "100-continue"),
            (crate::framing::REJECTED_HEADER, "x"),
            ("accept", "*/*"),
        ];
        assert_eq!(
            build(&framing, Some("a.test")),
            ["accept: */*", "host: a.test"]
        );
        assert_eq!(build(&framing, None), ["accept: */*"]);
        // Nothing to drop: only `Host` is set.
        assert_eq!(
            build(
                &[("host", "a.test"), ("accept", "*/*")],
                Some("a.test:8080")
            ),
            ["accept: */*", "host: a.test:8080"]
        );
    }
}
