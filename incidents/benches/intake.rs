//! Events per second sustained into each store.
//!
//! `store_record`: batches of 256 straight into `Store::record` (rules on).
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

fn bench_engine(c: &mut Criterion, name: &str, open: Arc<dyn Fn() -> Store + Send + Sync>) {
    let mut group = c.benchmark_group(format!("incidents/{name}"));
    group.throughput(Throughput::Elements(PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));

    let mut next = 0u64;
    let mut store = open();
    let mut engine = rules();
    group.bench_function("store_record", |b| {
        b.iter(|| {
            let events: Vec<BlockEvent> = (0..PER_ITER as u64).map(|i| event(next + i)).collect();
            next += PER_ITER as u64;
            for chunk in events.chunks(256) {
                store.record(chunk, &[], &mut engine, 0).expect("record");
            }
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
    group.bench_function("intake", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = intake.metrics().written.load(Ordering::Relaxed);
                let start = Instant::now();
                for i in 0..PER_ITER as u64 {
                    intake.try_submit(event(next + i)).expect("submit");
                }
                next += PER_ITER as u64;
                while intake.metrics().written.load(Ordering::Relaxed) < before + PER_ITER as u64 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += start.elapsed();
            }
            total
        })
    });
    assert_eq!(
        intake.metrics().spooled.load(Ordering::Relaxed),
        0,
        "the bench must not spool"
    );
    drop(intake);
    writer.join();
    group.finish();
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
