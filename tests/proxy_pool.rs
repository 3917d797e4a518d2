//! The upstream connection pool: verified connections kept across tunnels, and
//! only ever reused for the same host, port, address and protocol, under the
//! policy generation they were checked under.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;

use crate::harness::{self, Options, TestProxy, TunnelClient, connect, https_get};

/// Time for a closed tunnel to hand its connection back (h2) and for hyper to
/// see a response's end.
const SETTLE: Duration = Duration::from_millis(200);

async fn get(p: &TestProxy, name: &str, path: &str, h2: bool) -> harness::Reply {
    let reply = https_get(
        p.addr,
        &p.https_authority(name),
        path,
        &[&p.school_ca_pem],
        h2,
    )
    .await
    .unwrap_or_else(|e| panic!("GET https://{name}{path}: {e}"));
    tokio::time::sleep(SETTLE).await;
    reply
}

#[tokio::test]
async fn sequential_tunnels_to_one_origin_share_one_upstream_connection() {
    let p = harness::start().await;
    for path in ["/one", "/two", "/three"] {
        let reply = get(&p, "allowed.test", path, false).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, format!("origin GET {path}"));
    }
    assert_eq!(
        p.https.connections(),
        1,
        "one TCP connection and one TLS handshake for three tunnels"
    );
    let seen: Vec<String> = p.https.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, ["/one", "/two", "/three"]);
}

#[tokio::test]
async fn an_h2_connection_goes_to_the_next_tunnel_once_its_own_closes() {
    let p = harness::start().await;
    for path in ["/a", "/b"] {
        let reply = get(&p, "allowed.test", path, true).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, format!("origin GET {path}"));
    }
    assert_eq!(p.https.connections(), 1);
    let requests = p.https.requests();
    assert!(
        requests.iter().all(|s| s.version == hyper::Version::HTTP_2),
        "both over h2"
    );
    // A client that does not offer h2 never gets the pooled h2 connection (it
    // would be translated): it gets a connection of its own, HTTP/1.1.
    let reply = get(&p, "allowed.test", "/c", false).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(p.https.connections(), 2);
    assert_eq!(
        p.https.requests().last().map(|s| s.version),
        Some(hyper::Version::HTTP_11)
    );
}

#[tokio::test]
async fn plain_http_tunnels_share_plain_connections() {
    let p = harness::start().await;
    let authority = format!("allowed.test:{}", p.http.addr.port());
    for path in ["/p1", "/p2"] {
        let (status, stream, _) = connect(p.addr, &authority).await;
        assert_eq!(status, 200);
        let mut stream = stream.expect("tunnel");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains(&format!("origin GET {path}")), "{text}");
        tokio::time::sleep(SETTLE).await;
    }
    assert_eq!(p.http.connections(), 1);
}

#[tokio::test]
async fn different_names_on_one_address_never_share_a_connection() {
    let p = harness::start().await;
    // Both names resolve to the one origin, whose certificate covers both.
    for (name, path) in [
        ("allowed.test", "/1"),
        ("www.bing.com", "/2"),
        ("allowed.test", "/3"),
        ("www.bing.com", "/4"),
    ] {
        let reply = get(&p, name, path, false).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    assert_eq!(p.https.connections(), 2, "one connection per name, reused");
    let hosts: Vec<String> = p
        .https
        .requests()
        .iter()
        .map(|s| {
            let host = s.headers.get("host").and_then(|h| h.to_str().ok());
            host.unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        hosts,
        [
            "allowed.test",
            "www.bing.com",
            "allowed.test",
            "www.bing.com"
        ]
    );
}

#[tokio::test]
async fn a_reload_retires_pooled_connections_and_refuses_what_it_forbids() {
    let p = harness::start().await;
    assert_eq!(get(&p, "allowed.test", "/before", false).await.status, 200);
    assert_eq!(p.https.connections(), 1);

    // A reload, even of the same policy: connections checked under the old
    // generation are not used again.
    p.reload_policy(harness::POLICY);
    assert_eq!(get(&p, "allowed.test", "/after", false).await.status, 200);
    assert_eq!(
        p.https.connections(),
        2,
        "a new connection after the reload"
    );
    assert_eq!(get(&p, "allowed.test", "/again", false).await.status, 200);
    assert_eq!(p.https.connections(), 2, "and that one is pooled in turn");

    // A reload that forbids the host: refused as a fresh tunnel would be, the
    // pooled connection untouched.
    let denied = harness::POLICY.replace(
        "domains = [\"blocked.test\"]",
        "domains = [\"blocked.test\", \"allowed.test\"]",
    );
    p.reload_policy(&denied);
    let reply = get(&p, "allowed.test", "/denied", false).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("This page is blocked"),
        "{}",
        reply.body
    );
    assert_eq!(p.https.connections(), 2);
    let seen: Vec<String> = p.https.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, ["/before", "/after", "/again"]);
}

