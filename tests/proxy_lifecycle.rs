//! Identity, timeouts, connection limits and graceful shutdown.
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, Options, get};

#[tokio::test]
async fn a_slow_head_is_cut_after_the_header_read_timeout() {
    let p = harness::start_with(Options::proxy("header_read_timeout = \"500ms\"")).await;
    let mut stream = TcpStream::connect(p.addr).await.expect("connect");
    stream
        .write_all(b"GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the proxy closed the connection");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.http.connections(), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let p = harness::start_with(Options::proxy("header_read_timeout = \"500ms\"")).await;
    let mut stream = TcpStream::connect(p.addr).await.expect("connect");
    let url = p.http_url("allowed.test", "/");
    stream
        .write_all(format!("GET {url} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed after the idle time");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

/// Each wait for a head has its own deadline: the one of a wait that ended
/// (its head came) never cuts a later wait short, and the last wait still ends
/// the connection.
#[tokio::test]
async fn requests_closer_together_than_the_header_timeout_keep_the_connection() {
    let p = harness::start_with(Options::proxy("header_read_timeout = \"500ms\"")).await;
    let (mut sender, connection) = harness::one_connection(p.addr).await;
    let url = p.http_url("allowed.test", "/");
    // Four requests 300 ms apart: the later ones come after the first wait's
    // deadline had passed.
    for n in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let request = hyper::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|e| panic!("request {n} on the kept connection: {e}"));
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body");
    }
    let idle_from = Instant::now();
    // How the client's side of the connection ended (a clean close or an
    // error) does not matter here, only that the proxy ended it.
    let _ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the proxy closed the idle connection")
        .expect("the connection task");
    assert!(
        idle_from.elapsed() >= Duration::from_millis(400),
        "closed {:?} after the last response",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn a_slow_response_is_not_cut_by_the_header_timeout() {
    let p = harness::start_with(Options::proxy("header_read_timeout = \"300ms\"")).await;
    let reply = get(p.addr, &p.http_url("allowed.test", "/slow?ms=900")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn clients_in_no_subnet_get_407_and_nothing_is_forwarded() {
    // Every test client is on 127.0.0.1: a policy whose only subnet is elsewhere
    // leaves them unidentified.
    let policy = harness::POLICY.replace("cidr = \"127.0.0.0/8\"", "cidr = \"10.9.9.0/24\"");
    let p = harness::start_with(Options {
        policy: Some(policy),
        ..Options::default()
    })
    .await;
    let reply = get(p.addr, &p.http_url("allowed.test", "/")).await;
    assert_eq!(reply.status, 407);
    assert_eq!(
        reply.headers["proxy-authenticate"],
        "Basic realm=\"hallpass\""
    );
    let (status, _, _) = harness::connect(p.addr, &p.https_authority("allowed.test")).await;
    assert_eq!(status, 407);
    assert_eq!(p.http.connections() + p.https.connections(), 0);
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let p = harness::start_with(Options::proxy("max_connections_per_ip = 2")).await;
    let _a = TcpStream::connect(p.addr).await.expect("first");
    let _b = TcpStream::connect(p.addr).await.expect("second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(p.addr)
        .await
        .expect("third connects at TCP level");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed without an answer");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut p = harness::start().await;
    let addr = p.addr;
    let url = p.http_url("allowed.test", "/slow?ms=800");
    let in_flight = tokio::spawn(async move { get(addr, &url).await });
    // Let the request reach the origin, then stop the proxy.
    for _ in 0..100 {
        if !p.http.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = p.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, 200, "the in-flight request finished");
    let result = tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("proxy stopped in time");
    assert!(result.expect("join").is_ok());
}

#[tokio::test]
async fn a_tunnel_without_a_client_hello_is_closed_after_the_handshake_timeout() {
    let p = harness::start_with(Options::proxy("tls_handshake_timeout = \"400ms\"")).await;
    let (status, stream, _) = harness::connect(p.addr, "blocked.test:443").await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("tunnel");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_spliced_tunnel_is_closed() {
    let p = harness::start_with(Options::proxy("idle_timeout = \"500ms\"")).await;
    let authority = p.https_authority("splice.test");
    let (status, stream, _) = harness::connect(p.addr, &authority).await;
    assert_eq!(status, 200);
    let config = harness::client_tls(&[&p.origin_ca_pem], &[b"http/1.1"]);
    let mut tls = harness::tls(stream.expect("tunnel"), "splice.test", config)
        .await
        .expect("tls");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed after the idle time");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_interception_off_tunnels_are_spliced_and_blocks_refused_at_connect() {
    let p = harness::start_with(Options::proxy("intercept = false")).await;
    let authority = p.https_authority("allowed.test");
    let reply = harness::https_get(p.addr, &authority, "/direct", &[&p.origin_ca_pem], false)
        .await
        .expect("spliced");
    assert_eq!(reply.body, "origin GET /direct");
    let (status, _, _) = harness::connect(p.addr, "blocked.test:443").await;
    assert_eq!(status, 403);
    let ca = get(p.addr, &format!("http://{}/hallpass-ca.crt", p.addr)).await;
    assert_eq!(
        ca.status, 404,
        "no certificate to install when nothing is intercepted"
    );
}

#[tokio::test]
async fn a_reload_applies_to_the_next_request_even_inside_an_open_tunnel() {
    let p = harness::start().await;
    let mut tunnel = harness::TunnelClient::open(&p, "allowed.test").await;
    assert_eq!(tunnel.get("/before", &[]).await.status, 200);

    let stricter = harness::POLICY.replace(
        "domains = [\"blocked.test\"]",
        "domains = [\"blocked.test\", \"allowed.test\"]",
    );
    p.reload_policy(&stricter);

    assert_eq!(
        tunnel.get("/after", &[]).await.status,
        403,
        "the open tunnel uses the new policy"
    );
    let plain = get(p.addr, &p.http_url("allowed.test", "/")).await;
    assert_eq!(plain.status, 403);
    let seen: Vec<String> = p.https.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, vec!["/before".to_string()]);
}
