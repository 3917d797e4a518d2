//! Plain HTTP through the proxy: allowed, blocked, refused destinations, the
//! proxy's own pages, header hygiene towards the origin, safe search.
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::harness::{self, get, send};

#[tokio::test]
async fn allowed_http_reaches_the_origin_rebuilt() {
    // A real login, so the request is allowed and the stripped
    // Proxy-Authorization can be checked at the origin.
    let p = harness::start_with(harness::Options {
        accounts: Some(harness::TestAccounts::new(&[("year4", "year4", "pass")])),
        ..harness::Options::default()
    })
    .await;
    let url = p.http_url("allowed.test", "/a/b?c=d");
    let req = Request::get(&url)
        .header("host", format!("allowed.test:{}", p.http.addr.port()))
        .header("proxy-authorization", "Basic eWVhcjQ6cGFzcw==") // year4:pass
        .header("proxy-connection", "keep-alive")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("x-kept", "1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = send(p.addr, req).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "origin GET /a/b?c=d");
    // Alt-Svc and the origin's hop-by-hop headers do not reach the client.
    assert!(!reply.headers.contains_key("alt-svc"));
    assert!(!reply.headers.contains_key("x-hop"));
    assert_eq!(reply.headers["x-origin"], "yes");

    let seen = p.http.requests();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.uri, "/a/b?c=d", "origin-form upstream");
    assert_eq!(
        seen.headers["host"],
        format!("allowed.test:{}", p.http.addr.port())
    );
    assert_eq!(seen.headers["x-kept"], "1");
    for gone in [
        "proxy-authorization",
        "proxy-connection",
        "x-private",
        "connection",
    ] {
        assert!(!seen.headers.contains_key(gone), "{gone} was forwarded");
    }
}

/// Requests on one client connection to one host and then another: each is
/// forwarded with its own `Host`, whether its upstream connection was kept
/// from the request before or opened for it.
#[tokio::test]
async fn each_request_on_a_kept_connection_carries_its_own_host() {
    let p = harness::start().await;
    let (mut sender, _) = harness::one_connection(p.addr).await;
    let hosts = [
        "allowed.test",
        "allowed.test",
        "splice.test",
        "allowed.test",
    ];
    for host in hosts {
        let request = Request::get(p.http_url(host, "/"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200, "{host}");
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body");
    }
    let seen: Vec<String> = p
        .http
        .requests()
        .iter()
        .map(|r| r.headers["host"].to_str().unwrap_or("?").to_string())
        .collect();
    let port = p.http.addr.port();
    let expected: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn blocked_http_gets_the_block_page_and_an_event() {
    let p = harness::start().await;
    let url = p.http_url("blocked.test", "/page?password=hunter2&x=1");
    let reply = get(p.addr, &url).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .starts_with("default-src 'none'")
    );
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert!(!reply.headers.contains_key("set-cookie"));
    assert!(
        reply.body.contains("This page is blocked"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("year4"));
    assert!(reply.body.contains("Ask for a review"));
    assert!(
        !reply.body.contains("hunter2"),
        "secrets are redacted on the page"
    );
    assert!(!reply.body.contains("<script"));
    assert_eq!(
        p.http.connections(),
        0,
        "a blocked request never reaches the origin"
    );

    let events = p.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e.group.as_str(), e.band.as_str(), e.method.as_str()),
        ("year4", "ks2", "GET")
    );
    assert!(
        e.url.contains("blocked.test") && !e.url.contains("hunter2"),
        "{}",
        e.url
    );
    assert!(
        reply.body.contains(&e.reference),
        "the page shows the event's reference"
    );
    assert_eq!(e.client_ip.to_string(), "127.0.0.1");
}

#[tokio::test]
async fn a_blocked_category_says_why_in_the_policy_words() {
    let p = harness::start().await;
    let reply = get(p.addr, &p.http_url("games.test", "/")).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply
            .body
            .contains("Games sites are not allowed in school time."),
        "{}",
        reply.body
    );
    assert_eq!(p.http.connections(), 0);
    let events = p.events().await;
    assert_eq!(events[0].category.as_deref(), Some("games"));
}

#[tokio::test]
async fn evasion_spellings_of_a_blocked_host_are_blocked() {
    let p = harness::start().await;
    let port = p.http.addr.port();
    for host in [
        "BLOCKED.test",
        "blocked.test.",
        "user:pw@blocked.test",
        "%62locked.test",
        "blocked.test%2e",
    ] {
        let head = format!("GET http://{host}:{port}/ HTTP/1.1\r\nConnection: close\r\n\r\n");
        let text = harness::raw(p.addr, head.as_bytes()).await;
        let status = harness::first_status(&text);
        assert!(status == 403 || status == 400, "{host}: {text}");
    }
    assert_eq!(p.http.connections(), 0);
}

