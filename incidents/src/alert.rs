//! Alerts: an urgent incident (kind `illegal`) is pushed at once to the
//! safeguarding lead's webhook, retried with back-off, and its delivery state is
//! kept on the incident.
//!
//! In: [`AlertSettings`] (`[incidents.alerts]`), a store opener, a clock. Out: a
//! thread ([`Alerter`]) that delivers each urgent incident's alert as a JSON
//! `POST`, and [`AlertMetrics`]. Every urgent incident gets an `alerts` row when
//! it is opened (a trigger of migration 0002), so an alert outlives a restart
//! and nothing on the event path waits for a delivery: the recorder only
//! [`wake`](AlertWaker::wake)s the alerter, which never blocks.
//!
//! The alert never carries the incident's URL (the URL of an illegal incident is
//! for the safeguarding lead, in the console, only): it says that an urgent
//! incident exists, its number, kind, group or account, address, time and a link
//! to it in the console.
//!
//! Delivery: a `2xx` answer is delivered; anything else (refused, timeout,
//! `5xx`, `4xx`) is an attempt that failed, retried after `first_retry`,
//! doubling, up to `max_attempts`, after which the alert is `failed`. The last
//! error is kept on the alert in every case.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;
use crate::error::Error;
use crate::model::Incident;
use crate::store::Store;

/// `[incidents.alerts]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Where alerts are POSTed as JSON (`http://host:port/path`). None: no alerts
    /// are sent, and urgent incidents show their alert as pending.
    pub webhook: Option<String>,
    /// The console's address, for the link in the alert.
    pub console_url: String,
    /// Delivery attempts before the alert is `failed` (default 8).
    pub max_attempts: u32,
    /// The wait after the first failure, doubled after each (default 5 s).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub first_retry: Duration,
    /// One attempt's deadline: connect, send and answer (default 10 s).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub timeout: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook: None,
            console_url: "http://127.0.0.1:8080".into(),
            max_attempts: 8,
            first_retry: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl AlertSettings {
    /// The webhook's parsed address, or why it cannot be used.
    pub fn webhook_target(&self) -> Result<Option<Webhook>, Error> {
        self.webhook.as_deref().map(Webhook::parse).transpose()
    }
}

/// A webhook address: plain HTTP to a relay on the school network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// `host:port` to connect to.
    pub authority: String,
    /// The request target.
    pub uri: http::Uri,
}

impl Webhook {
    /// Parses `http://host[:port]/path`. Refused: other schemes (an `https`
    /// webhook needs a TLS client this build does not carry; point it at a
    /// relay on the LAN), userinfo, and anything that is not a URL.
    pub fn parse(text: &str) -> Result<Webhook, Error> {
        let bad = |why: &str| Error::Settings(format!("alerts.webhook `{text}`: {why}"));
        let uri: http::Uri = text.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("expected an http:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not allowed"));
        }
        let port = authority.port_u16().unwrap_or(80);
        Ok(Webhook {
            authority: format!("{}:{port}", authority.host()),
            uri,
        })
    }
}

/// Where an urgent incident's alert is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AlertState {
    /// Not delivered yet (waiting for its next attempt, or no webhook set).
    Pending,
    /// Delivered.
    Sent,
    /// Every attempt failed.
    Failed,
}

impl AlertState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Sent => "sent",
            AlertState::Failed => "failed",
        }
    }
}

/// An urgent incident's alert as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertStatus {
    /// Pending, sent or failed.
    pub state: AlertState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (ms since the epoch), while pending.
    pub next_ms: u64,
    /// When it was delivered.
    pub sent_ms: Option<u64>,
}

impl AlertStatus {
    pub(crate) fn from_db(
        state: &str,
        attempts: i64,
        last_error: Option<String>,
        next_ms: i64,
        sent_ms: Option<i64>,
    ) -> Result<AlertStatus, Error> {
        let state = match state {
            "pending" => AlertState::Pending,
            "sent" => AlertState::Sent,
            "failed" => AlertState::Failed,
            other => return Err(Error::BadRow(format!("alert state `{other}`"))),
        };
        Ok(AlertStatus {
            state,
            attempts: u32::try_from(attempts).unwrap_or(0),
            last_error,
            next_ms: crate::store::from_db(next_ms),
            sent_ms: sent_ms.map(crate::store::from_db),
        })
    }
}

/// Counters of the alerter (another part wires them to Prometheus as
/// `hallpass_incident_alerts_{sent,failed_attempts,given_up}_total`).
#[derive(Debug, Default)]
pub struct AlertMetrics {
    /// Alerts delivered.
    pub sent: AtomicU64,
    /// Attempts that failed (each is retried until `max_attempts`).
    pub failed_attempts: AtomicU64,
    /// Alerts that used up every attempt.
    pub given_up: AtomicU64,
}

/// Tells the alerter that an urgent incident may be waiting. Never blocks.
#[derive(Clone, Debug)]
pub struct AlertWaker(Option<SyncSender<()>>);

impl AlertWaker {
    /// A waker that wakes nothing (no alerter running).
    pub fn none() -> AlertWaker {
        AlertWaker(None)
    }

    /// Wakes the alerter (a full wake-up queue means it is awake already).
    pub fn wake(&self) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(());
        }
    }
}

