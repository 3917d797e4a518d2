//! Events per second sustained into each store.
//!
//! `store_record`: batches of `incidents::MAX_BATCH` straight into
//! `Store::record` (rules on), the events made before the clock starts.
//! `intake`: events through `Intake::try_submit`, timed until the writer has
//! committed all of them (spooled events would not count: the queue is sized so
//! none spool). PostgreSQL runs in its own schema at 127.0.0.1:5432
//! (`HALLPASS_TEST_POSTGRES` overrides) and is skipped with a message when absent.
//!
//! Targets (issue 6): ≥ 50,000 events/s into SQLite, ≥ 20,000/s into PostgreSQL.

// `criterion_group!` makes a public function without a doc comment.
#![allow(missing_docs)]
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use incidents::{Intake, IntakeOptions, LockedCategories, RuleEngine, Rules, Store, SystemClock};
use policy::event::{BlockEvent, BlockKind};

#[path = "../tests/support/mod.rs"]
mod support;

const PER_ITER: usize = 10_000;

/// Block `n` of a school-like stream (one block a millisecond). The counting
/// rule (5 blocks of a category by one account within 10 minutes) fires about
/// as often as in a school: one block in 2,000 comes from a pupil who keeps
/// trying (five in a row, so one `inappropriate` incident per 2,000 blocks);
/// the rest are spread over 50,000 accounts whose (account, category) pairs
/// recur every 200,000 blocks, too seldom to reach five in the window.
/// (`RULE_HEAVY` makes every block count towards a burst instead: the worst
/// case, an incident or a coalesced event for one block in five.)
fn event(n: u64) -> BlockEvent {
    let categories = ["games", "social", "adult", "chat"];
    let (who, category) = if std::env::var_os("RULE_HEAVY").is_some() {
        (format!("pupil{}", n % 50_000), n % 4)
    } else if n % 2000 < 5 {
        (format!("persistent{}", n / 2000), 0)
    } else {
        (format!("pupil{}", n % 50_000), (n / 50_000) % 4)
    };
    BlockEvent {
        reference: format!("B{n:012}-{}", std::process::id()),
        time_ms: 1_700_000_000_000 + n,
        client_ip: [10, 1, (n % 7) as u8, (n % 250) as u8].into(),
        who: Some(who),
        group: "year9".into(),
        band: "ks3".into(),
        method: "GET".into(),
        url: format!("https://blocked{}.example/some/path?q={n}", n % 5000),
        category: Some(categories[category as usize].into()),
        rule: Some("category policy.toml:14:1".into()),
        kind: BlockKind::Policy,
    }
}

fn rules() -> RuleEngine {
    RuleEngine::new(Rules::default(), LockedCategories::required())
}

/// CPU time a thread has run (`/proc/.../schedstat`, nanoseconds): the
/// `_cpu` benches report events per CPU-second of the thread doing the store's
/// work, a figure that other load on the machine does not move (wall-clock
/// figures on a shared 2-core machine swing by half from run to run).
fn cpu_time(schedstat: &std::path::Path) -> Duration {
    let text = std::fs::read_to_string(schedstat).expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat: run time");
    Duration::from_nanos(ns)
}

/// The schedstat file of this process's thread named `name` (which the
/// kernel keeps to its first 15 bytes).
fn thread_schedstat(name: &str) -> std::path::PathBuf {
    let short = &name[..name.len().min(15)];
    // A new thread names itself once it runs: look again for a while.
    for _ in 0..100 {
        let found = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(Result::ok)
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == short)
            });
        if let Some(t) = found {
            return t.path().join("schedstat");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no thread named {name}")
}

fn bench_engine(c: &mut Criterion, name: &str, open: Arc<dyn Fn() -> Store + Send + Sync>) {
    let mut group = c.benchmark_group(format!("incidents/{name}"));
    group.throughput(Throughput::Elements(PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));

    let mut next = 0u64;
    let mut store = open();
    let mut engine = rules();
    // The events are made before the clock starts: the figure is the store's.
    group.bench_function("store_record", |b| {
        b.iter_batched(
            || {
                let events: Vec<BlockEvent> =
                    (0..PER_ITER as u64).map(|i| event(next + i)).collect();
                next += PER_ITER as u64;
                events
            },
            |events| {
                for chunk in events.chunks(incidents::MAX_BATCH) {
                    store.record(chunk, &[], &mut engine, 0).expect("record");
                }
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("store_record_cpu", |b| {
        b.iter_custom(|iters| {
            let me = std::path::Path::new("/proc/thread-self/schedstat");
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let events: Vec<BlockEvent> =
                    (0..PER_ITER as u64).map(|i| event(next + i)).collect();
                next += PER_ITER as u64;
                let start = cpu_time(me);
                for chunk in events.chunks(incidents::MAX_BATCH) {
                    store.record(chunk, &[], &mut engine, 0).expect("record");
                }
                total += cpu_time(me) - start;
            }
            total
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = IntakeOptions::new(dir.path().join("spool.jsonl"));
    options.capacity = PER_ITER * 2;
    let opener = open.clone();
    let (intake, writer) = Intake::start(
        move || Ok(opener()),
        rules(),
        Arc::new(SystemClock),
        options,
    )
    .expect("start");
    let writer_thread = thread_schedstat("hallpass-incidents");
    for (bench, cpu) in [("intake", false), ("intake_cpu", true)] {
        let clock = || {
            if cpu {
                cpu_time(&writer_thread)
            } else {
                start_instant().elapsed()
            }
        };
        bench_intake(&mut group, bench, &intake, &mut next, clock);
    }
    assert_eq!(
        intake.metrics().spooled.load(Ordering::Relaxed),
        0,
        "the bench must not spool"
    );
    drop(intake);
    writer.join();
    group.finish();
}

/// A fixed point that wall-clock readings are taken from.
fn start_instant() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// `PER_ITER` events through `intake`, timed by `clock` from the first submit
/// until the writer has committed the last.
fn bench_intake(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    intake: &Intake,
    next: &mut u64,
    clock: impl Fn() -> Duration,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let events: Vec<BlockEvent> =
                    (0..PER_ITER as u64).map(|i| event(*next + i)).collect();
                *next += PER_ITER as u64;
                let before = intake.metrics().written.load(Ordering::Relaxed);
                let start = clock();
                for ev in events {
                    intake.try_submit(ev).expect("submit");
                }
                while intake.metrics().written.load(Ordering::Relaxed) < before + PER_ITER as u64 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += clock() - start;
            }
            total
        })
    });
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.sqlite3");
    bench_engine(
        c,
        "sqlite",
        Arc::new(move || Store::open_sqlite(&path).expect("sqlite")),
    );
    if let Some(schema) = support::PgSchema::create("bench intake") {
        let url = schema.url.clone();
        bench_engine(
            c,
            "postgres",
            Arc::new(move || Store::open_postgres(&url).expect("postgres")),
        );
        drop(schema);
    }
}

criterion_group!(intake_benches, benches);
criterion_main!(intake_benches);
