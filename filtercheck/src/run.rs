//! Planning and running a check: which groups, as whom, and every probe.
//!
//! In: the suite, the policy, the groups asked for (none = every group of the
//! policy), the logins, and the address the proxy will see this machine
//! connect from. Out: one [`GroupPlan`] per group that can be identified, and
//! the groups that cannot (with why); then a [`Report`] once every probe of
//! every planned group has been sent.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use incidents::FilterCheckResult;

use crate::Error;
use crate::logins::Login;
use crate::probe::{Answer, Client, basic};
use crate::report::Report;
use crate::suite::Suite;

/// How one group is probed.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    /// The group.
    pub group: String,
    /// Its band.
    pub band: String,
    /// The `Proxy-Authorization` value, or `None` when the proxy identifies
    /// this machine as the group by its subnet.
    pub login: Option<HeaderValue>,
    /// How the group is identified, for the report (`login check-year3`,
    /// `subnet of 127.0.0.1`).
    pub identity: String,
}

/// Works out how to probe each group. Groups named in `requested` that are
/// unknown or cannot be identified are an error; when `requested` is empty,
/// every group of the policy is tried and those that cannot be identified
/// (or whose band the suite has no expectations for) are returned as skipped,
/// each with the reason.
pub fn plan(
    suite: &Suite,
    policy: &policy::Policy,
    requested: &[String],
    logins: &BTreeMap<String, Login>,
    client_ip: IpAddr,
) -> Result<(Vec<GroupPlan>, Vec<String>), Error> {
    let known: Vec<String> = policy.groups().iter().map(|g| g.name.to_string()).collect();
    for r in requested {
        if !known.contains(r) {
            return Err(Error::Group(format!(
                "unknown group `{r}` (the policy's groups: {})",
                known.join(", ")
            )));
        }
    }
    for name in logins.keys() {
        if !known.contains(name) {
            return Err(Error::Logins(format!(
                "the logins file has a login for `{name}`, which is not a group of the policy (its groups: {})",
                known.join(", ")
            )));
        }
    }
    let subnet_group = policy
        .group_for_ip(client_ip)
        .map(|id| policy.group(id).name.to_string());
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    for group in policy.groups() {
        let name = group.name.to_string();
        let asked = requested.contains(&name);
        if !requested.is_empty() && !asked {
            continue;
        }
        let band = group.band.to_string();
        let (login, identity) = if let Some(l) = logins.get(&name) {
            (
                Some(basic(&l.account, &l.password)),
                format!("login {}", l.account),
            )
        } else if subnet_group.as_deref() == Some(&name) {
            (None, format!("the subnet of {client_ip}"))
        } else {
            let why = format!(
                "group {name}: no login in the logins file and this machine ({client_ip}) is not in its subnet"
            );
            if asked {
                return Err(Error::Group(why));
            }
            skipped.push(why);
            continue;
        };
        if !suite.bands.contains_key(&band) {
            let why = format!("group {name}: the suite has no expectations for band {band}");
            if asked {
                return Err(Error::Group(why));
            }
            skipped.push(why);
            continue;
        }
        plans.push(GroupPlan {
            group: name,
            band,
            login,
            identity,
        });
    }
    Ok((plans, skipped))
}

/// Where and how to send the probes.
#[derive(Clone)]
pub struct Target {
    /// The running proxy.
    pub proxy: SocketAddr,
    /// TLS for HTTPS probes ([`crate::probe::tls_config`]).
    pub tls: Arc<rustls::ClientConfig>,
    /// The longest one probe may take (default 20 s: longer than the proxy's
    /// own upstream timeouts, so an unreachable site gets its 502 first).
    pub timeout: Duration,
    /// Probes in flight at once (default 8: a check must not load the proxy
    /// pupils are using).
    pub concurrency: usize,
}

