//! The console's security suite, with a plain HTTP client (no browser): no
//! session, a forged cookie, another role's session, a missing or wrong CSRF
//! token, malformed and over-long fields. Each refusal is the right 4xx and
//! leaves the incident store exactly as it was.
mod support;

use std::sync::Arc;

use http_client::{Client, Reply};
use hyper::StatusCode;
use support::{Fixture, ILLEGAL_URL, PASSWORD};

#[path = "support/http.rs"]
mod http_client;

fn client(f: &Fixture) -> Client {
    Client {
        addr: f.addr,
        tls: None,
    }
}

fn assert_headers(r: &Reply) {
    assert_eq!(
        r.header("content-security-policy"),
        console::web::CSP,
        "every response carries the CSP"
    );
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
}

fn assert_sign_in_wall(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
    assert!(
        r.body.contains("action=\"/login\""),
        "{what}: the sign-in form"
    );
    assert_headers(r);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_session_or_with_a_forged_cookie_every_page_is_the_sign_in_form() {
    let f = support::start(false).await;
    let c = client(&f);
    let pages = [
        "/".to_string(),
        "/blocks".into(),
        "/blocks.csv".into(),
        "/incidents".into(),
        format!("/incidents/{}", f.illegal),
        "/requests".into(),
        "/policy".into(),
        "/filter-checks".into(),
        "/filter-checks/1".into(),
    ];
    let forged = format!("hallpass-session={}", "ab".repeat(32));
    for page in &pages {
        let r = c.get(page, None).await;
        assert_sign_in_wall(&r, page);
        let cookie = r.header("set-cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(!r.body.contains(support::ILLEGAL_HOST), "{page}");
        for bad in [
            forged.as_str(),
            "hallpass-session=../../etc/passwd",
            "hallpass-session=",
        ] {
            assert_sign_in_wall(&c.get(page, Some(bad)).await, &format!("{page} {bad}"));
        }
    }
    // A session from the sign-in form is not a signed-in session.
    let anon = c.get("/login", None).await;
    let anon_cookie = anon.session_cookie().expect("cookie");
    assert_sign_in_wall(&c.get("/", Some(&anon_cookie)).await, "anonymous session");

    let before = f.snapshot_of(f.inappropriate);
    let csrf = anon.csrf().expect("token");
    for cookie in [None, Some(forged.as_str()), Some(anon_cookie.as_str())] {
        let r = c
            .post_form(
                &format!("/incidents/{}/review", f.inappropriate),
                cookie,
                &[("csrf", &csrf), ("result", "looked at it")],
            )
            .await;
        assert_sign_in_wall(&r, &format!("POST with {cookie:?}"));
    }
    assert_eq!(f.snapshot_of(f.inappropriate), before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_refuses_wrong_passwords_and_accounts_without_a_role_then_backs_off() {
    let f = support::start(false).await;
    let c = client(&f);
    let attempt = |user: &'static str, password: &'static str| {
        let c = c.clone();
        async move {
            let page = c.get("/login", None).await;
            let cookie = page.session_cookie().expect("cookie");
            let csrf = page.csrf().expect("csrf");
            c.post_form(
                "/login",
                Some(&cookie),
                &[("csrf", &csrf), ("user", user), ("password", password)],
            )
            .await
        }
    };
    // A pupil's account with the right password: no role, no console.
    let r = attempt("s.pupil", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("may not use the console"), "{}", r.body);
    let wrong = attempt("e.safety", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.body.contains("not the password"), "never echoed");
    // The same words for an unknown account.
    let unknown = attempt("nobody", "whatever").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("may not use the console"));
    // Sign-in rotates the session id: the anonymous cookie is dead after it.
    let page = c.get("/login", None).await;
    let anon = page.session_cookie().expect("cookie");
    let csrf = page.csrf().expect("csrf");
    let ok = c
        .post_form(
            "/login",
            Some(&anon),
            &[
                ("csrf", &csrf),
                ("user", "e.safety"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ok.header("location"),
        "/",
        "never redirected off the console"
    );
    let signed = ok.session_cookie().expect("new cookie");
    assert_ne!(signed, anon);
    assert_eq!(c.get("/", Some(&signed)).await.status, StatusCode::OK);
    assert_sign_in_wall(&c.get("/", Some(&anon)).await, "the old id");
    // Back-off after repeated failures (the accounts' throttle: 5).
    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = attempt("d.lead", "guess").await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let r = attempt("d.lead", PASSWORD).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(!r.header("retry-after").is_empty());
    // The back-off is per name and per address: this computer waits too.
}

#[tokio::test(flavor = "multi_thread")]
async fn every_post_needs_the_sessions_own_csrf_token() {
    let f = support::start(false).await;
    let c = client(&f);
    let (cookie, csrf) = c.sign_in("e.safety", PASSWORD).await;
    let (_, other_csrf) = c.sign_in("d.lead", PASSWORD).await;
    let path = format!("/incidents/{}/review", f.inappropriate);
    let before = f.snapshot_of(f.inappropriate);
    for token in [
        None,
        Some(String::new()),
        Some("0".repeat(64)),
        Some(other_csrf.clone()),
    ] {
        let mut fields = vec![
            ("result", "blocked correctly"),
            ("action", "no-further-action"),
        ];
        let t;
        if let Some(v) = token.clone() {
            t = v;
            fields.push(("csrf", &t));
        }
        let r = c.post_form(&path, Some(&cookie), &fields).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "token {token:?}: {}",
            r.body
        );
        assert_headers(&r);
    }
    // Sign-out needs it too: the session survives a forged sign-out.
    let r = c.post_form("/logout", Some(&cookie), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/", Some(&cookie)).await.status, StatusCode::OK);
    assert_eq!(f.snapshot_of(f.inappropriate), before, "nothing changed");

    // With the right token the same request goes through.
    let r = c
        .post_form(
            &path,
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("result", "blocked correctly"),
                ("action", "no-further-action"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (state, result, _) = f.snapshot_of(f.inappropriate);
    assert_eq!(state, "action-taken");
    assert_eq!(result.as_deref(), Some("blocked correctly"));
    let trail = f.trail(f.inappropriate);
    assert!(trail.contains(&(
        "e.safety".into(),
        "esafety-officer".into(),
        "record-review".into()
    )));
    // And sign-out with the token ends the session.
    let r = c
        .post_form("/logout", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_sign_in_wall(&c.get("/", Some(&cookie)).await, "after sign-out");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_roles_session_is_refused_and_changes_nothing() {
    let f = support::start(false).await;
    let c = client(&f);
    let (gov, gov_csrf) = c.sign_in("g.gov", PASSWORD).await;
    let (tech, tech_csrf) = c.sign_in("t.tech", PASSWORD).await;
    let (esafety, es_csrf) = c.sign_in("e.safety", PASSWORD).await;
    let (head, head_csrf) = c.sign_in("p.head", PASSWORD).await;
    // Governors see aggregates and incidents, not pupils' browsing.
    for page in ["/blocks", "/blocks.csv"] {
        let r = c.get(page, Some(&gov)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{page}");
        assert!(!r.body.contains("pupil"), "{page}");
    }
    assert_eq!(c.get("/", Some(&gov)).await.status, StatusCode::OK);
    let before_inappropriate = f.snapshot_of(f.inappropriate);
    let before_illegal = f.snapshot_of(f.illegal);
    let refusals = [
        (
            &gov,
            &gov_csrf,
            format!("/incidents/{}/review", f.inappropriate),
            StatusCode::FORBIDDEN,
        ),
        (
            &tech,
            &tech_csrf,
            format!("/incidents/{}/start", f.inappropriate),
            StatusCode::FORBIDDEN,
        ),
        (
            &tech,
            &tech_csrf,
            format!("/incidents/{}/sign", f.inappropriate),
            StatusCode::FORBIDDEN,
        ),
        // Illegal incidents are the safeguarding lead's alone.
        (
            &esafety,
            &es_csrf,
            format!("/incidents/{}/review", f.illegal),
            StatusCode::FORBIDDEN,
        ),
        (
            &esafety,
            &es_csrf,
            format!("/incidents/{}/start", f.illegal),
            StatusCode::FORBIDDEN,
        ),
        // Sign-off only once a review is recorded.
        (
            &head,
            &head_csrf,
            format!("/incidents/{}/sign", f.inappropriate),
            StatusCode::CONFLICT,
        ),
        (
            &esafety,
            &es_csrf,
            "/incidents/999999/start".to_string(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (cookie, csrf, path, want) in refusals {
        let fields: Vec<(&str, &str)> = if path.ends_with("/review") {
            vec![("csrf", csrf.as_str()), ("result", "x")]
        } else {
            vec![("csrf", csrf.as_str())]
        };
        let r = c.post_form(&path, Some(cookie), &fields).await;
        assert_eq!(r.status, want, "{path}: {}", r.body);
    }
    assert_eq!(f.snapshot_of(f.inappropriate), before_inappropriate);
    // The refused steps on the illegal incident left no trace either.
    let (state, result, trail_len) = f.snapshot_of(f.illegal);
    assert_eq!(
        (state, result),
        (before_illegal.0.clone(), before_illegal.1.clone())
    );
    assert_eq!(trail_len, before_illegal.2);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_over_long_fields_are_refused_and_change_nothing() {
    let f = support::start(false).await;
    let c = client(&f);
    let (cookie, csrf) = c.sign_in("e.safety", PASSWORD).await;
    let path = format!("/incidents/{}/review", f.inappropriate);
    let before = f.snapshot_of(f.inappropriate);
    let long = "x".repeat(console::pages::incidents::MAX_TEXT + 1);
    let cases: Vec<(Vec<(&str, &str)>, StatusCode)> = vec![
        (
            vec![("csrf", &csrf), ("result", &long)],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            vec![("csrf", &csrf), ("result", "ok"), ("outcome", &long)],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            vec![("csrf", &csrf), ("result", "ok"), ("action", "expel")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &csrf), ("result", "ok"), ("result", "again")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &csrf), ("result", "ok"), ("state", "closed")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &csrf), ("result", "a\u{0}b")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &csrf), ("result", "   ")],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (fields, want) in cases {
        let r = c.post_form(&path, Some(&cookie), &fields).await;
        assert_eq!(
            r.status,
            want,
            "{:?}: {}",
            fields.iter().map(|f| f.0).collect::<Vec<_>>(),
            r.body
        );
    }
    let form = "application/x-www-form-urlencoded";
    // Not UTF-8.
    let body = format!("csrf={csrf}&result=%FF%FE").into_bytes();
    let r = c
        .send(
            "POST",
            &path,
            &[("cookie", &cookie), ("content-type", form)],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Over the body limit.
    let body = format!("csrf={csrf}&result={}", "y".repeat(console::web::MAX_BODY)).into_bytes();
    let r = c
        .send(
            "POST",
            &path,
            &[("cookie", &cookie), ("content-type", form)],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Not a form.
    let body = format!("{{\"csrf\":\"{csrf}\",\"result\":\"ok\"}}").into_bytes();
    let r = c
        .send(
            "POST",
            &path,
            &[("cookie", &cookie), ("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Paths that are not incidents or steps.
    let r = c
        .post_form(
            "/incidents/abc/review",
            Some(&cookie),
            &[("csrf", &csrf), ("result", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post_form(
            &format!("/incidents/{}/delete", f.inappropriate),
            Some(&cookie),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Malformed report filters.
    for q in [
        "/blocks?from=yesterday",
        "/blocks?account=%3Cscript%3E",
        "/blocks?site=exa%20mple.com",
        "/blocks?colour=red",
        "/incidents?state=done",
        "/?days=9999",
    ] {
        let r = c.get(q, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        assert!(!r.body.contains("<script>"), "escaped: {q}");
    }
    assert_eq!(f.snapshot_of(f.inappropriate), before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn illegal_urls_are_for_the_safeguarding_lead_only_and_every_view_is_audited() {
    let f = support::start(false).await;
    let c = client(&f);
    let host = support::ILLEGAL_HOST;
    let (es, _) = c.sign_in("e.safety", PASSWORD).await;
    let (dsl, _) = c.sign_in("d.lead", PASSWORD).await;
    let page = format!("/incidents/{}", f.illegal);
    let trail_before = f.trail(f.illegal).len();

    let r = c.get(&page, Some(&es)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !r.body.contains(host),
        "the URL is withheld from the e-safety officer"
    );
    assert!(r.body.contains("url-withheld"));
    let trail = f.trail(f.illegal);
    assert_eq!(trail.len(), trail_before + 1);
    assert_eq!(
        trail.last(),
        Some(&(
            "e.safety".to_string(),
            "esafety-officer".to_string(),
            "view".to_string()
        ))
    );
    // Lists, the dashboard, the block report and its CSV never show it.
    for p in [
        "/incidents",
        "/",
        "/blocks?from=2000-01-01&to=2000-12-31",
        "/requests",
    ] {
        let r = c.get(p, Some(&dsl)).await;
        assert!(!r.body.contains(host), "{p}");
    }
    let today = support::now_ms();
    let from = console::pages::day(today - 10 * console::pages::DAY_MS);
    let to = console::pages::day(today);
    let r = c
        .get(
            &format!("/blocks?from={from}&to={to}&category=child-abuse"),
            Some(&dsl),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("withheld"), "{}", r.body);
    assert!(!r.body.contains(host));
    let r = c
        .get(&format!("/blocks.csv?from={from}&to={to}"), Some(&dsl))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains(host));
    assert!(r.body.contains("(withheld: locked baseline)"));
    // The safeguarding lead sees it on the incident, and that read is audited.
    let before = f.trail(f.illegal).len();
    let r = c.get(&page, Some(&dsl)).await;
    assert!(r.body.contains(ILLEGAL_URL), "{}", r.body);
    let trail = f.trail(f.illegal);
    let new: Vec<&str> = trail[before..].iter().map(|t| t.2.as_str()).collect();
    assert_eq!(new, ["read-url", "view"]);
    assert!(trail[before..].iter().all(|t| t.0 == "d.lead"));
}

#[tokio::test(flavor = "multi_thread")]
async fn block_report_filters_and_csv_agree_with_the_store() {
    let f = support::start(false).await;
    let c = client(&f);
    let (cookie, _) = c.sign_in("t.tech", PASSWORD).await;
    let today = support::now_ms();
    let from = console::pages::day(today - 10 * console::pages::DAY_MS);
    let to = console::pages::day(today);
    let all = c
        .get(&format!("/blocks.csv?from={from}&to={to}"), Some(&cookie))
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.header("content-type").starts_with("text/csv"));
    assert!(all.header("content-disposition").contains("attachment"));
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(all.body.as_bytes())
        .records()
        .map(|r| r.expect("csv").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), f.events, "every seeded event is in range");
    let year5 = rows.iter().filter(|r| r[2] == "year5").count();
    let r = c
        .get(
            &format!("/blocks.csv?from={from}&to={to}&group=year5"),
            Some(&cookie),
        )
        .await;
    let filtered: Vec<Vec<String>> = csv::Reader::from_reader(r.body.as_bytes())
        .records()
        .map(|r| r.expect("csv").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(filtered.len(), year5);
    assert!(filtered.iter().all(|r| r[2] == "year5"));
    // The page says the same count.
    let page = c
        .get(
            &format!("/blocks?from={from}&to={to}&group=year5"),
            Some(&cookie),
        )
        .await;
    assert!(
        page.body
            .contains(&format!("<strong>{year5}</strong> blocked requests match")),
        "{year5}"
    );
    // A site filter matches the host and its subdomains.
    let url = &rows[0][5];
    let host = policy::CanonicalUrl::parse(url)
        .expect("url")
        .host()
        .as_str()
        .to_string();
    let r = c
        .get(
            &format!("/blocks.csv?from={from}&to={to}&site={host}"),
            Some(&cookie),
        )
        .await;
    let by_site = csv::Reader::from_reader(r.body.as_bytes())
        .records()
        .count();
    let expected = rows
        .iter()
        .filter(|r| {
            policy::CanonicalUrl::parse(&r[5]).is_ok_and(|u| {
                let h = u.host().as_str();
                h == host || h.ends_with(&format!(".{host}"))
            })
        })
        .count();
    assert!(expected > 0);
    assert_eq!(by_site, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_the_cookie_is_host_only_and_secure() {
    let f = support::start(true).await;
    let ca_pem = std::fs::read(proxy::ca::ca_files(&f.dir.path().join("state")).cert).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca_pem) {
        roots.add(cert).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let c = Client {
        addr: f.addr,
        tls: Some((Arc::new(config), "localhost".into())),
    };
    let r = c.get("/login", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.header("set-cookie");
    assert!(cookie.starts_with("__Host-hallpass-session="), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"));
    assert!(r.header("strict-transport-security").contains("max-age="));
    let (session, _) = c.sign_in("p.head", PASSWORD).await;
    assert!(session.starts_with("__Host-hallpass-session="));
    // The plain-HTTP cookie name means nothing here.
    let plain = session.replace("__Host-hallpass-session", "hallpass-session");
    assert_eq!(
        c.get("/", Some(&plain)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM")
}

/// Filter checks recorded in the fixture's store.
fn recorded_checks(f: &Fixture) -> Vec<incidents::FilterCheck> {
    f.store()
        .filter_checks(0, u64::MAX, 100)
        .expect("filter checks")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_technician_with_the_sessions_token_may_run_a_filter_check() {
    let f = support::start_with(false, support::Checks::Proxy).await;
    let c = client(&f);
    // Without a session: the sign-in form, nothing runs.
    let anon = c.get("/login", None).await;
    let anon_csrf = anon.csrf().expect("token");
    let r = c
        .post_form(
            "/filter-checks/run",
            anon.session_cookie().as_deref(),
            &[("csrf", &anon_csrf)],
        )
        .await;
    assert_sign_in_wall(&r, "anonymous run");
    // Every other role sees the history but may not start a run.
    for (user, role) in support::STAFF {
        if role == incidents::Role::Technician {
            continue;
        }
        let (cookie, csrf) = c.sign_in(user, PASSWORD).await;
        let page = c.get("/filter-checks", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{user}: {}", page.body);
        assert!(page.body.contains("id=\"no-checks\""), "{user}");
        assert!(
            !page.body.contains("/filter-checks/run"),
            "{user}: no button"
        );
        let r = c
            .post_form("/filter-checks/run", Some(&cookie), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{user}: {}", r.body);
        assert!(r.body.contains("technician"), "{user}: {}", r.body);
        assert_headers(&r);
    }
    // The technician without the session's token, or with a stray field.
    let (tech, tech_csrf) = c.sign_in("t.tech", PASSWORD).await;
    let (_, other_csrf) = c.sign_in("e.safety", PASSWORD).await;
    for token in [None, Some(String::new()), Some(other_csrf)] {
        let fields: Vec<(&str, &str)> = match &token {
            Some(t) => vec![("csrf", t.as_str())],
            None => Vec::new(),
        };
        let r = c
            .post_form("/filter-checks/run", Some(&tech), &fields)
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "token {token:?}: {}",
            r.body
        );
    }
    let r = c
        .post_form(
            "/filter-checks/run",
            Some(&tech),
            &[("csrf", &tech_csrf), ("group", "year5")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Nothing ran: no run recorded, none going.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(recorded_checks(&f).is_empty());
    let page = c.get("/filter-checks", Some(&tech)).await;
    assert!(!page.body.contains("check-running"), "{}", page.body);
    assert!(page.body.contains("id=\"no-checks\""));

    // The same request with the token starts a run, recorded as the technician's.
    let r = c
        .post_form("/filter-checks/run", Some(&tech), &[("csrf", &tech_csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), "/filter-checks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let runs = loop {
        let runs = recorded_checks(&f);
        if !runs.is_empty() {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run was not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].check.ran_by, "t.tech");
    assert!(runs[0].check.passed, "{:?}", runs[0]);
    // Its detail is open to every role; an unknown or malformed number is not.
    let (gov, _) = c.sign_in("g.gov", PASSWORD).await;
    let detail = c
        .get(&format!("/filter-checks/{}", runs[0].id), Some(&gov))
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("t.tech"));
    assert_eq!(
        c.get("/filter-checks/999999", Some(&gov)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get("/filter-checks/1%3Bx", Some(&gov)).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_while_one_is_going_says_who_started_it() {
    // A "proxy" that accepts connections and never answers: the run stays
    // in progress for as long as this test needs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let f = support::start_with(false, support::Checks::At(addr)).await;
    let c = client(&f);
    let (tech, csrf) = c.sign_in("t.tech", PASSWORD).await;
    let first = c
        .post_form("/filter-checks/run", Some(&tech), &[("csrf", &csrf)])
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let page = c.get("/filter-checks", Some(&tech)).await;
    assert!(page.body.contains("id=\"check-running\""), "{}", page.body);
    assert_eq!(page.header("refresh"), "3", "the page follows the run");
    let second = c
        .post_form("/filter-checks/run", Some(&tech), &[("csrf", &csrf)])
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    assert!(
        second.body.contains("already running") && second.body.contains("t.tech"),
        "{}",
        second.body
    );
    assert!(recorded_checks(&f).is_empty());
}
