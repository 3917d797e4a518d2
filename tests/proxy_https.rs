//! HTTPS through the proxy: interception, the block page inside TLS, the
//! no-intercept splice, SNI and Host fronting, bad upstream certificates.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, client_tls, connect, https_get, tls};

#[tokio::test]
async fn allowed_https_is_intercepted_and_forwarded() {
    let p = harness::start().await;
    let authority = p.https_authority("allowed.test");
    let reply = https_get(p.addr, &authority, "/x?y=1", &[&p.school_ca_pem], false)
        .await
        .expect("https through the proxy");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "origin GET /x?y=1");
    assert!(
        !reply.headers.contains_key("alt-svc"),
        "Alt-Svc stripped from intercepted responses"
    );
    let seen = p.https.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap_or("")),
        Some(authority.as_str())
    );
}

#[tokio::test]
async fn h2_clients_get_h2_when_the_origin_speaks_it() {
    let p = harness::start().await;
    let authority = p.https_authority("allowed.test");
    let reply = https_get(p.addr, &authority, "/h2", &[&p.school_ca_pem], true)
        .await
        .expect("h2 through the proxy");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "origin GET /h2");
    assert_eq!(p.https.requests()[0].version, hyper::Version::HTTP_2);
}

#[tokio::test]
async fn blocked_https_shows_the_block_page_without_touching_the_origin() {
    let p = harness::start().await;
    // Port 443: allowed by default; nothing listens there and nothing is dialled.
    let reply = https_get(
        p.addr,
        "blocked.test:443",
        "/secret",
        &[&p.school_ca_pem],
        false,
    )
    .await
    .expect("block page over TLS");
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.contains("This page is blocked"),
        "{}",
        reply.body
    );
    assert!(
        reply.headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .starts_with("default-src 'none'")
    );
    let events = p.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].method, "CONNECT");
    assert!(reply.body.contains(&events[0].reference));
    // Also over h2.
    let reply = https_get(p.addr, "blocked.test:443", "/", &[&p.school_ca_pem], true)
        .await
        .expect("h2 block page");
    assert_eq!(reply.status, 403);
    assert_eq!(p.https.connections() + p.http.connections(), 0);
}

#[tokio::test]
async fn requests_inside_a_tunnel_are_decided_on_their_own() {
    let p = harness::start().await;
    // Host names another (blocked) site inside an allowed tunnel: fronting.
    let authority = p.https_authority("allowed.test");
    let (status, stream, _) = connect(p.addr, &authority).await;
    assert_eq!(status, 200);
    let tls = tls(
        stream.expect("tunnel"),
        "allowed.test",
        client_tls(&[&p.school_ca_pem], &[b"http/1.1"]),
    )
    .await
    .expect("tls");
    let mut tls = tls;
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: blocked.test\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .expect("write");
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut got))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        p.https.requests().is_empty(),
        "the fronted request never reached an origin"
    );
    let events = p.events().await;
    assert_eq!(events[0].kind, policy::event::BlockKind::Fronting);
}

