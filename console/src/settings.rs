//! `[console]` in `hallpass.toml`: where the console listens, who may sign in
//! in which role, how long a session lasts, and its TLS certificate.
//!
//! In: the `[console]` table. Out: checked [`Settings`]. Refused, naming the
//! key: unknown keys, unknown roles (the error lists the five), account names
//! that cannot be accounts, a zero or absurd timeout, a `[console.tls]` that
//! names both a CA certificate and files (or neither), and a listen address
//! beyond loopback without `[console.tls]` (staff passwords and pupils'
//! browsing would cross the network in clear).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use incidents::Role;
use serde::Deserialize;

/// `[console]`: where the console listens and who may use it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Addresses to listen on. Default: `["127.0.0.1:8080"]`. An empty list
    /// turns the console (and `/metrics`) off.
    pub listen: Vec<SocketAddr>,
    /// `[console.roles]`: account name → role. Only these accounts may sign in.
    pub roles: BTreeMap<String, Role>,
    /// A session unused for this long is ended (`idle_timeout`, default `15m`).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in however busy it is
    /// (`session_lifetime`, default `10h`).
    pub session_lifetime: Duration,
    /// `[console.tls]`: serve HTTPS. Required beyond loopback.
    pub tls: Option<TlsSettings>,
}

/// Where the console's TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSettings {
    /// `name = "console.school.lan"`: a certificate for this host name (or IP
    /// address) minted at start from the hallpass CA in the state directory,
    /// which the school's devices already trust.
    HallpassCa {
        /// The name browsers use to reach the console.
        name: String,
    },
    /// `cert = "…"`, `key = "…"`: PEM files (relative to `hallpass.toml`'s folder).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            roles: BTreeMap::new(),
            idle_timeout: Duration::from_secs(15 * 60),
            session_lifetime: Duration::from_secs(10 * 3600),
            tls: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Vec<SocketAddr>>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    idle_timeout: Option<String>,
    session_lifetime: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    name: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The longest idle timeout or session lifetime accepted: a week. Longer is a
/// typo, and a session that never ends is a hole.
const MAX_SESSION: Duration = Duration::from_secs(7 * 86_400);

impl Settings {
    /// Reads and checks `[console]` from the config's table; `file` names the
    /// config in errors. Every problem is reported at once.
    pub fn from_table(file: &str, table: &toml::Table) -> anyhow::Result<Settings> {
        let raw: Raw = table
            .clone()
            .try_into()
            .map_err(|e| anyhow::anyhow!("{file}: [console]: {e}"))?;
        let mut problems = Vec::new();
        let mut settings = Settings::default();
        if let Some(listen) = raw.listen {
            settings.listen = listen;
        }
        for (name, role) in &raw.roles {
            if let Err(e) = accounts::check_name(name) {
                problems.push(format!("[console.roles] `{name}`: {e}"));
            }
            match role.parse::<Role>() {
                Ok(r) => {
                    settings.roles.insert(name.clone(), r);
                }
                Err(e) => problems.push(format!("[console.roles] `{name}`: role {e}")),
            }
        }
        let mut duration = |key: &str, text: Option<String>, into: &mut Duration| {
            let Some(text) = text else { return };
            match incidents::duration::parse(&text) {
                Ok(d) if d >= Duration::from_secs(60) && d <= MAX_SESSION => *into = d,
                Ok(_) => problems.push(format!(
                    "[console] {key} = \"{text}\": expected between 1m and 7d"
                )),
                Err(e) => problems.push(format!("[console] {key}: {e}")),
            }
        };
        duration("idle_timeout", raw.idle_timeout, &mut settings.idle_timeout);
        duration(
            "session_lifetime",
            raw.session_lifetime,
            &mut settings.session_lifetime,
        );
        if settings.idle_timeout > settings.session_lifetime {
            problems.push(
                "[console] idle_timeout is longer than session_lifetime: it would never apply"
                    .into(),
            );
        }
        settings.tls = match raw.tls {
            None => None,
            Some(RawTls {
                name: Some(name),
                cert: None,
                key: None,
            }) => {
                if name.trim().is_empty() {
                    problems.push("[console.tls] name is empty".into());
                }
                Some(TlsSettings::HallpassCa { name })
            }
            Some(RawTls {
                name: None,
                cert: Some(cert),
                key: Some(key),
            }) => Some(TlsSettings::Files { cert, key }),
            Some(_) => {
                problems.push(
                    "[console.tls]: give either `name` (a certificate from the hallpass CA) or \
                     both `cert` and `key` (PEM files), not a mix"
                        .into(),
                );
                None
            }
        };
        if settings.tls.is_none() {
            for addr in &settings.listen {
                if !addr.ip().is_loopback() {
                    problems.push(format!(
                        "[console] listen {addr} is beyond loopback without [console.tls]: staff \
                         passwords and pupils' browsing would cross the network in clear \
                         (add [console.tls] with `name = \"<host name>\"` for a certificate from \
                         the hallpass CA, or `cert`/`key` files)"
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            anyhow::bail!(
                "{}",
                problems
                    .iter()
                    .map(|p| format!("{file}: {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Settings> {
        let table: toml::Table = toml::from_str(text).expect("toml");
        Settings::from_table("hallpass.toml", &table)
    }

    #[test]
    fn defaults_roles_and_durations() {
        let s = parse("").expect("empty is fine");
        assert_eq!(s.listen, vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
        assert!(s.roles.is_empty() && s.tls.is_none());
        let s = parse(
            "idle_timeout = \"20m\"\n[roles]\n\"j.smith\" = \"esafety-officer\"\n\"a.jones\" = \"governor\"\n",
        )
        .expect("valid");
        assert_eq!(s.roles["j.smith"], Role::EsafetyOfficer);
        assert_eq!(s.roles["a.jones"], Role::Governor);
        assert_eq!(s.idle_timeout, Duration::from_secs(1200));
    }

    #[test]
    fn refusals_name_the_key() {
        let err = parse("[roles]\n\"j.smith\" = \"boss\"\n")
            .expect_err("unknown role")
            .to_string();
        assert!(
            err.contains("hallpass.toml: [console.roles] `j.smith`")
                && err.contains("safeguarding-lead")
                && err.contains("`boss`"),
            "{err}"
        );
        let err = parse("colour = \"red\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("[console]") && err.contains("colour"), "{err}");
        let err = parse("[roles]\n\"J Smith!\" = \"governor\"\n")
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("`J Smith!`"), "{err}");
        let err = parse("idle_timeout = \"0s\"\n")
            .expect_err("zero")
            .to_string();
        assert!(err.contains("idle_timeout"), "{err}");
        let err = parse("[tls]\nname = \"x\"\ncert = \"c.pem\"\n")
            .expect_err("mix")
            .to_string();
        assert!(err.contains("[console.tls]"), "{err}");
    }

    #[test]
    fn beyond_loopback_needs_tls() {
        let err = parse("listen = [\"0.0.0.0:8443\"]\n")
            .expect_err("clear text on the LAN")
            .to_string();
        assert!(
            err.contains("0.0.0.0:8443") && err.contains("[console.tls]"),
            "{err}"
        );
        let s = parse("listen = [\"0.0.0.0:8443\"]\n[tls]\nname = \"console.school.lan\"\n")
            .expect("with TLS");
        assert_eq!(
            s.tls,
            Some(TlsSettings::HallpassCa {
                name: "console.school.lan".into()
            })
        );
        assert!(parse("listen = [\"[::1]:8080\"]\n").is_ok());
    }
}
