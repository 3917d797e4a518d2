//! The hallpass forward proxy.
//!
//! One module per stage of the request path (see the design's diagram): a request
//! is accepted ([`listen`]), its framing checked ([`framing`]), the person
//! identified ([`auth`]), its target normalised ([`target`]), decided against one
//! policy snapshot ([`filter`]), then forwarded ([`forward`], [`upstream`]),
//! spliced or intercepted ([`connect`], [`mitm`]), or answered with the block page
//! ([`block`]) and a block event ([`events`]). Verified upstream connections
//! outlive their tunnel in one shared [`pool`].
//!
//! Built on hyper 1, tokio-rustls and rcgen rather than hudsucker: measured here,
//! hudsucker sets no TCP_NODELAY (about 22 new connections/s against ~2,200),
//! answers CONNECT before the upstream exists, has no timeouts, signs every leaf
//! with the CA's own key and inspects only GET in plain tunnels.
//!
//! Wiring, from the binary:
//!
//! ```no_run
//! # async fn run(snapshots: std::sync::Arc<arc_swap::ArcSwap<hallpass_proxy::snapshot::Snapshot>>) -> Result<(), hallpass_proxy::ProxyError> {
//! use hallpass_proxy::{ProxyBuilder, Settings};
//! let settings = {
//!     let snap = snapshots.load();
//!     Settings::from_config(&snap.config, &snap.config_dir)
//! };
//! let server = ProxyBuilder::new(settings, snapshots).bind().await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod auth;
pub mod block;
pub mod ca;
pub mod connect;
pub mod events;
pub mod filter;
pub mod forward;
pub mod framing;
mod head_timer;
pub mod idle;
pub mod listen;
pub mod metrics;
pub mod mitm;
pub mod pac;
pub mod pages;
pub mod pool;
mod request;
pub mod safe_search;
pub mod snapshot;
pub mod target;
pub mod upstream;
pub mod verdict_headers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::BodyExt;
use policy::config::{Config, DestinationRule};

pub use arc_swap;
pub use listen::Server;
pub use prometheus;
pub use upstream::{Resolve, SystemResolver};

use crate::ca::{CaError, CertificateAuthority};
use crate::events::EventSink;
use crate::snapshot::Snapshot;

/// Errors a body can carry (hyper's, or none).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy builds.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The async runtime the proxy serves on: one worker per CPU this process may
/// run on. Confined to a single CPU (taskset, a cgroup cpuset, a small VM), the
/// single-threaded scheduler does the same work without cross-thread wake-ups
/// and queues (measured: 22 % less CPU per request).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// A complete body.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A client's request body as forwarded: no body at all when the client sent
/// none (boxing an empty body allocates nothing, where boxing hyper's empty
/// `Incoming` took an allocation per request), else the stream itself.
pub(crate) fn request_body(body: hyper::body::Incoming) -> Body {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed()
    } else {
        body.map_err(Into::into).boxed()
    }
}

/// The proxy's runtime settings: `[proxy]` of `hallpass.toml` with paths resolved.
///
/// Read once at start. A reload (SIGHUP) swaps the policy and lists; listeners,
/// timeouts and the CA need a restart.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Other names of the proxy itself (canonical form, lower-case).
    pub names: Vec<String>,
    /// Ports a request may name.
    pub allowed_ports: Vec<u16>,
    /// Connections per client address.
    pub max_connections_per_ip: u32,
    /// Connections in total.
    pub max_connections: u32,
    /// Whole-head deadline and idle keep-alive.
    pub header_read_timeout: Duration,
    /// Upstream TCP connect deadline.
    pub connect_timeout: Duration,
    /// TLS handshake deadline, both sides.
    pub tls_handshake_timeout: Duration,
    /// Idle deadline of tunnels and upstream connections.
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// Intercept HTTPS.
    pub intercept: bool,
    /// Leaf validity in days.
    pub leaf_days: u32,
    /// Leaf cache size.
    pub leaf_cache_size: usize,
    /// Extra upstream roots (PEM files), resolved.
    pub upstream_roots: Vec<PathBuf>,
    /// Destination opt-ins.
    pub dangerous_allow_destinations: Vec<DestinationRule>,
    /// Review link template.
    pub review_url: Option<String>,
    /// Event queue capacity.
    pub event_queue: usize,
    /// The state directory, resolved.
    pub state_dir: PathBuf,
    /// Request head limits.
    pub limits: framing::Limits,
}

