//! A minimal local origin server for the load benchmarks (benches/load.sh).
//!
//! Serves a fixed small page over plain HTTP and over HTTPS with a certificate
//! from a throwaway test CA, on loopback only. It is deliberately as cheap as
//! possible so that the figures measure the proxy, and it runs on one thread so
//! the direct baseline and the proxied run share the same origin cost.
//!
//! Usage: `bench-origin OUT_DIR [HTTPS_ADDR]` — writes `OUT_DIR/origin-ca.pem`
//! and prints one line `http=127.0.0.1:P1 https=ADDR`, then serves until killed.
//! HTTPS_ADDR defaults to `127.0.0.1:0`; the load script uses port 443 because
//! `hey` sends the URL's `host:port` as the TLS server name, which TLS forbids,
//! while for `https://127.0.0.1/` it sends none.
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio::net::TcpListener;

const BODY: &[u8] = b"<!doctype html><title>origin</title><p>hello from the bench origin</p>\n";

async fn page(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "text/html")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("static response parts are valid"))
}

fn tls_config(out: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let ca_key = KeyPair::generate().expect("key generation");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "hallpass bench origin CA");
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
    std::fs::write(out.join("origin-ca.pem"), ca_cert.pem()).expect("write origin CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("key generation");
    let mut leaf = CertificateParams::new(vec!["origin.test".to_string()]).expect("SAN");
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf signed");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("default versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone()], key)
    .expect("certificate and key match");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: bench-origin OUT_DIR"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let tls_addr = std::env::args()
            .nth(2)
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let tls = TcpListener::bind(&tls_addr).await.expect("bind https");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(&out));
        println!(
            "http={} https={}",
            plain.local_addr().expect("addr"),
            tls.local_addr().expect("addr")
        );
        let http = async move {
            loop {
                let Ok((s, _)) = plain.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), service_fn(page))
                        .await;
                });
            }
        };
        let https = async move {
            loop {
                let Ok((s, _)) = tls.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(s).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), service_fn(page))
                        .await;
                });
            }
        };
        tokio::join!(http, https);
    });
}
