//! Login checks as the proxy makes them.
//!
//! - `check_cached/hit`: the per-request cost once a login is cached (budget
//!   2 µs, issue 5). `check_cached/miss`: a password that is not cached.
//! - `verify_slow/right` and `verify_slow/unknown_user`: one argon2id
//!   verification with the OWASP defaults (m = 19 MiB, t = 2, p = 1); the two
//!   should take the same time, so timing does not reveal whether an account
//!   exists.
//!
//! Run: `cargo bench -p hallpass-accounts --bench verify`.
// `criterion_group!` makes a public function without a doc comment.
#![allow(missing_docs)]
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use accounts::{
    Accounts, HashParams, OffsetDateTime, Password, PasswordRules, Settings, SystemClock, Verifier,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn verifier() -> Verifier {
    let mut accounts = Accounts::new();
    let groups: Vec<String> = (1..=1000).map(|i| format!("group{i}")).collect();
    let known: Vec<&str> = groups.iter().map(String::as_str).collect();
    let now = OffsetDateTime::now_utc();
    // A secondary school's worth of accounts, so lookups are not in a tiny table.
    // Cheap hashes for the filler; the measured account uses the real defaults.
    let cheap = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    for i in 0..1000 {
        let password = Password::new(format!("filler password {i}"));
        let name = format!("pupil{i}");
        accounts
            .add(
                &name,
                known[i],
                &password,
                &known,
                &PasswordRules::default(),
                &cheap,
                now,
            )
            .expect("add filler");
    }
    let password = Password::new("correct horse battery".into());
    accounts
        .add(
            "j.smith",
            "group1",
            &password,
            &known,
            &PasswordRules::default(),
            &HashParams::OWASP,
            now,
        )
        .expect("add");
    let mut settings = Settings::default();
    settings.throttle.after = u32::MAX; // measure the hash, not the back-off
    Verifier::new(accounts, &settings, Arc::new(SystemClock)).expect("verifier")
}

fn bench(c: &mut Criterion) {
    let v = verifier();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 20));
    v.verify_slow(
        "j.smith",
        b"correct horse battery",
        ip,
        std::time::Instant::now(),
    )
    .expect("right password");

    let mut group = c.benchmark_group("check_cached");
    group.bench_function("hit", |b| {
        b.iter(|| v.check_cached(black_box("j.smith"), black_box(b"correct horse battery")))
    });
    group.bench_function("miss", |b| {
        b.iter(|| v.check_cached(black_box("j.smith"), black_box(b"wrong horse battery")))
    });
    group.finish();

    let mut group = c.benchmark_group("verify_slow");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("right", |b| {
        b.iter(|| {
            v.verify_slow(
                black_box("j.smith"),
                black_box(b"correct horse battery"),
                ip,
                std::time::Instant::now(),
            )
        })
    });
    group.bench_function("unknown_user", |b| {
        b.iter(|| {
            v.verify_slow(
                black_box("nobody"),
                black_box(b"correct horse battery"),
                ip,
                std::time::Instant::now(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
