//! Protocol upgrades (WebSocket and the like): decided like any request before
//! the 101, then spliced; a refused upgrade leaves the connection usable.
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::harness::{self, client_tls, connect, tls};

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("answer in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn echo_round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    stream
        .write_all(b"ping over the upgraded connection")
        .await
        .expect("write");
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while got.len() < 33 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        assert!(n > 0, "closed before the echo");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..], b"ping over the upgraded connection");
}

#[tokio::test]
async fn an_allowed_upgrade_is_spliced_after_the_origins_101() {
    let p = harness::start().await;
    let authority = format!("allowed.test:{}", p.http.addr.port());
    let mut stream = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    let head = format!(
        "GET http://{authority}/ws HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("upgrade: echo"),
        "{answer}"
    );
    echo_round_trip(&mut stream).await;
}

#[tokio::test]
async fn a_blocked_upgrade_is_refused_and_the_connection_goes_on() {
    let p = harness::start().await;
    let blocked = format!("blocked.test:{}", p.http.addr.port());
    let allowed = p.http_url("allowed.test", "/after");
    let mut stream = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    let head =
        format!("GET http://{blocked}/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // The guard resumes parsing: the next request on the connection is served.
    let length: usize = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("page");
    stream
        .write_all(format!("GET {allowed} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let uris: Vec<String> = p.http.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        uris,
        vec!["/after".to_string()],
        "the blocked upgrade never reached the origin"
    );
}

#[tokio::test]
async fn an_upgrade_inside_an_intercepted_tunnel_is_spliced() {
    let p = harness::start().await;
    let authority = p.https_authority("allowed.test");
    let (status, stream, _) = connect(p.addr, &authority).await;
    assert_eq!(status, 200);
    let config = client_tls(&[&p.school_ca_pem], &[b"http/1.1"]);
    let mut tls = tls(stream.expect("tunnel"), "allowed.test", config)
        .await
        .expect("tls");
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    let answer = read_head(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    echo_round_trip(&mut tls).await;
}
