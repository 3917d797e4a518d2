//! Alerts: an urgent incident (kind `illegal`) is pushed at once to the
//! safeguarding lead's webhook and/or mailbox, retried with back-off, and its
//! delivery state is kept on the incident.
//!
//! In: [`AlertSettings`] (`[incidents.alerts]`, `[incidents.alerts.smtp]`), a
//! store opener, a clock. Out: a thread ([`Alerter`]) that delivers each urgent
//! incident's alert as a JSON `POST` and as a plain-text mail (lettre, over
//! STARTTLS or TLS with the server's certificate verified), and [`AlertMetrics`]. Every urgent incident gets an `alerts` row when
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
//! error is kept on the alert in every case. With both channels set, each
//! attempt tries only the channels that have not delivered yet (the alert keeps
//! which have), so a mail server that is down never makes the webhook fire
//! twice, and the alert is `sent` once both have delivered.
use std::path::{Path, PathBuf};
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
    /// Where alerts are POSTed as JSON (`http://host:port/path`). With neither
    /// this nor `smtp`, no alerts are sent, and urgent incidents show their
    /// alert as pending.
    pub webhook: Option<String>,
    /// Where alerts are mailed (`[incidents.alerts.smtp]`).
    pub smtp: Option<SmtpSettings>,
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
            smtp: None,
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

    /// The mailer for `[incidents.alerts.smtp]` (reading its password file), or
    /// why it cannot be used.
    pub fn mailer(&self) -> Result<Option<Mailer>, Error> {
        self.smtp
            .as_ref()
            .map(|s| Mailer::new(s, self.timeout))
            .transpose()
    }

    /// Makes the SMTP settings' relative paths relative to `state_dir` (where
    /// secrets such as the password file are kept).
    pub fn resolve_paths(&mut self, state_dir: &Path) {
        if let Some(smtp) = &mut self.smtp {
            for path in [&mut smtp.password_file, &mut smtp.extra_roots]
                .into_iter()
                .flatten()
            {
                if path.is_relative() {
                    *path = state_dir.join(&*path);
                }
            }
        }
    }
}

/// `[incidents.alerts.smtp]`: the mail server that carries alerts to the
/// safeguarding lead's mailbox.
///
/// ```toml
/// [incidents.alerts.smtp]
/// server = "mail.school.example"        # the name its certificate carries
/// port = 587                            # default: 587 (starttls), 465 (tls), 25 (none)
/// security = "starttls"                 # "starttls" (default), "tls", or "none"
/// from = "hallpass <hallpass@school.example>"
/// to = ["dsl@school.example", "deputy-dsl@school.example"]
/// username = "hallpass"                 # optional; then password_file is needed
/// password_file = "smtp-password"       # in the state directory, mode 0600
/// ```
///
/// `security = "none"` is for a relay on the school network only, and never
/// with a username: credentials do not cross the network in the clear.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The server's host name (verified against its certificate).
    pub server: String,
    /// The port; by default the one `security` implies.
    pub port: Option<u16>,
    /// How the connection is protected.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// The recipients (at least one).
    pub to: Vec<String>,
    /// The login, when the server asks for one.
    pub username: Option<String>,
    /// A file holding the password (first line), readable by its owner only.
    pub password_file: Option<PathBuf>,
    /// PEM certificates trusted besides the public roots (a school's own CA on
    /// an internal mail server).
    pub extra_roots: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// How the SMTP connection is protected.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: a relay on the school network.
    None,
}

/// A ready SMTP transport with its sender and recipients.
pub struct Mailer {
    transport: lettre::SmtpTransport,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Checks the settings and builds the transport; `timeout` bounds each
    /// SMTP command.
    pub fn new(s: &SmtpSettings, timeout: Duration) -> Result<Mailer, Error> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let bad = |why: String| Error::Settings(format!("alerts.smtp: {why}"));
        if s.server.trim().is_empty() {
            return Err(bad("server is empty".into()));
        }
        let from: lettre::message::Mailbox = s
            .from
            .parse()
            .map_err(|e| bad(format!("from `{}` is not a mail address ({e})", s.from)))?;
        if s.to.is_empty() {
            return Err(bad("to names no recipient".into()));
        }
        let to =
            s.to.iter()
                .map(|t| {
                    t.parse()
                        .map_err(|e| bad(format!("to `{t}` is not a mail address ({e})")))
                })
                .collect::<Result<Vec<lettre::message::Mailbox>, Error>>()?;
        let credentials = match (&s.username, &s.password_file) {
            (None, None) => None,
            (Some(_), None) => return Err(bad("username is set but password_file is not".into())),
            (None, Some(_)) => return Err(bad("password_file is set but username is not".into())),
            (Some(user), Some(file)) => {
                if s.security == SmtpSecurity::None {
                    return Err(bad(
                        "security = \"none\" with a username would send the password in the clear: use starttls or tls".into(),
                    ));
                }
                Some(lettre::transport::smtp::authentication::Credentials::new(
                    user.clone(),
                    read_secret(file).map_err(bad)?,
                ))
            }
        };
        let tls = if s.security == SmtpSecurity::None {
            Tls::None
        } else {
            let mut params = TlsParameters::builder(s.server.clone());
            if let Some(path) = &s.extra_roots {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("extra_roots {}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    bad(format!(
                        "extra_roots {}: not a PEM certificate ({e})",
                        path.display()
                    ))
                })?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| bad(format!("TLS set-up: {e}")))?;
            match s.security {
                SmtpSecurity::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            }
        };
        let port = s.port.unwrap_or(match s.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        // `builder_dangerous` only means "no TLS unless asked": TLS is set just above.
        let mut builder = lettre::SmtpTransport::builder_dangerous(s.server.trim())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// Mails one alert; `Err` says why it was not accepted.
    fn send(&self, message: &AlertMessage) -> Result<(), String> {
        use lettre::Transport;
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(format!(
                "[hallpass] Urgent {} incident {}",
                message.kind, message.incident
            ))
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder
            .body(message.mail_body())
            .map_err(|e| format!("mail: {e}"))?;
        self.transport
            .send(&mail)
            .map(drop)
            .map_err(|e| format!("smtp: {e}"))
    }
}

