//! Filter checks started from the console: the same plan and probes as
//! `hallpass filter-check`, sent through the running proxy, recorded with the
//! technician who started them.
//!
//! In: where the proxy listens and where the suite, the school CA and the
//! probe logins are ([`Setup`], from `hallpass run`), the live policy, the
//! technician's account name. Out: a run recorded in the incident store
//! ([`incidents::Store::record_filter_check`]), or why it could not run.
//!
//! A run is a background task, never part of a request: the page that starts
//! it answers at once and the history shows the run while it goes. One run at
//! a time ([`Runner`]): the check must not load the proxy pupils are using,
//! and two checks at once would only measure each other.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use proxy::snapshot::Snapshot;

use crate::db::Db;

/// What the console needs to run a filter check against its own proxy.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The proxy to probe (a wildcard listen address is dialled on loopback).
    pub proxy: SocketAddr,
    /// The probe suite (`filter-check.toml` beside the policy).
    pub suite: PathBuf,
    /// The school CA's certificate, trusted inside intercepted HTTPS probes.
    pub ca: PathBuf,
    /// The probe logins (`<state_dir>/filter-check-logins.toml`; a missing
    /// file means groups are identified by this machine's subnet only).
    pub logins: PathBuf,
}

impl Setup {
    /// The files `hallpass filter-check` uses by default: the suite beside
    /// `policy_path`, the CA and the logins in `state_dir`; `proxy` is the
    /// proxy's first bound address.
    pub fn new(proxy: SocketAddr, policy_path: &Path, state_dir: &Path) -> Setup {
        Setup {
            proxy: filtercheck::run::dial_address(proxy),
            suite: policy_path
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf)
                .join("filter-check.toml"),
            ca: proxy::ca::ca_files(state_dir).cert,
            logins: filtercheck::logins::file_path(state_dir),
        }
    }
}

/// A run in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// The technician who started it.
    pub by: String,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

/// The last run started from this console, once it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Who started it, and when.
    pub started: Started,
    /// The stored run's number and whether it passed, or why it could not run
    /// (nothing was recorded then).
    pub outcome: Result<(u64, bool), String>,
}

/// What the filter-check page shows about runs started here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The run going now, if any.
    pub running: Option<Started>,
    /// The last run that ended.
    pub last: Option<Finished>,
}

/// Allows one run at a time and remembers how the last one ended.
#[derive(Clone, Default)]
pub struct Runner {
    status: Arc<Mutex<Status>>,
}

impl Runner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    /// Claims the one run slot for `by`, or says who holds it.
    pub fn try_start(&self, by: &str, at_ms: u64) -> Result<Ticket, Started> {
        let mut status = self.lock();
        if let Some(running) = &status.running {
            return Err(running.clone());
        }
        let started = Started {
            by: by.to_string(),
            at_ms,
        };
        status.running = Some(started.clone());
        Ok(Ticket {
            runner: self.clone(),
            started: Some(started),
        })
    }
}

/// The run slot, held while a run goes. Dropped without [`Ticket::finish`]
/// (the task panicked or was cancelled), it frees the slot and says so.
pub struct Ticket {
    runner: Runner,
    started: Option<Started>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("started", &self.started)
            .finish()
    }
}

impl Ticket {
    /// Frees the slot with the run's outcome.
    pub fn finish(mut self, outcome: Result<(u64, bool), String>) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Result<(u64, bool), String>) {
        if let Some(started) = self.started.take() {
            let mut status = self.runner.lock();
            status.running = None;
            status.last = Some(Finished { started, outcome });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end(Err("the check stopped before it finished".into()));
    }
}

/// How long reaching the proxy may take before the run gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the suite through the proxy as every group that can be identified
/// (a login in the logins file, or this machine's subnet), exactly as
/// `hallpass filter-check --record` does, and records it as run by `by`.
/// Returns the stored run's number and whether it passed.
pub async fn run(
    setup: &Setup,
    snap: Arc<Snapshot>,
    by: &str,
    db: &Db,
) -> Result<(u64, bool), String> {
    let files = setup.clone();
    let (suite_text, logins, ca_pem) = tokio::task::spawn_blocking(move || read_files(&files))
        .await
        .map_err(|e| format!("reading the suite: {e}"))??;
    let suite_name = setup.suite.display().to_string();
    let suite = filtercheck::Suite::parse(&suite_name, &suite_text).map_err(|e| e.to_string())?;
    let problems = suite.check_against(&snap.policy);
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let tls = filtercheck::probe::tls_config(&ca_pem)
        .map_err(|e| format!("{}: {e}", setup.ca.display()))?;
    let proxy = setup.proxy;
    let client_ip = tokio::time::timeout(CONNECT_TIMEOUT, filtercheck::run::local_address(proxy))
        .await
        .map_err(|_| format!("the proxy at {proxy} did not answer"))?
        .map_err(|e| format!("cannot reach the proxy at {proxy}: {e}"))?;
    let (plans, skipped) = filtercheck::plan(&suite, &snap.policy, &[], &logins, client_ip)
        .map_err(|e| e.to_string())?;
    let target = filtercheck::Target::new(proxy, tls);
    let report = filtercheck::run(&suite, &plans, skipped, &target).await;
    let record = report.to_record(by, &suite_name, &snap.policy_path.display().to_string());
    let passed = record.passed;
    let id = db
        .run(move |store| store.record_filter_check(&record))
        .await
        .map_err(|e| format!("recording the run: {e}"))?;
    Ok((id, passed))
}

type Files = (
    String,
    std::collections::BTreeMap<String, filtercheck::logins::Login>,
    Vec<u8>,
);

fn read_files(setup: &Setup) -> Result<Files, String> {
    let suite = std::fs::read_to_string(&setup.suite)
        .map_err(|e| format!("reading the probe suite {}: {e}", setup.suite.display()))?;
    let logins = filtercheck::logins::load(&setup.logins).map_err(|e| e.to_string())?;
    // Without the school CA, intercepted HTTPS probes fail (and say so), as
    // with `hallpass filter-check`.
    let ca = match std::fs::read(&setup.ca) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("reading {}: {e}", setup.ca.display())),
    };
    Ok((suite, logins, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_at_a_time_and_the_outcome_is_kept() {
        let runner = Runner::default();
        let ticket = runner.try_start("t.tech", 5).expect("free");
        let busy = runner.try_start("a.other", 6).expect_err("busy");
        assert_eq!(busy.by, "t.tech");
        assert_eq!(runner.status().running.map(|s| s.at_ms), Some(5));
        ticket.finish(Ok((7, true)));
        let status = runner.status();
        assert!(status.running.is_none());
        assert_eq!(status.last.map(|l| l.outcome), Some(Ok((7, true))));
        // A run that never finishes (its task panicked) frees the slot too.
        drop(runner.try_start("a.other", 8).expect("free again"));
        let last = runner.status().last.expect("ended");
        assert_eq!(last.started.by, "a.other");
        assert!(last.outcome.is_err());
        assert!(runner.try_start("t.tech", 9).is_ok());
    }
}