impl Settings {
    /// Takes `[proxy]` and `state_dir` from a parsed config, resolving relative
    /// paths against `config_dir` (the folder of `hallpass.toml`).
    pub fn from_config(config: &Config, config_dir: &Path) -> Settings {
        let p = &config.proxy;
        Settings {
            listen: p.listen.clone(),
            // Canonical, so they compare with canonical request hosts; a name
            // the canonicaliser refuses could never match a request anyway.
            names: p
                .names
                .iter()
                .filter_map(|n| policy::host::canonicalize(n).ok())
                .map(|h| h.as_str().to_string())
                .collect(),
            allowed_ports: p.allowed_ports.clone(),
            max_connections_per_ip: p.max_connections_per_ip.max(1),
            max_connections: p.max_connections.max(1),
            header_read_timeout: p.header_read_timeout.0,
            connect_timeout: p.connect_timeout.0,
            tls_handshake_timeout: p.tls_handshake_timeout.0,
            idle_timeout: p.idle_timeout.0,
            shutdown_grace: p.shutdown_grace.0,
            intercept: p.intercept,
            leaf_days: p.leaf_days,
            leaf_cache_size: p.leaf_cache_size,
            upstream_roots: p
                .upstream_roots
                .iter()
                .map(|r| config_dir.join(r))
                .collect(),
            dangerous_allow_destinations: p.dangerous_allow_destinations.clone(),
            review_url: p.review_url.clone(),
            event_queue: p.event_queue,
            state_dir: config_dir.join(&config.state_dir),
            limits: framing::Limits::default(),
        }
    }
}

/// Who caused an error: decides the status, the page and the log level.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The client's request (400/407/431).
    Client,
    /// A file the technician wrote.
    Config,
    /// The upstream server (bad certificate, timeout, refusal).
    Upstream,
    /// A bug here: fail closed.
    Internal,
}

/// Why the proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The CA could not be loaded.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The upstream roots could not be read.
    #[error(transparent)]
    Roots(#[from] upstream::RootsError),
    /// The event sink could not be opened.
    #[error(transparent)]
    Events(#[from] events::EventSinkError),
    /// The `[accounts]` settings or the accounts file could not be used.
    #[error("accounts: {0}")]
    Accounts(String),
    /// The event writer thread could not start.
    #[error("cannot start the event writer: {0}")]
    EventWriter(std::io::Error),
}

impl ProxyError {
    /// Who caused it.
    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::Bind { .. }
            | ProxyError::Ca(_)
            | ProxyError::Roots(_)
            | ProxyError::Events(_)
            | ProxyError::Accounts(_) => Fault::Config,
            ProxyError::EventWriter(_) => Fault::Internal,
        }
    }
}

/// Assembles a proxy: settings and snapshots are required; the resolver, CA and
/// event sink default to the system resolver, the CA in the state directory (when
/// `intercept` is on) and a JSON-lines file in the state directory.
pub struct ProxyBuilder {
    settings: Settings,
    snapshots: Arc<ArcSwap<Snapshot>>,
    resolver: Option<Arc<dyn Resolve>>,
    ca: Option<Arc<CertificateAuthority>>,
    sink: Option<Box<dyn EventSink>>,
    extra_own_addrs: Vec<SocketAddr>,
    verifier: Option<(Arc<accounts::Verifier>, usize)>,
    accounts_poll: Duration,
    metrics: Option<Arc<metrics::ProxyMetrics>>,
}

/// How often the accounts file's stamp is checked by default: a `hallpass
/// users` change reaches the running proxy within this (a stat call each time).
pub const DEFAULT_ACCOUNTS_POLL: Duration = Duration::from_secs(2);

impl ProxyBuilder {
    /// Starts a builder.
    pub fn new(settings: Settings, snapshots: Arc<ArcSwap<Snapshot>>) -> Self {
        ProxyBuilder {
            settings,
            snapshots,
            resolver: None,
            ca: None,
            sink: None,
            extra_own_addrs: Vec::new(),
            verifier: None,
            accounts_poll: DEFAULT_ACCOUNTS_POLL,
            metrics: None,
        }
    }

    /// Uses this resolver instead of the system's.
    pub fn resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Uses this CA instead of loading the one in the state directory.
    pub fn ca(mut self, ca: Arc<CertificateAuthority>) -> Self {
        self.ca = Some(ca);
        self
    }

    /// Sends block events to this sink instead of `events.jsonl`.
    pub fn event_sink(mut self, sink: Box<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Other addresses of this process (console, metrics) that must never be
    /// dialled as destinations.
    pub fn own_addresses(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.extra_own_addrs.extend(addrs);
        self
    }

    /// Checks proxy logins with this verifier, at most `max_concurrent_hashes`
    /// argon2 runs at once, instead of one built from `[accounts]` and
    /// `<state_dir>/accounts.toml`. The accounts file is still polled for changes.
    pub fn verifier(
        mut self,
        verifier: Arc<accounts::Verifier>,
        max_concurrent_hashes: usize,
    ) -> Self {
        self.verifier = Some((verifier, max_concurrent_hashes));
        self
    }

    /// How often the accounts file is checked for changes (default
    /// [`DEFAULT_ACCOUNTS_POLL`]).
    pub fn accounts_poll(mut self, every: Duration) -> Self {
        self.accounts_poll = every.max(Duration::from_millis(10));
        self
    }

    /// Counts into these metrics (registered in the registry `/metrics`
    /// serves) instead of a private set nobody reads.
    pub fn metrics(mut self, metrics: Arc<metrics::ProxyMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Loads what is missing, binds every listen address and returns the server,
    /// ready to [`run`](Server::run).
    pub async fn bind(self) -> Result<Server, ProxyError> {
        listen::bind(self).await
    }
}
