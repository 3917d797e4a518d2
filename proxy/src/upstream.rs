//! Upstream: resolve, check and dial a destination; verify its TLS.
//!
//! In: a canonical host and port, the [`Resolve`] implementation the proxy was
//! given, the [`Destinations`] rules, timeouts. Out: a connected `TcpStream`
//! (TCP_NODELAY set) to exactly the address that was checked, or a TLS stream
//! whose certificate chain verified against the Mozilla roots plus the configured
//! extra roots. Refused: ports that are not allowed, names with *any* address that
//! is loopback, link-local, unspecified, multicast, broadcast, private or shared
//! (unless a `dangerous_allow_destinations` rule opens it), and the proxy's own
//! listeners (always). The name is resolved once: nothing re-resolves it between
//! the check and the dial, so DNS rebinding cannot swap the address.
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use policy::config::DestinationRule;
use policy::host::CanonicalHost;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A name resolver. The proxy never calls the system resolver directly: tests map
/// `allowed.test` to `127.0.0.2`, and the binary passes [`SystemResolver`].
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of a canonical host name (never an IP literal: those are not
    /// resolved).
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why a destination could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The port is not in `allowed_ports`.
    #[error("port {0} is not allowed")]
    PortNotAllowed(u16),
    /// The name has an address the proxy never dials.
    #[error("{host} resolves to {addr}, which is {why}")]
    Forbidden {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Why, e.g. "a loopback address".
        why: &'static str,
    },
    /// The name did not resolve.
    #[error("could not resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The name resolved to no address.
    #[error("{0} has no address")]
    NoAddress(String),
    /// Every address refused or timed out.
    #[error("could not connect to {host}: {source}")]
    Connect {
        /// The host.
        host: String,
        /// The last error.
        source: io::Error,
    },
    /// The connection failed during the request or response.
    #[error("exchange with {host} failed: {message}")]
    Exchange {
        /// The host.
        host: String,
        /// What happened.
        message: String,
    },
    /// The TLS handshake failed (certificate, protocol, timeout).
    #[error("tls with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// What went wrong, in words for the explanatory page.
        reason: String,
    },
}

impl UpstreamError {
    /// Whether the proxy refused the destination (a block) rather than failed to
    /// reach it (an error).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UpstreamError::PortNotAllowed(_) | UpstreamError::Forbidden { .. }
        )
    }
}

/// Where the proxy may connect to.
#[derive(Clone, Debug)]
pub struct Destinations {
    allowed_ports: Vec<u16>,
    rules: Vec<DestinationRule>,
    own: Vec<SocketAddr>,
}

impl Destinations {
    /// Rules from the config plus the proxy's own listening addresses (and any
    /// other of its own services) which are never dialled.
    pub fn new(allowed_ports: Vec<u16>, rules: Vec<DestinationRule>, own: Vec<SocketAddr>) -> Self {
        Destinations {
            allowed_ports,
            rules,
            own,
        }
    }

    /// Adds addresses of the proxy's own services.
    pub fn add_own(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.own.extend(addrs);
    }

    /// Whether a request or CONNECT may name this port: one of `allowed_ports`,
    /// or the port of an exact `dangerous_allow_destinations` rule.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.allowed_ports.contains(&port)
            || self
                .rules
                .iter()
                .any(|r| matches!(r, DestinationRule::Exact(a) if a.port() == port))
    }

    /// Checks one resolved address.
    pub fn check(&self, addr: SocketAddr) -> Result<(), &'static str> {
        let ip = unmap(addr.ip());
        if self.is_own(SocketAddr::new(ip, addr.port())) {
            return Err("this proxy itself");
        }
        let port_allowed = self.allowed_ports.contains(&addr.port());
        if self
            .rules
            .iter()
            .any(|r| r.opens(SocketAddr::new(ip, addr.port()), port_allowed))
        {
            return Ok(());
        }
        if !port_allowed {
            return Err("on a port that is not allowed");
        }
        match special_range(ip) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn is_own(&self, addr: SocketAddr) -> bool {
        self.own.iter().any(|own| {
            own.port() == addr.port() && {
                let own_ip = unmap(own.ip());
                // A wildcard listener is reachable on every local address; we cannot
                // list them all, so any loopback, private or unspecified address on
                // that port counts as the proxy.
                own_ip == addr.ip()
                    || own_ip.is_unspecified()
                        && (addr.ip().is_loopback() || special_range(addr.ip()).is_some())
            }
        })
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is never dialled by default, or `None` for a public address.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match unmap(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else if ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
        Some("a private address")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Some("a private address")
    } else if s[0] == 0x64 && s[1] == 0xff9b || s[0] == 0x2002 {
        // NAT64 and 6to4 embed an IPv4 address that could be private.
        Some("an address that embeds an IPv4 address")
    } else {
        None
    }
}

