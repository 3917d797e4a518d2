//! Urgent-incident alerts against a local webhook server on loopback: delivered
//! at once, retried after failures, a failure kept on the incident, and never
//! the URL. Mail alerts against a real SMTP server on loopback: Debian's
//! aiosmtpd (`python3-aiosmtpd`, installed by `scripts/install-test-deps.sh`)
//! with STARTTLS required and a certificate from a test CA, delivering into a
//! maildir; the server's certificate is verified, and a webhook that fails does
//! not make the mail go twice. Runs on SQLite and on the real PostgreSQL (see
//! `support`).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use incidents::{
    Actor, AlertMetrics, AlertSettings, AlertState, Alerter, Channel, Clock, IncidentFilter,
    IncidentKind, LockedCategories, Recorder, Role, RuleEngine, Rules, SmtpSecurity, SmtpSettings,
    Store, SystemClock,
};
use policy::event::{BlockEvent, BlockKind};

mod support;
use support::{TestStore, both};

/// A webhook that answers each POST with the next status of `script` (the last
/// one repeats) and keeps the bodies it received.
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn webhook(script: &'static [u16]) -> Webhook {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            let status = script[n.min(script.len() - 1)];
            let _ = stream.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Webhook { url, bodies }
}

fn illegal_event(reference: &str) -> BlockEvent {
    BlockEvent {
        reference: reference.into(),
        time_ms: SystemClock.now_ms(),
        client_ip: IpAddr::from([10, 1, 4, 23]),
        who: None,
        group: "year5".into(),
        band: "ks2".into(),
        method: "GET".into(),
        url: "http://illegal.test/secret-path".into(),
        category: Some("child-abuse".into()),
        rule: Some("baseline policy.toml:3:1".into()),
        kind: BlockKind::Policy,
    }
}

type Reopen = Arc<dyn Fn() -> Store + Send + Sync>;

/// Opens an urgent incident through a recorder wired to an alerter, as
/// `hallpass run` does, and returns its number.
fn open_urgent(
    reopen: &Reopen,
    settings: &AlertSettings,
    metrics: Arc<AlertMetrics>,
) -> (u64, Alerter) {
    let open = {
        let reopen = reopen.clone();
        move || Ok::<Store, incidents::Error>(reopen())
    };
    let (alerter, waker) = Alerter::start(settings, open.clone(), Arc::new(SystemClock), metrics)
        .expect("start")
        .expect("a webhook is set");
    let mut recorder = Recorder::new(
        open,
        RuleEngine::new(Rules::default(), LockedCategories::required()),
        Arc::new(SystemClock),
        Duration::from_secs(1),
    );
    recorder.set_alert_waker(waker);
    let stats = recorder
        .record(&[illegal_event("AL1")], &[])
        .expect("record");
    assert_eq!(stats.incidents_opened, 1);
    let illegal = reopen()
        .incidents(
            &IncidentFilter {
                kind: Some(IncidentKind::Illegal),
                ..IncidentFilter::default()
            },
            &Actor::new("dana", Role::SafeguardingLead),
            SystemClock.now_ms(),
        )
        .expect("list");
    assert_eq!(illegal.len(), 1);
    (illegal[0].number, alerter)
}