#[tokio::test]
async fn internal_and_unlisted_destinations_are_refused_before_dialling() {
    let p = harness::start().await;
    // A name resolving to a private address, one mixing a link-local address
    // in, a loopback literal, the proxy itself, and a port nobody allowed.
    for url in [
        "http://internal.test/".to_string(),
        format!("http://mixed.test:{}/", p.http.addr.port()),
        "http://127.0.0.9/".to_string(),
        "http://allowed.test:25/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let reply = get(p.addr, &url).await;
        assert_eq!(reply.status, 403, "{url}: {}", reply.body);
    }
    // The proxy's own address is its own pages, never a forward.
    let own = get(p.addr, &format!("http://{}/nope", p.addr)).await;
    assert_eq!(own.status, 404);
    assert_eq!(p.http.connections(), 0);
}

#[tokio::test]
async fn the_ca_certificate_is_served_with_instructions() {
    let p = harness::start().await;
    let cert = get(p.addr, &format!("http://{}/hallpass-ca.crt", p.addr)).await;
    assert_eq!(cert.status, 200);
    assert_eq!(cert.body, p.school_ca_pem);
    assert!(!cert.body.contains("PRIVATE"));
    assert_eq!(cert.headers["content-type"], "application/x-x509-ca-cert");
    // Origin-form, as a browser not yet configured for the proxy sends it.
    let text = harness::raw(
        p.addr,
        format!(
            "GET /hallpass-ca.crt HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            p.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(harness::first_status(&text), 200, "{text}");
    assert!(text.contains("BEGIN CERTIFICATE"));
    let help = get(p.addr, &format!("http://{}/", p.addr)).await;
    assert!(
        help.body.contains("/hallpass-ca.crt") && help.body.contains("Windows"),
        "{}",
        help.body
    );
}

#[tokio::test]
async fn the_review_link_records_a_review_request() {
    let p = harness::start().await;
    let blocked = get(p.addr, &p.http_url("blocked.test", "/")).await;
    let start = blocked.body.find("href=\"").expect("review link") + 6;
    let end = blocked.body[start..].find('"').expect("end of link") + start;
    let link = blocked.body[start..end].replace("&amp;", "&");
    let thanks = get(p.addr, &link).await;
    assert_eq!(thanks.status, 200, "{link}: {}", thanks.body);
    assert!(thanks.body.contains("Thank you"));
    let mut events = Vec::new();
    for _ in 0..100 {
        events = p.events().await;
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        events.last().map(|e| e.kind),
        Some(policy::event::BlockKind::ReviewRequest),
        "{events:?}"
    );
    assert!(
        events
            .last()
            .is_some_and(|e| e.url.contains(&events[0].reference))
    );
}

#[tokio::test]
async fn safe_search_is_forced_for_the_band() {
    let p = harness::start().await;
    let port = p.http.addr.port();
    let cases = [
        (
            format!("http://www.google.com:{port}/search?q=cats&safe=off"),
            "/search?q=cats&safe=active",
        ),
        (
            format!("http://www.bing.com:{port}/search?q=cats"),
            "/search?q=cats&adlt=strict",
        ),
        (
            format!("http://duckduckgo.com:{port}/?q=cats&kp=-2"),
            "/?q=cats&kp=1",
        ),
    ];
    for (url, _) in &cases {
        let reply = get(p.addr, url).await;
        assert_eq!(reply.status, 200, "{url}");
    }
    let seen: Vec<String> = p.http.requests().iter().map(|s| s.uri.clone()).collect();
    let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(seen, want);
    get(p.addr, &format!("http://www.youtube.com:{port}/watch?v=x")).await;
    let yt = p.http.requests().pop().expect("youtube request");
    assert_eq!(yt.headers["youtube-restrict"], "Strict");
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection() {
    let p = harness::start().await;
    let (mut sender, _) = harness::one_connection(p.addr).await;
    for i in 0..20 {
        let req = Request::get(p.http_url("allowed.test", &format!("/n{i}")))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(req).await.expect("response");
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body");
    }
    assert_eq!(p.http.requests().len(), 20);
    assert_eq!(
        p.http.connections(),
        1,
        "one upstream connection for the whole client connection"
    );
}

#[tokio::test]
async fn by_default_block_events_are_appended_to_the_state_directory() {
    let p = harness::start_with(harness::Options {
        events_to_file: true,
        ..Default::default()
    })
    .await;
    let reply = get(p.addr, &p.http_url("blocked.test", "/?token=abc")).await;
    assert_eq!(reply.status, 403);
    let file = p.path().join("state/events.jsonl");
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let event: policy::event::BlockEvent =
        serde_json::from_str(text.lines().next().expect("one line")).expect("json");
    assert!(reply.body.contains(&event.reference));
    assert!(
        !event.url.contains("abc"),
        "secrets are redacted: {}",
        event.url
    );
}
