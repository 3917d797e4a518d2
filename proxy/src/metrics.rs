//! The proxy's Prometheus metrics: requests by verdict, request latency, blocks
//! by category and band, client TLS handshakes, leaf-cache hits, upstream
//! connections dialled or reused, login failures, and the block-event queue.
//!
//! In: a [`prometheus::Registry`] the caller owns (the binary serves it at
//! `/metrics`). Out: handles the request path bumps.
//!
//! The request path stays cheap: every handle is resolved up front, so a
//! request costs a `match` on its verdict word, one counter increment and one
//! histogram observation (atomics only: no lock, no label hashing, no
//! allocation). Per-(band, category) block counters are resolved when a
//! snapshot is prepared ([`ProxyMetrics::prepare`], called when a policy is
//! compiled), and found on a block by comparing the verdict's names with the
//! prepared ones. Queue depth and spool size are read when scraped
//! ([`ProxyMetrics::refresh`]).
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use policy::event::BlockKind;
use policy::{Rank, Verdict};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::events::EventCounters;
use crate::snapshot::Snapshot;

/// Latency buckets (seconds): from a cached block page to a slow origin.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `category` label of a block no category decided.
const NO_CATEGORY: &str = "none";
/// The `band` label of a block before a band was known.
const NO_BAND: &str = "none";

/// Requests by the verdict word of the access log.
struct Verdicts {
    allow: IntCounter,
    block: IntCounter,
    refused: IntCounter,
    local: IntCounter,
    auth: IntCounter,
    error: IntCounter,
    other: IntCounter,
}

/// One band's block counters, by category label.
type BandCounters = (Arc<str>, Vec<(Arc<str>, IntCounter)>);

/// The block counters of one prepared policy: per band, per category label.
#[derive(Default)]
struct BlockTable {
    bands: Vec<BandCounters>,
}

impl BlockTable {
    fn find(&self, band: &str, category: &str) -> Option<&IntCounter> {
        let (_, categories) = self.bands.iter().find(|(b, _)| &**b == band)?;
        categories
            .iter()
            .find(|(c, _)| &**c == category)
            .map(|(_, counter)| counter)
    }
}

/// Where the scrape-time figures come from (set when the server binds).
struct Sources {
    events: Arc<EventCounters>,
    spool: PathBuf,
}

/// The proxy's metrics; one per server, shared by every request.
pub struct ProxyMetrics {
    verdicts: Verdicts,
    latency: Histogram,
    blocks: IntCounterVec,
    table: ArcSwap<BlockTable>,
    tls_handshakes: IntCounter,
    tls_failures: IntCounter,
    leaf_hits: IntCounter,
    leaf_mints: IntCounter,
    upstream_dialled: IntCounter,
    upstream_reused: IntCounter,
    auth_rejected: IntCounter,
    auth_malformed: IntCounter,
    auth_throttled: IntCounter,
    queue_depth: IntGauge,
    spool_bytes: IntGauge,
    event_totals: IntCounterVec,
    event_sink_errors: IntCounter,
    sources: Mutex<Option<Sources>>,
}

/// The event path's counters, by the `path` label of `hallpass_events_total`.
const EVENT_PATHS: [&str; 6] = [
    "queued",
    "written",
    "journaled",
    "spooled",
    "replayed",
    "lost",
];

