//! The matcher benchmark: ns per lookup (including host canonicalisation),
//! bytes per domain and compile time, on about a million real domains.
//!
//! Lists: every UT1 category folder in `shared/data/ut1` (aliases skipped), the
//! two `shared/data/adult-partial/*/domains` lists, then the top-site names, then
//! (if still short of 1,000,000 distinct names) synthetic `p<i>.<top site>`
//! names. Query streams: (a) the hosts of the Cliqz crawl requests in order,
//! (b) deep subdomains that match nothing, (c) subdomains of listed names.
//!
//! Run: `cargo bench --bench matcher`. Missing data is a panic, never a skip.
//! `HALLPASS_SHARED_DATA` overrides where `shared/data` is.
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blocklists::{Builder, Matcher, import};
use criterion::{Criterion, Throughput};

const TARGET_DOMAINS: usize = 1_000_000;

/// The padding list is loaded under this id; every other list is real.
const PADDING_ID: u8 = 127;
const REAL_LISTS: u128 = !(1 << PADDING_ID);

fn shared_data() -> PathBuf {
    let dir = match std::env::var_os("HALLPASS_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    assert!(
        dir.join("ut1").is_dir(),
        "benchmark data missing: expected shared/data at {} (set HALLPASS_SHARED_DATA)",
        dir.display()
    );
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("benchmark data missing: {}: {e}", path.display()))
}

