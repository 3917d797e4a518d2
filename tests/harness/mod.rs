//! The proxy test harness: a real proxy on `127.0.0.1:0`, local HTTP and HTTPS
//! origins that record what reached them, a stub resolver, and clients that
//! speak through the proxy the way a browser does (absolute-form for HTTP,
//! CONNECT then TLS trusting the school CA for HTTPS) or send raw bytes.
//!
//! Only loopback addresses are used: the origins listen on 127.0.0.2 and
//! 127.0.0.3, and the test config opts in exactly those sockets through
//! `dangerous_allow_destinations` (the way a school would open an internal
//! server), never through a compile-time switch.
#![allow(dead_code)]

pub mod origin;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use policy::event::BlockEvent;
use proxy::arc_swap::ArcSwap;
use proxy::ca::CertificateAuthority;
use proxy::events::{EventSink, EventSinkError};
use proxy::{ProxyBuilder, Resolve, Settings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub use origin::{Origin, OriginCa};

/// The names the stub resolver knows, and where they point.
pub const ORIGIN_IP: [u8; 4] = [127, 0, 0, 2];
/// Where the origin with an untrusted certificate lives.
pub const BAD_ORIGIN_IP: [u8; 4] = [127, 0, 0, 3];

/// Every test name that resolves to the main origins.
pub const ORIGIN_NAMES: &[&str] = &[
    "allowed.test",
    "blocked.test",
    "games.test",
    "splice.test",
    "www.google.com",
    "www.bing.com",
    "duckduckgo.com",
    "www.youtube.com",
];

/// Maps test names to loopback addresses; anything else does not resolve.
pub struct StubResolver(HashMap<String, Vec<IpAddr>>);

impl StubResolver {
    fn new() -> Self {
        let mut map = HashMap::new();
        for name in ORIGIN_NAMES {
            map.insert(name.to_string(), vec![IpAddr::from(ORIGIN_IP)]);
        }
        map.insert("badcert.test".into(), vec![IpAddr::from(BAD_ORIGIN_IP)]);
        // Names that point where the proxy must never go.
        map.insert(
            "internal.test".into(),
            vec!["10.0.0.1".parse().expect("ip")],
        );
        map.insert(
            "loopback.test".into(),
            vec!["127.0.0.1".parse().expect("ip")],
        );
        map.insert(
            "mixed.test".into(),
            vec![
                IpAddr::from(ORIGIN_IP),
                "169.254.169.254".parse().expect("ip"),
            ],
        );
        StubResolver(map)
    }
}

impl Resolve for StubResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        let found = self.0.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such test name"))
        })
    }
}

/// Collects block events in memory.
#[derive(Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<BlockEvent>>>);

impl EventSink for MemorySink {
    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
        self.0.lock().expect("sink lock").extend_from_slice(events);
        Ok(())
    }
}

/// What a test may change in `[proxy]` of the test config (TOML lines).
#[derive(Clone, Default)]
pub struct Options {
    /// Extra lines appended to `[proxy]`.
    pub proxy_toml: String,
    /// The policy file, when not [`POLICY`].
    pub policy: Option<String>,
    /// Use the proxy's default event sink (`events.jsonl` in the state
    /// directory) instead of collecting events in memory.
    pub events_to_file: bool,
    /// Proxy logins: accounts written to `state/accounts.toml` before start and
    /// a verifier with these settings (fast argon2 for tests).
    pub accounts: Option<TestAccounts>,
    /// Sockets of a test's own origins, opened like the harness's origins
    /// through `dangerous_allow_destinations`.
    pub destinations: Vec<SocketAddr>,
}

/// Accounts for a test proxy.
#[derive(Clone)]
pub struct TestAccounts {
    /// `(name, group, password)` of each account.
    pub accounts: Vec<(String, String, String)>,
    /// Verifier settings; `hash` is used for the stored hashes too.
    pub settings: accounts::Settings,
    /// How often the proxy checks the accounts file.
    pub poll: Duration,
}

/// argon2id parameters far below production's, so tests hash in microseconds.
/// Only ever used by tests: `[accounts]` refuses anything under OWASP's.
pub const FAST_HASH: accounts::HashParams = accounts::HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

impl TestAccounts {
    /// These accounts, fast hashes, a 200 ms file poll, otherwise the defaults.
    pub fn new(list: &[(&str, &str, &str)]) -> TestAccounts {
        let settings = accounts::Settings {
            hash: FAST_HASH,
            ..accounts::Settings::default()
        };
        TestAccounts {
            accounts: list
                .iter()
                .map(|(n, g, p)| (n.to_string(), g.to_string(), p.to_string()))
                .collect(),
            settings,
            poll: Duration::from_millis(200),
        }
    }
}

