//! Normalise: pick the one authority a request will be decided on and dialled.
//!
//! In: a parsed request (method, URI, `Host`) and, inside a tunnel, the tunnel's
//! canonical name. Out: a [`Target`]: a request for the proxy itself (the CA
//! certificate, the review page), a [`CanonicalUrl`] to decide and forward, or a
//! CONNECT name and port. Refused (400): origin-form without `Host` outside a
//! tunnel, a `Host` that disagrees with an absolute-form URI, `https://` targets
//! outside CONNECT, userinfo in a CONNECT target, asterisk-form, and anything the
//! canonicaliser refuses. Inside a tunnel a `Host`/`:authority` naming another
//! site is [`TargetError::Fronting`]: blocked, not merely refused.
//!
//! Every host goes through `policy::host` before it is compared, decided or
//! resolved, so `EXAMPLE.com.`, `0x7f.1` and `xn--` spellings meet one form.
use http::Method;
use http::header::HOST;
use http::request::Parts;
use policy::CanonicalUrl;
use policy::host::{CanonicalHost, HostError, canonicalize_authority};
use policy::url::{Scheme, UrlError};

/// Why a request target was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Origin-form (`GET /path`) with no `Host` header.
    #[error("origin-form request without a host header")]
    MissingHost,
    /// The `Host` header names another authority than the absolute-form URI.
    #[error("host header {host:?} disagrees with the request target {uri:?}")]
    HostMismatch {
        /// The `Host` header.
        host: String,
        /// The URI's authority.
        uri: String,
    },
    /// An `https://` absolute-form request outside a tunnel.
    #[error("https urls must be requested through CONNECT")]
    HttpsWithoutConnect,
    /// A scheme other than `http` or `https`.
    #[error("unsupported scheme: expected http or https")]
    UnsupportedScheme,
    /// `OPTIONS *` and other targets without a path.
    #[error("unsupported request target: expected an http url")]
    Unsupported,
    /// A CONNECT target that is not `host:port`.
    #[error("connect target must be host:port, found {0:?}")]
    BadConnectTarget(String),
    /// The host could not be canonicalised.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The URL could not be canonicalised.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Inside a tunnel: the request names another site than the tunnel's.
    #[error("request for {found:?} inside a tunnel to {tunnel:?}")]
    Fronting {
        /// The tunnel's name.
        tunnel: String,
        /// What the request named.
        found: String,
    },
}

/// What a request outside a tunnel is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A page of the proxy itself (origin-form, or absolute-form naming the proxy).
    Local {
        /// The path and query.
        path_and_query: String,
    },
    /// A plain HTTP request to forward.
    Forward(CanonicalUrl),
    /// A CONNECT tunnel.
    Connect {
        /// The canonical host.
        host: CanonicalHost,
        /// The port.
        port: u16,
    },
}

/// A tunnel's canonical name and port, which every request inside it must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelName {
    /// The CONNECT host.
    pub host: CanonicalHost,
    /// The CONNECT port.
    pub port: u16,
}

impl TunnelName {
    /// `host:port` with IPv6 in brackets, as an authority.
    pub fn authority(&self) -> String {
        authority_text(&self.host, self.port)
    }
}

/// `host:port`, with brackets around IPv6.
pub fn authority_text(host: &CanonicalHost, port: u16) -> String {
    let mut text = bracketed(host, 6);
    text.push(':');
    policy::host::push_decimal(&mut text, u64::from(port), 1);
    text
}

/// What `Host` a forwarded request carries: the port only when it is not the
/// scheme's default.
pub fn host_header_text(host: &CanonicalHost, port: u16, scheme: Scheme) -> String {
    if port == scheme.default_port() {
        bracketed(host, 0)
    } else {
        authority_text(host, port)
    }
}

/// The host, in brackets when it is IPv6, with room for `extra` more bytes.
/// Built by hand rather than with `format!`: this runs for every forwarded
/// request, and the formatting machinery cost more than the copy.
fn bracketed(host: &CanonicalHost, extra: usize) -> String {
    let v6 = matches!(host.ip(), Some(std::net::IpAddr::V6(_)));
    let mut text = String::with_capacity(host.as_str().len() + extra + 2);
    if v6 {
        text.push('[');
    }
    text.push_str(host.as_str());
    if v6 {
        text.push(']');
    }
    text
}