#[tokio::test]
async fn sni_for_another_name_is_blocked_inside_an_intercepted_tunnel() {
    let p = harness::start().await;
    let (status, stream, _) = connect(p.addr, &p.https_authority("allowed.test")).await;
    assert_eq!(status, 200);
    // The proxy dialled the origin before answering 200 (an honest answer), but
    // the SNI asks for another name: the block page is served, nothing forwarded.
    let tls = tls(
        stream.expect("tunnel"),
        "blocked.test",
        client_tls(&[&p.school_ca_pem], &[b"http/1.1"]),
    )
    .await
    .expect("tls");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("h1");
    tokio::spawn(conn);
    let req = hyper::Request::get("/")
        .header("host", "blocked.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("req");
    let response = sender.send_request(req).await.expect("response");
    assert_eq!(response.status(), 403);
    assert!(p.https.requests().is_empty());
}

#[tokio::test]
async fn no_intercept_hosts_are_spliced_with_the_origins_own_certificate() {
    let p = harness::start().await;
    let authority = p.https_authority("splice.test");
    // Only the origin CA is trusted: this works only if the proxy did not intercept.
    let reply = https_get(p.addr, &authority, "/bank", &[&p.origin_ca_pem], false)
        .await
        .expect("spliced");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "origin GET /bank");
    // Alt-Svc is untouched: the proxy cannot see inside a spliced tunnel.
    assert!(reply.headers.contains_key("alt-svc"));
    // Trusting only the school CA fails: the certificate is the origin's.
    assert!(
        https_get(p.addr, &authority, "/", &[&p.school_ca_pem], false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_spliced_tunnel_with_another_sni_is_closed() {
    let p = harness::start().await;
    let (status, stream, _) = connect(p.addr, &p.https_authority("splice.test")).await;
    assert_eq!(status, 200);
    let result = tls(
        stream.expect("tunnel"),
        "allowed.test",
        client_tls(&[&p.origin_ca_pem], &[b"http/1.1"]),
    )
    .await;
    assert!(result.is_err(), "the handshake must not complete");
    assert!(p.https.requests().is_empty());
    let events = p.events().await;
    assert_eq!(events[0].kind, policy::event::BlockKind::Fronting);
}

#[tokio::test]
async fn a_bad_upstream_certificate_gets_an_explanation_and_no_way_through() {
    let p = harness::start().await;
    let authority = format!("badcert.test:{}", p.bad.addr.port());
    let reply = https_get(p.addr, &authority, "/", &[&p.school_ca_pem], false)
        .await
        .expect("explanation page");
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.contains("security certificate"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("not issued by an authority"),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains("Ask for a review"),
        "no click-through for a bad certificate"
    );
    assert!(
        p.bad.requests().is_empty(),
        "no request was sent over an unverified connection"
    );
    let events = p.events().await;
    assert_eq!(
        events[0].kind,
        policy::event::BlockKind::UpstreamCertificate
    );
}

#[tokio::test]
async fn connect_is_decided_and_dialled_before_the_200() {
    let p = harness::start().await;
    // A port nobody allowed.
    let (status, _, _) = connect(p.addr, "allowed.test:22").await;
    assert_eq!(status, 403);
    // A name that resolves inside the school network.
    let (status, _, _) = connect(p.addr, "internal.test:443").await;
    assert_eq!(status, 403);
    // An allowed name whose port has nothing listening: an honest 502.
    let dead = std::net::TcpListener::bind("127.0.0.2:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (status, _, _) = connect(p.addr, &format!("allowed.test:{port}")).await;
    assert!(status == 403 || status == 502, "{status}");
    // Malformed targets.
    for target in ["allowed.test", "user@allowed.test:443", "allowed.test:0"] {
        let (status, _, text) = connect(p.addr, target).await;
        assert_eq!(status, 400, "{target}: {text}");
    }
    assert_eq!(p.https.connections(), 0);
}

#[tokio::test]
async fn h2_authority_for_another_site_is_blocked() {
    let p = harness::start().await;
    let authority = p.https_authority("allowed.test");
    let (status, stream, _) = connect(p.addr, &authority).await;
    assert_eq!(status, 200);
    let config = client_tls(&[&p.school_ca_pem], &[b"h2"]);
    let tls = tls(stream.expect("tunnel"), "allowed.test", config)
        .await
        .expect("tls");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2");
    tokio::spawn(conn);
    let fronted = hyper::Request::get(format!("https://blocked.test:{}/", p.https.addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(fronted).await.expect("response");
    assert_eq!(response.status(), 403);
    let same = hyper::Request::get(format!("https://{authority}/ok"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(same).await.expect("response");
    assert_eq!(response.status(), 200);
    let seen: Vec<String> = p.https.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ends_with("/ok"), "{seen:?}");
}

#[tokio::test]
async fn plain_http_inside_a_tunnel_is_decided_too() {
    let p = harness::start().await;
    let authority = format!("allowed.test:{}", p.http.addr.port());
    let (status, stream, _) = connect(p.addr, &authority).await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("tunnel");
    let requests = format!(
        "GET /plain HTTP/1.1\r\nHost: {authority}\r\n\r\nDELETE /x HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(requests.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("origin GET /plain"), "{text}");
    assert!(
        text.contains("HTTP/1.1 403"),
        "the fronted DELETE is blocked: {text}"
    );
    assert_eq!(p.http.requests().len(), 1);
}

#[tokio::test]
async fn a_blocked_tunnel_answers_plain_http_with_the_page_and_closes_other_bytes() {
    let p = harness::start().await;
    let (status, stream, _) = connect(p.addr, "blocked.test:80").await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("tunnel");
    stream.write_all(b"POST /form HTTP/1.1\r\nHost: blocked.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi").await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 403") && text.contains("This page is blocked"),
        "{text}"
    );

    let (status, stream, _) = connect(p.addr, "blocked.test:443").await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("tunnel");
    stream.write_all(b"\x00\x01binary").await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    assert!(read.is_ok() && got.is_empty(), "closed without an answer");
    assert_eq!(p.http.connections() + p.https.connections(), 0);
}

#[tokio::test]
async fn a_tunnel_outlives_an_upstream_connection_the_origin_closed() {
    let p = harness::start().await;
    let mut tunnel = harness::TunnelClient::open(&p, "allowed.test").await;
    for path in ["/bye", "/again"] {
        assert_eq!(tunnel.get(path, &[]).await.status, 200, "{path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        p.https.connections(),
        2,
        "a new upstream connection after the origin closed one"
    );
}

#[tokio::test]
async fn a_url_allow_entry_opens_its_pages_on_a_blocked_https_host() {
    // KS1-style: `games.test` is in a blocked category, but one of its URL
    // prefixes is approved. The tunnel must open so that the approved pages
    // load, and everything else on the host still gets the block page.
    let policy = harness::POLICY.replace(
        "[no_intercept]",
        "[allow]\nurls = [\"games.test/homework\"]\n\n[no_intercept]",
    );
    let p = harness::start_with(harness::Options {
        policy: Some(policy),
        ..harness::Options::default()
    })
    .await;
    let authority = p.https_authority("games.test");
    let reply = https_get(
        p.addr,
        &authority,
        "/homework/week1",
        &[&p.school_ca_pem],
        false,
    )
    .await
    .expect("the approved page through the tunnel");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "origin GET /homework/week1");
    let reply = https_get(p.addr, &authority, "/play", &[&p.school_ca_pem], false)
        .await
        .expect("block page inside the tunnel");
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("Games sites"), "{}", reply.body);
    assert_eq!(
        p.https.requests().len(),
        1,
        "only the approved page reached the origin"
    );
    let events = p.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].method, "GET");
    assert!(events[0].url.ends_with("/play"), "{}", events[0].url);
    // A host with no approved URLs is still closed at CONNECT.
    let reply = https_get(p.addr, "blocked.test:443", "/", &[&p.school_ca_pem], false)
        .await
        .expect("block page");
    assert_eq!(reply.status, 403);
}
