//! One suite, two engines: every test runs on SQLite (temp dir) and on the real
//! PostgreSQL at 127.0.0.1:5432 (a schema of its own). See `support` for how a
//! missing server is handled.
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use incidents::{
    Ack, ActionTaken, Actor, Clock, Error, EventFilter, IncidentFilter, IncidentKind, Intake,
    IntakeOptions, LockedCategories, Role, RuleEngine, Rules, State, Store,
};
use policy::event::{BlockEvent, BlockKind};

mod support;
use support::{TestStore, both};

const T0: u64 = 1_763_900_000_000; // 2025-11-23

fn event(reference: &str, who: Option<&str>, category: Option<&str>, t: u64) -> BlockEvent {
    BlockEvent {
        reference: reference.into(),
        time_ms: T0 + t,
        client_ip: IpAddr::from([10, 1, 4, 23]),
        who: who.map(String::from),
        group: "year4".into(),
        band: "ks2".into(),
        method: "GET".into(),
        url: format!("https://site.test/{reference}"),
        category: category.map(String::from),
        rule: Some("category policy.toml:14:1".into()),
        kind: BlockKind::Policy,
    }
}

fn baseline(reference: &str, who: Option<&str>) -> BlockEvent {
    let mut ev = event(reference, who, Some("child-abuse"), 0);
    ev.rule = Some("baseline policy.toml:3:1".into());
    ev.url = "http://illegal.test/secret-path".into();
    ev
}

fn engine() -> RuleEngine {
    RuleEngine::new(Rules::default(), LockedCategories::required())
}

fn dsl() -> Actor {
    Actor::new("dana", Role::SafeguardingLead)
}

fn refs(events: &[BlockEvent]) -> Vec<String> {
    events.iter().map(|e| e.reference.clone()).collect()
}

#[test]
fn events_are_written_queried_and_duplicates_ignored() {
    both("events", |mut t: TestStore| {
        let s = &mut t.store;
        assert_eq!(
            s.schema_version().expect("version"),
            incidents::store::SCHEMA_VERSION
        );
        let batch: Vec<_> = (0..10)
            .map(|n| {
                event(
                    &format!("E{n}"),
                    Some(if n % 2 == 0 { "amy" } else { "bob" }),
                    Some("games"),
                    n * 1000,
                )
            })
            .collect();
        assert_eq!(
            s.write_events(&batch, T0).expect("write"),
            10,
            "{}",
            t.engine
        );
        // A replay of the same events, and duplicates inside one batch, add nothing.
        let mut again = batch.clone();
        again.push(batch[0].clone());
        assert_eq!(
            s.write_events(&again, T0).expect("rewrite"),
            0,
            "{}",
            t.engine
        );
        let all = s.events(&EventFilter::default()).expect("all");
        assert_eq!(all, batch, "{}: round trip", t.engine);
        let amy = s
            .events(&EventFilter {
                who: Some("amy".into()),
                since_ms: Some(T0 + 4000),
                ..Default::default()
            })
            .expect("amy");
        assert_eq!(refs(&amy), ["E4", "E6", "E8"], "{}", t.engine);
        let limited = s
            .events(&EventFilter {
                limit: Some(3),
                ..Default::default()
            })
            .expect("limit");
        assert_eq!(limited.len(), 3);
        // A second connection (another process) sees the same rows; reopening
        // runs no migration twice.
        let mut other = (t.reopen)();
        assert_eq!(
            other.events(&EventFilter::default()).expect("other").len(),
            10
        );
        assert_eq!(
            other.schema_version().expect("version"),
            incidents::store::SCHEMA_VERSION
        );
    });
}