impl Target {
    /// A target with the default timeout and concurrency.
    pub fn new(proxy: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Target {
        Target {
            proxy,
            tls,
            timeout: Duration::from_secs(20),
            concurrency: 8,
        }
    }
}

/// One probe to send, and what must happen.
#[derive(Clone, Debug)]
struct Probe {
    group: usize,
    kind: &'static str,
    category: String,
    url: String,
    expected: &'static str,
    /// For safe-search probes: the text the `Hallpass-Safe-Search` header must
    /// contain (lower-case).
    forced: Option<String>,
}

fn probes(suite: &Suite, plans: &[GroupPlan]) -> Vec<Probe> {
    let mut out = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let Some(band) = suite.bands.get(&plan.band) else {
            continue;
        };
        let mut push = |kind, category: &str, url: &str, expected, forced: Option<String>| {
            out.push(Probe {
                group: i,
                kind,
                category: category.to_string(),
                url: url.to_string(),
                expected,
                forced,
            });
        };
        for (category, urls) in &suite.baseline {
            for url in urls {
                push("baseline", category, url, "blocked", None);
            }
        }
        for category in &band.block {
            for url in suite.categories.get(category).into_iter().flatten() {
                push("block", category, url, "blocked", None);
            }
        }
        for (label, url) in &band.allow {
            push("allow", label, url, "allowed", None);
        }
        if let (true, Some(url)) = (band.safe_search, &suite.google) {
            push(
                "safe-search",
                "google",
                url,
                "enforced",
                Some("safe=active".into()),
            );
        }
        if let (Some(mode), Some(url)) = (&band.youtube, &suite.youtube) {
            push(
                "safe-search",
                "youtube",
                url,
                "enforced",
                Some(format!("youtube-restrict={mode}")),
            );
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Judges one answer: (outcome, status, pass, detail).
fn judge(probe: &Probe, answer: &Answer) -> (String, Option<u16>, bool, String) {
    let (status, verdict, safe) = match answer {
        Answer::Failed(why) => return ("error".into(), None, false, why.clone()),
        Answer::Response {
            status,
            verdict,
            safe_search,
        } => (*status, verdict.as_deref(), safe_search.as_deref()),
    };
    let outcome = match (verdict, status) {
        (Some("block"), 403) => "blocked",
        (Some("allow"), 502) => "allowed-unreachable",
        (Some("allow"), _) => "allowed",
        (Some(other), _) => {
            return (
                "error".into(),
                Some(status),
                false,
                format!("status {status} with an unexpected Hallpass-Verdict `{other}`"),
            );
        }
        (None, 407) => {
            return (
                "error".into(),
                Some(status),
                false,
                "the proxy refused the login (407): check the logins file".into(),
            );
        }
        (None, _) => {
            return (
                "error".into(),
                Some(status),
                false,
                format!(
                    "status {status} without a Hallpass-Verdict header: the request was refused before a decision, or this is not a hallpass proxy"
                ),
            );
        }
    };
    let mut detail = if outcome == "allowed-unreachable" {
        "the proxy allowed it; the site could not be reached from here (502)".to_string()
    } else {
        format!("status {status}")
    };
    if let Some(s) = safe {
        detail.push_str(&format!("; Hallpass-Safe-Search: {s}"));
    }
    match probe.expected {
        "blocked" => (outcome.into(), Some(status), outcome == "blocked", detail),
        "allowed" => (outcome.into(), Some(status), outcome != "blocked", detail),
        _ => {
            // Safe search: blocked outright is safe; allowed needs the proxy to
            // say it forced the engine's own filter.
            if outcome == "blocked" {
                return ("blocked".into(), Some(status), true, detail);
            }
            let want = probe.forced.clone().unwrap_or_default();
            let forced = safe.is_some_and(|s| {
                s.to_ascii_lowercase()
                    .split(',')
                    .any(|part| part.trim() == want)
            });
            let outcome = if forced { "enforced" } else { "not-enforced" };
            let detail = if forced {
                detail
            } else {
                format!("{detail}; expected the proxy to force {want}")
            };
            (outcome.into(), Some(status), forced, detail)
        }
    }
}

/// Sends every probe of every planned group through the proxy and judges the
/// answers. `skipped` (from [`plan`]) is carried into the report.
pub async fn run(
    suite: &Suite,
    plans: &[GroupPlan],
    skipped: Vec<String>,
    target: &Target,
) -> Report {
    let started_ms = now_ms();
    let client = Client {
        proxy: target.proxy,
        tls: target.tls.clone(),
        timeout: target.timeout,
    };
    let list = probes(suite, plans);
    let permits = Arc::new(tokio::sync::Semaphore::new(target.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(list.len());
    for probe in &list {
        let client = client.clone();
        let login = plans[probe.group].login.clone();
        let url = probe.url.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            client.probe(&url, login.as_ref()).await
        }));
    }
    let mut results = Vec::with_capacity(list.len());
    for (probe, task) in list.iter().zip(tasks) {
        let answer = task
            .await
            .unwrap_or_else(|e| Answer::Failed(format!("the probe task failed: {e}")));
        let (outcome, status, pass, detail) = judge(probe, &answer);
        let plan = &plans[probe.group];
        results.push(FilterCheckResult {
            group: plan.group.clone(),
            band: plan.band.clone(),
            kind: probe.kind.into(),
            category: probe.category.clone(),
            url: probe.url.clone(),
            expected: probe.expected.into(),
            outcome,
            status,
            pass,
            detail,
        });
    }
    Report {
        started_ms,
        finished_ms: now_ms(),
        proxy: target.proxy,
        groups: plans
            .iter()
            .map(|p| (p.group.clone(), p.band.clone(), p.identity.clone()))
            .collect(),
        skipped,
        results,
    }
}

/// The address to dial for a proxy listen address: a wildcard (`0.0.0.0`,
/// `[::]`) is reached on loopback.
pub fn dial_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The address the proxy sees this machine connect from (what `[[subnets]]`
/// match on): the local end of a connection to it.
pub async fn local_address(proxy: SocketAddr) -> std::io::Result<IpAddr> {
    let stream = tokio::net::TcpStream::connect(proxy).await?;
    Ok(stream.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(expected: &'static str, forced: Option<&str>) -> Probe {
        Probe {
            group: 0,
            kind: "block",
            category: "c".into(),
            url: "http://x.test/".into(),
            expected,
            forced: forced.map(String::from),
        }
    }

    fn response(status: u16, verdict: Option<&str>, safe: Option<&str>) -> Answer {
        Answer::Response {
            status,
            verdict: verdict.map(String::from),
            safe_search: safe.map(String::from),
        }
    }

    #[test]
    fn only_the_block_page_counts_as_blocked_and_only_the_proxys_allow_as_allowed() {
        let must_block = probe("blocked", None);
        let must_allow = probe("allowed", None);
        let cases = [
            (response(403, Some("block"), None), "blocked", true, false),
            (response(200, Some("allow"), None), "allowed", false, true),
            (
                response(502, Some("allow"), None),
                "allowed-unreachable",
                false,
                true,
            ),
            (response(403, Some("allow"), None), "allowed", false, true),
            // A 403 from somewhere else (an origin, another proxy) is no block page.
            (response(403, None, None), "error", false, false),
            (response(407, None, None), "error", false, false),
            (response(502, None, None), "error", false, false),
            (Answer::Failed("refused".into()), "error", false, false),
        ];
        for (answer, outcome, block_pass, allow_pass) in cases {
            let (o, _, p, _) = judge(&must_block, &answer);
            assert_eq!((o.as_str(), p), (outcome, block_pass), "{answer:?}");
            let (o, _, p, _) = judge(&must_allow, &answer);
            assert_eq!((o.as_str(), p), (outcome, allow_pass), "{answer:?}");
        }
    }

    #[test]
    fn wildcard_listen_addresses_are_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:3128".parse().expect("addr");
        assert_eq!(dial_address(a), "127.0.0.1:3128".parse().expect("addr"));
        let b: SocketAddr = "[::]:3128".parse().expect("addr");
        assert_eq!(dial_address(b), "[::1]:3128".parse().expect("addr"));
        let c: SocketAddr = "10.0.0.5:3128".parse().expect("addr");
        assert_eq!(dial_address(c), c);
    }

    #[test]
    fn safe_search_needs_the_forced_value_or_a_block() {
        let google = probe("enforced", Some("safe=active"));
        let (o, _, p, _) = judge(&google, &response(502, Some("allow"), Some("safe=active")));
        assert_eq!((o.as_str(), p), ("enforced", true));
        let (o, _, p, d) = judge(&google, &response(200, Some("allow"), None));
        assert_eq!((o.as_str(), p), ("not-enforced", false));
        assert!(d.contains("safe=active"), "{d}");
        let (o, _, p, _) = judge(&google, &response(403, Some("block"), None));
        assert_eq!((o.as_str(), p), ("blocked", true));
        let yt = probe("enforced", Some("youtube-restrict=strict"));
        let (_, _, p, _) = judge(
            &yt,
            &response(502, Some("allow"), Some("youtube-restrict=Moderate")),
        );
        assert!(!p, "moderate is not strict");
        let (_, _, p, _) = judge(
            &yt,
            &response(502, Some("allow"), Some("youtube-restrict=Strict")),
        );
        assert!(p);
    }
}
