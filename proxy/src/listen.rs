//! Accept: listeners, connection limits, one span per connection, graceful stop.
//!
//! In: the listen addresses and the assembled proxy state. Out: for every
//! accepted socket (TCP_NODELAY set), an HTTP/1.1 connection served by hyper
//! behind the [`FramingGuard`](crate::framing::FramingGuard). Refused: a client
//! address over `max_connections_per_ip` (closed at once); over `max_connections`
//! in total, new connections wait in the kernel's backlog.
//!
//! Shutdown has two phases: *draining* stops accepting and asks every connection
//! to finish its in-flight request and close (idle keep-alive connections close
//! at once); after `shutdown_grace`, *stopped* closes whatever is left, tunnels
//! included. Then the event writer flushes.
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

use crate::block::References;
use crate::ca::{CertificateAuthority, LeafCache};
use crate::events::{EventCounters, EventQueue, EventWriter, JsonLinesSink};
use crate::framing::FramingGuard;
use crate::request::{ConnInfo, Shared};
use crate::upstream::{Destinations, Dialer, SystemResolver, UpstreamTls};
use crate::{ProxyBuilder, ProxyError};

/// Where the server is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Running,
    /// Not accepting; in-flight requests finishing.
    Draining,
    /// Everything still open is being closed.
    Stopped,
}

/// A bound proxy, ready to run.
pub struct Server {
    listeners: Vec<(TcpListener, SocketAddr)>,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    writer: EventWriter,
    accounts_poll: Duration,
}

pub(crate) async fn bind(b: ProxyBuilder) -> Result<Server, ProxyError> {
    let settings = b.settings;
    let mut listeners = Vec::new();
    for addr in &settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: *addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: *addr,
            source,
        })?;
        listeners.push((listener, local));
    }
    // With interception off no CA is loaded at all, even one passed in: tunnels
    // are spliced, and there is no certificate to serve.
    let ca = match (b.ca, settings.intercept) {
        (_, false) => None,
        (Some(ca), true) => Some(ca),
        (None, true) => Some(Arc::new(CertificateAuthority::load(&settings.state_dir)?)),
    };
    let leaves = ca.map(|ca| LeafCache::new(ca, settings.leaf_days, settings.leaf_cache_size));
    let upstream_tls = UpstreamTls::new(&settings.upstream_roots, settings.tls_handshake_timeout)?;
    let sink = match b.sink {
        Some(sink) => sink,
        None => Box::new(JsonLinesSink::in_state_dir(&settings.state_dir)?),
    };
    let spool = settings.state_dir.join("events.spool.jsonl");
    let (events, writer) = EventQueue::start(sink, settings.event_queue, spool.clone())
        .map_err(ProxyError::EventWriter)?;
    let metrics = b
        .metrics
        .unwrap_or_else(crate::metrics::ProxyMetrics::unregistered);
    metrics.set_sources(events.counters_handle(), spool);
    metrics.prepare(&b.snapshots.load());
    let own: Vec<SocketAddr> = listeners
        .iter()
        .map(|(_, local)| *local)
        .chain(b.extra_own_addrs)
        .collect();
    let destinations = Destinations::new(
        settings.allowed_ports.clone(),
        settings.dangerous_allow_destinations.clone(),
        own.clone(),
    );
    let dialer = Dialer {
        resolver: b.resolver.unwrap_or_else(|| Arc::new(SystemResolver)),
        destinations: Arc::new(destinations),
        connect_timeout: settings.connect_timeout,
    };
    let (verifier, max_concurrent_hashes) = match b.verifier {
        Some(given) => given,
        None => default_verifier(&b.snapshots, &settings)?,
    };
    let accounts_poll = b.accounts_poll;
    let (phase, phase_rx) = watch::channel(Phase::Running);
    let shared = Arc::new(Shared {
        connections: Arc::new(Semaphore::new(settings.max_connections as usize)),
        per_ip: PerIpLimit::new(settings.max_connections_per_ip),
        listen_addrs: listeners.iter().map(|(_, local)| *local).collect(),
        pool: crate::pool::Pool::new(settings.idle_timeout),
        settings,
        snapshots: b.snapshots,
        dialer,
        upstream_tls,
        leaves,
        events,
        references: References::new(SystemTime::now()),
        active: Arc::new(Active::default()),
        phase: phase_rx,
        next_conn: AtomicU64::new(1),
        auth: crate::auth::Authenticator::new(verifier, max_concurrent_hashes),
        metrics,
    });
    Ok(Server {
        listeners,
        shared,
        phase,
        writer,
        accounts_poll,
    })
}

/// The verifier when the builder was given none: `[accounts]` of the config and
/// `<state_dir>/accounts.toml` (no file yet means no accounts; the file is picked
/// up once `hallpass users add` writes it).
fn default_verifier(
    snapshots: &arc_swap::ArcSwap<crate::snapshot::Snapshot>,
    settings: &crate::Settings,
) -> Result<(Arc<accounts::Verifier>, usize), ProxyError> {
    let snap = snapshots.load();
    let account_settings: accounts::Settings = snap
        .config
        .accounts
        .clone()
        .try_into()
        .map_err(|e| ProxyError::Accounts(format!("{}: [accounts]: {e}", snap.config.file)))?;
    let path = accounts::file_path(&settings.state_dir);
    let list =
        accounts::Accounts::load_or_new(&path).map_err(|e| ProxyError::Accounts(e.to_string()))?;
    let verifier =
        accounts::Verifier::new(list, &account_settings, Arc::new(accounts::SystemClock))
            .map_err(|e| ProxyError::Accounts(e.to_string()))?;
    Ok((Arc::new(verifier), account_settings.max_concurrent_hashes))
}

