//! The service sections of `hallpass.toml`: `[pac]` (what `/proxy.pac` and
//! `/wpad.dat` tell devices) and `[control]` (the local socket `hallpass
//! reload` talks to).
//!
//! In: the tables as TOML. Out: checked values. Refused, with `file:line:col`
//! (through the config parser): unknown keys, a PAC proxy address that is not
//! `host:port`, a direct entry that is neither a host name nor an IPv4 network.
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::IpCidr;

/// `[pac]`: automatic proxy configuration for the school's devices.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacSection {
    /// The proxy address devices are told to use (`proxy.school.lan:3128`).
    /// Default: the address the device fetched the PAC file from.
    pub proxy: Option<PacProxy>,
    /// Hosts and networks devices reach without the proxy: the school's own
    /// intranet (`school.lan` also covers its subdomains; `10.0.0.0/8` covers
    /// addresses typed as numbers). Default: none.
    pub direct: Vec<PacDirect>,
}

/// A `host:port` for the PAC file's `PROXY` line, host canonical.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PacProxy(String);

impl PacProxy {
    /// `host:port` as the PAC file writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PacProxy {
    type Error = String;
    fn try_from(text: String) -> Result<PacProxy, String> {
        let bad =
            || format!("expected a proxy address like \"proxy.school.lan:3128\", found {text:?}");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        let host = crate::host::canonicalize(host).map_err(|e| format!("{}: {e}", bad()))?;
        let host = host.as_str();
        // An IPv6 literal needs its brackets back in `host:port`.
        Ok(PacProxy(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }))
    }
}

/// One `direct` entry of `[pac]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PacDirect {
    /// A host name and its subdomains (canonical form).
    Domain(String),
    /// An IPv4 network, for hosts typed as addresses.
    Network(IpCidr),
}

impl TryFrom<String> for PacDirect {
    type Error = String;
    fn try_from(text: String) -> Result<PacDirect, String> {
        if text.contains('/') {
            let net: IpCidr = text.parse()?;
            if !net.network().is_ipv4() {
                return Err(format!(
                    "{text:?}: PAC files can test IPv4 networks only; list the intranet's host names instead"
                ));
            }
            return Ok(PacDirect::Network(net));
        }
        let host = crate::host::canonicalize(&text).map_err(|e| {
            format!("expected a host name like \"school.lan\" or a network like \"10.0.0.0/8\", found {text:?}: {e}")
        })?;
        match host.ip() {
            Some(std::net::IpAddr::V4(ip)) => Ok(PacDirect::Network(format!("{ip}/32").parse()?)),
            Some(std::net::IpAddr::V6(_)) => Err(format!(
                "{text:?}: PAC files can test IPv4 addresses only; list the host's name instead"
            )),
            None => Ok(PacDirect::Domain(host.as_str().to_string())),
        }
    }
}

/// `[control]`: the local socket `hallpass reload` talks to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// The socket's path (relative to the config file's folder). Default:
    /// `control.sock` in the state directory.
    pub socket: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_entries_are_hosts_or_ipv4_networks() {
        assert_eq!(
            PacDirect::try_from("Intranet.School.LAN.".to_string()),
            Ok(PacDirect::Domain("intranet.school.lan".into()))
        );
        assert!(matches!(
            PacDirect::try_from("10.0.0.0/8".to_string()),
            Ok(PacDirect::Network(n)) if n.prefix() == 8
        ));
        assert!(matches!(
            PacDirect::try_from("192.168.1.10".to_string()),
            Ok(PacDirect::Network(n)) if n.prefix() == 32
        ));
        assert!(PacDirect::try_from("fd00::/8".to_string()).is_err());
        assert!(PacDirect::try_from("bad host".to_string()).is_err());
    }

    #[test]
    fn the_proxy_address_needs_a_port() {
        assert_eq!(
            PacProxy::try_from("Proxy.School.LAN:3128".to_string()).map(|p| p.as_str().to_string()),
            Ok("proxy.school.lan:3128".to_string())
        );
        assert!(PacProxy::try_from("proxy.school.lan".to_string()).is_err());
        assert!(PacProxy::try_from("proxy.school.lan:0".to_string()).is_err());
    }
}
