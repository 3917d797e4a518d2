//! A plain HTTP/1.1 client (hyper) for the security tests: one connection per
//! request, cookies and headers exactly as given, optional TLS with a given CA.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie this reply sets (`name=value`), if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("-session=") && !v.contains("Max-Age=0"))
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    }

    /// The first `csrf` hidden field of the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let rest = &self.body[at..];
        Some(rest[..rest.find('"')?].to_string())
    }
}

/// How to reach the console.
#[derive(Clone)]
pub struct Client {
    /// host:port to dial.
    pub addr: std::net::SocketAddr,
    /// TLS: the CA to trust and the name to ask for.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Client {
    /// Sends one request.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = Request::builder().method(method).uri(path);
        req = req.header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = match &self.tls {
            None => {
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                tx.send_request(req).await.expect("send")
            }
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let server = rustls::pki_types::ServerName::try_from(name.clone()).expect("name");
                let tls = connector.connect(server, tcp).await.expect("TLS");
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                tx.send_request(req).await.expect("send")
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// GET with an optional cookie.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        match cookie {
            Some(c) => self.send("GET", path, &[("cookie", c)], Vec::new()).await,
            None => self.send("GET", path, &[], Vec::new()).await,
        }
    }

    /// POST a form with an optional cookie.
    pub async fn post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        self.send("POST", path, &headers, body.into_bytes()).await
    }

    /// Signs in: returns the session cookie and the CSRF token of the session.
    pub async fn sign_in(&self, user: &str, password: &str) -> (String, String) {
        let page = self.get("/login", None).await;
        let cookie = page.session_cookie().expect("login sets a cookie");
        let csrf = page.csrf().expect("login form has a token");
        let r = self
            .post_form(
                "/login",
                Some(&cookie),
                &[
                    ("csrf", &csrf),
                    ("user", user),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "sign-in of {user}: {}",
            r.body
        );
        let cookie = r.session_cookie().expect("a new session cookie");
        let home = self.get("/", Some(&cookie)).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        let csrf = home.csrf().expect("pages carry the token");
        (cookie, csrf)
    }
}
