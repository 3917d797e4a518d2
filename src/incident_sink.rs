//! `hallpass run`'s block events into the incident store: the proxy's
//! [`EventSink`](proxy::events::EventSink) over an [`incidents::Recorder`], and
//! the handle a policy reload uses to keep the incident rules in step.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proxy::snapshot::Snapshot;

/// Block events go to the incident store (SQLite in the state directory, or
/// PostgreSQL), where the incident rules read them. The proxy acknowledges
/// each event once it is fsync'd to its local journal; its store thread then
/// calls this with large batches from the journal, and keeps them there while
/// the store refuses, so nothing is lost while it is down (see
/// [`proxy::events`]).
pub struct IncidentSink(incidents::Recorder);

/// What a policy reload tells the incident rules.
#[derive(Clone, Debug)]
pub struct IncidentReload {
    updates: incidents::RuleUpdates,
    state_dir: PathBuf,
}

impl IncidentReload {
    /// The rules judge the next batch by the reloaded policy's locked-baseline
    /// categories (a category the school added to `[baseline]` opens `illegal`
    /// incidents from then on) and by the filter check's accounts as they are
    /// now (a file that cannot be read keeps the accounts already known, and says so).
    pub fn on_reload(&self, snap: &Snapshot) {
        self.updates
            .set_locked(incidents::LockedCategories::of(&snap.policy));
        match check_accounts(&self.state_dir) {
            Ok(accounts) => self.updates.set_check_accounts(accounts),
            Err(e) => tracing::warn!(
                error = %e,
                "filter-check logins not read; their accounts stay as they were"
            ),
        }
    }
}

/// The accounts of `filter-check-logins.toml` in the state directory: their
/// probes open no incidents (see [`incidents::CheckAccounts`]).
fn check_accounts(state_dir: &Path) -> anyhow::Result<incidents::CheckAccounts> {
    let logins = filtercheck::logins::load(&filtercheck::logins::file_path(state_dir))?;
    Ok(incidents::CheckAccounts(
        logins.into_values().map(|l| l.account).collect(),
    ))
}

impl proxy::events::EventSink for IncidentSink {
    fn write_batch(
        &mut self,
        events: &[policy::event::BlockEvent],
    ) -> Result<(), proxy::events::EventSinkError> {
        use policy::event::{BlockEvent, BlockKind};
        use std::borrow::Cow;
        // Login failures go to the incident store's own table, where the
        // `access` rule counts them; everything else is a block event. A batch
        // of blocks alone (the common case) is stored as it is, uncopied.
        let (blocks, failures): (Cow<'_, [BlockEvent]>, Vec<incidents::AuthFailure>) =
            if events.iter().any(|e| e.kind == BlockKind::AuthFailure) {
                let (failures, blocks): (Vec<_>, Vec<_>) = events
                    .iter()
                    .cloned()
                    .partition(|e| e.kind == BlockKind::AuthFailure);
                let failures = failures
                    .into_iter()
                    .map(|e| incidents::AuthFailure {
                        time_ms: e.time_ms,
                        client_ip: e.client_ip,
                        who: e.who,
                    })
                    .collect();
                (Cow::Owned(blocks), failures)
            } else {
                (Cow::Borrowed(events), Vec::new())
            };
        self.0
            .record(&blocks, &failures)
            .map(drop)
            .map_err(|e| proxy::events::EventSinkError::Store(e.to_string()))
    }
}

/// The alerter of `[incidents.alerts]` (when a webhook is set) and its counters;
/// stop it after the proxy.
pub struct IncidentAlerts {
    /// The running alerter, if any.
    pub alerter: Option<incidents::Alerter>,
    /// Alerts sent, failed attempts, alerts given up.
    pub metrics: Arc<incidents::AlertMetrics>,
}

impl IncidentAlerts {
    /// Stops the alerter (pending alerts stay in the store for the next start)
    /// and logs its counters.
    pub fn stop(self) {
        if let Some(alerter) = self.alerter {
            alerter.stop();
            let m = &self.metrics;
            let load =
                |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                sent = load(&m.sent),
                failed_attempts = load(&m.failed_attempts),
                given_up = load(&m.given_up),
                "urgent-incident alerter stopped"
            );
        }
    }
}

/// The sink for `[incidents]` of the config, its reload handle, and the
/// alerter that pushes urgent incidents.
pub fn incident_sink(
    snap: &Snapshot,
    state_dir: &Path,
) -> anyhow::Result<(
    IncidentSink,
    IncidentReload,
    IncidentAlerts,
    incidents::StoreLocation,
)> {
    let mut settings: incidents::Settings = snap
        .config
        .incidents
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [incidents]: {e}", snap.config.file))?;
    settings.alerts.resolve_paths(state_dir);
    settings.validate()?;
    let location = settings.location(state_dir)?;
    let locked = incidents::LockedCategories::of(&snap.policy);
    let mut rules = incidents::RuleEngine::new(settings.rules.clone(), locked);
    // A logins file that cannot be read exempts nobody: every block then opens
    // the incidents its rules say (the safe side), and the log says why.
    match check_accounts(state_dir) {
        Ok(accounts) => rules.set_check_accounts(accounts),
        Err(e) => tracing::warn!(
            error = %e,
            "filter-check logins not read; the filter check's probes will open incidents"
        ),
    }
    let store = location.clone();
    let alert_metrics = Arc::new(incidents::AlertMetrics::default());
    let alerter = {
        let location = location.clone();
        incidents::Alerter::start(
            &settings.alerts,
            move || incidents::Store::open(&location),
            Arc::new(incidents::SystemClock),
            alert_metrics.clone(),
        )?
    };
    let mut recorder = incidents::Recorder::new(
        move || incidents::Store::open(&location),
        rules,
        Arc::new(incidents::SystemClock),
        settings.retry_every,
    );
    let alerter = alerter.map(|(alerter, waker)| {
        recorder.set_alert_waker(waker);
        alerter
    });
    let reload = IncidentReload {
        updates: recorder.rule_updates(),
        state_dir: state_dir.to_path_buf(),
    };
    let alerts = IncidentAlerts {
        alerter,
        metrics: alert_metrics,
    };
    Ok((IncidentSink(recorder), reload, alerts, store))
}
