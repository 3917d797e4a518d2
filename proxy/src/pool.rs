//! Pool: verified upstream connections kept across tunnels.
//!
//! In: HTTP client connections to origins (HTTP/1.1 or h2, over verified TLS or
//! plain TCP) that a tunnel dialled to an address checked against the
//! destination rules, each filed under everything that made it valid: the
//! canonical host name it was opened (and its certificate verified) for, the
//! port, the checked socket address, and its [`Wire`] (plain, or TLS with what
//! ALPN offered and the origin chose), plus the policy generation it was checked
//! under. Out: for a later tunnel to exactly the same host, port, address and
//! wire, a live connection instead of a new TCP connect and TLS handshake; or
//! nothing, and the caller dials as before.
//!
//! Why: without it every new intercepted tunnel paid a TCP connect and a full
//! TLS client handshake to the origin (key exchange and chain verification,
//! about half of the ~1 ms of CPU a new intercepted connection cost), because
//! upstream connections lived only as long as their tunnel. Browsers open new
//! tunnels all the time; most go to hosts visited moments before.
//!
//! How, and why it is safe:
//! - A connection serves one tunnel at a time: a tunnel keeps what it took or
//!   dialled while it lasts (its h2 connection, or the HTTP/1.1 connection its
//!   requests use one after another) and gives it to the pool when it closes.
//! - A connection is only handed out under the host name it was verified for
//!   (the pool is looked up by host, and every field of the key must match): two
//!   names on one address never share a connection, so a certificate checked for
//!   one name never carries another's traffic.
//! - Entries belong to one policy generation. The first pool operation that sees
//!   a newer generation (a reload) empties the pool, an operation still holding
//!   an older one finds nothing, and a connection checked under an older
//!   generation is not taken back. Independently, the entry's address is checked
//!   against the current [`Destinations`] again before use, so a pooled
//!   connection never outlives a change of the destination rules.
//! - HTTP/1.1 connections are handed out only when idle and ready (hyper reports
//!   ready once the previous response was read to its end) and never closed;
//!   h2 connections only when not closed. A connection that the origin closed
//!   while pooled is caught by the caller's `try_send_request`: a request that
//!   provably never went out is retried once on a fresh connection, any other
//!   failure is reported, never retried.
//! - Idle entries expire after the upstream idle timeout (the connection's own
//!   driver also closes it after that long without traffic: see
//!   [`forward::handshake_http1`](crate::forward::handshake_http1)). The pool
//!   holds at most [`MAX_IDLE_PER_KEY`] connections per key and
//!   [`MAX_IDLE_TOTAL`] in all; past that a returned connection is closed.
//! - Requests of different pupils may share a connection, as through any
//!   forward proxy: nothing per-person is bound to it (requests are rebuilt
//!   without `Proxy-Authorization`; upstream TLS has no client certificate). The
//!   exception is HTTP authentication bound to the connection itself (NTLM,
//!   Negotiate): the tunnel keeps such a connection to itself and it is never
//!   pooled (see [`binds_connection`]).
//!
//! The no-intercept splice never uses the pool (it copies raw bytes), and
//! neither do blocked tunnels (they have no upstream).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::client::conn::{http1, http2};
use policy::host::CanonicalHost;

use crate::Body;
use crate::upstream::Destinations;

/// Most connections kept per key (host, port, address, wire).
pub const MAX_IDLE_PER_KEY: usize = 16;
/// Most connections kept in all: each idle TLS connection holds a socket and
/// some tens of KiB of buffers, so the bound keeps a school's long tail of
/// hosts from growing the proxy's memory.
pub const MAX_IDLE_TOTAL: usize = 1024;

/// How a connection speaks beyond TCP: part of the key, because a reuse must
/// give the client what a fresh connection would have (the client is offered h2
/// only when the origin chose it for an offer like the client's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Wire {
    /// Plain HTTP/1.1 (plain HTTP inside a tunnel).
    Plain,
    /// TLS; only `http/1.1` was offered.
    TlsH1Offered,
    /// TLS; `h2` was offered and the origin chose HTTP/1.1.
    TlsH1Chosen,
    /// TLS; `h2` was offered and chosen.
    TlsH2,
}

impl Wire {
    /// The wire of a TLS connection from what was offered and what was chosen.
    pub(crate) fn tls(offered_h2: bool, chose_h2: bool) -> Wire {
        match (offered_h2, chose_h2) {
            (true, true) => Wire::TlsH2,
            (true, false) => Wire::TlsH1Chosen,
            // The origin cannot choose what was not offered: rustls refuses it.
            (false, _) => Wire::TlsH1Offered,
        }
    }