#[tokio::test]
async fn a_connection_carrying_an_ntlm_login_is_never_shared() {
    let p = harness::start().await;
    let mut tunnel = TunnelClient::open(&p, "allowed.test").await;
    for path in ["/login", "/inbox"] {
        let login = [("authorization", "NTLM TlRMTVNTUAADAAAA")];
        assert_eq!(tunnel.get(path, &login).await.status, 200, "{path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        p.https.connections(),
        1,
        "the logged-in connection stays with its tunnel"
    );
    drop(tunnel);
    tokio::time::sleep(SETTLE).await;
    // Another tunnel (another pupil, as far as the origin can tell) never gets it.
    assert_eq!(get(&p, "allowed.test", "/other", false).await.status, 200);
    assert_eq!(p.https.connections(), 2);
}

/// What a [`RawOrigin`] saw: requests as `(connection number, path)`.
type RawLog = Arc<Mutex<(usize, Vec<(usize, String)>)>>;

/// An HTTP/1.1 origin (HTTPS, or plain without a certificate) that keeps
/// connections alive but closes a connection after `idle` without a request,
/// and hangs up without answering on `/hangup`.
struct RawOrigin {
    addr: SocketAddr,
    log: RawLog,
}

impl RawOrigin {
    fn connections(&self) -> usize {
        self.log.lock().expect("log").0
    }

    fn requests(&self) -> Vec<(usize, String)> {
        self.log.lock().expect("log").1.clone()
    }
}

async fn raw_origin(
    listener: TcpListener,
    cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    idle: Duration,
) -> RawOrigin {
    let acceptor = cert.map(|cert| harness::origin::tls_acceptor(cert, &[b"http/1.1"]));
    let origin = RawOrigin {
        addr: listener.local_addr().expect("addr"),
        log: RawLog::default(),
    };
    let log = origin.log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let number = {
                let mut log = log.lock().expect("log");
                log.0 += 1;
                log.0
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            raw_exchanges(tls, number, log, idle).await;
                        }
                    }
                    None => raw_exchanges(stream, number, log, idle).await,
                }
            });
        }
    });
    origin
}

