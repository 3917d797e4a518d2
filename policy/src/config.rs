//! The main configuration file, `hallpass.toml`: where the policy and the lists
//! are, where state lives, and how the daemon listens.
//!
//! In: the file's text and its name. Out: a [`Config`] whose relative paths are
//! still as written (the caller resolves them against the file's own folder, since
//! this crate does no I/O). Refused, with `file:line:col`: unknown keys, a wrong
//! version, a list source without a path, an unknown list format.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::source::{Location, Problems};

/// The only configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A parsed `hallpass.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The name the file was read under (used in messages).
    pub file: Arc<str>,
    /// The policy file, as written (relative to this file's folder).
    pub policy: PathBuf,
    /// The state directory (accounts, CA, events), as written.
    pub state_dir: PathBuf,
    /// List sources by name (`ut1`, `baseline`, ...): what `ut1:adult` refers to.
    pub lists: BTreeMap<String, ListSource>,
    /// The proxy listener's settings.
    pub proxy: ProxySection,
    /// `[accounts]`, kept as a table: the accounts crate reads it (with its own
    /// unknown-key checks), since this crate does no I/O and cannot depend on it.
    pub accounts: toml::Table,
    /// `[incidents]`, kept as a table for the incidents crate, likewise.
    pub incidents: toml::Table,
    /// `[console]` (the staff web console and `/metrics`), kept as a table for
    /// the console crate, likewise.
    pub console: toml::Table,
    /// `[pac]`: what `/proxy.pac` and `/wpad.dat` tell devices.
    pub pac: crate::service::PacSection,
    /// `[control]`: the socket `hallpass reload` talks to.
    pub control: crate::service::ControlSection,
}

/// The format of a list source.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// A UT1/squidGuard tree: `<path>/<list>/{domains,urls,expressions}`.
    Squidguard,
    /// A folder of hosts files: `<path>/<list>` (or `<list>.gz`) is one hosts file.
    Hosts,
}

/// Where the lists of one source live.
#[derive(Clone, Debug)]
pub struct ListSource {
    /// The list format.
    pub format: ListFormat,
    /// The folder, as written (relative to the config file's folder).
    pub path: PathBuf,
    /// Where the source is defined.
    pub at: Location,
}

/// `[proxy]`: how the proxy listens, how long it waits and what it may dial.
///
/// Every key is optional; the defaults are the ones a school should run with.
/// Durations are written as text: `"10s"`, `"250ms"`, `"5m"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Addresses to listen on. Default: `["127.0.0.1:3128"]`.
    pub listen: Vec<SocketAddr>,
    /// Other names clients use to reach the proxy itself (e.g. `proxy.school.lan`),
    /// so `http://<name>:<port>/hallpass-ca.crt` is answered by the proxy instead
    /// of being forwarded. The listen addresses always count. Default: none.
    pub names: Vec<String>,
    /// Destination ports a request or a CONNECT may name. Default: `[80, 443]`.
    /// Everything else (SMTP, SSH, the proxy's own port, ...) is refused before any
    /// name is resolved.
    pub allowed_ports: Vec<u16>,
    /// Open connections one client address may hold at once; more are closed at
    /// accept. Default: 256 (a browser opens 6 per host; shared NAT needs more).
    pub max_connections_per_ip: u32,
    /// Open client connections in total; more wait in the kernel's backlog.
    /// Default: 10000.
    pub max_connections: u32,
    /// How long a client may take to send a whole request head, and how long an
    /// idle keep-alive connection is kept between requests. Default: `"10s"`.
    pub header_read_timeout: Duration,
    /// How long dialling an upstream TCP connection may take. Default: `"10s"`.
    pub connect_timeout: Duration,
    /// How long a TLS handshake may take (ClientHello from the client, the
    /// upstream handshake). Default: `"10s"`.
    pub tls_handshake_timeout: Duration,
    /// How long a tunnel or an upstream response may be silent in both
    /// directions before it is closed. Default: `"5m"`.
    pub idle_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish before their
    /// connections are closed. Default: `"10s"`.
    pub shutdown_grace: Duration,
    /// Intercept HTTPS with the school CA (needed to decide on whole HTTPS URLs, to
    /// show the block page inside HTTPS and to force safe search). When off, CONNECT
    /// tunnels are spliced and decided on the host name and the TLS SNI only.
    /// Default: true.
    pub intercept: bool,
    /// Leaf certificates minted for intercepted hosts are valid for this many days.
    /// Default: 7.
    pub leaf_days: u32,
    /// How many leaf certificates are kept in memory. Default: 10000.
    pub leaf_cache_size: usize,
    /// Extra PEM files of root certificates trusted for upstream TLS, on top of the
    /// built-in Mozilla roots (e.g. a school's internal CA). Relative to this file.
    pub upstream_roots: Vec<PathBuf>,
    /// Destinations that are normally refused (loopback, private, link-local
    /// ranges) but may be dialled: a CIDR (`"10.0.0.0/8"`) opens that range on the
    /// allowed ports; an address with a port (`"127.0.0.1:8080"`) opens exactly
    /// that address and port. The proxy's own listeners stay refused. Default: none.
    pub dangerous_allow_destinations: Vec<DestinationRule>,
    /// The "ask for a review" link on the block page; `{ref}` is replaced by the
    /// block's reference and `{url}` by the blocked URL (percent-encoded). Default:
    /// the proxy's own review page.
    pub review_url: Option<String>,
    /// How many block events may wait for the event sink before new ones go to the
    /// spool file. Default: 4096.
    pub event_queue: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3128))],
            names: Vec::new(),
            allowed_ports: vec![80, 443],
            max_connections_per_ip: 256,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            intercept: true,
            leaf_days: 7,
            leaf_cache_size: 10_000,
            upstream_roots: Vec::new(),
            dangerous_allow_destinations: Vec::new(),
            review_url: None,
            event_queue: 4096,
        }
    }
}

