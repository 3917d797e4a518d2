//! `/metrics` on the console listener: the Prometheus text exposition of the
//! process's registry (the proxy's request metrics and the reload metrics).
//!
//! Names follow `hallpass_*` with the unit in the name; labels stay
//! low-cardinality (verdict, category, band, reason), never a host, user or IP.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use proxy::metrics::ProxyMetrics;
use proxy::prometheus::{Encoder, IntCounter, Registry, TextEncoder};

/// The route serving `registry` at `/metrics`; `proxy` is refreshed first
/// (queue depth, spool size), and the alerter's counters are copied in.
pub fn router(
    registry: Registry,
    proxy: Arc<ProxyMetrics>,
    alerts: Arc<incidents::AlertMetrics>,
) -> anyhow::Result<axum::Router> {
    let alerts = Arc::new(AlertExport::new(&registry, alerts)?);
    Ok(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            let proxy = proxy.clone();
            let alerts = alerts.clone();
            async move {
                alerts.refresh();
                exposition(&registry, &proxy)
            }
        }),
    ))
}

/// Urgent-incident alerts (`[incidents.alerts]`), counted by the alerter's
/// own atomics and copied into Prometheus counters at each scrape.
struct AlertExport {
    source: Arc<incidents::AlertMetrics>,
    sent: IntCounter,
    failed_attempts: IntCounter,
    given_up: IntCounter,
}

impl AlertExport {
    fn new(registry: &Registry, source: Arc<incidents::AlertMetrics>) -> anyhow::Result<Self> {
        let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(AlertExport {
            source,
            sent: counter(
                "hallpass_alerts_sent_total",
                "Urgent-incident alerts delivered to the webhook.",
            )?,
            failed_attempts: counter(
                "hallpass_alert_failed_attempts_total",
                "Alert deliveries that failed (each is retried with back-off).",
            )?,
            given_up: counter(
                "hallpass_alerts_given_up_total",
                "Alerts that failed every attempt (the incident shows the last error).",
            )?,
        })
    }

    fn refresh(&self) {
        let copy = |c: &IntCounter, from: &AtomicU64| {
            let now = from.load(Ordering::Relaxed);
            c.inc_by(now.saturating_sub(c.get()));
        };
        copy(&self.sent, &self.source.sent);
        copy(&self.failed_attempts, &self.source.failed_attempts);
        copy(&self.given_up, &self.source.given_up);
    }
}

fn exposition(registry: &Registry, proxy: &ProxyMetrics) -> axum::response::Response {
    proxy.refresh();
    let encoder = TextEncoder::new();
    let mut text = Vec::new();
    match encoder.encode(&registry.gather(), &mut text) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be encoded");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            )
                .into_response()
        }
    }
}