#[test]
fn each_default_rule_opens_its_incident() {
    both("rules", |mut t: TestStore| {
        let s = &mut t.store;
        let mut rules = engine();
        let mut batch = vec![
            baseline("IL1", Some("amy")),
            event("SG1", None, Some("self-harm"), 10),
            event("MW1", Some("amy"), Some("malware"), 20),
        ];
        let mut review = event("RV1", Some("bob"), Some("games"), 30);
        review.kind = BlockKind::ReviewRequest;
        batch.push(review);
        for n in 0..5 {
            batch.push(event(
                &format!("RP{n}"),
                Some("cara"),
                Some("games"),
                100 + n,
            ));
        }
        let failures: Vec<_> = (0..10)
            .map(|n| incidents::AuthFailure {
                time_ms: T0 + n,
                client_ip: [10, 9, 9, 9].into(),
                who: Some("x".into()),
            })
            .collect();
        let stats = s.record(&batch, &failures, &mut rules, T0).expect("record");
        assert_eq!(stats.events, batch.len());
        assert_eq!(stats.auth_failures, 10);
        let staff = Actor::new("sam", Role::EsafetyOfficer);
        s.report_unsuitable_site(&staff, "https://unsuitable.test/", "not blocked", T0)
            .expect("report");

        let all = s
            .incidents(&IncidentFilter::default(), &dsl(), T0)
            .expect("list");
        let mut kinds: Vec<_> = all.iter().map(|i| i.kind).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                IncidentKind::Illegal,
                IncidentKind::Safeguarding,
                IncidentKind::Inappropriate,
                IncidentKind::Access,
                IncidentKind::ReviewRequest,
                IncidentKind::UnsuitableSite
            ],
            "{}",
            t.engine
        );
        let find = |k| all.iter().find(|i| i.kind == k).expect("kind present");
        let illegal = find(IncidentKind::Illegal);
        assert_eq!(illegal.urgency, incidents::Urgency::Urgent);
        assert_eq!(illegal.reported_to, "safeguarding-lead");
        assert_eq!(illegal.references, ["IL1"]);
        let sg = find(IncidentKind::Safeguarding);
        assert!(!sg.subject.identifiable, "no account: not identifiable");
        assert!(sg.description.contains("not identifiable") && sg.description.contains("year4"));
        assert_eq!(find(IncidentKind::Inappropriate).references, ["RP4"]);
        assert_eq!(find(IncidentKind::UnsuitableSite).reported_by, "sam");

        // The same subject again within the window joins the `new` incident;
        // replaying the whole batch opens nothing.
        let stats = s
            .record(&[baseline("IL2", Some("amy"))], &[], &mut rules, T0)
            .expect("again");
        assert_eq!(stats.incidents_opened, 0);
        let stats = s.record(&batch, &failures, &mut rules, T0).expect("replay");
        assert_eq!((stats.events, stats.incidents_opened), (0, 0));
        let illegal = s.incident(illegal.number, &dsl(), T0).expect("illegal");
        assert_eq!(illegal.references, ["IL1", "IL2"], "{}", t.engine);
        // A pupil's review request from the block page, by reference.
        let late = event("RV2", Some("bob"), Some("social"), 40);
        let stats = s
            .request_review(&late, &mut rules, T0)
            .expect("review request");
        assert_eq!(stats.incidents_opened, 1);
    });
}