/// Parses a CONNECT request target: exactly `host:port` (`[v6]:port`), no userinfo,
/// a port from 1 to 65535.
///
/// The check for `@`, `/` and the port happens here, before the canonicaliser, so
/// a CONNECT can never carry a path or credentials that some later stage reads.
pub fn parse_connect_target(target: &str) -> Result<(CanonicalHost, u16), TargetError> {
    let bad = || TargetError::BadConnectTarget(target.chars().take(300).collect());
    if target.is_empty()
        || target.len() > 300
        || target
            .bytes()
            .any(|b| matches!(b, b'@' | b'/' | b'?' | b'#' | b'\\') || !b.is_ascii_graphic())
    {
        return Err(bad());
    }
    let colon = target.rfind(':').ok_or_else(bad)?;
    let port_text = &target[colon + 1..];
    if port_text.is_empty() || port_text.len() > 5 || !port_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let port: u16 = port_text.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    let host_text = &target[..colon];
    if host_text.is_empty() {
        return Err(bad());
    }
    // An unbracketed IPv6 address (`::1:443`) is ambiguous: refuse it.
    if host_text.contains(':') && !(host_text.starts_with('[') && host_text.ends_with(']')) {
        return Err(bad());
    }
    let (host, parsed_port) = canonicalize_authority(target)?;
    if parsed_port != Some(port) {
        return Err(bad());
    }
    Ok((host, port))
}

/// The last authority text a client connection named, and its canonical
/// form.
///
/// Requests on one keep-alive connection mostly name the same site, and
/// canonicalising is a pure function of the text: when the text is the same
/// byte for byte, the answer is too. It was ~4 % of an allowed request's
/// instructions.
#[derive(Debug, Default)]
pub struct LastAuthority(std::sync::Mutex<Option<Remembered>>);

/// An authority's text and its canonical host and port.
type Remembered = (Box<str>, CanonicalHost, Option<u16>);

impl LastAuthority {
    /// [`canonicalize_authority`], answered from the last call when `text` is
    /// the same.
    pub fn canonicalize(&self, text: &str) -> Result<(CanonicalHost, Option<u16>), HostError> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((raw, host, port)) = &*last {
            if **raw == *text {
                return Ok((host.clone(), *port));
            }
        }
        let (host, port) = canonicalize_authority(text)?;
        *last = Some((text.into(), host.clone(), port));
        Ok((host, port))
    }
}

/// Classifies a request that arrived on a listener (outside any tunnel).
///
/// `is_self` says whether a canonical host and port name the proxy itself.
pub fn classify(
    parts: &Parts,
    is_self: impl Fn(&CanonicalHost, u16) -> bool,
) -> Result<Target, TargetError> {
    classify_on(parts, is_self, &LastAuthority::default())
}

/// [`classify`] for a request on a connection whose last authority is `last`.
pub fn classify_on(
    parts: &Parts,
    is_self: impl Fn(&CanonicalHost, u16) -> bool,
    last: &LastAuthority,
) -> Result<Target, TargetError> {
    if parts.method == Method::CONNECT {
        let target = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_else(|| "");
        let (host, port) = parse_connect_target(target)?;
        return Ok(Target::Connect { host, port });
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !path_and_query.starts_with('/') {
        return Err(TargetError::Unsupported);
    }
    let Some(authority) = parts.uri.authority() else {
        // Origin-form: a request addressed to the proxy itself.
        if !parts.headers.contains_key(HOST) {
            return Err(TargetError::MissingHost);
        }
        return Ok(Target::Local {
            path_and_query: path_and_query.to_string(),
        });
    };
    let scheme = match parts.uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(s) if s.eq_ignore_ascii_case("https") => return Err(TargetError::HttpsWithoutConnect),
        _ => return Err(TargetError::UnsupportedScheme),
    };
    let (host, port) = last.canonicalize(authority.as_str())?;
    let port = port.unwrap_or(scheme.default_port());
    check_host_header(parts, authority.as_str(), &host, port, scheme)?;
    if is_self(&host, port) {
        return Ok(Target::Local {
            path_and_query: path_and_query.to_string(),
        });
    }
    let url = CanonicalUrl::from_host(scheme, host, Some(port), path_and_query)?;
    Ok(Target::Forward(url))
}

