//! kill -9 test: a process submits events as fast as it can and prints each
//! reference once its acknowledgement arrives; it is killed with SIGKILL; a new
//! intake on the same store and spool starts; every acknowledged reference must
//! then be in the store exactly once. Runs on SQLite and on PostgreSQL.
//!
//! The child is this same test binary, re-run with `HALLPASS_CRASH_CHILD` set.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use incidents::{
    EventFilter, Intake, IntakeOptions, LockedCategories, RuleEngine, Rules, Store, SystemClock,
};
use policy::event::{BlockEvent, BlockKind};

mod support;

fn event(reference: String, n: u64) -> BlockEvent {
    BlockEvent {
        reference,
        time_ms: 1_763_900_000_000 + n,
        client_ip: [10, 1, 4, (n % 250) as u8].into(),
        who: Some(format!("pupil{}", n % 40)),
        group: "year9".into(),
        band: "ks3".into(),
        method: "GET".into(),
        url: format!("https://blocked.test/{n}"),
        category: Some(["games", "social", "self-harm"][(n % 3) as usize].into()),
        rule: Some("category policy.toml:1:1".into()),
        kind: BlockKind::Policy,
    }
}

fn open(location: &str) -> Result<Store, incidents::Error> {
    match location.strip_prefix("sqlite:") {
        Some(path) => Store::open_sqlite(std::path::Path::new(path)),
        None => Store::open_postgres(location),
    }
}

fn rules() -> RuleEngine {
    RuleEngine::new(Rules::default(), LockedCategories::required())
}

fn options(spool: &str) -> IntakeOptions {
    let mut o = IntakeOptions::new(spool.into());
    // A small queue under 64 concurrent submitters: some events take the
    // spool path too.
    o.capacity = 16;
    o.retry_every = Duration::from_millis(50);
    o
}

/// The child: runs until killed.
#[test]
fn crash_child() {
    let (Ok(location), Ok(spool)) = (
        std::env::var("HALLPASS_CRASH_CHILD"),
        std::env::var("HALLPASS_CRASH_SPOOL"),
    ) else {
        return; // not the child: nothing to do
    };
    let loc = location.clone();
    let (intake, _writer) = Intake::start(
        move || open(&loc),
        rules(),
        Arc::new(SystemClock),
        options(&spool),
    )
    .expect("start");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for task in 0..64u64 {
            let intake = intake.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let reference = format!("K{task:02}-{n:07}");
                    if intake.submit(event(reference.clone(), n)).await.is_ok() {
                        println!("ACK {reference}");
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn crash_and_recover(location: &str, dir: &std::path::Path) {
    let spool = dir.join("spool.jsonl");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("HALLPASS_CRASH_CHILD", location)
        .env("HALLPASS_CRASH_SPOOL", &spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(r) = line.strip_prefix("ACK ") {
                acked.push(r.to_string());
            }
        }
        acked
    });
    // Let it run under load, then SIGKILL (Child::kill sends SIGKILL on Unix).
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("kill -9");
    let _ = child.wait();
    let acked = reader.join().expect("reader");
    assert!(
        acked.len() > 100,
        "{location}: the child acknowledged only {} events",
        acked.len()
    );

    // Restart on the same store and spool: the spool is replayed on start.
    let loc = location.to_string();
    let (intake, writer) = Intake::start(
        move || open(&loc),
        rules(),
        Arc::new(SystemClock),
        options(spool.to_str().expect("utf-8 path")),
    )
    .expect("restart");
    let start = Instant::now();
    while spool.exists() || dir.join("spool.jsonl.replaying").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{location}: spool never drained"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let replayed = intake.metrics().replayed.load(Ordering::Relaxed);
    drop(intake);
    writer.join();

    let stored = open(location)
        .expect("open")
        .events(&EventFilter::default())
        .expect("events");
    let mut seen = std::collections::HashMap::new();
    for e in &stored {
        *seen.entry(e.reference.as_str()).or_insert(0u32) += 1;
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|r| !seen.contains_key(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{location}: {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "{location}: an event stored twice"
    );
    eprintln!(
        "{location}: {} acknowledged before SIGKILL, {} stored, {replayed} replayed from the spool",
        acked.len(),
        stored.len()
    );
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    if std::env::var("HALLPASS_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("incidents.sqlite3");
    crash_and_recover(&format!("sqlite:{}", db.display()), dir.path());
    if let Some(schema) = support::PgSchema::create("kill -9") {
        let dir = tempfile::tempdir().expect("tempdir");
        crash_and_recover(&schema.url, dir.path());
    }
}