/// How to dial.
#[derive(Clone)]
pub struct Dialer {
    /// The resolver.
    pub resolver: Arc<dyn Resolve>,
    /// The destination rules.
    pub destinations: Arc<Destinations>,
    /// Per-address connect timeout.
    pub connect_timeout: Duration,
}

impl Dialer {
    /// Resolves `host` once, checks every address, then dials the checked
    /// addresses in order until one answers. Returns the stream and its address.
    pub async fn dial(
        &self,
        host: &CanonicalHost,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), UpstreamError> {
        if !self.destinations.port_allowed(port) {
            return Err(UpstreamError::PortNotAllowed(port));
        }
        let addrs = self.resolve_checked(host, port).await?;
        self.dial_checked(host, &addrs).await
    }

    /// Dials addresses [`resolve_checked`](Self::resolve_checked) returned, in
    /// order, until one answers. Returns the stream and its address.
    pub async fn dial_checked(
        &self,
        host: &CanonicalHost,
        addrs: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), UpstreamError> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for &addr in addrs {
            match self.dial_addr(addr).await {
                Ok(stream) => return Ok((stream, addr)),
                Err(e) => last = e,
            }
        }
        Err(UpstreamError::Connect {
            host: host.to_string(),
            source: last,
        })
    }

    /// Checks one address against the destination rules: every resolved
    /// address, and an address found earlier again before it is dialled anew (a
    /// tunnel opening another connection to its checked address).
    pub fn check_addr(&self, host: &CanonicalHost, addr: SocketAddr) -> Result<(), UpstreamError> {
        self.destinations
            .check(addr)
            .map_err(|why| UpstreamError::Forbidden {
                host: host.to_string(),
                addr: addr.ip(),
                why,
            })
    }

    /// Resolves (IP literals are not resolved) and checks every address.
    pub async fn resolve_checked(
        &self,
        host: &CanonicalHost,
        port: u16,
    ) -> Result<Vec<SocketAddr>, UpstreamError> {
        let ips = match host.ip() {
            Some(ip) => vec![ip],
            None => {
                tokio::time::timeout(self.connect_timeout, self.resolver.resolve(host.as_str()))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolver timed out"))
                    .and_then(|r| r)
                    .map_err(|source| UpstreamError::Resolve {
                        host: host.to_string(),
                        source,
                    })?
            }
        };
        if ips.is_empty() {
            return Err(UpstreamError::NoAddress(host.to_string()));
        }
        let addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(unmap(ip), port))
            .collect();
        // One refused address refuses the name: a name that mixes public and
        // internal addresses is a rebinding attempt or a misconfiguration.
        for addr in &addrs {
            self.check_addr(host, *addr)?;
        }
        Ok(addrs)
    }

    /// Dials one already-checked address with the connect timeout and TCP_NODELAY.
    pub async fn dial_addr(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Why the upstream TLS trust store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    /// A roots file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A roots file holds no usable certificate.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// TLS towards upstream servers: always verified.
#[derive(Clone)]
pub struct UpstreamTls {
    h2_and_h1: TlsConnector,
    h1_only: TlsConnector,
    handshake_timeout: Duration,
}

/// The ring crypto provider: one place names it so every config agrees.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl UpstreamTls {
    /// Trusts the Mozilla roots plus every certificate in `extra_roots` (PEM files).
    pub fn new(extra_roots: &[PathBuf], handshake_timeout: Duration) -> Result<Self, RootsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in extra_roots {
            for cert in read_pem_certs(path)? {
                roots.add(cert).map_err(|e| RootsError::Invalid {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        let roots = Arc::new(roots);
        let config = |alpn: &[&[u8]]| -> Result<TlsConnector, RootsError> {
            let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| RootsError::Invalid {
                    path: PathBuf::new(),
                    message: e.to_string(),
                })?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(UpstreamTls {
            h2_and_h1: config(&[b"h2", b"http/1.1"])?,
            h1_only: config(&[b"http/1.1"])?,
            handshake_timeout,
        })
    }

    /// Runs the TLS handshake on a dialled stream, offering h2 only when `offer_h2`.
    pub async fn connect<S>(
        &self,
        host: &CanonicalHost,
        stream: S,
        offer_h2: bool,
    ) -> Result<TlsStream<S>, UpstreamError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let fail = |reason: String| UpstreamError::Tls {
            host: host.to_string(),
            reason,
        };
        let name = match host.ip() {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => {
                ServerName::try_from(host.as_str().to_string()).map_err(|e| fail(e.to_string()))?
            }
        };
        let connector = if offer_h2 {
            &self.h2_and_h1
        } else {
            &self.h1_only
        };
        match tokio::time::timeout(self.handshake_timeout, connector.connect(name, stream)).await {
            Err(_) => Err(fail("the secure connection took too long to set up".into())),
            Ok(Err(e)) => Err(fail(describe_tls_error(&e))),
            Ok(Ok(tls)) => Ok(tls),
        }
    }
}

/// Reads every certificate of a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RootsError> {
    let text = std::fs::read(path).map_err(|source| RootsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| RootsError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(RootsError::Invalid {
            path: path.to_path_buf(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Words for the explanatory page: why the site's certificate was not trusted.
pub fn describe_tls_error(e: &io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("the secure connection failed ({e})");
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired => "the site's certificate has expired".into(),
            C::ExpiredContext { time, not_after } => format!(
                "the site's certificate expired (valid until {}, checked at {})",
                unix_date(not_after.as_secs()),
                unix_date(time.as_secs())
            ),
            C::NotValidYet => "the site's certificate is not valid yet".into(),
            C::NotValidYetContext { time, not_before } => format!(
                "the site's certificate is not valid yet (valid from {}, checked at {})",
                unix_date(not_before.as_secs()),
                unix_date(time.as_secs())
            ),
            C::UnknownIssuer => {
                "the site's certificate was not issued by an authority this school trusts".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the site's certificate is for a different site".into()
            }
            C::Revoked => "the site's certificate has been revoked".into(),
            C::BadSignature => "the site's certificate has a bad signature".into(),
            other => format!("the site's certificate could not be trusted ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the site refused the secure connection ({alert:?})")
        }
        other => format!("the secure connection failed ({other})"),
    }
}

fn unix_date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn default_destinations_refuse_internal_addresses() {
        let d = Destinations::new(vec![80, 443], vec![], vec![addr("127.0.0.1:3128")]);
        for bad in [
            "127.0.0.1:80",
            "127.9.9.9:443",
            "0.0.0.0:80",
            "10.1.2.3:80",
            "192.168.0.1:443",
            "172.16.0.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:443",
            "[::ffff:127.0.0.1]:80",
            "[::]:80",
            "[64:ff9b::a00:1]:80",
        ] {
            assert!(d.check(addr(bad)).is_err(), "{bad}");
        }
        for good in ["93.184.216.34:80", "[2606:2800:220:1::]:443"] {
            assert_eq!(d.check(addr(good)), Ok(()), "{good}");
        }
        assert!(d.check(addr("93.184.216.34:25")).is_err(), "port 25");
        assert!(!d.port_allowed(8080));
    }

    #[test]
    fn opt_in_rules_open_exactly_what_they_name_but_never_the_proxy() {
        let rules = vec![
            DestinationRule::try_from("127.0.0.0/8".to_string()).expect("cidr"),
            DestinationRule::try_from("127.0.0.3:8443".to_string()).expect("exact"),
        ];
        let d = Destinations::new(
            vec![80, 443],
            rules,
            vec![addr("127.0.0.1:3128"), addr("0.0.0.0:9000")],
        );
        assert_eq!(d.check(addr("127.0.0.2:80")), Ok(()));
        assert_eq!(d.check(addr("127.0.0.3:8443")), Ok(()));
        assert!(d.port_allowed(8443));
        assert!(
            d.check(addr("127.0.0.2:8443")).is_err(),
            "exact rule names one address"
        );
        assert!(d.check(addr("127.0.0.1:3128")).is_err(), "own listener");
        assert!(
            d.check(addr("127.0.0.7:9000")).is_err(),
            "wildcard listener"
        );
    }
}