fn wait_for_state(
    reopen: &Reopen,
    engine: &str,
    number: u64,
    want: AlertState,
) -> incidents::AlertStatus {
    let started = Instant::now();
    loop {
        let status = reopen()
            .alert_status(number)
            .expect("status")
            .expect("an urgent incident has an alert");
        if status.state == want {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{engine}: alert still {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_urgent_incident_is_alerted_retried_after_failures_and_never_carries_the_url() {
    both("alert delivered", |t: TestStore| {
        let hook = webhook(&[500, 503, 200]);
        let settings = AlertSettings {
            webhook: Some(hook.url.clone()),
            smtp: None,
            console_url: "http://console.school.test:8080/".into(),
            max_attempts: 5,
            first_retry: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
        };
        let metrics = Arc::new(AlertMetrics::default());
        let engine = t.engine;
        let reopen: Reopen = Arc::from(t.reopen);
        let (number, alerter) = open_urgent(&reopen, &settings, metrics.clone());
        let status = wait_for_state(&reopen, engine, number, AlertState::Sent);
        assert_eq!(status.attempts, 3, "{engine}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("503")),
            "{status:?}"
        );
        assert_eq!(metrics.sent.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.failed_attempts.load(Ordering::SeqCst), 2);
        alerter.stop();
        let bodies = hook.bodies.lock().expect("lock").clone();
        assert_eq!(bodies.len(), 3, "{bodies:?}");
        let alert: serde_json::Value = serde_json::from_str(&bodies[2]).expect("json");
        assert_eq!(alert["incident"], number);
        assert_eq!(alert["kind"], "illegal");
        assert_eq!(alert["group"], "year5");
        assert_eq!(alert["ip"], "10.1.4.23");
        assert_eq!(
            alert["console_link"],
            format!("http://console.school.test:8080/incidents/{number}")
        );
        for body in &bodies {
            assert!(
                !body.contains("illegal.test") && !body.contains("secret-path"),
                "the alert carries the URL: {body}"
            );
        }
    });
}

#[test]
fn an_alert_that_keeps_failing_is_marked_failed_with_its_error() {
    both("alert failed", |t: TestStore| {
        // A port nobody listens on: connection refused every time.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let settings = AlertSettings {
            webhook: Some(format!("http://{closed}/hook")),
            max_attempts: 3,
            first_retry: Duration::from_millis(30),
            ..AlertSettings::default()
        };
        let metrics = Arc::new(AlertMetrics::default());
        let engine = t.engine;
        let reopen: Reopen = Arc::from(t.reopen);
        let (number, alerter) = open_urgent(&reopen, &settings, metrics.clone());
        let status = wait_for_state(&reopen, engine, number, AlertState::Failed);
        alerter.stop();
        assert_eq!(status.attempts, 3);
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("connect")),
            "{status:?}"
        );
        assert_eq!(metrics.failed_attempts.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.given_up.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.sent.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn an_https_or_credentialed_webhook_is_refused_with_the_reason() {
    for (url, why) in [
        ("https://hooks.example/x", "http://"),
        ("http://user:pw@relay.lan/x", "credentials"),
        ("not a url", "not a URL"),
    ] {
        let settings = AlertSettings {
            webhook: Some(url.into()),
            ..AlertSettings::default()
        };
        let err = settings.webhook_target().expect_err(url).to_string();
        assert!(err.contains(why) && err.contains("alerts.webhook"), "{err}");
    }
}

const PYTHON: &str = "/usr/bin/python3";

/// A test CA and a server certificate for 127.0.0.1 and localhost.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hallpass mail test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca.pem()).expect("write");
    std::fs::write(path("cert.pem"), cert.pem()).expect("write");
    std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");
    Pki {
        ca: path("ca.pem"),
        cert: path("cert.pem"),
        key: path("key.pem"),
        _dir: dir,
    }
}

/// aiosmtpd on an ephemeral loopback port, STARTTLS required, storing what it
/// receives in a maildir; killed on drop.
struct MailServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MailServer {
    fn start(pki: &Pki) -> MailServer {
        assert!(
            Path::new(PYTHON).exists()
                && Command::new(PYTHON)
                    .args(["-c", "import aiosmtpd"])
                    .status()
                    .is_ok_and(|s| s.success()),
            "aiosmtpd is missing: install the Debian package `python3-aiosmtpd` (bash scripts/install-test-deps.sh)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let maildir = tempfile::tempdir().expect("maildir");
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg("--tlscert")
            .arg(&pki.cert)
            .arg("--tlskey")
            .arg(&pki.key)
            .arg(maildir.path().join("box"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = MailServer {
            child,
            port,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The messages delivered so far, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("box/new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).expect("read mail"))
            .collect()
    }
}

fn smtp(server: &MailServer, pki: Option<&Pki>) -> SmtpSettings {
    SmtpSettings {
        server: "127.0.0.1".into(),
        port: Some(server.port),
        security: SmtpSecurity::Starttls,
        from: "hallpass <hallpass@school.test>".into(),
        to: vec!["dsl@school.test".into(), "deputy@school.test".into()],
        username: None,
        password_file: None,
        extra_roots: pki.map(|p| p.ca.clone()),
    }
}

#[test]
fn an_urgent_incident_is_mailed_over_starttls_once_and_never_carries_the_url() {
    both("alert mailed", |t: TestStore| {
        let pki = pki();
        let server = MailServer::start(&pki);
        let hook = webhook(&[503, 200]);
        let settings = AlertSettings {
            webhook: Some(hook.url.clone()),
            smtp: Some(smtp(&server, Some(&pki))),
            console_url: "https://console.school.test:8443".into(),
            max_attempts: 5,
            first_retry: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
        };
        let engine = t.engine;
        let reopen: Reopen = Arc::from(t.reopen);
        let metrics = Arc::new(AlertMetrics::default());
        let (number, alerter) = open_urgent(&reopen, &settings, metrics.clone());
        let status = wait_for_state(&reopen, engine, number, AlertState::Sent);
        alerter.stop();
        // The first attempt mailed and the webhook failed; the second tried the
        // webhook alone.
        assert_eq!(status.attempts, 2, "{engine}: {status:?}");
        assert_eq!(
            status.delivered,
            [Channel::Email, Channel::Webhook],
            "{engine}"
        );
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("webhook:") && e.contains("503")),
            "{status:?}"
        );
        assert_eq!(hook.bodies.lock().expect("lock").len(), 2);
        assert_eq!(metrics.sent.load(Ordering::SeqCst), 1);
        let mails = server.messages();
        assert_eq!(mails.len(), 1, "{engine}: mailed once: {mails:?}");
        let mail = &mails[0];
        for want in [
            &format!("Subject: [hallpass] Urgent illegal incident {number}"),
            "From: hallpass <hallpass@school.test>",
            "dsl@school.test",
            "deputy@school.test",
            &format!("Incident: {number} (illegal)"),
            "Who: the individual is not identifiable (shared login of group year5)",
            "Device address: 10.1.4.23",
            &format!("https://console.school.test:8443/incidents/{number}"),
        ] {
            assert!(
                mail.contains(want),
                "{engine}: `{want}` missing from\n{mail}"
            );
        }
        assert!(
            !mail.contains("illegal.test") && !mail.contains("secret-path"),
            "the mail carries the URL:\n{mail}"
        );
    });
}

#[test]
fn a_mail_server_whose_certificate_is_not_trusted_gets_nothing() {
    both("alert mail refused", |t: TestStore| {
        let pki = pki();
        let server = MailServer::start(&pki);
        // The test CA is not given: the server's certificate cannot be verified.
        let settings = AlertSettings {
            smtp: Some(smtp(&server, None)),
            max_attempts: 2,
            first_retry: Duration::from_millis(30),
            ..AlertSettings::default()
        };
        let engine = t.engine;
        let reopen: Reopen = Arc::from(t.reopen);
        let metrics = Arc::new(AlertMetrics::default());
        let (number, alerter) = open_urgent(&reopen, &settings, metrics.clone());
        let status = wait_for_state(&reopen, engine, number, AlertState::Failed);
        alerter.stop();
        assert_eq!(status.attempts, 2);
        assert!(status.delivered.is_empty());
        let error = status.last_error.unwrap_or_default();
        assert!(
            error.starts_with("email:") && error.to_lowercase().contains("certificate"),
            "{error}"
        );
        assert_eq!(metrics.given_up.load(Ordering::SeqCst), 1);
        assert!(server.messages().is_empty(), "nothing was delivered");
    });
}

#[test]
fn smtp_settings_are_checked_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, "s3cret-Password\n").expect("write");
    let base = SmtpSettings {
        server: "mail.school.test".into(),
        port: None,
        security: SmtpSecurity::Starttls,
        from: "hallpass@school.test".into(),
        to: vec!["dsl@school.test".into()],
        username: None,
        password_file: None,
        extra_roots: None,
    };
    let check = |s: SmtpSettings| {
        AlertSettings {
            smtp: Some(s),
            ..AlertSettings::default()
        }
        .mailer()
        .map(drop)
        .map_err(|e| e.to_string())
    };
    assert!(check(base.clone()).is_ok());
    let cases: Vec<(SmtpSettings, &str)> = vec![
        (
            SmtpSettings {
                from: "not an address".into(),
                ..base.clone()
            },
            "from `not an address` is not a mail address",
        ),
        (
            SmtpSettings {
                to: vec![],
                ..base.clone()
            },
            "to names no recipient",
        ),
        (
            SmtpSettings {
                username: Some("hallpass".into()),
                ..base.clone()
            },
            "username is set but password_file is not",
        ),
        (
            SmtpSettings {
                security: SmtpSecurity::None,
                username: Some("hallpass".into()),
                password_file: Some(secret.clone()),
                ..base.clone()
            },
            "in the clear",
        ),
        (
            SmtpSettings {
                username: Some("hallpass".into()),
                password_file: Some(dir.path().join("missing")),
                ..base.clone()
            },
            "password_file",
        ),
    ];
    for (settings, want) in cases {
        let err = check(settings).expect_err(want);
        assert!(err.contains("alerts.smtp") && err.contains(want), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = check(SmtpSettings {
            username: Some("hallpass".into()),
            password_file: Some(secret.clone()),
            ..base.clone()
        })
        .expect_err("a readable password file");
        assert!(
            err.contains("chmod 600") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            check(SmtpSettings {
                username: Some("hallpass".into()),
                password_file: Some(secret.clone()),
                ..base.clone()
            })
            .is_ok()
        );
    }
    // From the TOML a technician writes: unknown keys and bad words are refused.
    let parsed: Result<AlertSettings, _> = toml::from_str(
        "[smtp]\nserver = \"m\"\nfrom = \"a@b.test\"\nto = [\"c@d.test\"]\nsecurity = \"ssl\"\n",
    );
    let err = parsed.expect_err("security = ssl").to_string();
    assert!(err.contains("security") || err.contains("ssl"), "{err}");
}
