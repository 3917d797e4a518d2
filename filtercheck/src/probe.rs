//! One probe: a request through the proxy as a group, and what the proxy said.
//!
//! In: the proxy's address, an optional login, a URL, and the TLS roots for
//! intercepted HTTPS (the school CA, plus the web's roots for spliced sites).
//! Out: an [`Answer`]: the status and the proxy's verdict headers, or why
//! there was none. Plain HTTP goes in absolute form; HTTPS goes as CONNECT,
//! then TLS to the named host over the tunnel, then `GET`. The response body
//! is never read: the verdict is in the head.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// The verdict header the proxy sets (`allow` or `block`).
pub const VERDICT: &str = "hallpass-verdict";
/// What safe search the proxy forced (`safe=active`, `youtube-restrict=Strict`).
pub const SAFE_SEARCH: &str = "hallpass-safe-search";

/// What the proxy answered to one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A response: its status, the verdict header and the safe-search header.
    Response {
        /// The HTTP status.
        status: u16,
        /// `Hallpass-Verdict`, if present.
        verdict: Option<String>,
        /// `Hallpass-Safe-Search`, if present.
        safe_search: Option<String>,
    },
    /// No response: why.
    Failed(String),
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn answer(status: StatusCode, headers: &HeaderMap) -> Answer {
    Answer::Response {
        status: status.as_u16(),
        verdict: header_text(headers, VERDICT),
        safe_search: header_text(headers, SAFE_SEARCH),
    }
}

/// How to reach the proxy and what to trust inside intercepted tunnels.
#[derive(Clone)]
pub struct Client {
    /// The proxy.
    pub proxy: SocketAddr,
    /// TLS settings for HTTPS probes (school CA + web roots).
    pub tls: Arc<rustls::ClientConfig>,
    /// The longest one probe may take.
    pub timeout: Duration,
}

/// A rustls client trusting the school CA (PEM; may be empty) and the web's
/// roots (spliced sites such as banks show their real certificate).
pub fn tls_config(school_ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(school_ca_pem) {
        let cert = cert.map_err(|e| format!("the school CA is not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the school CA cannot be trusted: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `Proxy-Authorization: Basic ...` for a login.
pub fn basic(account: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{account}:{password}"));
    let mut value =
        HeaderValue::from_str(&format!("Basic {token}")).unwrap_or(HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

impl Client {
    /// Sends one probe; never fails, never takes longer than the timeout.
    pub async fn probe(&self, url: &str, login: Option<&HeaderValue>) -> Answer {
        match tokio::time::timeout(self.timeout, self.send(url, login)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Answer::Failed(e),
            Err(_) => Answer::Failed(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }

    async fn send(&self, url: &str, login: Option<&HeaderValue>) -> Result<Answer, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let https = uri.scheme_str() == Some("https");
        let stream = TcpStream::connect(self.proxy)
            .await
            .map_err(|e| format!("cannot connect to the proxy at {}: {e}", self.proxy))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP to the proxy failed: {e}"))?;
        tokio::spawn(conn.with_upgrades());
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or("the URL has no host")?;
        if !https {
            let mut req = Request::get(uri.clone()).header(header::HOST, &authority);
            if let Some(l) = login {
                req = req.header(header::PROXY_AUTHORIZATION, l.clone());
            }
            let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
            let response = sender
                .send_request(req)
                .await
                .map_err(|e| format!("the proxy did not answer: {e}"))?;
            return Ok(answer(response.status(), response.headers()));
        }
        let port = uri.port_u16().unwrap_or(443);
        let target = format!("{host}:{port}");
        let mut req = Request::connect(target.as_str()).header(header::HOST, &target);
        if let Some(l) = login {
            req = req.header(header::PROXY_AUTHORIZATION, l.clone());
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| format!("the proxy did not answer the CONNECT: {e}"))?;
        if response.status() != StatusCode::OK {
            return Ok(answer(response.status(), response.headers()));
        }
        let tunnel = hyper::upgrade::on(response)
            .await
            .map_err(|e| format!("the CONNECT tunnel did not open: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, TokioIo::new(tunnel))
            .await
            .map_err(|e| {
                format!(
                    "TLS inside the tunnel failed: {e} (is the school CA the one this proxy uses?)"
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP inside the tunnel failed: {e}"))?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = Request::get(path)
            .header(header::HOST, &authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no answer inside the tunnel: {e}"))?;
        Ok(answer(response.status(), response.headers()))
    }
}
