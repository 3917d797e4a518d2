//! The main configuration file, `hallpass.toml`: where the policy and the lists
//! are, where state lives, and how the daemon listens.
//!
//! In: the file's text and its name. Out: a [`Config`] whose relative paths are
//! still as written (the caller resolves them against the file's own folder, since
//! this crate does no I/O). Refused, with `file:line:col`: unknown keys, a wrong
//! version, a list source without a path, an unknown list format.
use std::collections::BTreeMap;
use std::net::SocketAddr;
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

/// `[proxy]`: how the proxy listens and what it may dial.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Addresses to listen on.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection { listen: default_listen() }
    }
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 3128))]
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
                format!("unsupported config version {}: this build reads version {CONFIG_VERSION}", raw.version.get_ref()),
            );
        }
        let mut lists = BTreeMap::new();
        for (name, source) in raw.lists {
            let at = Location::at_offset(&file, text, source.span().start);
            if !valid_source_name(&name) {
                problems.push(at.clone(), format!("list source name `{name}` must be lower-case letters, digits, `-` or `_`"));
            }
            let source = source.into_inner();
            lists.insert(name, ListSource { format: source.format, path: source.path, at });
        }
        problems.into_result(Config { file, policy: raw.policy, state_dir: raw.state_dir, lists, proxy: raw.proxy })
    }
}

/// Whether `name` is a valid list-source or list name: `[a-z0-9_-]+`.
pub(crate) fn valid_source_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
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
        assert!(err.to_string().starts_with("c.toml:2:11: unsupported config version 2"), "{err}");
    }

    #[test]
    fn unknown_list_format_is_refused() {
        let text = GOOD.replace("squidguard", "csv");
        let err = Config::parse("c.toml", &text).expect_err("csv");
        assert!(err.to_string().contains("csv"), "{err}");
    }
}
