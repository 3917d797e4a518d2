//! Criterion bench: one whole decision as the proxy makes it — parse and
//! canonicalise the URL, look the host and path up in every list, apply the
//! precedence — on the shipped primary policy and lists, for the real request
//! corpus in ../shared/data/requests (30,524 URLs, in order).
// `criterion_group!` makes a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use policy::{CanonicalUrl, ListLookup};

const REQUESTS: &str = "../shared/data/requests/cliqz-top500-adguard-subset/requests.jsonl";

fn corpus() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REQUESTS);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the decide bench needs the shared request corpus",
            path.display()
        )
    });
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus lines are JSON");
            v["url"]
                .as_str()
                .expect("every record has a url")
                .to_string()
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hallpass.toml");
    let snap = proxy::snapshot::load(&config, 1).expect("the shipped config loads");
    let urls = corpus();
    let group = snap
        .policy
        .group_id("year5")
        .expect("year5 exists in the shipped policy");
    let mut g = c.benchmark_group("decide");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    g.throughput(Throughput::Elements(urls.len() as u64));
    g.bench_function("parse+lookup+decide/corpus/year5", |b| {
        b.iter(|| {
            let mut blocked = 0usize;
            for u in &urls {
                if let Ok(url) = CanonicalUrl::parse(u) {
                    let v = snap.policy.decide(group, &url, snap.lists.lookup(&url));
                    blocked += (v.action == policy::Action::Block) as usize;
                }
            }
            black_box(blocked)
        })
    });
    let parsed: Vec<CanonicalUrl> = urls
        .iter()
        .filter_map(|u| CanonicalUrl::parse(u).ok())
        .collect();
    g.throughput(Throughput::Elements(parsed.len() as u64));
    g.bench_function("lookup+decide/corpus/year5", |b| {
        b.iter(|| {
            for url in &parsed {
                black_box(snap.policy.decide(group, url, snap.lists.lookup(url)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
