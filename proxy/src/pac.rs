//! Automatic proxy configuration: the PAC file served at `/proxy.pac` and
//! `/wpad.dat` (WPAD: devices set to "detect settings automatically" fetch
//! `http://wpad.<their domain>/wpad.dat`).
//!
//! In: `[pac]` of `hallpass.toml` and the proxy address. Out: a
//! `FindProxyForURL` that sends the school's own intranet (`direct`) straight
//! to it and everything else to the proxy, with no `DIRECT` fallback: a device
//! whose proxy is down must not browse unfiltered.
//!
//! Every name in the file is canonical (`[a-z0-9.-]`, checked when the config
//! is parsed), so nothing a technician writes can break out of a JavaScript
//! string.
use std::fmt::Write as _;
use std::net::IpAddr;

use policy::service::{PacDirect, PacSection};

/// The PAC file's media type.
pub const MIME: &str = "application/x-ns-proxy-autoconfig";

/// The paths the PAC file is served at.
pub const PATHS: [&str; 2] = ["/proxy.pac", "/wpad.dat"];

/// The PAC file for `pac`, naming `proxy` (`host:port`) unless `[pac] proxy`
/// names another address.
pub fn render(pac: &PacSection, proxy: &str) -> String {
    let proxy = pac.proxy.as_ref().map_or(proxy, |p| p.as_str());
    let mut out = String::from(
        "// Automatic proxy configuration from hallpass, the school's web filter.\n\
         // The school's own network is reached directly; everything else goes\n\
         // through the filter (with no direct fallback).\n\
         function FindProxyForURL(url, host) {\n",
    );
    let mut domains = Vec::new();
    let mut networks = Vec::new();
    for entry in &pac.direct {
        match entry {
            PacDirect::Domain(d) => domains.push(d.as_str()),
            PacDirect::Network(n) => networks.push(*n),
        }
    }
    if !domains.is_empty() {
        out.push_str("    host = host.toLowerCase();\n");
        out.push_str("    if (host.charAt(host.length - 1) == \".\") host = host.substring(0, host.length - 1);\n");
        for d in &domains {
            let _ = writeln!(
                out,
                "    if (host == \"{d}\" || dnsDomainIs(host, \".{d}\")) return \"DIRECT\";"
            );
        }
    }
    if !networks.is_empty() {
        // Only hosts typed as addresses are tested: isInNet on a name would
        // make every request wait for a DNS lookup in the browser.
        out.push_str("    if (/^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host)) {\n");
        for n in &networks {
            let IpAddr::V4(net) = n.network() else {
                continue;
            };
            let mask = u32::MAX
                .checked_shl(32 - u32::from(n.prefix()))
                .unwrap_or(0);
            let mask = std::net::Ipv4Addr::from(mask);
            let _ = writeln!(
                out,
                "        if (isInNet(host, \"{net}\", \"{mask}\")) return \"DIRECT\";"
            );
        }
        out.push_str("    }\n");
    }
    let _ = writeln!(out, "    return \"PROXY {proxy}\";\n}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> PacSection {
        toml::from_str(toml_text).expect("pac section")
    }

    #[test]
    fn without_exceptions_everything_goes_through_the_proxy() {
        let pac = render(&PacSection::default(), "10.1.2.3:3128");
        assert!(pac.contains("return \"PROXY 10.1.2.3:3128\";"), "{pac}");
        assert!(!pac.contains("DIRECT\";"), "{pac}");
    }

    #[test]
    fn the_intranet_is_direct_and_the_configured_address_wins() {
        let pac = render(
            &section(
                r#"proxy = "proxy.school.lan:8080"
direct = ["School.LAN", "10.0.0.0/8", "192.168.4.20"]"#,
            ),
            "127.0.0.1:3128",
        );
        assert!(
            pac.contains("return \"PROXY proxy.school.lan:8080\";"),
            "{pac}"
        );
        assert!(!pac.contains("127.0.0.1"), "{pac}");
        assert!(
            pac.contains("host == \"school.lan\" || dnsDomainIs(host, \".school.lan\")"),
            "{pac}"
        );
        assert!(
            pac.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"),
            "{pac}"
        );
        assert!(
            pac.contains("isInNet(host, \"192.168.4.20\", \"255.255.255.255\")"),
            "{pac}"
        );
    }
}