impl Options {
    /// Extra `[proxy]` lines.
    pub fn proxy(lines: &str) -> Options {
        Options {
            proxy_toml: lines.to_string(),
            ..Options::default()
        }
    }
}

/// A running proxy with its origins.
pub struct TestProxy {
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The plain-HTTP origin.
    pub http: Origin,
    /// The HTTPS origin (certificate from the origin CA, trusted via `upstream_roots`).
    pub https: Origin,
    /// An HTTPS origin whose certificate no one trusts.
    pub bad: Origin,
    /// The school (interception) CA's certificate in PEM.
    pub school_ca_pem: String,
    /// The origin CA's certificate in PEM (what a spliced tunnel shows).
    pub origin_ca_pem: String,
    /// The origin CA (the proxy trusts it upstream): leaves for a test's own origins.
    pub origin_ca: Arc<OriginCa>,
    /// Block events the proxy emitted.
    pub events: MemorySink,
    /// The proxy's event-path counters.
    pub event_counters: Arc<proxy::events::EventCounters>,
    /// The config folder.
    pub dir: tempfile::TempDir,
    /// The running proxy's snapshot handle (what SIGHUP swaps).
    pub snapshots: Arc<ArcSwap<proxy::snapshot::Snapshot>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), proxy::ProxyError>>>,
}

/// Starts a proxy with the default test policy.
pub async fn start() -> TestProxy {
    start_with(Options::default()).await
}

/// Starts a proxy with extra `[proxy]` settings.
pub async fn start_with(options: Options) -> TestProxy {
    let origin_ca = OriginCa::new("hallpass test origin CA");
    let http = origin::http_origin(ORIGIN_IP).await;
    let https = origin::https_origin(ORIGIN_IP, origin_ca.leaf(ORIGIN_NAMES)).await;
    let bad = origin::https_origin(
        BAD_ORIGIN_IP,
        OriginCa::new("an untrusted CA").leaf(&["badcert.test"]),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut origins = vec![http.addr, https.addr, bad.addr];
    origins.extend(&options.destinations);
    write_config(dir.path(), &origin_ca, &origins, &options);
    let snapshot = proxy::snapshot::load(&dir.path().join("hallpass.toml"), 1)
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let settings = Settings::from_config(&snapshot.config, &snapshot.config_dir);
    let snapshots = Arc::new(ArcSwap::from_pointee(snapshot));
    let handle = snapshots.clone();
    let school_ca = Arc::new(CertificateAuthority::generate("Test School").expect("school CA"));
    let school_ca_pem = school_ca.cert_pem().to_string();
    let events = MemorySink::default();
    let mut builder = ProxyBuilder::new(settings, snapshots)
        .resolver(Arc::new(StubResolver::new()))
        .ca(school_ca);
    if !options.events_to_file {
        builder = builder.event_sink(Box::new(events.clone()));
    }
    if let Some(setup) = &options.accounts {
        let verifier = write_accounts(&settings_state_dir(dir.path()), setup, &handle);
        builder = builder
            .verifier(verifier, setup.settings.max_concurrent_hashes)
            .accounts_poll(setup.poll);
    }
    let server = builder.bind().await.expect("proxy binds");
    let addr = server.local_addrs()[0];
    let event_counters = server.event_counters();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestProxy {
        addr,
        http,
        https,
        bad,
        school_ca_pem,
        origin_ca_pem: origin_ca.cert_pem(),
        origin_ca: Arc::new(origin_ca),
        events,
        event_counters,
        dir,
        snapshots: handle,
        shutdown: Some(tx),
        task: Some(task),
    }
}

fn settings_state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// Writes the accounts file (fast hashes) and returns a verifier over it.
fn write_accounts(
    state_dir: &Path,
    setup: &TestAccounts,
    snapshots: &ArcSwap<proxy::snapshot::Snapshot>,
) -> Arc<accounts::Verifier> {
    let snap = snapshots.load();
    let groups: Vec<&str> = snap.policy.groups().iter().map(|g| &*g.name).collect();
    let path = accounts::file_path(state_dir);
    let mut list = accounts::Accounts::new();
    for (name, group, password) in &setup.accounts {
        list.add(
            name,
            group,
            &accounts::Password::new(password.clone()),
            &groups,
            &setup.settings.passwords,
            &setup.settings.hash,
            accounts::OffsetDateTime::now_utc(),
        )
        .unwrap_or_else(|e| panic!("test account {name}: {e}"));
    }
    list.save(&path).expect("save accounts");
    let loaded = accounts::Accounts::load(&path).expect("reload accounts");
    Arc::new(
        accounts::Verifier::new(loaded, &setup.settings, Arc::new(accounts::SystemClock))
            .expect("verifier"),
    )
}

pub fn write_config(dir: &Path, origin_ca: &OriginCa, origins: &[SocketAddr], options: &Options) {
    let lists = dir.join("lists/t");
    for (list, entries) in [
        ("child-abuse", "child-abuse.hallpass-test.invalid\n"),
        ("terrorism", "terrorism.hallpass-test.invalid\n"),
        ("malware", "malware.hallpass-test.invalid\n"),
        ("phishing", "phishing.hallpass-test.invalid\n"),
        ("games", "games.test\n"),
        ("bank", "splice.test\n"),
    ] {
        std::fs::create_dir_all(lists.join(list)).expect("list dir");
        std::fs::write(lists.join(list).join("domains"), entries).expect("list");
    }
    std::fs::write(dir.join("origin-ca.pem"), origin_ca.cert_pem()).expect("origin ca");
    let exact: Vec<String> = origins.iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        r#"version = 1
policy = "policy.toml"
state_dir = "state"

[lists.t]
format = "squidguard"
path = "lists/t"

[proxy]
listen = ["127.0.0.1:0"]
upstream_roots = ["origin-ca.pem"]
dangerous_allow_destinations = [{}]
shutdown_grace = "3s"
{}
"#,
        exact.join(", "),
        options.proxy_toml
    );
    std::fs::write(dir.join("hallpass.toml"), config).expect("config");
    std::fs::write(
        dir.join("policy.toml"),
        options.policy.as_deref().unwrap_or(POLICY),
    )
    .expect("policy");
}