impl ProxyMetrics {
    /// Creates every metric and registers it in `registry`. Fails when the
    /// registry already holds metrics of the same names.
    pub fn new(registry: &Registry) -> Result<Arc<ProxyMetrics>, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "hallpass_requests_total",
                "Requests handled, by verdict (allow, block, refused, local, auth, error).",
            ),
            &["verdict"],
        )?;
        let verdict = |v: &str| requests.with_label_values(&[v]);
        let verdicts = Verdicts {
            allow: verdict("allow"),
            block: verdict("block"),
            refused: verdict("refused"),
            local: verdict("local"),
            auth: verdict("auth"),
            error: verdict("error"),
            other: verdict("other"),
        };
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "hallpass_request_duration_seconds",
                "Time from a request's head to its response head.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let blocks = IntCounterVec::new(
            Opts::new(
                "hallpass_blocks_total",
                "Blocked requests, by category (`none` when no category decided) and band.",
            ),
            &["category", "band"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let tls_handshakes = counter(
            "hallpass_tls_handshakes_total",
            "Client TLS handshakes of intercepted tunnels, completed or not.",
        )?;
        let tls_failures = counter(
            "hallpass_tls_handshake_failures_total",
            "Client TLS handshakes that failed or timed out (often: the device does not trust the school CA).",
        )?;
        let leaf_hits = counter(
            "hallpass_leaf_cache_hits_total",
            "Leaf certificates served from the cache.",
        )?;
        let leaf_mints = counter(
            "hallpass_leaf_cache_misses_total",
            "Leaf certificates minted because the cache had none.",
        )?;
        let upstream = IntCounterVec::new(
            Opts::new(
                "hallpass_upstream_connections_total",
                "Upstream connections of intercepted tunnels: dialled (a new TCP connection, and TLS for HTTPS) or reused from the pool of verified connections.",
            ),
            &["how"],
        )?;
        let auth = IntCounterVec::new(
            Opts::new(
                "hallpass_auth_failures_total",
                "Failed proxy logins, by reason (rejected, malformed, throttled).",
            ),
            &["reason"],
        )?;
        let queue_depth = IntGauge::new(
            "hallpass_event_queue_depth",
            "Block events waiting for the event writer.",
        )?;
        let spool_bytes = IntGauge::new(
            "hallpass_event_spool_bytes",
            "Size of the event journal (events the store has not taken yet).",
        )?;
        let event_totals = IntCounterVec::new(
            Opts::new(
                "hallpass_events_total",
                "Block events by path: queued for the writer, written by the store in the normal \
                 course, journaled (acknowledged from the local journal), spooled (queue full, \
                 slow writer or failing store), replayed (stored after a store failure or from \
                 a previous run), lost (neither stored nor journaled: the disk failed).",
            ),
            &["path"],
        )?;
        let event_sink_errors = IntCounter::new(
            "hallpass_event_sink_errors_total",
            "Batches of block events the store refused (they stay in the journal and are retried).",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(blocks.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        registry.register(Box::new(tls_failures.clone()))?;
        registry.register(Box::new(leaf_hits.clone()))?;
        registry.register(Box::new(leaf_mints.clone()))?;
        registry.register(Box::new(upstream.clone()))?;
        registry.register(Box::new(auth.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(event_totals.clone()))?;
        registry.register(Box::new(event_sink_errors.clone()))?;
        Ok(Arc::new(ProxyMetrics {
            verdicts,
            latency,
            blocks,
            table: ArcSwap::from_pointee(BlockTable::default()),
            tls_handshakes,
            tls_failures,
            leaf_hits,
            leaf_mints,
            upstream_dialled: upstream.with_label_values(&["dialled"]),
            upstream_reused: upstream.with_label_values(&["reused"]),
            auth_rejected: auth.with_label_values(&["rejected"]),
            auth_malformed: auth.with_label_values(&["malformed"]),
            auth_throttled: auth.with_label_values(&["throttled"]),
            queue_depth,
            spool_bytes,
            event_totals,
            event_sink_errors,
            sources: Mutex::new(None),
        }))
    }

    /// Metrics kept in a registry of their own that nobody reads (a proxy
    /// built without [`ProxyBuilder::metrics`](crate::ProxyBuilder::metrics)).
    pub fn unregistered() -> Arc<ProxyMetrics> {
        // A fresh registry holds no names yet, so registering cannot clash.
        match ProxyMetrics::new(&Registry::new()) {
            Ok(m) => m,
            Err(e) => unreachable!("a fresh registry refused a metric: {e}"),
        }
    }

    /// Resolves the block counters of every band and category of `snap`, so
    /// blocks under it touch no label map. Call it when a snapshot is compiled
    /// (off the request path), before it is swapped in.
    pub fn prepare(&self, snap: &Snapshot) {
        let policy = &snap.policy;
        let mut names: Vec<Arc<str>> = policy
            .baseline()
            .iter()
            .chain(policy.categories())
            .map(|c| c.name.clone())
            .collect();
        names.push(NO_CATEGORY.into());
        let bands = policy
            .bands()
            .map(|b| b.name.clone())
            .chain(std::iter::once(Arc::<str>::from(NO_BAND)))
            .map(|band| {
                let counters = names
                    .iter()
                    .map(|c| (c.clone(), self.blocks.with_label_values(&[&**c, &*band])))
                    .collect();
                (band, counters)
            })
            .collect();
        self.table.store(Arc::new(BlockTable { bands }));
    }

    /// Counts one request and its latency. `verdict` is the access log's word.
    pub(crate) fn request(&self, verdict: &str, elapsed: Duration) {
        let v = &self.verdicts;
        match verdict {
            "allow" => &v.allow,
            "block" => &v.block,
            "refused" => &v.refused,
            "local" => &v.local,
            "auth" => &v.auth,
            "error" => &v.error,
            _ => &v.other,
        }
        .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts one block (a refusal with an event). Review requests are not blocks.
    pub(crate) fn block(&self, kind: BlockKind, band: Option<&str>, verdict: Option<&Verdict>) {
        if matches!(kind, BlockKind::ReviewRequest | BlockKind::AuthFailure) {
            return;
        }
        let category = verdict
            .filter(|v| matches!(v.rank, Rank::Baseline | Rank::Category))
            .and_then(|v| v.category.as_deref())
            .unwrap_or(NO_CATEGORY);
        let band = band.unwrap_or(NO_BAND);
        match self.table.load().find(band, category) {
            Some(counter) => counter.inc(),
            // A snapshot nobody prepared (or a request still on an older one):
            // the slower labelled lookup, still counted.
            None => self.blocks.with_label_values(&[category, band]).inc(),
        }
    }

    /// Counts a client TLS handshake of an intercepted tunnel.
    pub(crate) fn tls_handshake(&self, ok: bool) {
        self.tls_handshakes.inc();
        if !ok {
            self.tls_failures.inc();
        }
    }

    /// Counts a leaf served from the cache (`true`) or minted (`false`).
    pub(crate) fn leaf(&self, cached: bool) {
        if cached {
            self.leaf_hits.inc();
        } else {
            self.leaf_mints.inc();
        }
    }

    /// Counts an upstream connection of an intercepted tunnel: taken from the
    /// pool (`true`) or dialled (`false`).
    pub(crate) fn upstream(&self, reused: bool) {
        if reused {
            self.upstream_reused.inc();
        } else {
            self.upstream_dialled.inc();
        }
    }

    /// Counts a failed login by the refusal's reason.
    pub(crate) fn auth_failure(&self, reason: &str) {
        match reason {
            "rejected" | "password check failed" => self.auth_rejected.inc(),
            "malformed credentials" => self.auth_malformed.inc(),
            "throttled" => self.auth_throttled.inc(),
            // No credentials were offered: a challenge, not a failure.
            _ => {}
        }
    }

    /// Tells the metrics where the event queue and spool are.
    pub(crate) fn set_sources(&self, events: Arc<EventCounters>, spool: PathBuf) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        *sources = Some(Sources { events, spool });
    }

    /// Reads the figures that are measured rather than counted (queue depth,
    /// spool size). Call it before each scrape.
    pub fn refresh(&self) {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = sources.as_ref() else {
            return;
        };
        let queued = s.events.queued.load(Ordering::Relaxed);
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        let bytes = crate::events::journal_bytes(&s.spool);
        self.spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        // The writer counts in plain atomics; the exported counters catch up here.
        let copy = |c: &IntCounter, from: &AtomicU64| {
            c.inc_by(from.load(Ordering::Relaxed).saturating_sub(c.get()));
        };
        let e = &s.events;
        let sources = [
            &e.queued_total,
            &e.written,
            &e.journaled,
            &e.spooled,
            &e.replayed,
            &e.lost,
        ];
        for (path, from) in EVENT_PATHS.iter().zip(sources) {
            copy(&self.event_totals.with_label_values(&[path]), from);
        }
        copy(&self.event_sink_errors, &e.sink_errors);
    }
}
