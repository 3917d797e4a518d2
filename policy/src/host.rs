//! Canonical hosts: the one spelling of a host that is decided, dialled and logged.
//!
//! In: a host as a browser, a `CONNECT` line, a `Host` header or a list entry spells
//! it (any case, trailing dot, percent-encoded bytes, Unicode or punycode, IPv6 in
//! brackets, any IPv4 spelling a browser accepts). Out: a [`CanonicalHost`].
//! Refused: anything a browser would refuse or could read two ways.
//!
//! CONTRACT (implementation pending): see `canonicalize`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalHost {
    text: Box<str>,
    ip: Option<IpAddr>,
}

impl CanonicalHost {
    /// The canonical text: lower-case A-labels without a trailing dot, a dotted
    /// quad for IPv4, or the RFC 5952 form (no brackets) for IPv6.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Builds a host from an IPv4 address.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        CanonicalHost { text: ip.to_string().into(), ip: Some(IpAddr::V4(ip)) }
    }

    /// Builds a host from an IPv6 address (an IPv4-mapped address becomes IPv4).
    pub fn from_ipv6(ip: Ipv6Addr) -> Self {
        match ip.to_ipv4_mapped() {
            Some(v4) => Self::from_ipv4(v4),
            None => CanonicalHost { text: ip.to_string().into(), ip: Some(IpAddr::V6(ip)) },
        }
    }
}

impl std::fmt::Display for CanonicalHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a host was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Placeholder until the canonicaliser lands.
    #[error("invalid host: {0}")]
    Invalid(String),
}

/// Canonicalises one host (no port, no userinfo; IPv6 may be in brackets).
pub fn canonicalize(input: &str) -> Result<CanonicalHost, HostError> {
    let _ = input;
    todo!("canonicalize")
}

/// Splits an authority (`[userinfo@]host[:port]`) into a canonical host and an
/// optional port. The userinfo is dropped and never returned.
pub fn canonicalize_authority(input: &str) -> Result<(CanonicalHost, Option<u16>), HostError> {
    let _ = input;
    todo!("canonicalize_authority")
}
