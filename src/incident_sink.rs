//! `hallpass run`'s block events into the incident store: the proxy's
//! [`EventSink`](proxy::events::EventSink) over an [`incidents::Recorder`], and
//! the handle a policy reload uses to keep the incident rules in step.
use std::path::Path;
use std::sync::Arc;

use proxy::snapshot::Snapshot;

/// Block events go to the incident store (SQLite in the state directory, or
/// PostgreSQL), where the incident rules read them. The proxy's event writer
/// acknowledges a batch once this returns, and spools it (fsync'd) when the
/// store fails, so nothing is lost while it is down.
pub struct IncidentSink(incidents::Recorder);

/// What a policy reload tells the incident rules.
#[derive(Clone, Debug)]
pub struct IncidentReload(incidents::LockedUpdates);

impl IncidentReload {
    /// The rules judge the next batch by the reloaded policy's locked-baseline
    /// categories (a category the school added to `[baseline]` opens `illegal`
    /// incidents from then on).
    pub fn on_reload(&self, snap: &Snapshot) {
        self.0.set(incidents::LockedCategories::of(&snap.policy));
    }
}

impl proxy::events::EventSink for IncidentSink {
    fn write_batch(
        &mut self,
        events: &[policy::event::BlockEvent],
    ) -> Result<(), proxy::events::EventSinkError> {
        // Login failures go to the incident store's own table, where the
        // `access` rule counts them; everything else is a block event.
        let (failures, blocks): (Vec<_>, Vec<_>) = events
            .iter()
            .cloned()
            .partition(|e| e.kind == policy::event::BlockKind::AuthFailure);
        let failures: Vec<incidents::AuthFailure> = failures
            .into_iter()
            .map(|e| incidents::AuthFailure {
                time_ms: e.time_ms,
                client_ip: e.client_ip,
                who: e.who,
            })
            .collect();
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
    let settings: incidents::Settings = snap
        .config
        .incidents
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [incidents]: {e}", snap.config.file))?;
    settings.validate()?;
    let location = settings.location(state_dir)?;
    let locked = incidents::LockedCategories::of(&snap.policy);
    let rules = incidents::RuleEngine::new(settings.rules.clone(), locked);
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
    let reload = IncidentReload(recorder.locked_updates());
    let alerts = IncidentAlerts {
        alerter,
        metrics: alert_metrics,
    };
    Ok((IncidentSink(recorder), reload, alerts, store))
}