/// The alert as POSTed: no URL, ever.
#[derive(Debug, serde::Serialize)]
pub struct AlertMessage {
    /// Always `urgent-incident`.
    pub alert: &'static str,
    /// The incident number.
    pub incident: u64,
    /// Its kind (`illegal`, ...).
    pub kind: String,
    /// The account, when one is known.
    pub who: Option<String>,
    /// The group (a shared login names only the group).
    pub group: String,
    /// The device's address.
    pub ip: Option<String>,
    /// Whether an individual is identifiable.
    pub identifiable: bool,
    /// When it was opened (ms since the epoch).
    pub opened_ms: u64,
    /// When it was opened, readable.
    pub opened: String,
    /// Where the safeguarding lead reads it.
    pub console_link: String,
    /// One line for a chat or mail client.
    pub text: String,
}

impl AlertMessage {
    /// The alert for an incident; its URL and description are left out on purpose.
    pub fn of(incident: &Incident, console_url: &str) -> AlertMessage {
        let opened = crate::clock::format_ms(incident.opened_ms);
        let console_link = format!(
            "{}/incidents/{}",
            console_url.trim_end_matches('/'),
            incident.number
        );
        let whom = match &incident.subject.who {
            Some(who) => format!("{who} ({})", incident.subject.group),
            None => format!(
                "group {} (no individual identifiable)",
                incident.subject.group
            ),
        };
        AlertMessage {
            alert: "urgent-incident",
            incident: incident.number,
            kind: incident.kind.as_str().to_string(),
            who: incident.subject.who.clone(),
            group: incident.subject.group.clone(),
            ip: incident.subject.ip.clone(),
            identifiable: incident.subject.identifiable,
            opened_ms: incident.opened_ms,
            text: format!(
                "Urgent {} incident {} for {whom} at {opened}: see {console_link}",
                incident.kind.as_str(),
                incident.number
            ),
            opened,
            console_link,
        }
    }
}

/// The alerter thread; [`stop`](Alerter::stop) ends it.
#[derive(Debug)]
pub struct Alerter {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: SyncSender<()>,
}

impl Alerter {
    /// Starts delivering to the settings' webhook, or returns `None` when none is
    /// set. The returned waker goes to the recorder.
    pub fn start(
        settings: &AlertSettings,
        open: impl FnMut() -> Result<Store, Error> + Send + 'static,
        clock: Arc<dyn Clock>,
        metrics: Arc<AlertMetrics>,
    ) -> Result<Option<(Alerter, AlertWaker)>, Error> {
        let Some(webhook) = settings.webhook_target()? else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            settings: settings.clone(),
            webhook,
            open: Box::new(open),
            store: None,
            clock,
            metrics,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("hallpass-alerts".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the alerter: {e}")))?;
        Ok(Some((
            Alerter {
                thread: Some(thread),
                stop,
                wake: tx.clone(),
            },
            AlertWaker(Some(tx)),
        )))
    }

    /// Stops the thread after the current attempt (pending alerts stay pending
    /// in the store for the next start).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the alerter panicked");
        }
    }
}

/// How often the alerter looks for due alerts without a wake-up (retries).
const POLL: Duration = Duration::from_millis(500);

struct Worker {
    settings: AlertSettings,
    webhook: Webhook,
    open: Box<dyn FnMut() -> Result<Store, Error> + Send>,
    store: Option<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<AlertMetrics>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, rx: Receiver<()>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "alerter cannot start: urgent incidents stay pending");
                return;
            }
        };
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.deliver_due(&runtime) {
                tracing::warn!(error = %e, "alerter: store unavailable; will retry");
                self.store = None;
            }
            match rx.recv_timeout(POLL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn deliver_due(&mut self, runtime: &tokio::runtime::Runtime) -> Result<(), Error> {
        if self.store.is_none() {
            self.store = Some((self.open)()?);
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let due = store.due_alerts(self.clock.now_ms(), 32)?;
        for number in due {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(incident) = store.incident_for_alert(number)? else {
                continue;
            };
            let Some(mut status) = store.alert_status(number)? else {
                continue;
            };
            let message = AlertMessage::of(&incident, &self.settings.console_url);
            let result =
                runtime.block_on(post_json(&self.webhook, &message, self.settings.timeout));
            let now = self.clock.now_ms();
            status.attempts += 1;
            match result {
                Ok(()) => {
                    status.state = AlertState::Sent;
                    status.sent_ms = Some(now);
                    self.metrics.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(incident = number, "urgent incident alert delivered");
                }
                Err(why) => {
                    self.metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(incident = number, attempt = status.attempts, error = %why, "urgent incident alert failed");
                    status.last_error = Some(why);
                    if status.attempts >= self.settings.max_attempts {
                        status.state = AlertState::Failed;
                        self.metrics.given_up.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            incident = number,
                            "urgent incident alert given up: tell the safeguarding lead another way"
                        );
                    } else {
                        let factor = 1u32 << (status.attempts - 1).min(16);
                        let wait = self.settings.first_retry.saturating_mul(factor);
                        status.next_ms = now.saturating_add(wait.as_millis() as u64);
                    }
                }
            }
            store.save_alert(number, &status)?;
        }
        Ok(())
    }
}

/// One POST of the alert; `Err` says why it was not delivered.
async fn post_json(
    webhook: &Webhook,
    message: &AlertMessage,
    limit: Duration,
) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&webhook.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", webhook.authority))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(conn);
        let request = http::Request::post(webhook.uri.clone())
            .header(
                http::header::HOST,
                webhook.uri.authority().map_or("", |a| a.as_str()),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let status = response.status();
        // Read the answer so the connection ends cleanly; its content is not used.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {status}"))
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", limit.as_secs_f32())),
    }
}