    /// Whether the connection speaks h2.
    pub(crate) fn is_h2(self) -> bool {
        self == Wire::TlsH2
    }

    /// The HTTP/1.1 wires one request may use: any HTTP/1.1 connection to the
    /// route, whatever was offered when it opened.
    pub(crate) fn http1(tls: bool) -> &'static [Wire] {
        if tls {
            &[Wire::TlsH1Offered, Wire::TlsH1Chosen]
        } else {
            &[Wire::Plain]
        }
    }

    /// The HTTP/1.1 wires a new TLS tunnel may start on without changing what
    /// its client is offered: a client offering h2 gets HTTP/1.1 only where the
    /// origin itself declined h2.
    pub(crate) fn http1_for_offer(offers_h2: bool) -> &'static [Wire] {
        if offers_h2 {
            &[Wire::TlsH1Chosen]
        } else {
            &[Wire::TlsH1Offered, Wire::TlsH1Chosen]
        }
    }
}

/// Where a tunnel's connections go: the host name they were verified for, the
/// port, and the address that was checked against the destination rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The canonical host name (or IP literal) of the tunnel.
    pub host: CanonicalHost,
    /// The port.
    pub port: u16,
    /// The checked address, never re-resolved.
    pub addr: SocketAddr,
}

/// A pooled client connection.
pub(crate) enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(http1::SendRequest<Body>),
    /// h2.
    Http2(http2::SendRequest<Body>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

/// What a pooled connection must still satisfy to be used: the policy
/// generation now in effect and the destination rules.
#[derive(Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The generation of the policy snapshot in effect.
    pub generation: u64,
    /// The destination rules in effect.
    pub destinations: &'a Destinations,
}

/// One kept connection.
struct Idle {
    port: u16,
    addr: SocketAddr,
    wire: Wire,
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn on(&self, route: &Route) -> bool {
        self.port == route.port && self.addr == route.addr
    }
}

struct Inner {
    /// The generation every kept connection was checked under.
    generation: u64,
    /// Kept connections by host name: the first field of the key, looked up
    /// without building a key; the rest is compared entry by entry.
    hosts: HashMap<CanonicalHost, Vec<Idle>>,
    /// Connections kept in all.
    count: usize,
}

/// The process-wide pool of idle upstream connections (one per server).
pub(crate) struct Pool {
    inner: Mutex<Inner>,
    max_idle: Duration,
    per_key: usize,
    total: usize,
}

impl Pool {
    /// An empty pool whose entries expire after `max_idle`.
    pub(crate) fn new(max_idle: Duration) -> Pool {
        Pool::with_limits(max_idle, MAX_IDLE_PER_KEY, MAX_IDLE_TOTAL)
    }

    fn with_limits(max_idle: Duration, per_key: usize, total: usize) -> Pool {
        Pool {
            inner: Mutex::new(Inner {
                generation: 0,
                hosts: HashMap::new(),
                count: 0,
            }),
            max_idle,
            per_key,
            total,
        }
    }

    /// The pool, brought to `rules.generation` (emptied when that is newer);
    /// `None` when the caller's rules are older than the pool's.
    fn current(&self, rules: &Rules<'_>) -> Option<MutexGuard<'_, Inner>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if rules.generation > inner.generation {
            inner.hosts.clear();
            inner.count = 0;
            inner.generation = rules.generation;
        }
        (rules.generation == inner.generation).then_some(inner)
    }