/// One connection of a [`RawOrigin`].
async fn raw_exchanges<S>(mut io: S, number: usize, log: RawLog, idle: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(Ok(n)) = tokio::time::timeout(idle, io.read(&mut buf)).await else {
            // Idle (or failed): close, as origins do with keep-alive.
            let _ = io.shutdown().await;
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        head.drain(..end + 4);
        let path = text.split(' ').nth(1).unwrap_or("").to_string();
        log.lock().expect("log").1.push((number, path.clone()));
        if path.ends_with("/hangup") {
            return;
        }
        let body = format!("raw {path}");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if io.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A proxy and a [`RawOrigin`] (HTTPS when `tls`) on 127.0.0.2 that it may dial.
async fn with_raw_origin(idle: Duration, tls: bool) -> (TestProxy, RawOrigin) {
    let listener = TcpListener::bind(SocketAddr::from((harness::ORIGIN_IP, 0)))
        .await
        .expect("bind origin");
    let p = harness::start_with(Options {
        destinations: vec![listener.local_addr().expect("addr")],
        ..Options::default()
    })
    .await;
    let cert = tls.then(|| p.origin_ca.leaf(harness::ORIGIN_NAMES));
    let origin = raw_origin(listener, cert, idle).await;
    (p, origin)
}

async fn raw_get(p: &TestProxy, origin: &RawOrigin, path: &str) -> std::io::Result<harness::Reply> {
    let authority = format!("allowed.test:{}", origin.addr.port());
    https_get(p.addr, &authority, path, &[&p.school_ca_pem], false).await
}

#[tokio::test]
async fn an_origin_closing_its_idle_connection_does_not_break_the_next_tunnel() {
    let (p, origin) = with_raw_origin(Duration::from_millis(300), true).await;
    let reply = raw_get(&p, &origin, "/first").await.expect("first");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "raw /first");
    // Reused while the origin keeps it...
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = raw_get(&p, &origin, "/second").await.expect("second");
    assert_eq!(reply.body, "raw /second");
    assert_eq!(origin.connections(), 1);
    // ...and after the origin closed it, a new one: the answer still comes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reply = raw_get(&p, &origin, "/third").await.expect("third");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "raw /third");
    assert_eq!(origin.connections(), 2);
    assert_eq!(
        origin.requests(),
        [
            (1, "/first".to_string()),
            (1, "/second".to_string()),
            (2, "/third".to_string())
        ]
    );
}

async fn raw_request(
    p: &TestProxy,
    origin: &RawOrigin,
    method: Method,
    path: &str,
    body: &'static str,
) -> harness::Reply {
    let authority = format!("allowed.test:{}", origin.addr.port());
    harness::https_request(
        p.addr,
        &authority,
        method,
        path,
        body,
        &[&p.school_ca_pem],
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The origin reads a request on a kept connection and hangs up without an
/// answer (as when it closes an idle connection just as the request arrives).
/// A GET without a body may be repeated (RFC 9110 §9.2.2): once, on a new
/// connection; that one failing too is the pupil's error page.
#[tokio::test]
async fn a_get_lost_on_a_kept_connection_is_sent_once_more_on_a_new_one() {
    let (p, origin) = with_raw_origin(Duration::from_secs(30), true).await;
    let first = raw_request(&p, &origin, Method::GET, "/first", "").await;
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = raw_request(&p, &origin, Method::GET, "/hangup", "").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        origin.requests(),
        [
            (1, "/first".to_string()),
            (1, "/hangup".to_string()),
            (2, "/hangup".to_string())
        ]
    );
}

/// A POST may have had effects: one that went out on a kept connection is
/// never sent twice, whatever happened to the connection.
#[tokio::test]
async fn a_post_that_went_out_on_a_kept_connection_is_never_sent_twice() {
    let (p, origin) = with_raw_origin(Duration::from_secs(30), true).await;
    let first = raw_request(&p, &origin, Method::GET, "/first", "").await;
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = raw_request(&p, &origin, Method::POST, "/hangup", "answer=42").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(origin.connections(), 1);
    assert_eq!(
        origin.requests(),
        [(1, "/first".to_string()), (1, "/hangup".to_string())]
    );
}

/// Plain HTTP keeps its upstream connection between a client connection's
/// requests, and repeats a lost GET the same way; a POST is never repeated.
#[tokio::test]
async fn plain_http_repeats_a_lost_get_but_never_a_post() {
    let (p, origin) = with_raw_origin(Duration::from_secs(30), false).await;
    let url = |path: &str| format!("http://allowed.test:{}{path}", origin.addr.port());
    let (mut sender, _) = harness::one_connection(p.addr).await;
    let mut send = async |method: Method, path: &str, body: &'static str| {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url(path))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    };
    assert_eq!(send(Method::GET, "/first", "").await, 200);
    assert_eq!(send(Method::GET, "/get/hangup", "").await, 502);
    assert_eq!(send(Method::GET, "/second", "").await, 200);
    assert_eq!(send(Method::POST, "/post/hangup", "a=1").await, 502);
    assert_eq!(
        origin.requests(),
        [
            (1, "/first".to_string()),
            (1, "/get/hangup".to_string()),
            (2, "/get/hangup".to_string()),
            (3, "/second".to_string()),
            (3, "/post/hangup".to_string())
        ]
    );
}
