//! Host canonicalisation cost, in ns/host (design §9: the matcher's budget of
//! ≤ 150 ns includes canonicalisation, so canonicalising an ordinary name should
//! cost tens of ns).
//!
//! Input: the hosts of the real crawl URLs in
//! `../shared/data/requests/cliqz-top500-adguard-subset/requests.jsonl`, in
//! order (the `url` field, parsed once outside the timed loops), plus a fixed set
//! of evasion spellings that take the full IDNA path. The bench fails loudly when
//! the data is missing.
//!
//! Run: `cargo bench --bench canonicalize`. Each group reports the time for the
//! whole host list and, through its throughput, hosts per second; a summary of
//! ns/host per group is printed at the end.
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use policy::CanonicalUrl;
use policy::host::{canonicalize, canonicalize_authority, canonicalize_without_fast_path};

const REQUESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/requests/cliqz-top500-adguard-subset/requests.jsonl"
);

/// Spellings a pupil might try; each canonicalises to a listed host.
const EVASIONS: &[&str] = &[
    "WWW.Example.COM",
    "www.example.com.",
    "%77ww.example.com",
    "ｗｗｗ.ｅｘａｍｐｌｅ.ｃｏｍ",
    "www\u{3002}example\u{3002}com",
    "ww\u{200B}w.example.com",
    "b\u{fc}cher.de",
    "XN--BCHER-KVA.DE",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
];

/// The real request URLs and their hosts (as the `url` field spells them).
struct Data {
    urls: Vec<String>,
    hosts: Vec<String>,
    authorities: Vec<String>,
}

fn load() -> Data {
    let text = std::fs::read_to_string(REQUESTS).unwrap_or_else(|e| {
        panic!("{REQUESTS}: {e}: the canonicalize bench needs the shared request data")
    });
    let mut data = Data {
        urls: Vec::new(),
        hosts: Vec::new(),
        authorities: Vec::new(),
    };
    for (number, line) in text.lines().enumerate() {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{REQUESTS}:{}: {e}", number + 1));
        let Some(url) = record.get("url").and_then(|u| u.as_str()) else {
            continue;
        };
        let Ok(parsed) = CanonicalUrl::parse(url) else {
            continue;
        };
        data.hosts.push(parsed.host().as_str().to_owned());
        data.authorities
            .push(format!("{}:{}", parsed.host(), parsed.port()));
        data.urls.push(url.to_owned());
    }
    assert!(
        data.hosts.len() > 10_000,
        "{REQUESTS}: only {} usable urls",
        data.hosts.len()
    );
    data
}

/// Runs `f` over every item, returning how many succeeded (so nothing is
/// optimised away).
fn over<T: AsRef<str>, R, E>(items: &[T], f: impl Fn(&str) -> Result<R, E>) -> usize {
    items
        .iter()
        .filter(|item| black_box(f(black_box(item.as_ref()))).is_ok())
        .count()
}

/// Mean ns per item over at least a million items, for the summary line.
fn ns_per_item<T: AsRef<str>, R, E>(items: &[T], f: impl Fn(&str) -> Result<R, E>) -> f64 {
    let passes = (1_000_000 / items.len()).max(20);
    let start = Instant::now();
    for _ in 0..passes {
        black_box(over(items, &f));
    }
    start.elapsed().as_nanos() as f64 / (passes * items.len()) as f64
}

fn main() {
    let data = load();
    let one = ["www.example.com"];
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();

    let mut group = criterion.benchmark_group("canonicalize");
    group.throughput(Throughput::Elements(1));
    group.bench_function("www.example.com", |b| b.iter(|| over(&one, canonicalize)));
    group.throughput(Throughput::Elements(data.hosts.len() as u64));
    group.bench_function("real_hosts", |b| b.iter(|| over(&data.hosts, canonicalize)));
    group.bench_function("real_hosts_without_fast_path", |b| {
        b.iter(|| over(&data.hosts, canonicalize_without_fast_path))
    });
    group.bench_function("real_authorities", |b| {
        b.iter(|| over(&data.authorities, canonicalize_authority))
    });
    group.throughput(Throughput::Elements(EVASIONS.len() as u64));
    group.bench_function("evasions", |b| b.iter(|| over(EVASIONS, canonicalize)));
    group.throughput(Throughput::Elements(data.urls.len() as u64));
    group.bench_function("real_urls_parse", |b| {
        b.iter(|| over(&data.urls, CanonicalUrl::parse))
    });
    group.finish();
    criterion.final_summary();

    // ns/host, the figure the budget is stated in.
    println!("\nsummary (ns per item, mean over at least 1 M items):");
    for (name, ns) in [
        ("www.example.com", ns_per_item(&one, canonicalize)),
        (
            "real hosts (fast path)",
            ns_per_item(&data.hosts, canonicalize),
        ),
        (
            "real hosts (without fast path)",
            ns_per_item(&data.hosts, canonicalize_without_fast_path),
        ),
        (
            "real authorities (host:port)",
            ns_per_item(&data.authorities, canonicalize_authority),
        ),
        ("evasion spellings", ns_per_item(EVASIONS, canonicalize)),
        (
            "real urls (CanonicalUrl::parse)",
            ns_per_item(&data.urls, CanonicalUrl::parse),
        ),
    ] {
        println!("  {name:<34} {ns:>8.1} ns");
    }
    println!(
        "  ({} real hosts, {} evasion spellings)",
        data.hosts.len(),
        EVASIONS.len()
    );
}