/// The test policy: `blocked.test` denied, `games.test` in a blocked category,
/// `splice.test` never intercepted (banking), everyone on 127.0.0.0/8 in year4.
pub const POLICY: &str = r#"version = 1

[school]
name = "Test School"

[baseline]
child-abuse = ["t:child-abuse"]
terrorism = ["t:terrorism"]
malware = ["t:malware"]
phishing = ["t:phishing"]

[categories.games]
lists = ["t:games"]
reason = "Games sites are not allowed in school time."

[categories.banking]
lists = ["t:bank"]
reason = "Online banking."

[deny]
domains = ["blocked.test"]

[no_intercept]
categories = ["banking"]

[bands.ks2]
label = "Key Stage 2"
ages = "7-10"
default = "allow"
safe_search = true
youtube = "strict"
block = ["games"]

[groups]
year4 = { band = "ks2", label = "Year 4" }

[[subnets]]
cidr = "127.0.0.0/8"
group = "year4"
"#;

impl TestProxy {
    /// Starts the proxy's graceful shutdown and returns its task.
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), proxy::ProxyError>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("proxy task")
    }

    /// Block events so far, once the event path has settled: nothing queued,
    /// the journal empty and the sink unchanged over a few polls (the sink is
    /// filled from the journal by its own thread, after the block page went
    /// out; events emitted without waiting, such as login failures, come later
    /// still). Waits up to ~2 s for the first event.
    pub async fn events(&self) -> Vec<BlockEvent> {
        let journal = settings_state_dir(self.dir.path()).join("events.spool.jsonl");
        let (mut last, mut stable) = (usize::MAX, 0);
        for _ in 0..200 {
            let events = self.events.0.lock().expect("sink").clone();
            let idle = self
                .event_counters
                .queued
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
                && proxy::events::journal_bytes(&journal) == 0;
            stable = if idle && events.len() == last {
                stable + 1
            } else {
                0
            };
            last = events.len();
            if stable >= 3 && !events.is_empty() {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events.0.lock().expect("sink").clone()
    }

    /// An HTTP URL on the plain origin under `name`.
    pub fn http_url(&self, name: &str, path: &str) -> String {
        format!("http://{name}:{}{path}", self.http.addr.port())
    }

    /// `name:port` of the HTTPS origin.
    pub fn https_authority(&self, name: &str) -> String {
        format!("{name}:{}", self.https.addr.port())
    }

    /// Rewrites the policy file and swaps in a new snapshot, as a reload does.
    pub fn reload_policy(&self, policy: &str) {
        std::fs::write(self.dir.path().join("policy.toml"), policy).expect("policy");
        let generation = self.snapshots.load().generation + 1;
        let snapshot = proxy::snapshot::load(&self.dir.path().join("hallpass.toml"), generation)
            .unwrap_or_else(|e| panic!("reloaded policy: {e}"));
        self.snapshots.store(Arc::new(snapshot));
    }

    /// Changes the accounts file the way `hallpass users` does (atomic save);
    /// the running proxy picks it up at its next poll.
    pub fn edit_accounts(&self, edit: impl FnOnce(&mut accounts::Accounts)) {
        let path = accounts::file_path(&settings_state_dir(self.dir.path()));
        let mut list = accounts::Accounts::load(&path).expect("accounts file");
        edit(&mut list);
        list.save(&path).expect("save accounts");
    }

    /// The accounts file.
    pub fn accounts_path(&self) -> PathBuf {
        accounts::file_path(&settings_state_dir(self.dir.path()))
    }

    /// The config folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body as text.
    pub body: String,
}

/// Sends one request through the proxy on a fresh connection (absolute-form).
pub async fn send(proxy: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    collect(response).await
}

/// One client connection to the proxy, for requests that must share it, and
/// the task driving it (it ends when the connection closes).
pub async fn one_connection(
    proxy: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    (sender, tokio::spawn(conn))
}

/// `GET url` through the proxy.
pub async fn get(proxy: SocketAddr, url: &str) -> Reply {
    send(
        proxy,
        Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body in time")
        .expect("body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    }
}

/// Opens a CONNECT tunnel; returns the status line's code and, on 200, the stream.
pub async fn connect(proxy: SocketAddr, authority: &str) -> (u16, Option<TcpStream>, String) {
    connect_with(proxy, authority, "").await
}

/// As [`connect`], with extra header lines (each ending in `\r\n`).
pub async fn connect_with(
    proxy: SocketAddr,
    authority: &str,
    extra_headers: &str,
) -> (u16, Option<TcpStream>, String) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra_headers}\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write CONNECT");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    // Read the head byte by byte so no tunnel byte is consumed.
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("CONNECT answer in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 200 {
        (status, Some(stream), text)
    } else {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        (status, None, text + &String::from_utf8_lossy(&rest))
    }
}

/// A rustls client config trusting only the given PEM certificates.
pub fn client_tls(trusted_pem: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in trusted_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS over an opened tunnel, with `sni` as the server name.
pub async fn tls(
    stream: TcpStream,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))?
}