#[test]
fn workflow_enforces_states_and_roles_and_audits_every_change() {
    both("workflow", |mut t: TestStore| {
        let s = &mut t.store;
        let mut rules = engine();
        s.record(
            &[event("SG", Some("amy"), Some("extremism"), 0)],
            &[],
            &mut rules,
            T0,
        )
        .expect("record");
        for n in 0..5 {
            s.record(
                &[event(&format!("G{n}"), Some("bob"), Some("games"), n)],
                &[],
                &mut rules,
                T0,
            )
            .expect("record");
        }
        let list = s
            .incidents(&IncidentFilter::default(), &dsl(), T0)
            .expect("list");
        let sg = list
            .iter()
            .find(|i| i.kind == IncidentKind::Safeguarding)
            .expect("sg")
            .number;
        let inap = list
            .iter()
            .find(|i| i.kind == IncidentKind::Inappropriate)
            .expect("inap")
            .number;

        let officer = Actor::new("olly", Role::EsafetyOfficer);
        let tech = Actor::new("tom", Role::Technician);
        let principal = Actor::new("pat", Role::Principal);
        let governor = Actor::new("gus", Role::Governor);

        // Roles: the officer may not review safeguarding; the technician nothing.
        assert!(matches!(
            s.start_review(sg, &officer, T0),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            s.start_review(inap, &tech, T0),
            Err(Error::Forbidden { .. })
        ));
        // States: closing a new incident names the state and what is allowed.
        let err = s
            .close(inap, &officer, None, T0)
            .expect_err("new cannot close")
            .to_string();
        assert!(
            err.contains("is new") && err.contains("start-review"),
            "{err}"
        );
        // Sign-off before the review is recorded is refused.
        assert!(s.sign(inap, &principal, T0).is_err());

        let i = s.start_review(inap, &officer, T0 + 1).expect("start");
        assert_eq!(i.state, State::UnderReview);
        let i = s
            .record_review(
                inap,
                &officer,
                "spoke to pupil",
                &[ActionTaken::InformParents, ActionTaken::Sanctions],
                None,
                T0 + 2,
            )
            .expect("review");
        assert_eq!(i.state, State::ActionTaken);
        assert_eq!(i.review_date_ms, Some(T0 + 2));
        assert!(matches!(
            s.sign(inap, &officer, T0),
            Err(Error::Forbidden { .. })
        ));
        let i = s.sign(inap, &principal, T0 + 3).expect("principal");
        assert_eq!(
            i.principal_signoff
                .as_ref()
                .map(|x| (x.by.as_str(), x.at_ms)),
            Some(("pat", T0 + 3))
        );
        assert!(
            s.sign(inap, &principal, T0 + 3).is_err(),
            "no second principal sign-off"
        );
        let i = s
            .close(inap, &officer, Some("resolved"), T0 + 4)
            .expect("close");
        assert_eq!(
            (i.state, i.outcome.as_deref()),
            (State::Closed, Some("resolved"))
        );
        s.sign(inap, &governor, T0 + 5)
            .expect("governor after close");
        let i = s
            .reopen(inap, &officer, "parent complaint", T0 + 6)
            .expect("reopen");
        assert_eq!(i.state, State::UnderReview);
        assert!(i.principal_signoff.is_none() && i.governor_signoff.is_none());
        // Review from `new` passes through under-review.
        let i = s
            .record_review(
                sg,
                &dsl(),
                "counselled",
                &[ActionTaken::Counselling],
                Some("ok"),
                T0 + 7,
            )
            .expect("dsl");
        assert_eq!(i.state, State::ActionTaken);

        let trail = s.audit_trail(inap).expect("trail");
        let actions: Vec<_> = trail.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "opened",
                "start-review",
                "record-review",
                "sign-principal",
                "close",
                "sign-governor",
                "reopen"
            ],
            "{}",
            t.engine
        );
        assert!(
            trail
                .iter()
                .skip(1)
                .all(|a| a.at_ms > T0 && !a.actor.is_empty())
        );
        assert_eq!(
            trail[2].detail,
            "under-review → action-taken; result: spoke to pupil; actions: inform-parents,sanctions; outcome: -"
        );
        let sg_trail: Vec<_> = s
            .audit_trail(sg)
            .expect("trail")
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(sg_trail, ["opened", "start-review", "record-review"]);

        // Filters.
        let closed = s
            .incidents(
                &IncidentFilter {
                    state: Some(State::UnderReview),
                    ..Default::default()
                },
                &tech,
                T0,
            )
            .expect("f");
        assert_eq!(closed.len(), 1);
        // A second reviewer on another connection works on the current state.
        let mut other = (t.reopen)();
        other
            .record_review(inap, &officer, "second look", &[], None, T0 + 8)
            .expect("other");
        let i = s
            .close(inap, &officer, None, T0 + 9)
            .expect("close after the other's review");
        assert_eq!(i.review_result.as_deref(), Some("second look"));
    });
}

#[test]
fn only_the_safeguarding_lead_ever_gets_an_illegal_url_and_each_read_is_audited() {
    both("illegal url", |mut t: TestStore| {
        let s = &mut t.store;
        s.record(&[baseline("IL", None)], &[], &mut engine(), T0)
            .expect("record");
        let number = s
            .incidents(&IncidentFilter::default(), &dsl(), T0)
            .expect("list")[0]
            .number;
        for role in Role::ALL.iter().filter(|r| **r != Role::SafeguardingLead) {
            let actor = Actor::new("someone", *role);
            let one = s.incident(number, &actor, T0).expect("show");
            assert_eq!(
                (one.url.as_deref(), one.url_withheld),
                (None, true),
                "{role} on {}",
                t.engine
            );
            let listed = s
                .incidents(&IncidentFilter::default(), &actor, T0)
                .expect("list");
            assert!(listed.iter().all(|i| i.url.is_none()));
            let json = serde_json::to_string(&listed).expect("json");
            assert!(!json.contains("secret-path"), "{role}: {json}");
            assert!(matches!(
                s.evidence(number, &actor, T0),
                Err(Error::Forbidden { .. })
            ));
        }
        let reads_before = count(s, number, "read-url");
        let shown = s.incident(number, &dsl(), T0 + 1).expect("dsl");
        assert_eq!(
            shown.url.as_deref(),
            Some("http://illegal.test/secret-path")
        );
        assert_eq!(count(s, number, "read-url"), reads_before + 1);
        assert!(!shown.subject.identifiable);

        let evidence = s.evidence(number, &dsl(), T0 + 2).expect("evidence");
        assert_eq!(evidence.rows.len(), 1);
        let row = &evidence.rows[0];
        assert_eq!(
            row.sha256,
            incidents::evidence::sha256_hex(row.row.as_bytes())
        );
        assert!(row.row.contains("secret-path") && row.time.ends_with('Z'));
        assert_eq!(count(s, number, "export-evidence"), 1);
    });
}