/// A span of time written as text (`"10s"`, `"250ms"`, `"5m"`, `"1h"`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }
}

impl TryFrom<String> for Duration {
    type Error = String;
    fn try_from(text: String) -> Result<Duration, String> {
        text.parse()
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(text: &str) -> Result<Duration, String> {
        let unit_at = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(unit_at);
        let expected =
            || format!("expected a duration like \"10s\", \"250ms\" or \"5m\", found {text:?}");
        let n: u64 = digits.parse().map_err(|_| expected())?;
        let d = match unit {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
            "h" => std::time::Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(expected()),
        };
        if d.is_zero() {
            return Err(format!("a duration must be more than zero, found {text:?}"));
        }
        Ok(Duration(d))
    }
}

/// One entry of `dangerous_allow_destinations`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DestinationRule {
    /// Every address in a range, on the allowed ports.
    Range(IpCidr),
    /// Exactly this address and port.
    Exact(SocketAddr),
}

impl DestinationRule {
    /// Whether this rule opens `addr`. `port_allowed` says whether the port is
    /// one of `allowed_ports` (a range only opens those; an exact rule names its own).
    pub fn opens(&self, addr: SocketAddr, port_allowed: bool) -> bool {
        match self {
            DestinationRule::Range(cidr) => port_allowed && cidr.contains(addr.ip()),
            DestinationRule::Exact(exact) => {
                canonical_ip(exact.ip()) == canonical_ip(addr.ip()) && exact.port() == addr.port()
            }
        }
    }
}

impl TryFrom<String> for DestinationRule {
    type Error = String;
    fn try_from(text: String) -> Result<DestinationRule, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(DestinationRule::Exact(addr));
        }
        text.parse::<IpCidr>().map(DestinationRule::Range).map_err(|_| {
            format!("expected a CIDR range like \"10.0.0.0/8\" or an address with a port like \"127.0.0.1:8080\", found {text:?}")
        })
    }
}

/// An IP address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// The network address, as written.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_bits_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_bits_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpCidr {
    type Err = String;
    fn from_str(text: &str) -> Result<IpCidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("expected address/prefix, found {text:?}"))?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("expected an IP address, found {addr:?}"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max && !prefix.starts_with('+'))
            .ok_or_else(|| format!("expected a prefix length from 0 to {max}, found {prefix:?}"))?;
        Ok(IpCidr {
            network: canonical_ip(network),
            prefix,
        })
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_bits_equal(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: toml::Spanned<u32>,
    policy: PathBuf,
    state_dir: PathBuf,
    #[serde(default)]
    lists: BTreeMap<String, toml::Spanned<RawListSource>>,
    #[serde(default)]
    proxy: ProxySection,
    #[serde(default)]
    accounts: toml::Table,
    #[serde(default)]
    incidents: toml::Table,
    #[serde(default)]
    console: toml::Table,
    #[serde(default)]
    pac: crate::service::PacSection,
    #[serde(default)]
    control: crate::service::ControlSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListSource {
    format: ListFormat,
    path: PathBuf,
}

impl Config {
    /// Parses `hallpass.toml` text read from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Config, Problems> {
        let file: Arc<str> = file.into();
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_problem(&file, text, &e))?;
        let mut problems = Problems::default();
        if *raw.version.get_ref() != CONFIG_VERSION {
            problems.push(
                Location::at_offset(&file, text, raw.version.span().start),
                format!(
                    "unsupported config version {}: this build reads version {CONFIG_VERSION}",
                    raw.version.get_ref()
                ),
            );
        }
        let mut lists = BTreeMap::new();
        for (name, source) in raw.lists {
            let at = Location::at_offset(&file, text, source.span().start);
            if !valid_source_name(&name) {
                problems.push(
                    at.clone(),
                    format!(
                        "list source name `{name}` must be lower-case letters, digits, `-` or `_`"
                    ),
                );
            }
            let source = source.into_inner();
            lists.insert(
                name,
                ListSource {
                    format: source.format,
                    path: source.path,
                    at,
                },
            );
        }
        problems.into_result(Config {
            file,
            policy: raw.policy,
            state_dir: raw.state_dir,
            lists,
            proxy: raw.proxy,
            accounts: raw.accounts,
            incidents: raw.incidents,
            console: raw.console,
            pac: raw.pac,
            control: raw.control,
        })
    }
}