/// `GET https://authority/path` through the proxy: CONNECT, TLS trusting
/// `trusted_pem`, then one HTTP/1.1 request (or h2 when `h2`).
pub async fn https_get(
    proxy: SocketAddr,
    authority: &str,
    path: &str,
    trusted_pem: &[&str],
    h2: bool,
) -> io::Result<Reply> {
    https_request(proxy, authority, Method::GET, path, "", trusted_pem, h2).await
}

/// As [`https_get`], with any method and a body (sent with a Content-Length
/// when it is not empty).
pub async fn https_request(
    proxy: SocketAddr,
    authority: &str,
    method: Method,
    path: &str,
    body: &'static str,
    trusted_pem: &[&str],
    h2: bool,
) -> io::Result<Reply> {
    let (status, stream, text) = connect(proxy, authority).await;
    let Some(stream) = stream else {
        return Err(io::Error::other(format!(
            "CONNECT refused with {status}: {text}"
        )));
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let alpn: &[&[u8]] = if h2 {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    };
    let tls = tls(stream, host, client_tls(trusted_pem, alpn)).await?;
    let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let request = |uri: String| {
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if !negotiated_h2 {
            builder = builder.header("host", authority);
        }
        builder
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    };
    let response = if negotiated_h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .map_err(io::Error::other)?;
        tokio::spawn(conn);
        sender
            .send_request(request(format!("https://{authority}{path}")))
            .await
            .map_err(io::Error::other)?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(conn);
        sender
            .send_request(request(path.to_string()))
            .await
            .map_err(io::Error::other)?
    };
    Ok(collect(response).await)
}

/// An HTTP/1.1 client inside one intercepted tunnel.
pub struct TunnelClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl TunnelClient {
    /// Opens a tunnel to `name` on the HTTPS origin: CONNECT, then TLS (ALPN
    /// `http/1.1`) trusting the school CA.
    pub async fn open(proxy: &TestProxy, name: &str) -> TunnelClient {
        let authority = proxy.https_authority(name);
        let (status, stream, text) = connect(proxy.addr, &authority).await;
        let stream = stream.unwrap_or_else(|| panic!("CONNECT {authority}: {status} {text}"));
        let config = client_tls(&[&proxy.school_ca_pem], &[b"http/1.1"]);
        let tls = tls(stream, name, config).await.expect("tls in the tunnel");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 in the tunnel");
        tokio::spawn(conn);
        TunnelClient { sender, authority }
    }

    /// `GET path` with `Host` and these extra headers; the response, body read.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::get(path).header("host", self.authority.as_str());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::new())).expect("request");
        let response = self.sender.send_request(request).await.expect("response");
        collect(response).await
    }
}

/// Writes raw bytes to the proxy and reads until it closes (or 5 s pass).
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// The status code of the first response in raw text (0 when there is none).
pub fn first_status(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