    /// The live entries kept for `route`'s host, after dropping the closed and
    /// expired ones and, when the current rules refuse `route`'s address, every
    /// entry on `route`.
    fn entries<'a>(
        &self,
        inner: &'a mut Inner,
        route: &Route,
        rules: &Rules<'_>,
    ) -> Option<&'a mut Vec<Idle>> {
        let admitted = rules.destinations.check(route.addr).is_ok();
        let list = inner.hosts.get_mut(&route.host)?;
        let before = list.len();
        list.retain(|e| {
            !e.sender.is_closed() && e.since.elapsed() < self.max_idle && (admitted || !e.on(route))
        });
        inner.count -= before - list.len();
        if list.is_empty() {
            inner.hosts.remove(&route.host);
            return None;
        }
        inner.hosts.get_mut(&route.host)
    }

    /// The address of a live kept connection (any wire) for `host:port` to one
    /// of `addrs`, the addresses the name resolves to now, all checked.
    pub(crate) fn reachable(
        &self,
        host: &CanonicalHost,
        port: u16,
        addrs: &[SocketAddr],
        rules: &Rules<'_>,
    ) -> Option<SocketAddr> {
        let mut inner = self.current(rules)?;
        addrs.iter().copied().find(|&addr| {
            let route = Route {
                host: host.clone(),
                port,
                addr,
            };
            self.entries(&mut inner, &route, rules)
                .is_some_and(|list| list.iter().any(|e| e.on(&route)))
        })
    }

    /// Whether a live connection of one of `wires` is kept for `route` (it stays
    /// in the pool).
    pub(crate) fn has(&self, route: &Route, wires: &[Wire], rules: &Rules<'_>) -> bool {
        let Some(mut inner) = self.current(rules) else {
            return false;
        };
        self.entries(&mut inner, route, rules)
            .is_some_and(|list| list.iter().any(|e| e.on(route) && wires.contains(&e.wire)))
    }

    /// Takes an idle, ready HTTP/1.1 connection of one of `wires` for `route`.
    pub(crate) fn take_http1(
        &self,
        route: &Route,
        wires: &[Wire],
        rules: &Rules<'_>,
    ) -> Option<(Wire, http1::SendRequest<Body>)> {
        let mut inner = self.current(rules)?;
        let list = self.entries(&mut inner, route, rules)?;
        let at = list.iter().position(|e| {
            e.on(route)
                && wires.contains(&e.wire)
                && matches!(&e.sender, Sender::Http1(s) if s.is_ready())
        })?;
        let taken = list.swap_remove(at);
        inner.count -= 1;
        match taken.sender {
            Sender::Http1(sender) => Some((taken.wire, sender)),
            Sender::Http2(_) => None,
        }
    }

    /// Takes a live h2 connection for `route`, the most recently kept first.
    pub(crate) fn take_http2(
        &self,
        route: &Route,
        rules: &Rules<'_>,
    ) -> Option<http2::SendRequest<Body>> {
        let mut inner = self.current(rules)?;
        let list = self.entries(&mut inner, route, rules)?;
        let at = list
            .iter()
            .rposition(|e| e.on(route) && matches!(e.sender, Sender::Http2(_)))?;
        let taken = list.remove(at);
        inner.count -= 1;
        match taken.sender {
            Sender::Http2(sender) => Some(sender),
            Sender::Http1(_) => None,
        }
    }

    /// Keeps a connection whose address was checked under generation
    /// `checked_at`. It is closed instead (dropped) when that is not the current
    /// generation, when the current rules refuse the address, when it is closed
    /// already, when its sender does not match its wire, or when the pool is full.
    pub(crate) fn put(
        &self,
        route: &Route,
        wire: Wire,
        sender: Sender,
        checked_at: u64,
        rules: &Rules<'_>,
    ) {
        if sender.is_closed() || wire.is_h2() != matches!(sender, Sender::Http2(_)) {
            return;
        }
        let Some(mut inner) = self.current(rules) else {
            return;
        };
        if checked_at != inner.generation || rules.destinations.check(route.addr).is_err() {
            return;
        }
        let same_key = self.entries(&mut inner, route, rules).map_or(0, |list| {
            list.iter()
                .filter(|e| e.on(route) && e.wire == wire)
                .count()
        });
        if same_key >= self.per_key {
            return;
        }
        if inner.count >= self.total {
            self.sweep(&mut inner);
            if inner.count >= self.total {
                return;
            }
        }
        let idle = Idle {
            port: route.port,
            addr: route.addr,
            wire,
            sender,
            since: Instant::now(),
        };
        match inner.hosts.get_mut(&route.host) {
            Some(list) => list.push(idle),
            None => {
                inner.hosts.insert(route.host.clone(), vec![idle]);
            }
        }
        inner.count += 1;
    }

    /// Drops every closed or expired entry of every host.
    fn sweep(&self, inner: &mut Inner) {
        let max_idle = self.max_idle;
        inner.hosts.retain(|_, list| {
            list.retain(|e| !e.sender.is_closed() && e.since.elapsed() < max_idle);
            !list.is_empty()
        });
        inner.count = inner.hosts.values().map(Vec::len).sum();
    }

    /// Connections kept now (closed ones not yet noticed included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).count
    }
}