/// The first line of a secret file that only its owner may read.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("password_file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("password_file {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "password_file {} can be read by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    let secret = text.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(secret)
}

/// An alert channel, as recorded in [`AlertStatus::delivered`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The JSON POST.
    Webhook,
    /// The mail.
    Email,
}

impl Channel {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
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
    /// The channels that have delivered it so far.
    pub delivered: Vec<Channel>,
}

impl AlertStatus {
    pub(crate) fn from_db(
        state: &str,
        attempts: i64,
        last_error: Option<String>,
        next_ms: i64,
        sent_ms: Option<i64>,
        delivered: &str,
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
            delivered: delivered
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| match c {
                    "webhook" => Ok(Channel::Webhook),
                    "email" => Ok(Channel::Email),
                    other => Err(Error::BadRow(format!("alert channel `{other}`"))),
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// `delivered` as stored: the channel words, comma-separated.
    pub(crate) fn delivered_db(&self) -> String {
        self.delivered
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
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

impl AlertMessage {
    /// The mail's text: what happened and where to read it, never the URL.
    pub fn mail_body(&self) -> String {
        let whom = match &self.who {
            Some(who) => format!("{who} (group {})", self.group),
            None => format!(
                "the individual is not identifiable (shared login of group {})",
                self.group
            ),
        };
        format!(
            "An urgent incident has been opened by hallpass.\n\n\
             Incident: {number} ({kind})\n\
             Who: {whom}\n\
             Device address: {ip}\n\
             Opened: {opened}\n\n\
             Read it and act on it in the console:\n{link}\n\n\
             The address of the blocked page is not in this message on purpose: the\n\
             console shows it to the designated safeguarding lead only. Do not search\n\
             for it, visit it or pass it on.\n",
            number = self.incident,
            kind = self.kind,
            ip = self.ip.as_deref().unwrap_or("unknown"),
            opened = self.opened,
            link = self.console_link,
        )
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
    /// Starts delivering to the settings' webhook and mail server, or returns
    /// `None` when neither is set. The returned waker goes to the recorder.
    pub fn start(
        settings: &AlertSettings,
        open: impl FnMut() -> Result<Store, Error> + Send + 'static,
        clock: Arc<dyn Clock>,
        metrics: Arc<AlertMetrics>,
    ) -> Result<Option<(Alerter, AlertWaker)>, Error> {
        let webhook = settings.webhook_target()?;
        let mailer = settings.mailer()?;
        if webhook.is_none() && mailer.is_none() {
            return Ok(None);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            settings: settings.clone(),
            channels: Channels { webhook, mailer },
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

/// The configured ways to deliver an alert.
struct Channels {
    webhook: Option<Webhook>,
    mailer: Option<Mailer>,
}

struct Worker {
    settings: AlertSettings,
    channels: Channels,
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
            let result = self.channels.attempt(
                runtime,
                &message,
                self.settings.timeout,
                &mut status.delivered,
            );
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

impl Channels {
    /// Tries every channel that has not delivered yet, recording those that do;
    /// `Err` says why the others did not.
    fn attempt(
        &self,
        runtime: &tokio::runtime::Runtime,
        message: &AlertMessage,
        timeout: Duration,
        delivered: &mut Vec<Channel>,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(webhook) = &self.webhook
            && !delivered.contains(&Channel::Webhook)
        {
            match runtime.block_on(post_json(webhook, message, timeout)) {
                Ok(()) => delivered.push(Channel::Webhook),
                Err(e) => errors.push(format!("webhook: {e}")),
            }
        }
        if let Some(mailer) = &self.mailer
            && !delivered.contains(&Channel::Email)
        {
            match mailer.send(message) {
                Ok(()) => delivered.push(Channel::Email),
                Err(e) => errors.push(format!("email: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
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