/// Whether `name` is a valid list-source or list name: `[a-z0-9_-]+`.
pub(crate) fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Turns a TOML syntax or type error into a located problem.
pub(crate) fn toml_problem(file: &Arc<str>, text: &str, e: &toml::de::Error) -> Problems {
    let at = match e.span() {
        Some(span) => Location::at_offset(file, text, span.start),
        None => Location::file_start(file),
    };
    let mut problems = Problems::default();
    problems.push(at, e.message().trim().to_string());
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
policy = "primary/policy.toml"
state_dir = "../state"

[lists.ut1]
format = "squidguard"
path = "../blocklists/lists/ut1"

[proxy]
listen = ["127.0.0.1:3128", "[::1]:3128"]
"#;

    #[test]
    fn parses_a_good_config() {
        let c = Config::parse("hallpass.toml", GOOD).expect("valid config");
        assert_eq!(c.policy, PathBuf::from("primary/policy.toml"));
        assert_eq!(c.lists["ut1"].format, ListFormat::Squidguard);
        assert_eq!(c.proxy.listen.len(), 2);
    }

    #[test]
    fn unknown_key_is_located() {
        let text = GOOD.replace("[proxy]\n", "[proxy]\nlisen = 1\n");
        let err = Config::parse("hallpass.toml", &text).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("hallpass.toml:11:"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn wrong_version_is_refused() {
        let text = GOOD.replace("version = 1", "version = 2");
        let err = Config::parse("c.toml", &text).expect_err("version 2");
        assert!(
            err.to_string()
                .starts_with("c.toml:2:11: unsupported config version 2"),
            "{err}"
        );
    }

    #[test]
    fn proxy_defaults_and_durations() {
        let c = Config::parse(
            "c.toml",
            "version = 1\npolicy = \"p.toml\"\nstate_dir = \"s\"\n",
        )
        .expect("minimal config");
        assert_eq!(c.proxy.allowed_ports, vec![80, 443]);
        assert!(c.proxy.intercept);
        let text = GOOD.replace(
            "[proxy]\n",
            "[proxy]\nheader_read_timeout = \"250ms\"\nidle_timeout = \"2m\"\n",
        );
        let c = Config::parse("c.toml", &text).expect("durations");
        assert_eq!(
            c.proxy.header_read_timeout.0,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(c.proxy.idle_timeout.0, std::time::Duration::from_secs(120));
        let text = GOOD.replace("[proxy]\n", "[proxy]\nconnect_timeout = \"10 s\"\n");
        let err = Config::parse("c.toml", &text).expect_err("bad duration");
        assert!(err.to_string().starts_with("c.toml:11:19:"), "{err}");
    }

    #[test]
    fn destination_rules_parse_and_match() {
        let text = GOOD.replace(
            "[proxy]\n",
            "[proxy]\ndangerous_allow_destinations = [\"127.0.0.0/8\", \"[::1]:8443\", \"10.1.0.0/16\"]\n",
        );
        let c = Config::parse("c.toml", &text).expect("rules");
        let rules = &c.proxy.dangerous_allow_destinations;
        let at = |s: &str| s.parse::<SocketAddr>().expect("test address");
        assert!(rules[0].opens(at("127.0.0.5:80"), true));
        assert!(!rules[0].opens(at("127.0.0.5:8080"), false));
        assert!(rules[1].opens(at("[::1]:8443"), false));
        assert!(!rules[1].opens(at("[::1]:8444"), false));
        assert!(rules[2].opens(at("10.1.200.3:443"), true));
        assert!(!rules[2].opens(at("10.2.0.1:443"), true));
        assert!(rules[0].opens(at("[::ffff:127.0.0.1]:80"), true));
        for bad in ["10.0.0.0/33", "10.0.0.0", "localhost:80", "10.0.0.0/+8"] {
            let text = GOOD.replace(
                "[proxy]\n",
                &format!("[proxy]\ndangerous_allow_destinations = [{bad:?}]\n"),
            );
            assert!(Config::parse("c.toml", &text).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_list_format_is_refused() {
        let text = GOOD.replace("squidguard", "csv");
        let err = Config::parse("c.toml", &text).expect_err("csv");
        assert!(err.to_string().contains("csv"), "{err}");
    }
}
