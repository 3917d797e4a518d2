//! Request hygiene, in raw bytes: every ambiguous or oversized request is
//! refused with 400/431 and a short reason, and the origin sees nothing.
use crate::harness::{self, first_status, raw};

async fn refused(p: &harness::TestProxy, request: String, status: u16, reason: &str) {
    let text = raw(p.addr, request.as_bytes()).await;
    assert_eq!(first_status(&text), status, "{request:?} -> {text}");
    assert!(text.contains(reason), "{request:?} -> {text}");
}

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let p = harness::start().await;
    let url = p.http_url("allowed.test", "/");
    let cases = [
        (
            format!(
                "POST {url} HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
            "content-length and transfer-encoding",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            400,
            "transfer-encoding",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
            400,
            "transfer-encoding",
        ),
        (
            format!(
                "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
            ),
            400,
            "transfer-encoding",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"),
            400,
            "transfer-encoding",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            400,
            "content-length",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nContent-Length: 0x3\r\n\r\nabc"),
            400,
            "content-length",
        ),
        (
            format!("POST {url} HTTP/1.1\r\nContent_Length: 3\r\n\r\nabc"),
            400,
            "framing header",
        ),
        (
            format!("GET {url} HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n"),
            400,
            "folding",
        ),
        (
            format!("GET {url} HTTP/1.1\r\nX A: 1\r\n\r\n"),
            400,
            "header name",
        ),
        (
            format!("GET {url} HTTP/1.1\r\nX-A : 1\r\n\r\n"),
            400,
            "header name",
        ),
        (
            format!("GET {url} HTTP/1.1\r\nX-A: a\x01b\r\n\r\n"),
            400,
            "header value",
        ),
        (format!("GET {url} HTTP/1.1\nHost: a\n\n"), 400, "line feed"),
        (
            format!(
                "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            ),
            400,
            "chunk size",
        ),
        (
            format!(
                "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
            ),
            400,
            "chunk size",
        ),
        (
            format!("GET {url} HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
            400,
            "host",
        ),
    ];
    for (request, status, reason) in cases {
        refused(&p, request, status, reason).await;
    }
    assert_eq!(
        p.http.connections(),
        0,
        "no refused request reached the origin"
    );
}

#[tokio::test]
async fn oversized_heads_are_431() {
    let p = harness::start().await;
    let url = p.http_url("allowed.test", "/");
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    refused(
        &p,
        format!("GET {url} HTTP/1.1\r\n{many}\r\n"),
        431,
        "too many headers",
    )
    .await;
    let big = "a".repeat(70 * 1024);
    refused(
        &p,
        format!("GET {url} HTTP/1.1\r\nX-Big: {big}\r\n\r\n"),
        431,
        "too large",
    )
    .await;
    assert_eq!(p.http.connections(), 0);
}

#[tokio::test]
async fn authority_and_host_must_agree() {
    let p = harness::start().await;
    let url = p.http_url("allowed.test", "/");
    refused(
        &p,
        format!("GET {url} HTTP/1.1\r\nHost: blocked.test\r\n\r\n"),
        400,
        "disagrees",
    )
    .await;
    refused(
        &p,
        "GET /index.html HTTP/1.1\r\n\r\n".to_string(),
        400,
        "without a host",
    )
    .await;
    refused(
        &p,
        format!(
            "GET https://allowed.test:{}/ HTTP/1.1\r\n\r\n",
            p.https.addr.port()
        ),
        400,
        "CONNECT",
    )
    .await;
    assert_eq!(p.http.connections() + p.https.connections(), 0);
}

#[tokio::test]
async fn a_good_chunked_body_is_reframed_for_the_origin() {
    let p = harness::start().await;
    let url = p.http_url("allowed.test", "/post");
    let request = format!(
        "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    );
    let text = raw(p.addr, request.as_bytes()).await;
    assert_eq!(first_status(&text), 200, "{text}");
    let seen = p.http.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"abcde");
}

#[tokio::test]
async fn every_pipelined_request_is_decided() {
    let p = harness::start().await;
    let allowed = p.http_url("allowed.test", "/one");
    let blocked = p.http_url("blocked.test", "/two");
    let request = format!(
        "GET {allowed} HTTP/1.1\r\n\r\nGET {blocked} HTTP/1.1\r\nConnection: close\r\n\r\n"
    );
    let text = raw(p.addr, request.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 403"), "{text}");
    assert_eq!(p.http.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connect_leaves_the_connection_guarded() {
    let p = harness::start().await;
    let url = p.http_url("allowed.test", "/");
    // Port 22 is not allowed: 403. The bytes after it are HTTP again, and an
    // ambiguous request among them is refused like any other.
    let request = format!(
        "CONNECT allowed.test:22 HTTP/1.1\r\nHost: allowed.test:22\r\n\r\n\
         POST {url} HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let text = raw(p.addr, request.as_bytes()).await;
    assert_eq!(first_status(&text), 403, "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("content-length and transfer-encoding"),
        "{text}"
    );
    assert_eq!(p.http.connections(), 0);
}
