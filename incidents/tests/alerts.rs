//! Urgent-incident alerts against a local webhook server on loopback: delivered
//! at once, retried after failures, a failure kept on the incident, and never
//! the URL. Runs on SQLite and on the real PostgreSQL (see `support`).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use incidents::{
    Actor, AlertMetrics, AlertSettings, AlertState, Alerter, Clock, IncidentFilter, IncidentKind,
    LockedCategories, Recorder, Role, RuleEngine, Rules, Store, SystemClock,
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