/// The canonicaliser the proxy uses, in the shape the builder takes.
fn canon(input: &str) -> Result<String, String> {
    policy::host::canonicalize(input)
        .map(|host| host.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// One list as text, in memory, so compile time excludes disk reads.
enum ListText {
    Squidguard {
        id: u8,
        domains: String,
        urls: String,
        expressions: String,
    },
    Domains {
        id: u8,
        text: String,
    },
}

fn load_texts(data: &Path) -> (Vec<ListText>, u8) {
    let tree = data.join("ut1");
    let mut texts = Vec::new();
    let mut id = 0u8;
    let optional =
        |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    for category in import::category_dirs(&tree).expect("the UT1 tree is readable") {
        let dir = tree.join(&category);
        texts.push(ListText::Squidguard {
            id,
            domains: optional(&dir, "domains"),
            urls: optional(&dir, "urls"),
            expressions: optional(&dir, "expressions"),
        });
        id += 1;
    }
    for part in [
        "ut1-adult-x-alexa-top1m-2019",
        "sinfonietta-pornography-2026",
    ] {
        texts.push(ListText::Domains {
            id,
            text: read(&data.join("adult-partial").join(part).join("domains")),
        });
        id += 1;
    }
    (texts, id)
}

fn compile(texts: &[ListText], padding: &str, padding_id: u8) -> (Matcher, usize) {
    let canon = canon;
    let mut builder = Builder::new(&canon);
    let mut problems = 0;
    for list in texts {
        match list {
            ListText::Squidguard {
                id,
                domains,
                urls,
                expressions,
            } => {
                problems += builder
                    .add_domains_text(*id, "domains", domains)
                    .problems
                    .len();
                problems += builder.add_urls_text(*id, "urls", urls).problems.len();
                problems += builder
                    .add_expressions_text(*id, "expressions", expressions)
                    .problems
                    .len();
            }
            ListText::Domains { id, text } => {
                problems += builder
                    .add_domains_text(*id, "domains", text)
                    .problems
                    .len();
            }
        }
    }
    problems += builder
        .add_domains_text(padding_id, "padding", padding)
        .problems
        .len();
    (
        builder.build().expect("the benchmark lists compile"),
        problems,
    )
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A request stream: (raw host as the request spelled it, lower-case path?query).
type Stream = Vec<(String, String)>;

fn crawl_stream(data: &Path) -> Stream {
    let path = data.join("requests/cliqz-top500-adguard-subset/requests.jsonl");
    let mut stream = Vec::new();
    for line in read(&path).lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let Some(url) = record["url"].as_str() else {
            continue;
        };
        let Ok(parsed) = policy::url::CanonicalUrl::parse(url) else {
            continue;
        };
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if host_port.starts_with('[') {
            &host_port[..host_port.find(']').map_or(host_port.len(), |i| i + 1)]
        } else {
            host_port.split(':').next().unwrap_or(host_port)
        };
        let mut path_query = parsed.path().to_lowercase();
        if let Some(query) = parsed.query() {
            path_query.push('?');
            path_query.push_str(&query.to_lowercase());
        }
        stream.push((host.to_string(), path_query));
    }
    assert!(stream.len() > 30_000, "the crawl stream is incomplete");
    stream
}

fn miss_stream() -> Stream {
    (0..20_000)
        .map(|i| {
            (
                format!(
                    "img{i}.cdn-{}.eu-west-2.static{i}.nomatch-{i}.example",
                    i % 97
                ),
                "/assets/app.js".to_string(),
            )
        })
        .collect()
}

fn hit_stream(data: &Path) -> Stream {
    let mut stream = Vec::new();
    for category in ["gambling", "games", "malware", "redirector", "dating"] {
        let text = read(&data.join("ut1").join(category).join("domains"));
        let listed = text
            .lines()
            .step_by(7)
            .filter_map(|name| policy::host::canonicalize(name).ok())
            .filter(|host| host.ip().is_none())
            .take(4_000);
        for host in listed {
            stream.push((format!("www.{host}"), "/".to_string()));
        }
    }
    stream
}

/// canonicalise + lookup, the work the proxy does per request. Counts the
/// requests some real list (not the padding, the last list) contains.
fn run_stream(matcher: &Matcher, stream: &Stream) -> u32 {
    let mut hits = 0;
    for (host, path_query) in stream {
        if let Ok(host) = policy::host::canonicalize(host) {
            if matcher.lookup(host.as_str(), path_query) & REAL_LISTS != 0 {
                hits += 1;
            }
        }
    }
    hits
}

/// Best-of-five wall time per lookup, in ns.
fn ns_per_lookup(matcher: &Matcher, stream: &Stream) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        black_box(run_stream(matcher, black_box(stream)));
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / stream.len() as f64
}

fn main() {
    let data = shared_data();
    let (texts, list_count) = load_texts(&data);
    let tranco = read(&data.join("top-sites/tranco/tranco_top_50k.txt"));
    let umbrella = read(&data.join("top-sites/umbrella/umbrella-top-100k.txt"));
    let mut padding = format!("{tranco}\n{umbrella}\n");

    // First pass: how many distinct names the real lists give; then pad to 1 M.
    let (first, _) = compile(&texts, &padding, PADDING_ID);
    let short = TARGET_DOMAINS.saturating_sub(first.domain_count());
    let real_domains = first.domain_count();
    drop(first);
    let top: Vec<&str> = tranco.lines().filter(|l| !l.is_empty()).collect();
    for i in 0..short {
        padding.push_str(&format!("p{i}.{}\n", top[i % top.len()]));
    }

    let rss_before = resident_bytes();
    let start = Instant::now();
    let (matcher, problems) = compile(&texts, &padding, PADDING_ID);
    let compile_time = start.elapsed();
    let rss_built = resident_bytes();

    let crawl = crawl_stream(&data);
    let miss = miss_stream();
    let hit = hit_stream(&data);
    assert_eq!(run_stream(&matcher, &miss), 0, "the miss stream must miss");
    assert_eq!(
        run_stream(&matcher, &hit) as usize,
        hit.len(),
        "the hit stream must hit"
    );
    let crawl_hits = run_stream(&matcher, &crawl);

    println!(
        "matcher: {} distinct domains ({real_domains} from UT1 + adult-partial + top sites, the rest synthetic), {} lists + padding, {problems} entries refused by the canonicaliser",
        matcher.domain_count(),
        list_count
    );
    println!(
        "matcher: compile from text {:.2} s; heap {} bytes = {:.1} B/domain; RSS delta after build {:.1} B/domain",
        compile_time.as_secs_f64(),
        matcher.heap_bytes(),
        matcher.heap_bytes() as f64 / matcher.domain_count() as f64,
        rss_built.saturating_sub(rss_before) as f64 / matcher.domain_count() as f64,
    );
    for (name, stream) in [
        ("crawl", &crawl),
        ("all-miss deep", &miss),
        ("all-hit", &hit),
    ] {
        println!(
            "matcher: {name}: {} lookups, {:.0} ns/lookup (canonicalise + lookup, best of 5)",
            stream.len(),
            ns_per_lookup(&matcher, stream)
        );
    }
    for (name, stream) in [
        ("crawl", &crawl),
        ("all-miss deep", &miss),
        ("all-hit", &hit),
    ] {
        let canonical: Stream = stream
            .iter()
            .filter_map(|(h, p)| Some((canon(h).ok()?, p.clone())))
            .collect();
        let time = |f: &dyn Fn(&str, &str) -> u128| {
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let start = Instant::now();
                for (h, p) in &canonical {
                    black_box(f(black_box(h), black_box(p)));
                }
                best = best.min(start.elapsed());
            }
            best.as_nanos() as f64 / canonical.len() as f64
        };
        println!(
            "matcher: {name}: parts: canonicalise {:.0} ns, host_mask {:.0} ns, lookup {:.0} ns (host already canonical)",
            time(&|h, _| u128::from(policy::host::canonicalize(h).is_ok())),
            time(&|h, _| matcher.host_mask(h)),
            time(&|h, p| matcher.lookup(h, p)),
        );
    }
    println!(
        "matcher: crawl requests in some real list (white-type UT1 categories included) {crawl_hits} of {} ({:.1} %)",
        crawl.len(),
        100.0 * f64::from(crawl_hits) / crawl.len() as f64
    );

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("matcher");
    for (name, stream) in [("crawl", &crawl), ("miss_deep", &miss), ("hit", &hit)] {
        group.throughput(Throughput::Elements(stream.len() as u64));
        group.bench_function(name, |b| b.iter(|| run_stream(&matcher, black_box(stream))));
    }
    group.finish();

    let domain_count = matcher.domain_count();
    let rss_with = resident_bytes();
    drop(matcher);
    let rss_without = resident_bytes();
    println!(
        "matcher: RSS released when the matcher is dropped: {:.1} MB",
        rss_with.saturating_sub(rss_without) as f64 / 1e6
    );
    println!(
        "matcher: that is {:.1} B/domain (cross-check of heap_bytes)",
        rss_with.saturating_sub(rss_without) as f64 / domain_count as f64
    );
    criterion.final_summary();
}