fn count(s: &mut Store, number: u64, action: &str) -> usize {
    s.audit_trail(number)
        .expect("trail")
        .iter()
        .filter(|a| a.action == action)
        .count()
}

#[test]
fn retention_prunes_raw_events_but_keeps_incidents_and_their_evidence() {
    both("retention", |mut t: TestStore| {
        let s = &mut t.store;
        let day = 86_400_000;
        let old: Vec<_> = (0..5)
            .map(|n| event(&format!("OLD{n}"), Some("amy"), Some("games"), n))
            .collect();
        s.record(&old, &[], &mut engine(), T0).expect("old"); // the 5th opens `inappropriate`
        s.write_events(&[event("NEW", Some("amy"), Some("games"), 400 * day)], T0)
            .expect("new");
        let pruned = incidents::retention::prune(s, T0 + 400 * day, 365).expect("prune");
        assert_eq!(pruned, 4, "{}: OLD4 is evidence of an incident", t.engine);
        let left = refs(&s.events(&EventFilter::default()).expect("events"));
        assert_eq!(left, ["OLD4", "NEW"]);
        let list = s
            .incidents(&IncidentFilter::default(), &dsl(), T0)
            .expect("list");
        assert_eq!(list.len(), 1);
        // An explicit delete removes the incident; its audit trail stays, and the
        // number is never reused.
        let n = list[0].number;
        assert!(matches!(
            s.delete_incident(n, &Actor::new("p", Role::Principal), T0),
            Err(Error::Forbidden { .. })
        ));
        s.delete_incident(n, &dsl(), T0).expect("delete");
        assert!(matches!(s.incident(n, &dsl(), T0), Err(Error::NotFound(_))));
        assert_eq!(
            s.audit_trail(n)
                .expect("trail")
                .last()
                .map(|a| a.action.clone())
                .as_deref(),
            Some("delete")
        );
        let next = s
            .report_unsuitable_site(&dsl(), "https://x.test/", "x", T0)
            .expect("report");
        assert!(next > n);
        assert_eq!(
            incidents::retention::prune(s, T0 + 400 * day, 365).expect("prune"),
            1
        );
    });
}