/// Inside a tunnel: the URL a request names, which must be the tunnel's own site.
///
/// The authority comes from the URI (absolute-form in HTTP/1.1, `:authority` in
/// h2) or else from `Host`; when both are present they must agree. A request with
/// neither is decided on the tunnel's name (an h2 request without `:authority` is
/// legal; HTTP/1.1 without `Host` is refused by [`classify`]'s rule).
pub fn tunneled_url(
    parts: &Parts,
    tunnel: &TunnelName,
    scheme: Scheme,
) -> Result<CanonicalUrl, TargetError> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !path_and_query.starts_with('/') {
        return Err(TargetError::Unsupported);
    }
    let named = match (parts.uri.authority(), parts.headers.get(HOST)) {
        (Some(a), _) => Some(a.as_str().to_string()),
        (None, Some(h)) => Some(
            h.to_str()
                .map_err(|_| TargetError::MissingHost)?
                .to_string(),
        ),
        (None, None) if parts.version == http::Version::HTTP_11 => {
            return Err(TargetError::MissingHost);
        }
        (None, None) => None,
    };
    if let Some(named) = &named {
        let (host, port) = canonicalize_authority(named)?;
        let port = port.unwrap_or(scheme.default_port());
        if host != tunnel.host || port != tunnel.port {
            return Err(TargetError::Fronting {
                tunnel: tunnel.authority(),
                found: authority_text(&host, port),
            });
        }
        // `Host` must also agree with an h2 `:authority` or an absolute URI.
        if parts.uri.authority().is_some() {
            check_host_header(parts, named, &host, port, scheme).map_err(|_| {
                TargetError::Fronting {
                    tunnel: tunnel.authority(),
                    found: parts
                        .headers
                        .get(HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("?")
                        .to_string(),
                }
            })?;
        }
    }
    Ok(CanonicalUrl::from_parts(
        scheme,
        &tunnel.authority(),
        path_and_query,
    )?)
}

