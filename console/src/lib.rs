//! The staff console (`[console]` in `hallpass.toml`): the web pages the
//! e-safety officer, safeguarding lead, principal, governors and technician
//! use instead of a terminal.
//!
//! `hallpass run` binds it beside the proxy listeners ([`Console::bind`]) and
//! serves one [`axum::Router`]: [`app`] (the pages) merged with whatever else
//! the listener carries (`/metrics`).
//!
//! In: the `[console]` table ([`Settings`]), the live policy snapshot, the
//! accounts verifier, the incident store and the proxy that filter checks
//! probe ([`Context`]). Out: server-rendered HTML (maud: every value
//! escaped), inline SVG charts, CSV; filter checks run in the background
//! ([`checks`]) and recorded in the incident store.
//!
//! Security, in one place each:
//! - sign-in with the staff member's own account (argon2id, the accounts
//!   crate's throttle); only accounts in `[console.roles]` may sign in
//!   ([`pages::login`]);
//! - server-side sessions with random 256-bit ids, `HttpOnly`,
//!   `SameSite=Strict`, `Secure` and `__Host-` over TLS, idle timeout and
//!   lifetime ([`session`]);
//! - the CSRF token of every POST, body limits and the security headers
//!   (strict CSP, no framing, no caching) in one middleware ([`web::guard`]);
//! - roles: pages check them ([`web::Signed::require`]); the incident
//!   workflow's roles and the illegal-URL restriction are enforced by the
//!   incident store itself, which also audits every view of an illegal incident;
//! - TLS whenever the console listens beyond loopback ([`Settings`] refuses
//!   otherwise).
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::routing::{get, post};
use proxy::arc_swap::ArcSwap;
use proxy::snapshot::Snapshot;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

pub mod chart;
pub mod checks;
pub mod db;
pub mod pages;
pub mod session;
pub mod settings;
pub mod web;

pub use settings::{Settings, TlsSettings};

/// What the console reads: the live policy, the accounts, the incident store,
/// and where filter checks are sent.
#[derive(Clone)]
pub struct Context {
    /// The proxy's current policy and lists (reloads show at once).
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// The proxy's login verifier: the same accounts file and throttle.
    pub verifier: Arc<accounts::Verifier>,
    /// Where the incident store is.
    pub store: incidents::StoreLocation,
    /// The proxy to run filter checks against and the files they need;
    /// `None` when the console is not serving beside a proxy.
    pub filter_check: Option<checks::Setup>,
}

/// The console's shared state.
pub struct App {
    /// `[console]`.
    pub settings: Settings,
    /// Live sessions.
    pub sessions: session::Sessions,
    /// Policy, accounts, store.
    pub ctx: Context,
    /// The store connection.
    pub db: db::Db,
    /// Whether the console is served over TLS (decides the cookie's form).
    pub tls: bool,
    /// Filter checks started from the console (one at a time).
    pub checks: checks::Runner,
}

/// The console's pages as a router, with the session and CSRF middleware and
/// the security headers on every route (merge other routes before serving).
pub fn app(settings: &Settings, ctx: Context) -> Router {
    let state = Arc::new(App {
        sessions: session::Sessions::new(settings.idle_timeout, settings.session_lifetime),
        db: db::Db::new(ctx.store.clone()),
        tls: settings.tls.is_some(),
        checks: checks::Runner::default(),
        settings: settings.clone(),
        ctx,
    });
    Router::new()
        .route("/", get(pages::dashboard::show))
        .route("/login", get(pages::login::show).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/blocks", get(pages::blocks::show))
        .route("/blocks.csv", get(pages::blocks::csv))
        .route("/incidents", get(pages::incidents::list))
        .route("/requests", get(pages::incidents::requests))
        .route("/incidents/{number}", get(pages::incidents::detail))
        .route("/incidents/{number}/{step}", post(pages::incidents::act))
        .route("/filter-checks", get(pages::filter_checks::list))
        .route("/filter-checks/run", post(pages::filter_checks::run_now))
        .route("/filter-checks/{id}", get(pages::filter_checks::detail))
        .route(
            "/policy",
            get(pages::policy_view::show).post(pages::policy_view::explain),
        )
        .route("/static/console.css", get(pages::stylesheet))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            web::AppError::new(axum::http::StatusCode::NOT_FOUND, "no such page")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::guard,
        ))
        .with_state(state)
}

