//! Policy reloads for `hallpass run`: one [`Reloader`] serves SIGHUP and the
//! control socket (`hallpass reload`).
//!
//! A reload parses, validates and compiles the configuration, the policy and
//! every list on a blocking thread, prepares the new snapshot's metric handles,
//! then swaps it in atomically. Requests in flight keep the snapshot they
//! loaded; new requests get the new one. A bad file keeps the running policy,
//! is logged as `file:line:col: message` and counted in
//! `hallpass_reload_failures_total`. Reloads never overlap: a second one waits
//! for the first. systemd hears RELOADING=1 before and READY=1 after.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy::arc_swap::ArcSwap;
use proxy::metrics::ProxyMetrics;
use proxy::prometheus::{Gauge, IntCounter, IntGauge, Registry};
use proxy::snapshot::{self, LoadError, Snapshot};

/// Reloads the running policy and keeps the reload metrics.
pub struct Reloader {
    config: PathBuf,
    snapshots: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<ProxyMetrics>,
    /// Keeps the incident rules' locked categories in step with the policy.
    incidents: crate::incident_sink::IncidentReload,
    serial: tokio::sync::Mutex<()>,
    reloads: IntCounter,
    failures: IntCounter,
    last_success: Gauge,
    generation: IntGauge,
}

/// What a reload did.
pub enum Outcome {
    /// The new policy is in effect.
    Reloaded {
        /// Its generation.
        generation: u64,
    },
    /// The running policy was kept; one `file:line:col: message` per problem.
    Kept(Vec<String>),
}

impl Reloader {
    /// A reloader for the config at `config`, registering its metrics in `registry`.
    pub fn new(
        config: PathBuf,
        snapshots: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<ProxyMetrics>,
        registry: &Registry,
        incidents: crate::incident_sink::IncidentReload,
    ) -> anyhow::Result<Reloader> {
        let reloads = IntCounter::new(
            "hallpass_reloads_total",
            "Policy reloads that put a new policy in effect.",
        )?;
        let failures = IntCounter::new(
            "hallpass_reload_failures_total",
            "Policy reloads refused because a file had problems (the running policy was kept).",
        )?;
        let last_success = Gauge::new(
            "hallpass_reload_last_success_timestamp_seconds",
            "When the running policy was loaded (Unix time), at start or by a reload.",
        )?;
        let generation = IntGauge::new(
            "hallpass_policy_generation",
            "The running policy's generation: 1 at start, one more per successful reload.",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        let current = snapshots.load().generation;
        generation.set(i64::try_from(current).unwrap_or(i64::MAX));
        last_success.set(unix_now());
        Ok(Reloader {
            config,
            snapshots,
            metrics,
            incidents,
            serial: tokio::sync::Mutex::new(()),
            reloads,
            failures,
            last_success,
            generation,
        })
    }

    /// Reloads now (see the module docs).
    pub async fn reload(&self, why: &'static str) -> Outcome {
        let _one_at_a_time = self.serial.lock().await;
        notify_systemd(true);
        let running = self.snapshots.load_full();
        let generation = running.generation + 1;
        let path = self.config.clone();
        let metrics = self.metrics.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let snap = snapshot::load_reusing(&path, generation, &running)?;
            metrics.prepare(&snap);
            let reused = snap.lists.shares_matcher_with(&running.lists);
            Ok::<_, LoadError>((snap, reused))
        })
        .await;
        let outcome = match loaded {
            Ok(Ok((snap, reused))) => {
                if reused {
                    tracing::info!("list files unchanged: compiled lists kept");
                } else {
                    for p in snap.list_problems.iter() {
                        tracing::warn!(problem = %p, "list line skipped");
                    }
                }
                self.incidents.on_reload(&snap);
                self.snapshots.store(Arc::new(snap));
                self.reloads.inc();
                self.generation
                    .set(i64::try_from(generation).unwrap_or(i64::MAX));
                self.last_success.set(unix_now());
                tracing::info!(generation, trigger = why, "policy reloaded");
                Outcome::Reloaded { generation }
            }
            Ok(Err(e)) => {
                let lines = problem_lines(e);
                self.failures.inc();
                for line in &lines {
                    tracing::error!(problem = %line, trigger = why, "reload refused: keeping the running policy");
                }
                Outcome::Kept(lines)
            }
            Err(e) => {
                self.failures.inc();
                tracing::error!(error = %e, trigger = why, "reload task failed: keeping the running policy");
                Outcome::Kept(vec![format!("the reload failed: {e}")])
            }
        };
        notify_systemd(false);
        outcome
    }
}

/// One line per problem, sorted as `hallpass check` prints them.
pub fn problem_lines(e: LoadError) -> Vec<String> {
    match e {
        LoadError::Invalid(mut problems) => {
            problems.sort();
            problems.0.iter().map(ToString::to_string).collect()
        }
        other => vec![other.to_string()],
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RELOADING=1 (with the monotonic time systemd 253+ wants) before a reload,
/// READY=1 after. Outside systemd there is no `$NOTIFY_SOCKET` and nothing is sent.
fn notify_systemd(reloading: bool) {
    use sd_notify::NotifyState;
    let result = if reloading {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
            Err(_) => sd_notify::notify(&[NotifyState::Reloading]),
        }
    } else {
        sd_notify::notify(&[NotifyState::Ready])
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not tell systemd about the reload");
    }
}

/// Reloads on every SIGHUP until the process stops.
pub async fn on_sighup(reloader: Arc<Reloader>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: use `hallpass reload`");
        return;
    };
    while hup.recv().await.is_some() {
        reloader.reload("SIGHUP").await;
    }
}