/// A `Host` header, when present, must name the same host and port as the URI.
fn check_host_header(
    parts: &Parts,
    authority: &str,
    host: &CanonicalHost,
    port: u16,
    scheme: Scheme,
) -> Result<(), TargetError> {
    let Some(value) = parts.headers.get(HOST) else {
        return Ok(());
    };
    // The same text as the URI's authority (as clients send it) names the
    // same host and port: nothing to compare.
    if value.as_bytes() == authority.as_bytes() {
        return Ok(());
    }
    let mismatch = || TargetError::HostMismatch {
        host: String::from_utf8_lossy(value.as_bytes())
            .chars()
            .take(300)
            .collect(),
        uri: authority_text(host, port),
    };
    let text = value.to_str().map_err(|_| mismatch())?;
    let (h, p) = canonicalize_authority(text).map_err(|_| mismatch())?;
    if &h != host || p.unwrap_or(scheme.default_port()) != port {
        return Err(mismatch());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> Parts {
        let mut lines = text.split("\r\n");
        let first = lines.next().expect("request line");
        let mut words = first.split(' ');
        let method = words.next().expect("method");
        let uri = words.next().expect("uri");
        let mut b = http::Request::builder().method(method).uri(uri);
        for line in lines.filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(": ").expect("header");
            b = b.header(n, v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn never_self(_: &CanonicalHost, _: u16) -> bool {
        false
    }

    #[test]
    fn a_connection_reuses_the_canonical_form_of_the_same_text_only() {
        let last = LastAuthority::default();
        for text in [
            "Example.COM.:80",
            "Example.COM.:80",
            "example.com",
            "0x7f.1:8080",
            "0x7f.1:8080",
            "[::1]:1",
        ] {
            assert_eq!(
                last.canonicalize(text),
                canonicalize_authority(text),
                "{text}"
            );
        }
        assert!(last.canonicalize("bad host:1").is_err());
        // A refused text is not remembered: the last good one still answers.
        assert_eq!(
            last.canonicalize("[::1]:1"),
            canonicalize_authority("[::1]:1")
        );
        let t = classify_on(
            &parts("GET http://A.test:81/x\r\nHost: a.test:81"),
            never_self,
            &last,
        )
        .expect("a forward");
        assert_eq!(
            t,
            classify(&parts("GET http://a.test:81/x"), never_self).expect("same")
        );
        let again = classify_on(
            &parts("GET http://A.test:81/y\r\nHost: b.test"),
            never_self,
            &last,
        );
        assert!(
            matches!(again, Err(TargetError::HostMismatch { .. })),
            "{again:?}"
        );
    }

    #[test]
    fn authorities_and_host_headers_bracket_ipv6_and_drop_only_the_default_port() {
        let host = |text: &str| canonicalize_authority(text).expect("a host").0;
        for (name, port, authority, http_host) in [
            ("Example.COM.", 80, "example.com:80", "example.com"),
            ("example.com", 8080, "example.com:8080", "example.com:8080"),
            ("127.0.0.1", 1, "127.0.0.1:1", "127.0.0.1:1"),
            ("[::1]", 65535, "[::1]:65535", "[::1]:65535"),
            ("[2001:DB8::1]", 80, "[2001:db8::1]:80", "[2001:db8::1]"),
            ("10.0.0.9", 443, "10.0.0.9:443", "10.0.0.9:443"),
        ] {
            let h = host(name);
            assert_eq!(authority_text(&h, port), authority, "{name}");
            assert_eq!(
                host_header_text(&h, port, Scheme::Http),
                http_host,
                "{name}"
            );
        }
        assert_eq!(
            host_header_text(&host("a.test"), 443, Scheme::Https),
            "a.test"
        );
    }

    #[test]
    fn connect_targets() {
        let ok = |t: &str| parse_connect_target(t).map(|(h, p)| format!("{h}:{p}"));
        assert_eq!(ok("Example.COM.:443"), Ok("example.com:443".into()));
        assert_eq!(ok("[::1]:8443"), Ok("::1:8443".into()));
        for bad in [
            "example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "user@example.com:443",
            "a/b:443",
            "::1:443",
            ":443",
            "example.com:+443",
            "exa mple.com:443",
            "example.com:443/",
        ] {
            assert!(parse_connect_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_form_must_agree_with_host() {
        let t = classify(
            &parts("GET http://a.test/x?y\r\nHost: A.test:80"),
            never_self,
        )
        .expect("agrees");
        assert!(matches!(t, Target::Forward(u) if u.host().as_str() == "a.test" && u.port() == 80));
        let e = classify(&parts("GET http://a.test/\r\nHost: b.test"), never_self)
            .expect_err("disagrees");
        assert!(matches!(e, TargetError::HostMismatch { .. }), "{e}");
        let e = classify(
            &parts("GET http://a.test/\r\nHost: a.test:8080"),
            never_self,
        )
        .expect_err("port differs");
        assert!(matches!(e, TargetError::HostMismatch { .. }), "{e}");
        assert!(
            classify(&parts("GET http://a.test/"), never_self).is_ok(),
            "no host header is fine in absolute-form"
        );
    }

    #[test]
    fn origin_form_needs_host_and_is_local() {
        assert_eq!(
            classify(&parts("GET /hallpass-ca.crt"), never_self),
            Err(TargetError::MissingHost)
        );
        let t = classify(
            &parts("GET /hallpass-ca.crt\r\nHost: proxy:3128"),
            never_self,
        )
        .expect("local");
        assert_eq!(
            t,
            Target::Local {
                path_and_query: "/hallpass-ca.crt".into()
            }
        );
        assert_eq!(
            classify(&parts("GET https://a.test/"), never_self),
            Err(TargetError::HttpsWithoutConnect)
        );
    }

    #[test]
    fn tunnel_requests_must_name_the_tunnel() {
        let tunnel = TunnelName {
            host: CanonicalHost::from_ipv4([127, 0, 0, 2].into()),
            port: 443,
        };
        let url = tunneled_url(&parts("GET /a\r\nHost: 127.0.0.2"), &tunnel, Scheme::Https)
            .expect("same");
        assert_eq!(url.path(), "/a");
        let e = tunneled_url(&parts("GET /a\r\nHost: evil.test"), &tunnel, Scheme::Https)
            .expect_err("fronting");
        assert!(matches!(e, TargetError::Fronting { .. }), "{e}");
        let e = tunneled_url(&parts("GET https://evil.test/a"), &tunnel, Scheme::Https)
            .expect_err("fronting");
        assert!(matches!(e, TargetError::Fronting { .. }), "{e}");
        let e = tunneled_url(
            &parts("GET https://127.0.0.2/a\r\nHost: evil.test"),
            &tunnel,
            Scheme::Https,
        )
        .expect_err("fronting");
        assert!(matches!(e, TargetError::Fronting { .. }), "{e}");
    }
}