/// The client's address, as handlers see it (`ConnectInfo<Peer>`), over plain
/// TCP or TLS alike.
#[derive(Copy, Clone, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// Folders that `[console]` paths resolve against.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// The folder of `hallpass.toml` (`[console.tls]` cert/key paths).
    pub config_dir: PathBuf,
    /// The state directory (the hallpass CA).
    pub state_dir: PathBuf,
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once, per listener.
const MAX_HANDSHAKES: usize = 256;

/// The console's bound listeners.
pub struct Console {
    listeners: Vec<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Console {
    /// Loads the TLS certificate (when `[console.tls]` is set) and binds
    /// every configured address, before the proxy starts serving, so a port in
    /// use or a bad certificate stops start-up with a clear error.
    pub async fn bind(settings: &Settings, dirs: &Dirs) -> anyhow::Result<Console> {
        let tls = match &settings.tls {
            Some(t) => Some(Arc::new(tls_config(t, dirs)?)),
            None => None,
        };
        let mut listeners = Vec::with_capacity(settings.listen.len());
        for addr in &settings.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("[console] listen {addr}: {e}"))?;
            listeners.push(listener);
        }
        Ok(Console { listeners, tls })
    }

    /// The bound addresses (with the port the OS chose for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves `router` on every listener until `shutdown` completes, then lets
    /// requests in flight finish.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::with_capacity(self.listeners.len());
        for listener in self.listeners {
            let mut stop = stop_rx.clone();
            let app = router.clone().into_make_service_with_connect_info::<Peer>();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tasks.push(match &self.tls {
                None => tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }),
                Some(config) => {
                    let tls = TlsListener::new(listener, config.clone())?;
                    tokio::spawn(async move {
                        axum::serve(tls, app).with_graceful_shutdown(stopped).await
                    })
                }
            });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for task in tasks {
            task.await??;
        }
        Ok(())
    }
}

/// The console's TLS server config: HTTP/1.1, the certificate from files or
/// minted from the hallpass CA for `[console.tls] name`.
fn tls_config(settings: &TlsSettings, dirs: &Dirs) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (chain, key) = match settings {
        TlsSettings::HallpassCa { name } => {
            let host = policy::host::canonicalize(name).map_err(|e| {
                anyhow::anyhow!("[console.tls] name `{name}` is not a host name: {e}")
            })?;
            let ca = proxy::ca::CertificateAuthority::load(&dirs.state_dir).map_err(|e| {
                anyhow::anyhow!(
                    "[console.tls] name: the hallpass CA in {} cannot be used: {e}",
                    dirs.state_dir.display()
                )
            })?;
            // Minted at every start; 397 days is the most browsers accept.
            ca.mint(&host, 397)
                .map_err(|e| anyhow::anyhow!("[console.tls] minting for `{name}`: {e}"))?
        }
        TlsSettings::Files { cert, key } => {
            let cert = resolve(&dirs.config_dir, cert);
            let key = resolve(&dirs.config_dir, key);
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("[console.tls] cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                anyhow::bail!(
                    "[console.tls] cert {}: no certificate in the file",
                    cert.display()
                );
            }
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| anyhow::anyhow!("[console.tls] key {}: {e}", key.display()))?;
            (chain, key)
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| anyhow::anyhow!("[console.tls]: the certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// A TCP listener whose connections come out TLS-terminated. Handshakes run
/// in their own tasks (bounded in number and time), so a slow client never
/// holds up the next one.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> anyhow::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "console: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Too many handshakes in flight: drop this connection.
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "console: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            acceptor: task,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor only stops when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
