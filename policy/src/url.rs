//! Canonical URLs: what URL rules and keyword rules are matched against.
//!
//! CONTRACT (implementation pending).
use crate::host::{CanonicalHost, HostError};

/// The scheme of a request. Only the web schemes a proxy carries are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`
    Http,
    /// `https` (a CONNECT tunnel or an intercepted request)
    Https,
}

impl Scheme {
    /// The default port of the scheme.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A request URL in the canonical form used for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalUrl {
    scheme: Scheme,
    host: CanonicalHost,
    port: u16,
    path: String,
    query: Option<String>,
}

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The host part was refused.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Placeholder until the parser lands.
    #[error("invalid url: {0}")]
    Invalid(String),
}

impl CanonicalUrl {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let _ = input;
        todo!("CanonicalUrl::parse")
    }

    /// Builds a URL from a scheme, an authority and an origin-form path and query
    /// (as inside an intercepted tunnel).
    pub fn from_parts(scheme: Scheme, authority: &str, path_and_query: &str) -> Result<Self, UrlError> {
        let _ = (scheme, authority, path_and_query);
        todo!("CanonicalUrl::from_parts")
    }

    /// A URL for a host only (a CONNECT target or a spliced tunnel): path `/`.
    pub fn for_host(scheme: Scheme, host: CanonicalHost, port: u16) -> Self {
        CanonicalUrl { scheme, host, port, path: "/".into(), query: None }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// The canonical host.
    pub fn host(&self) -> &CanonicalHost {
        &self.host
    }
    /// The port (the scheme's default when none was given).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The normalised path, always starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The normalised query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}