/// A clock tests move by hand.
struct TestClock(AtomicU64);
impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn options(dir: &std::path::Path) -> IntakeOptions {
    let mut o = IntakeOptions::new(dir.join("spool.jsonl"));
    o.retry_every = Duration::from_millis(50);
    o
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn intake_acknowledges_after_commit_and_opens_incidents() {
    both("intake", |t: TestStore| {
        let reopen = Arc::new(t.reopen);
        let open = reopen.clone();
        let clock = Arc::new(TestClock(AtomicU64::new(T0)));
        let (intake, writer) =
            Intake::start(move || Ok(open()), engine(), clock, options(t.dir.path()))
                .expect("start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        let ack = rt
            .block_on(intake.submit(baseline("A1", Some("amy"))))
            .expect("submit");
        assert_eq!(ack, Ack::Stored, "{}", t.engine);
        // Acknowledged means readable by another connection right away.
        let mut reader = reopen();
        assert_eq!(
            reader
                .events(&EventFilter::default())
                .expect("events")
                .len(),
            1
        );
        assert_eq!(
            reader
                .incidents(&IncidentFilter::default(), &dsl(), T0)
                .expect("incidents")
                .len(),
            1
        );
        for n in 0..1000 {
            intake
                .try_submit(event(&format!("Q{n}"), Some("bob"), None, n))
                .expect("try_submit");
        }
        drop(intake.clone());
        let metrics = intake.metrics_handle();
        drop(intake);
        writer.join();
        let [queued, written, spooled, _] = metrics.snapshot();
        assert_eq!(queued, 1001);
        assert_eq!(written + spooled, 1001);
        assert_eq!(
            reader
                .events(&EventFilter::default())
                .expect("events")
                .len(),
            1001,
            "{}",
            t.engine
        );
    });
}

#[test]
fn store_down_spools_then_replays_in_order_without_loss_or_duplicates() {
    both("spool", |t: TestStore| {
        let down = Arc::new(AtomicBool::new(true));
        let engine_name = t.engine;
        let reopen = Arc::new(t.reopen);
        let dead_sqlite = t.dir.path().join("not-a-dir");
        std::fs::write(&dead_sqlite, "a file where a folder should be").expect("write");
        let open = {
            let (down, reopen) = (down.clone(), reopen.clone());
            move || {
                if !down.load(Ordering::SeqCst) {
                    return Ok(reopen());
                }
                // Really refused: a closed loopback port, or an unusable path.
                match engine_name {
                    "postgres" => Store::open_postgres("postgres://postgres@127.0.0.1:1/test"),
                    _ => Store::open_sqlite(&dead_sqlite.join("x.sqlite3")),
                }
            }
        };
        let clock = Arc::new(TestClock(AtomicU64::new(T0)));
        let (intake, writer) =
            Intake::start(open, engine(), clock, options(t.dir.path())).expect("start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        let mut acks = Vec::new();
        for n in 0..50 {
            acks.push(
                rt.block_on(intake.submit(event(&format!("D{n:03}"), Some("amy"), None, n)))
                    .expect("submit"),
            );
        }
        assert!(
            acks.iter().all(|a| *a == Ack::Spooled),
            "{engine_name}: {acks:?}"
        );
        assert!(intake.metrics().store_errors.load(Ordering::Relaxed) > 0);
        assert!(t.dir.path().join("spool.jsonl").exists());

        down.store(false, Ordering::SeqCst);
        wait_for("replay", || {
            intake.metrics().replayed.load(Ordering::Relaxed) >= 50
        });
        // New events after recovery are stored directly, after the spooled ones.
        let ack = rt
            .block_on(intake.submit(event("AFTER", Some("amy"), None, 100)))
            .expect("submit");
        assert_eq!(ack, Ack::Stored);
        drop(intake);
        writer.join();
        let stored = reopen().events(&EventFilter::default()).expect("events");
        let mut want: Vec<String> = (0..50).map(|n| format!("D{n:03}")).collect();
        want.push("AFTER".into());
        assert_eq!(
            refs(&stored),
            want,
            "{engine_name}: every event once, in order"
        );
        assert!(!t.dir.path().join("spool.jsonl").exists());
    });
}

#[test]
fn a_full_queue_spools_and_a_restart_replays_what_was_left() {
    both("full queue", |t: TestStore| {
        let reopen = Arc::new(t.reopen);
        let mut o = options(t.dir.path());
        o.capacity = 1;
        // First run: the store never answers, so everything ends in the spool
        // (as after a kill -9 with the database down).
        let (intake, writer) = Intake::start(
            || Err(Error::Schema("down for the test".into())),
            engine(),
            Arc::new(TestClock(AtomicU64::new(T0))),
            o.clone(),
        )
        .expect("start");
        let mut spooled_now = 0;
        for n in 0..300 {
            if intake
                .try_submit(event(&format!("F{n:03}"), None, None, n))
                .expect("try")
                == incidents::Queued::Spooled
            {
                spooled_now += 1;
            }
        }
        assert!(spooled_now > 0, "a queue of one overflows");
        drop(intake);
        writer.join();
        // Second run against the real store: the spool is replayed on start.
        let open = reopen.clone();
        let (intake, writer) = Intake::start(
            move || Ok(open()),
            engine(),
            Arc::new(TestClock(AtomicU64::new(T0))),
            o,
        )
        .expect("restart");
        wait_for("replay", || {
            intake.metrics().replayed.load(Ordering::Relaxed) >= 300
        });
        drop(intake);
        writer.join();
        let stored = reopen().events(&EventFilter::default()).expect("events");
        assert_eq!(stored.len(), 300, "{}", t.engine);
    });
}

#[test]
fn a_nul_byte_from_a_login_name_never_blocks_the_store() {
    both("nul", |mut t: TestStore| {
        let mut ev = event("N1", Some("ev\0il"), Some("self-harm"), 0);
        ev.url = "http://x.test/\0".into();
        let stats = t
            .store
            .record(&[ev], &[], &mut engine(), T0)
            .expect("record");
        assert_eq!(
            (stats.events, stats.incidents_opened),
            (1, 1),
            "{}",
            t.engine
        );
        let back = t.store.events(&EventFilter::default()).expect("events");
        assert_eq!(back.len(), 1);
    });
}

/// The times (ms after T0) at which one address's failed logins reach the store
/// with the proxy's default back-off: every rejected login is reported, the
/// first 5 as fast as someone retypes (every 2 s), then one per back-off (1 s,
/// doubling, capped at 5 minutes).
fn failed_login_times(n: usize) -> Vec<u64> {
    let mut times = Vec::new();
    let (mut t, mut wait) = (0u64, 1_000u64);
    for i in 0..n {
        if i < 5 {
            t = 2_000 * i as u64;
        } else {
            t += wait;
            wait = (wait * 2).min(300_000);
        }
        times.push(t);
    }
    times
}

#[test]
fn repeated_bad_logins_open_exactly_one_access_incident() {
    both("access", |mut t: TestStore| {
        let s = &mut t.store;
        let mut rules = engine();
        let failures: Vec<_> = failed_login_times(40)
            .into_iter()
            .map(|ms| incidents::AuthFailure {
                time_ms: T0 + ms,
                client_ip: [10, 1, 4, 66].into(),
                who: Some("year5".into()),
            })
            .collect();
        let access = |s: &mut Store| {
            s.incidents(
                &IncidentFilter {
                    kind: Some(IncidentKind::Access),
                    ..IncidentFilter::default()
                },
                &dsl(),
                T0,
            )
            .expect("list")
        };
        // Nine failures (a pupil fumbling a password) open nothing...
        s.record(&[], &failures[..9], &mut rules, T0)
            .expect("record");
        assert!(access(s).is_empty(), "{}", t.engine);
        // ... the tenth within 5 minutes opens `access`, and an attack that goes
        // on for an hour, one batch at a time as the proxy writes them, opens
        // no second one.
        for one in failures[9..].chunks(1) {
            s.record(&[], one, &mut rules, one[0].time_ms)
                .expect("record");
        }
        let opened = access(s);
        assert_eq!(opened.len(), 1, "{}: {opened:?}", t.engine);
        assert!(
            opened[0]
                .description
                .contains("10 authentication failures from 10.1.4.66"),
            "{}",
            opened[0].description
        );
    });
}

#[test]
fn a_reload_that_locks_another_category_reaches_the_recorder_from_another_thread() {
    let t = support::sqlite();
    let reopen = t.reopen;
    let mut recorder = incidents::Recorder::new(
        move || Ok(reopen()),
        engine(),
        Arc::new(TestClock(AtomicU64::new(T0))),
        Duration::from_secs(1),
    );
    let updates = recorder.rule_updates();
    let before = recorder
        .record(&[event("LK1", Some("amy"), Some("iwf-extra"), 0)], &[])
        .expect("record");
    assert_eq!(before.incidents_opened, 0, "not locked yet");
    // What `hallpass run` does on SIGHUP, from the reload task's thread.
    let mut locked = LockedCategories::required();
    locked.0.push("iwf-extra".into());
    std::thread::spawn(move || updates.set_locked(locked))
        .join()
        .expect("reload thread");
    let after = recorder
        .record(&[event("LK2", Some("amy"), Some("iwf-extra"), 1)], &[])
        .expect("record");
    assert_eq!(after.incidents_opened, 1);
    let mut store = Store::open_sqlite(&t.dir.path().join("incidents.sqlite3")).expect("open");
    let illegal = store
        .incidents(
            &IncidentFilter {
                kind: Some(IncidentKind::Illegal),
                ..IncidentFilter::default()
            },
            &dsl(),
            T0,
        )
        .expect("list");
    assert_eq!(illegal.len(), 1);
    assert_eq!(illegal[0].references, ["LK2"]);
}
