//! The recorder: a store connection that comes back by itself, plus the rules.
//!
//! In: batches of [`BlockEvent`]s and [`AuthFailure`]s. Out: the batch committed
//! with the incidents the rules open ([`RecordStats`]), or an error. When the
//! store fails, the connection is dropped and reopened on a later call, at most
//! once per `retry_every`; in between, calls fail at once with
//! [`Error::StoreDown`] instead of waiting on a dead server.
//!
//! The intake's writer thread records through one of these. A caller with its
//! own queue (the proxy's `EventSink`, which is called on its writer thread and
//! spools on error) can use one directly:
//!
//! ```text
//! struct IncidentSink(incidents::Recorder);
//! impl proxy::events::EventSink for IncidentSink {
//!     fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
//!         self.0.record(events, &[]).map(drop).map_err(|e| EventSinkError::Store(e.to_string()))
//!     }
//! }
//! ```
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use policy::event::BlockEvent;

use crate::clock::Clock;
use crate::error::Error;
use crate::model::AuthFailure;
use crate::rules::{CheckAccounts, LockedCategories, RuleEngine};
use crate::store::{RecordStats, Store};

/// Opens the store; called again after every failure.
pub type StoreOpener = Box<dyn FnMut() -> Result<Store, Error> + Send>;

/// A self-reconnecting store plus the incident rules.
pub struct Recorder {
    open: StoreOpener,
    store: Option<Store>,
    retry_at: Instant,
    retry_every: Duration,
    rules: RuleEngine,
    clock: Arc<dyn Clock>,
    failures: u64,
    updates: RuleUpdates,
    alerts: crate::alert::AlertWaker,
}

/// A handle that replaces what a [`Recorder`]'s rules take from outside (the
/// policy's locked categories, the filter check's accounts) from another thread
/// (the reload), taking effect from the recorder's next batch.
///
/// The recorder itself lives on the event writer's thread, so a reload cannot
/// reach it directly; it leaves the new values here instead.
#[derive(Clone, Debug, Default)]
pub struct RuleUpdates(Arc<Mutex<PendingUpdates>>);

#[derive(Debug, Default)]
struct PendingUpdates {
    locked: Option<LockedCategories>,
    check_accounts: Option<CheckAccounts>,
}

impl RuleUpdates {
    /// The categories the next batch is judged by.
    pub fn set_locked(&self, locked: LockedCategories) {
        self.pending().locked = Some(locked);
    }

    /// The filter check's accounts from the next batch on.
    pub fn set_check_accounts(&self, accounts: CheckAccounts) {
        self.pending().check_accounts = Some(accounts);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingUpdates> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, rules: &mut RuleEngine) {
        let mut pending = self.pending();
        if let Some(locked) = pending.locked.take() {
            rules.set_locked(locked);
        }
        if let Some(accounts) = pending.check_accounts.take() {
            rules.set_check_accounts(accounts);
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("connected", &self.store.is_some())
            .field("failures", &self.failures)
            .finish()
    }
}

impl Recorder {
    /// A recorder that opens the store on first use.
    pub fn new(
        open: impl FnMut() -> Result<Store, Error> + Send + 'static,
        rules: RuleEngine,
        clock: Arc<dyn Clock>,
        retry_every: Duration,
    ) -> Recorder {
        Recorder {
            open: Box::new(open),
            store: None,
            retry_at: Instant::now(),
            retry_every,
            rules,
            clock,
            failures: 0,
            updates: RuleUpdates::default(),
            alerts: crate::alert::AlertWaker::none(),
        }
    }

    /// Replaces the locked categories after a policy reload.
    pub fn set_locked(&mut self, locked: LockedCategories) {
        self.rules.set_locked(locked);
    }

    /// A handle through which another thread replaces the locked categories
    /// and the filter check's accounts (see [`RuleUpdates`]).
    pub fn rule_updates(&self) -> RuleUpdates {
        self.updates.clone()
    }

    /// Wakes this alerter whenever a batch opens an incident (it delivers the
    /// urgent ones; waking never blocks the writer).
    pub fn set_alert_waker(&mut self, waker: crate::alert::AlertWaker) {
        self.alerts = waker;
    }

    /// Store failures so far (failed opens and failed batches).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether a connection is open (it may still fail on the next call).
    pub fn is_connected(&self) -> bool {
        self.store.is_some()
    }

    /// Whether a call now would try the store (connected, or a retry is due).
    pub fn is_ready(&self) -> bool {
        self.store.is_some() || Instant::now() >= self.retry_at
    }

    /// Commits a batch and the incidents it opens, in one transaction.
    pub fn record(
        &mut self,
        events: &[BlockEvent],
        auth: &[AuthFailure],
    ) -> Result<RecordStats, Error> {
        self.updates.apply(&mut self.rules);
        let now = self.clock.now_ms();
        self.connect()?;
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| Error::Internal("store vanished after connecting".into()))?;
        let result = store.record(events, auth, &mut self.rules, now);
        match &result {
            Ok(stats) if stats.incidents_opened > 0 => self.alerts.wake(),
            Ok(_) => {}
            Err(e) if e.is_store_failure() => self.fail(),
            Err(_) => {}
        }
        result
    }

    fn connect(&mut self) -> Result<(), Error> {
        if self.store.is_none() {
            if Instant::now() < self.retry_at {
                return Err(Error::StoreDown);
            }
            match (self.open)() {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    tracing::warn!(error = %e, "incident store unavailable");
                    self.fail();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.failures += 1;
        self.store = None;
        self.retry_at = Instant::now() + self.retry_every;
    }
}