impl Server {
    /// The addresses actually bound (port 0 replaced by the real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, local)| *local).collect()
    }

    /// The block-event counters (written, spooled, sink errors).
    pub fn event_counters(&self) -> Arc<EventCounters> {
        self.shared.events.counters_handle()
    }

    /// Serves until `shutdown` completes, then drains (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let Server {
            listeners,
            shared,
            phase,
            writer,
            accounts_poll,
        } = self;
        let poll = tokio::spawn(crate::auth::poll_accounts(
            shared.auth.verifier().clone(),
            accounts::file_path(&shared.settings.state_dir),
            accounts_poll,
        ));
        for (listener, local) in listeners {
            let shared = shared.clone();
            tokio::spawn(accept_loop(listener, local, shared));
        }
        tracing::info!(listen = ?shared.listen_addrs, "hallpass proxy listening");
        shutdown.await;
        let grace = shared.settings.shutdown_grace;
        tracing::info!(
            in_flight = shared.active.count(),
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections"
        );
        let _ = phase.send(Phase::Draining);
        if tokio::time::timeout(grace, shared.active.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                still_open = shared.active.count(),
                "shutdown grace over: closing what is left"
            );
        }
        let _ = phase.send(Phase::Stopped);
        poll.abort();
        // Closing is prompt (every task selects on the phase); bound the wait anyway.
        let _ = tokio::time::timeout(Duration::from_secs(2), shared.active.idle()).await;
        drop(shared);
        // The writer ends once every queue handle is gone; tasks still holding one
        // were aborted above, so this wait is bounded too.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || writer.join()),
        )
        .await;
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, local: SocketAddr, shared: Arc<Shared>) {
    let mut phase = shared.phase.clone();
    loop {
        let permit = tokio::select! {
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = phase.wait_for(|p| *p != Phase::Running) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Running) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(ip_slot) = shared.per_ip.try_acquire(peer.ip()) else {
            tracing::debug!(peer = %peer, "connection limit for this address reached: closed");
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", id, peer = %peer, listener = %local);
        let active = shared.active.enter();
        let conn = Arc::new(ConnInfo::new(peer, stream.local_addr().unwrap_or(local)));
        let task_shared = shared.clone();
        tokio::spawn(
            async move {
                serve_plain(task_shared, stream, conn).await;
                drop((permit, ip_slot, active));
            }
            .instrument(span),
        );
    }
}

async fn serve_plain(shared: Arc<Shared>, stream: TcpStream, conn: Arc<ConnInfo>) {
    let guard =
        FramingGuard::new(stream, shared.settings.limits).with_upgrade_gate(conn.gate.clone());
    let io = TokioIo::new(guard);
    let svc_shared = shared.clone();
    let svc =
        service_fn(move |req| crate::request::handle_plain(svc_shared.clone(), conn.clone(), req));
    let connection = http1_builder(&shared)
        .serve_connection(io, svc)
        .with_upgrades();
    let mut phase = shared.phase.clone();
    // Says whether the phase moved without borrowing `phase`, which the
    // pending `changed()` holds.
    let probe = shared.phase.clone();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        if !draining && *phase.borrow() == Phase::Draining {
            draining = true;
            connection.as_mut().graceful_shutdown();
        }
        if *phase.borrow() == Phase::Stopped {
            return;
        }
        // The connection is polled on every wake-up; the phase future only
        // once (which registers this task to be woken by a change) and then
        // only after a change. Polling both every time, as `select!` does,
        // cost ~2 % of an allowed request's instructions.
        let mut changed = std::pin::pin!(phase.changed());
        let mut registered = false;
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Woke::Ended(result));
            }
            if !registered || probe.has_changed().unwrap_or(true) {
                registered = true;
                if let Poll::Ready(changed) = changed.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Phase(changed.is_ok()));
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Ended(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            Woke::Phase(true) => {}
            Woke::Phase(false) => return,
        }
    }
}

/// Why a connection's task woke: its connection ended, or the phase changed
/// (`false`: the sender is gone).
enum Woke {
    Ended(Result<(), hyper::Error>),
    Phase(bool),
}

/// The HTTP/1.1 server settings shared by listeners and intercepted tunnels.
pub(crate) fn http1_builder(shared: &Shared) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // One timer per connection (see head_timer). hyper starts it whenever
        // it waits for a head, so it also bounds how long an idle keep-alive
        // connection stays open.
        .timer(crate::head_timer::HeadTimer::default())
        .header_read_timeout(shared.settings.header_read_timeout)
        .keep_alive(true)
        // Above the guard's own limit, so the guard's 431 is what clients see.
        .max_buf_size((shared.settings.limits.max_head_bytes * 2).max(8192 + 1));
    builder
}

/// Counts open connections and tunnels, so shutdown knows when all are done.
#[derive(Default)]
pub(crate) struct Active {
    count: AtomicUsize,
    zero: Notify,
}

impl Active {
    pub(crate) fn enter(self: &Arc<Active>) -> ActiveGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        ActiveGuard {
            active: self.clone(),
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    async fn idle(&self) {
        loop {
            let notified = self.zero.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection or tunnel.
pub(crate) struct ActiveGuard {
    active: Arc<Active>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.active.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.active.zero.notify_waiters();
        }
    }
}

/// Open connections per client address.
pub(crate) struct PerIpLimit {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl PerIpLimit {
    fn new(max: u32) -> Self {
        PerIpLimit {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn try_acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One connection's place in the per-address count.
pub(crate) struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