/// Whether a request or response authenticates the connection itself rather
/// than the request: NTLM and Negotiate (Kerberos/SPNEGO) log the *connection*
/// in, so a connection that carried them holds one person's login and must not
/// serve anyone else.
pub(crate) fn binds_connection(headers: &HeaderMap) -> bool {
    let connection_scheme = |value: &http::HeaderValue| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|challenge| {
                let scheme = challenge.trim_start().split(' ').next().unwrap_or("");
                scheme.eq_ignore_ascii_case("ntlm") || scheme.eq_ignore_ascii_case("negotiate")
            })
        })
    };
    headers
        .get_all(AUTHORIZATION)
        .iter()
        .chain(headers.get_all(WWW_AUTHENTICATE).iter())
        .any(connection_scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The body of `/big`.
    const BIG: usize = 16 << 20;

    /// A loopback origin that answers every request on a connection with a
    /// keep-alive response (`ok`, or [`BIG`] bytes for `/big`).
    async fn origin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let big = seen.starts_with(b"GET /big ");
                            seen.drain(..end + 4);
                            // `/big`: more than hyper buffers, so the response is
                            // not over until its reader reads it.
                            let body = if big { vec![b'x'; BIG] } else { b"ok".to_vec() };
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if stream.write_all(head.as_bytes()).await.is_err()
                                || stream.write_all(&body).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn sender(addr: SocketAddr) -> http1::SendRequest<Body> {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        sender
    }

    async fn exchange(sender: &mut http1::SendRequest<Body>) {
        let request = http::Request::get("/")
            .header("host", "allowed.test")
            .body(crate::full_body(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        response.into_body().collect().await.expect("body");
        // hyper marks the connection ready once its task has seen the end.
        for _ in 0..100 {
            if sender.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the connection never became ready again");
    }

    fn route(host: &str, addr: SocketAddr) -> Route {
        Route {
            host: policy::host::canonicalize(host).expect("host"),
            port: addr.port(),
            addr,
        }
    }

    /// Rules opening exactly `addr` (a loopback address is refused otherwise).
    fn opening(addr: SocketAddr) -> Destinations {
        let rule = policy::config::DestinationRule::try_from(addr.to_string()).expect("rule");
        Destinations::new(vec![80, 443], vec![rule], vec![])
    }

    /// An origin, and destination rules that open it.
    async fn opened_origin() -> (SocketAddr, Destinations) {
        let addr = origin().await;
        (addr, opening(addr))
    }

    fn at(generation: u64, destinations: &Destinations) -> Rules<'_> {
        Rules {
            generation,
            destinations,
        }
    }

    /// A connection that has answered one request and is ready for the next.
    async fn idle_sender(addr: SocketAddr) -> http1::SendRequest<Body> {
        let mut s = sender(addr).await;
        exchange(&mut s).await;
        s
    }

    #[tokio::test]
    async fn a_ready_connection_is_handed_out_once_and_only_for_its_key() {
        let (addr, open) = opened_origin().await;
        let rules = at(1, &open);
        let pool = Pool::new(Duration::from_secs(60));
        let s = idle_sender(addr).await;
        let r = route("allowed.test", addr);
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &rules);
        assert_eq!(pool.reachable(&r.host, r.port, &[addr], &rules), Some(addr));
        // Another name on the same address, another port, another wire: nothing.
        let other = route("www.bing.com", addr);
        assert!(pool.take_http1(&other, Wire::http1(true), &rules).is_none());
        assert_eq!(
            pool.reachable(&other.host, other.port, &[addr], &rules),
            None
        );
        let mut port = r.clone();
        port.port = port.port.wrapping_add(1);
        assert!(pool.take_http1(&port, Wire::http1(true), &rules).is_none());
        assert!(pool.take_http1(&r, &[Wire::Plain], &rules).is_none());
        assert!(pool.take_http2(&r, &rules).is_none());
        assert!(!pool.has(&r, Wire::http1_for_offer(true), &rules));
        assert!(pool.has(&r, Wire::http1_for_offer(false), &rules));
        let (wire, mut s) = pool
            .take_http1(&r, Wire::http1(true), &rules)
            .expect("the kept connection");
        assert_eq!(wire, Wire::TlsH1Offered);
        assert!(
            pool.take_http1(&r, Wire::http1(true), &rules).is_none(),
            "taken once"
        );
        exchange(&mut s).await;
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_handed_out() {
        let (addr, open) = opened_origin().await;
        let rules = at(1, &open);
        let pool = Pool::new(Duration::from_secs(60));
        let mut s = sender(addr).await;
        let request = http::Request::get("/big")
            .header("host", "allowed.test")
            .body(crate::full_body(Bytes::new()))
            .expect("request");
        // The response head is in, most of its body still on the wire: not ready.
        let response = s.send_request(request).await.expect("response");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = route("allowed.test", addr);
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &rules);
        assert!(pool.take_http1(&r, Wire::http1(true), &rules).is_none());
        response.into_body().collect().await.expect("body");
        let mut ready = None;
        for _ in 0..100 {
            ready = pool.take_http1(&r, Wire::http1(true), &rules);
            if ready.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(ready.is_some(), "ready once the response was read");
    }

    #[tokio::test]
    async fn a_reload_or_a_rule_change_retires_kept_connections() {
        let (addr, open) = opened_origin().await;
        let closed = Destinations::new(vec![80, 443], vec![], vec![]);
        let pool = Pool::new(Duration::from_secs(60));
        let r = route("allowed.test", addr);
        // The destination rules now refuse the address: not used, and dropped.
        let s = idle_sender(addr).await;
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &at(1, &open));
        assert_eq!(
            pool.reachable(&r.host, r.port, &[addr], &at(1, &closed)),
            None
        );
        assert!(
            pool.take_http1(&r, Wire::http1(true), &at(1, &closed))
                .is_none()
        );
        assert_eq!(pool.len(), 0, "the refused entry is dropped");
        // And a connection is not kept under rules that refuse its address.
        let s = idle_sender(addr).await;
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &at(1, &closed));
        assert_eq!(pool.len(), 0);

        // A newer generation (a reload) empties the pool.
        let s = idle_sender(addr).await;
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &at(1, &open));
        assert_eq!(pool.len(), 1);
        assert!(
            pool.take_http1(&r, Wire::http1(true), &at(2, &open))
                .is_none()
        );
        assert_eq!(pool.len(), 0);
        // A connection checked under the old generation is not taken back, and
        // a caller still on the old generation finds nothing.
        let s = idle_sender(addr).await;
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &at(2, &open));
        assert_eq!(pool.len(), 0);
        let s = idle_sender(addr).await;
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 2, &at(2, &open));
        assert!(
            pool.take_http1(&r, Wire::http1(true), &at(1, &open))
                .is_none()
        );
        assert!(
            pool.take_http1(&r, Wire::http1(true), &at(2, &open))
                .is_some()
        );
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_entries_expire() {
        let (addr, open) = opened_origin().await;
        let rules = at(1, &open);
        let pool = Pool::with_limits(Duration::from_millis(200), 2, 3);
        let a = route("allowed.test", addr);
        let b = route("www.bing.com", addr);
        for r in [&a, &a, &a, &b, &b] {
            let s = idle_sender(addr).await;
            pool.put(r, Wire::TlsH1Offered, Sender::Http1(s), 1, &rules);
        }
        assert_eq!(
            pool.len(),
            3,
            "two for allowed.test (per key), one for www.bing.com (total)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            pool.take_http1(&a, Wire::http1(true), &rules).is_none(),
            "expired"
        );
        assert!(!pool.has(&b, Wire::http1(true), &rules), "expired");
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_handed_out() {
        // An origin that closes right after accepting.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let open = opening(addr);
        let rules = at(1, &open);
        let pool = Pool::new(Duration::from_secs(60));
        let s = sender(addr).await;
        let r = route("allowed.test", addr);
        // Kept while hyper has not noticed the close yet.
        pool.put(&r, Wire::TlsH1Offered, Sender::Http1(s), 1, &rules);
        for _ in 0..100 {
            if !pool.has(&r, Wire::http1(true), &rules) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(pool.take_http1(&r, Wire::http1(true), &rules).is_none());
        assert_eq!(pool.reachable(&r.host, r.port, &[addr], &rules), None);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn connection_bound_logins_are_recognised() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(
                    http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            h
        };
        assert!(binds_connection(&headers(&[(
            "authorization",
            "NTLM TlRMTVNTUAAB"
        )])));
        assert!(binds_connection(&headers(&[(
            "authorization",
            "negotiate YIIG"
        )])));
        assert!(binds_connection(&headers(&[(
            "www-authenticate",
            "Basic realm=\"x\", NTLM"
        )])));
        assert!(binds_connection(&headers(&[
            ("www-authenticate", "Bearer"),
            ("www-authenticate", "Negotiate"),
        ])));
        assert!(!binds_connection(&headers(&[(
            "authorization",
            "Basic dTpw"
        )])));
        assert!(!binds_connection(&headers(&[(
            "authorization",
            "Bearer ntlm"
        )])));
        assert!(!binds_connection(&headers(&[("cookie", "NTLM=1")])));
    }
}
