//! The matcher benchmark: ns per lookup (including host canonicalisation),
//! bytes per domain and compile time, on about a million real domains.
//!
//! Per query stream it prints the figure, **canonicalise + host lookup
//! (suffix walk)**, and the **full lookup** (canonicalise + host + URL prefixes +
//! expressions), each also as a ratio to a baseline measured in the same run
//! and interleaved with it: canonicalise + a suffix walk over a
//! `HashSet<String>` of the same canonical names. The machine's speed varies
//! from day to day; the ratios compare across days, the ns do not.
//!
//! Lists: every UT1 category folder in `shared/data/ut1` (aliases skipped), the
//! two `shared/data/adult-partial/*/domains` lists, then the top-site names, then
//! (if still short of 1,000,000 distinct names) synthetic `p<i>.<top site>`
//! names. Query streams: (a) the hosts of the Cliqz crawl requests in order,
//! (b) deep subdomains that match nothing, (c) subdomains of listed names.
//!
//! Run: `cargo bench --bench matcher`. Missing data is a panic, never a skip.
//! `HALLPASS_SHARED_DATA` overrides where `shared/data` is.
use std::collections::HashSet;
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

/// The path normaliser the proxy uses for URL-prefix entries.
fn paths(path_and_query: &str) -> Result<String, String> {
    policy::url::CanonicalUrl::from_parts(
        policy::url::Scheme::Https,
        "lists.invalid",
        path_and_query,
    )
    .map(|url| url.path_and_query())
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
    let paths = paths;
    let mut builder = Builder::with_path_normaliser(&canon, &paths);
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

/// The canonical names of every domain list (and the padding), for the
/// `HashSet<String>` baseline.
fn canonical_names(texts: &[ListText], padding: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let domain_texts = texts
        .iter()
        .map(|list| match list {
            ListText::Squidguard { domains, .. } => domains.as_str(),
            ListText::Domains { text, .. } => text.as_str(),
        })
        .chain([padding]);
    for text in domain_texts {
        for line in text.lines() {
            if let Some(Ok(name)) = blocklists::formats::parse_domain_line(line, &canon) {
                names.insert(name);
            }
        }
    }
    names
}

/// Whether a label-boundary suffix of `host` is in `names` (IP literals whole):
/// the straightforward matcher the compiled one is measured against.
fn hashset_contains(names: &HashSet<String>, host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if host.contains(':') || last.bytes().all(|b| b.is_ascii_digit()) {
        return names.contains(host);
    }
    let mut rest = host;
    loop {
        if names.contains(rest) {
            return true;
        }
        match rest.find('.') {
            Some(dot) => rest = &rest[dot + 1..],
            None => return false,
        }
    }
}

/// What one pass over a stream does per request, after canonicalising the host.
#[derive(Clone, Copy)]
enum Work {
    /// Canonicalise only.
    Canonicalise,
    /// The baseline: a suffix walk over a `HashSet<String>`.
    HashSet,
    /// The figure: `Matcher::host_mask` (the suffix walk).
    Host,
    /// `Matcher::lookup`: host, URL prefixes and expressions.
    Full,
    /// `Matcher::expression_mask` alone.
    Expressions,
}

/// canonicalise + `work`, the work the proxy does per request. Counts the
/// requests some real list (not the padding, the last list) contains.
fn run(matcher: &Matcher, names: &HashSet<String>, stream: &Stream, work: Work) -> u32 {
    let mut hits = 0;
    for (host, path_query) in stream {
        if let Ok(host) = policy::host::canonicalize(host) {
            let host = host.as_str();
            let mask = match work {
                Work::Canonicalise => 0,
                Work::HashSet => u128::from(hashset_contains(names, host)),
                Work::Host => matcher.host_mask(host),
                Work::Full => matcher.lookup(host, path_query),
                Work::Expressions => matcher.expression_mask(host, path_query),
            };
            if mask & REAL_LISTS != 0 {
                hits += 1;
            }
        }
    }
    hits
}

/// Best-of-`ROUNDS` ns per request for each kind of work, the kinds measured
/// in turn within each round, so a change in machine speed during the run
/// affects them alike.
fn ns_per_request(
    matcher: &Matcher,
    names: &HashSet<String>,
    stream: &Stream,
    works: &[Work],
) -> Vec<f64> {
    const ROUNDS: usize = 7;
    let mut best = vec![Duration::MAX; works.len()];
    for _ in 0..ROUNDS {
        for (work, best) in works.iter().zip(&mut best) {
            let start = Instant::now();
            black_box(run(matcher, names, black_box(stream), *work));
            *best = (*best).min(start.elapsed());
        }
    }
    best.iter()
        .map(|time| time.as_nanos() as f64 / stream.len() as f64)
        .collect()
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
    let names = canonical_names(&texts, &padding);

    let crawl = crawl_stream(&data);
    let miss = miss_stream();
    let hit = hit_stream(&data);
    assert_eq!(
        run(&matcher, &names, &miss, Work::Full),
        0,
        "the miss stream must miss"
    );
    assert_eq!(
        run(&matcher, &names, &hit, Work::Host) as usize,
        hit.len(),
        "the hit stream must hit"
    );
    let crawl_hits = run(&matcher, &names, &crawl, Work::Full);

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
    println!(
        "matcher: ns/request, best of 7 interleaved rounds; every figure includes canonicalising the host; x = ratio to the HashSet<String> suffix walk in this run"
    );
    println!(
        "matcher: {:<14} {:>8} {:>8} {:>17} {:>17} {:>12}",
        "stream", "canon", "hashset", "canon+host_mask", "full lookup", "expressions"
    );
    let works = [
        Work::Canonicalise,
        Work::HashSet,
        Work::Host,
        Work::Full,
        Work::Expressions,
    ];
    for (name, stream) in [
        ("crawl", &crawl),
        ("all-miss deep", &miss),
        ("all-hit", &hit),
    ] {
        let ns = ns_per_request(&matcher, &names, stream, &works);
        let (canon_ns, base) = (ns[0], ns[1]);
        println!(
            "matcher: {name:<14} {canon_ns:>8.0} {base:>8.0} {:>8.0} ({:>4.2}x) {:>8.0} ({:>4.2}x) {:>12.0}",
            ns[2],
            ns[2] / base,
            ns[3],
            ns[3] / base,
            ns[4] - canon_ns,
        );
    }
    println!(
        "matcher: (expressions = canonicalise + expression_mask, less canonicalise: the expression share of a full lookup)"
    );
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
    for (group_name, work) in [
        ("baseline_hashset", Work::HashSet),
        ("host", Work::Host),
        ("full", Work::Full),
    ] {
        let mut group = criterion.benchmark_group(format!("matcher/{group_name}"));
        for (name, stream) in [("crawl", &crawl), ("miss_deep", &miss), ("hit", &hit)] {
            group.throughput(Throughput::Elements(stream.len() as u64));
            group.bench_function(name, |b| {
                b.iter(|| run(&matcher, &names, black_box(stream), work))
            });
        }
        group.finish();
    }
    drop(names);

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
