//! Local origins that record every connection and request they receive.
//!
//! Each answers `200` with `origin <METHOD> <path?query>` as the body, plus an
//! `Alt-Svc` header and a hop-by-hop header (both must be stripped by the proxy).
//! `/slow?ms=N` waits N milliseconds before answering (for shutdown tests);
//! `/bye` closes the connection after answering (HTTP/1.1).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the origin saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// The request target as received.
    pub uri: String,
    /// The headers as received.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The HTTP version.
    pub version: Version,
}

/// What an origin received.
#[derive(Default)]
pub struct OriginLog {
    connections: AtomicUsize,
    requests: Mutex<Vec<Seen>>,
}

/// A running origin.
#[derive(Clone)]
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub log: Arc<OriginLog>,
}

impl Origin {
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.requests.lock().expect("origin log").clone()
    }
}

/// The CA that signs the origins' certificates (trusted by the proxy through
/// `upstream_roots`, never by the test clients of intercepted tunnels).
pub struct OriginCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl OriginCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        let cert_pem = cert.pem();
        OriginCa {
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A server certificate for these names (plus 127.0.0.2 and 127.0.0.3).
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sans.extend(["127.0.0.2".to_string(), "127.0.0.3".to_string()]);
        let params = CertificateParams::new(sans).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

async fn answer(
    log: Arc<OriginLog>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.headers().get("upgrade").is_some_and(|v| v == "echo") {
        return Ok(echo_upgrade(&log, &mut req));
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let uri = parts.uri.to_string();
    log.requests.lock().expect("origin log").push(Seen {
        method: parts.method.clone(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body,
        version: parts.version,
    });
    if let Some(ms) = uri.strip_prefix("/slow?ms=").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "origin {} {path}",
        parts.method
    ))));
    let h = response.headers_mut();
    h.insert("alt-svc", "h3=\":443\"; ma=86400".parse().expect("header"));
    if parts.version != Version::HTTP_2 && path == "/bye" {
        // The origin closes the connection after this answer.
        h.insert("connection", "close".parse().expect("header"));
    } else if parts.version != Version::HTTP_2 {
        h.insert("connection", "x-hop".parse().expect("header"));
        h.insert("x-hop", "1".parse().expect("header"));
    }
    h.insert("x-origin", "yes".parse().expect("header"));
    Ok(response)
}

/// Answers `Upgrade: echo` with 101, then echoes every byte back.
fn echo_upgrade(log: &OriginLog, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    log.requests.lock().expect("origin log").push(Seen {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
        body: Bytes::new(),
        version: req.version(),
    });
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 1024];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert("upgrade", "echo".parse().expect("header"));
    response
        .headers_mut()
        .insert("connection", "upgrade".parse().expect("header"));
    response
}

/// A plain-HTTP origin on `ip:0`.
pub async fn http_origin(ip: [u8; 4]) -> Origin {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind origin");
    let origin = Origin {
        addr: listener.local_addr().expect("addr"),
        log: Arc::default(),
    };
    let log = origin.log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            log.connections.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(log.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    origin
}

/// TLS for an origin with this certificate, offering these ALPN protocols.
pub fn tls_acceptor(
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("origin cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS origin on `ip:0` (ALPN h2 and http/1.1).
pub async fn https_origin(
    ip: [u8; 4],
    cert: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Origin {
    let acceptor = tls_acceptor(cert, &[b"h2", b"http/1.1"]);
    let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind origin");
    let origin = Origin {
        addr: listener.local_addr().expect("addr"),
        log: Arc::default(),
    };
    let log = origin.log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            log.connections.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| answer(log.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    origin
}
