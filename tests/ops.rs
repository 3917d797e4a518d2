//! Running it for real: the `hallpass` binary with a control socket, reloads
//! (`hallpass reload` and SIGHUP) under traffic, `/metrics` on the console
//! listener, and the PAC file.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::harness::{self, Options, OriginCa, get, send};

/// The test policy plus a keyword rule that the reload tests flip.
fn policy_with_keywords(words: &[&str]) -> String {
    let list: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    harness::POLICY.replace(
        "domains = [\"blocked.test\"]",
        &format!(
            "domains = [\"blocked.test\"]\nkeywords = [{}]",
            list.join(", ")
        ),
    )
}

/// A `hallpass run` process on a scratch config, killed when dropped.
struct Running {
    child: Child,
    proxy: SocketAddr,
    console: SocketAddr,
    config: PathBuf,
    origin: harness::Origin,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(extra_toml: &str) -> Running {
        let origin = harness::origin::http_origin(harness::ORIGIN_IP).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            // Appended at the end of the file, after [proxy].
            proxy_toml: format!("\n[console]\nlisten = [\"127.0.0.1:0\"]\n{extra_toml}"),
            policy: Some(policy_with_keywords(&["neverused"])),
            ..Options::default()
        };
        harness::write_config(
            dir.path(),
            &OriginCa::new("ops test origin CA"),
            &[origin.addr],
            &options,
        );
        let config = dir.path().join("hallpass.toml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hallpass"))
            .arg("-c")
            .arg(&config)
            .args(["run", "--text-log"])
            .env_remove("HALLPASS_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hallpass run starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut proxy, mut console) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while proxy.is_none() || console.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("hallpass run did not start: {seen:#?}");
            };
            if let Some(rest) = line.strip_prefix("hallpass: listening on ") {
                proxy = rest.split(';').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("hallpass: staff console on http://") {
                console = rest.trim_end_matches('/').parse().ok();
            }
            seen.push(line);
        }
        // Keep draining stderr so the process never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Running {
            child,
            proxy: proxy.expect("proxy address"),
            console: console.expect("console address"),
            config,
            origin,
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self.config.parent().expect("config folder")
    }

    fn write_policy(&self, text: &str) {
        std::fs::write(self.dir().join("policy.toml"), text).expect("policy");
    }

    /// `hallpass <args>` on this config.
    async fn hallpass(&self, args: &[&str]) -> Output {
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_hallpass"))
                .arg("-c")
                .arg(config)
                .args(args)
                .env_remove("HALLPASS_CONFIG")
                .output()
                .expect("hallpass runs")
        })
        .await
        .expect("join")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.origin.addr)
    }

    async fn metrics(&self) -> prometheus_parse::Scrape {
        let reply = send(
            self.console,
            Request::get("/metrics")
                .header("host", self.console.to_string())
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain; version=0.0.4"),
            "{:?}",
            reply.headers
        );
        strict_lines(&reply.body);
        prometheus_parse::Scrape::parse(reply.body.lines().map(|l| Ok(l.to_string())))
            .expect("/metrics parses as Prometheus text")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line is a comment (`# HELP`/`# TYPE`) or `name{labels} value`, as the
/// text format requires: the parser crate is lenient about stray lines.
fn strict_lines(text: &str) {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.e+-]+|\+Inf|NaN)$"#,
    )
    .expect("regex");
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP ") || line.starts_with("# TYPE ") || sample.is_match(line),
            "not Prometheus text: {line:?}"
        );
    }
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .next()
        .unwrap_or(0.0)
}

fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .and_then(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_valid_reload_applies_to_new_requests_while_a_download_in_flight_completes() {
    let p = Running::start("").await;
    assert_eq!(get(p.proxy, &p.url("/?tag=flip")).await.status, 200);

    // A slow download is in flight when the policy changes.
    let proxy = p.proxy;
    let slow = p.url("/slow?ms=1500&tag=flip");
    let in_flight = tokio::spawn(async move { get(proxy, &slow).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p
        .origin
        .requests()
        .iter()
        .any(|r| r.uri.starts_with("/slow"))
    {
        assert!(
            Instant::now() < deadline,
            "the slow request reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.write_policy(&policy_with_keywords(&["flip"]));
    let out = p.hallpass(&["reload"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("generation 2"), "{stdout}");

    // New requests get the new policy at once...
    let after = get(p.proxy, &p.url("/?tag=flip")).await;
    assert_eq!(after.status, 403, "{}", after.body);
    // ...while the download decided under the old one completes.
    let finished = in_flight.await.expect("in-flight task");
    assert_eq!(finished.status, 200);
    assert_eq!(finished.body, "origin GET /slow?ms=1500&tag=flip");

    let m = p.metrics().await;
    assert_eq!(value(&m, "hallpass_reloads_total", &[]), 1.0);
    assert_eq!(value(&m, "hallpass_reload_failures_total", &[]), 0.0);
    assert_eq!(value(&m, "hallpass_policy_generation", &[]), 2.0);
    assert!(value(&m, "hallpass_reload_last_success_timestamp_seconds", &[]) > 1.7e9);

    // SIGHUP reloads too: flip the rule back and wait for it to take effect.
    p.write_policy(&policy_with_keywords(&["neverused"]));
    let pid = p.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(p.proxy, &p.url("/?tag=flip")).await.status != 200 {
        assert!(Instant::now() < deadline, "SIGHUP reload took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        value(&p.metrics().await, "hallpass_policy_generation", &[]),
        3.0
    );
}

#[tokio::test]
async fn a_broken_reload_keeps_the_old_verdicts_and_reports_file_line_col() {
    let p = Running::start("").await;
    // An unknown category in a band: the same problem `check` reports.
    let broken = harness::POLICY.replace("block = [\"games\"]", "block = [\"gamez\"]");
    p.write_policy(&broken);
    let out = p.hallpass(&["reload"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = broken
        .lines()
        .position(|l| l.contains("gamez"))
        .expect("the broken line")
        + 1;
    assert!(
        stderr.contains(&format!("policy.toml:{line}:")) && stderr.contains("gamez"),
        "{stderr}"
    );
    assert!(stderr.contains("the running policy is kept"), "{stderr}");
    // The same lines as `hallpass check` prints for the same file.
    let check = p.hallpass(&["check"]).await;
    let check_err = String::from_utf8_lossy(&check.stderr);
    let problems: Vec<&str> = check_err.lines().filter(|l| l.contains("gamez")).collect();
    assert!(!problems.is_empty(), "{check_err}");
    for problem in problems {
        assert!(stderr.contains(problem), "{problem} not in {stderr}");
    }

    // The running policy still decides: games blocked, the origin allowed.
    assert_eq!(get(p.proxy, &p.url("/")).await.status, 200);
    assert_eq!(get(p.proxy, "http://games.test/").await.status, 403);
    let m = p.metrics().await;
    assert_eq!(value(&m, "hallpass_reload_failures_total", &[]), 1.0);
    assert_eq!(value(&m, "hallpass_reloads_total", &[]), 0.0);
    assert_eq!(value(&m, "hallpass_policy_generation", &[]), 1.0);
}

#[tokio::test]
async fn reload_without_a_running_proxy_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    harness::write_config(
        dir.path(),
        &OriginCa::new("unused"),
        &[],
        &Options::default(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(dir.path().join("hallpass.toml"))
        .arg("reload")
        .env_remove("HALLPASS_CONFIG")
        .output()
        .expect("hallpass runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach a running hallpass") && stderr.contains("control.sock"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_control_socket_is_private_to_the_service() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let p = Running::start("").await;
    let socket = p.dir().join("state/control.sock");
    let meta = std::fs::metadata(&socket).expect("control socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let p = Running::start("").await;
    let before = p.metrics().await;
    for name in [
        "hallpass_requests_total",
        "hallpass_request_duration_seconds",
        "hallpass_tls_handshakes_total",
        "hallpass_tls_handshake_failures_total",
        "hallpass_leaf_cache_hits_total",
        "hallpass_upstream_connections_total",
        "hallpass_event_queue_depth",
        "hallpass_event_spool_bytes",
        "hallpass_events_total",
        "hallpass_event_sink_errors_total",
        "hallpass_reloads_total",
        "hallpass_reload_failures_total",
        "hallpass_reload_last_success_timestamp_seconds",
        "hallpass_policy_generation",
        "hallpass_alerts_sent_total",
        "hallpass_alert_failed_attempts_total",
        "hallpass_alerts_given_up_total",
    ] {
        assert!(
            before.samples.iter().any(|s| s.metric == name),
            "{name} missing from /metrics"
        );
    }

    for _ in 0..3 {
        assert_eq!(get(p.proxy, &p.url("/")).await.status, 200);
    }
    assert_eq!(get(p.proxy, "http://games.test/").await.status, 403);
    assert_eq!(get(p.proxy, "http://blocked.test/").await.status, 403);
    // A wrong password: counted as a failed login.
    let bad_login = send(
        p.proxy,
        Request::get(p.url("/"))
            .header("proxy-authorization", "Basic bm9ib2R5Ondyb25n")
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(bad_login.status, 407);
    // Two intercepted tunnels to one name: a minted leaf, then a cached one.
    let ca = std::fs::read_to_string(p.dir().join("state/ca/hallpass-ca.crt")).expect("CA");
    for _ in 0..2 {
        let page = harness::https_get(p.proxy, "games.test:443", "/", &[&ca], false)
            .await
            .expect("TLS with the school CA");
        assert_eq!(page.status, 403);
    }

    let after = p.metrics().await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        moved("hallpass_requests_total", &[("verdict", "allow")]),
        3.0
    );
    // Two plain blocks, two CONNECTs to a blocked name (answered 200, then the
    // page inside TLS), and the two requests inside those tunnels.
    assert_eq!(
        moved("hallpass_requests_total", &[("verdict", "block")]),
        6.0
    );
    assert_eq!(
        moved("hallpass_requests_total", &[("verdict", "auth")]),
        1.0
    );
    assert_eq!(
        moved(
            "hallpass_blocks_total",
            &[("category", "games"), ("band", "ks2")]
        ),
        3.0
    );
    assert_eq!(
        moved(
            "hallpass_blocks_total",
            &[("category", "none"), ("band", "ks2")]
        ),
        1.0
    );
    assert_eq!(moved("hallpass_tls_handshakes_total", &[]), 2.0);
    assert_eq!(moved("hallpass_tls_handshake_failures_total", &[]), 0.0);
    assert_eq!(moved("hallpass_leaf_cache_misses_total", &[]), 1.0);
    assert_eq!(moved("hallpass_leaf_cache_hits_total", &[]), 1.0);
    assert!(moved("hallpass_auth_failures_total", &[("reason", "rejected")]) >= 1.0);
    assert!(
        histogram_count(&after, "hallpass_request_duration_seconds")
            - histogram_count(&before, "hallpass_request_duration_seconds")
            >= 8.0
    );
    // Every block event went through the journal (the page waited for its
    // fsync there, not for the store) and then into the incident store.
    let queued = moved("hallpass_events_total", &[("path", "queued")]);
    assert!(queued >= 5.0, "{queued}");
    assert_eq!(
        moved("hallpass_events_total", &[("path", "journaled")]),
        queued
    );
    let mut stored = 0.0;
    for _ in 0..100 {
        let now = p.metrics().await;
        let moved = |path: &str| {
            value(&now, "hallpass_events_total", &[("path", path)])
                - value(&before, "hallpass_events_total", &[("path", path)])
        };
        stored = moved("written") + moved("replayed");
        if stored >= queued {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stored, queued, "every journaled event reaches the store");
    assert_eq!(moved("hallpass_events_total", &[("path", "lost")]), 0.0);
    assert_eq!(moved("hallpass_event_sink_errors_total", &[]), 0.0);
    // No host, user or address ever becomes a label.
    let text: Vec<String> = after
        .samples
        .iter()
        .flat_map(|s| s.labels.values().cloned().collect::<Vec<_>>())
        .collect();
    assert!(
        !text
            .iter()
            .any(|v| v.contains("games.test") || v.contains("127.0.0")),
        "{text:?}"
    );
}

#[tokio::test]
async fn the_pac_file_names_the_proxy_and_sends_the_intranet_direct() {
    let p = harness::start_with(Options::proxy(
        "\n[pac]\nproxy = \"Proxy.School.LAN:3128\"\ndirect = [\"school.lan\", \"10.0.0.0/8\"]\n",
    ))
    .await;
    for path in ["/proxy.pac", "/wpad.dat"] {
        // As a device fetches it: origin-form, straight to the proxy, no login.
        let reply = send(
            p.addr,
            Request::get(path)
                .header("host", "wpad.school.lan")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(
            reply.headers["content-type"],
            "application/x-ns-proxy-autoconfig"
        );
        let pac = &reply.body;
        assert!(pac.contains("function FindProxyForURL(url, host)"), "{pac}");
        assert!(
            pac.contains("return \"PROXY proxy.school.lan:3128\";"),
            "{pac}"
        );
        assert!(
            pac.contains(
                "host == \"school.lan\" || dnsDomainIs(host, \".school.lan\")) return \"DIRECT\""
            ),
            "{pac}"
        );
        assert!(
            pac.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")) return \"DIRECT\""),
            "{pac}"
        );
        // No fallback: a device whose proxy is down does not browse unfiltered.
        assert!(!pac.contains("; DIRECT"), "{pac}");
    }
    assert_eq!(p.http.connections(), 0);
}

#[tokio::test]
async fn without_a_pac_section_the_pac_file_names_the_address_the_device_used() {
    let p = harness::start().await;
    let reply = get(p.addr, &format!("http://{}/proxy.pac", p.addr)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .body
            .contains(&format!("return \"PROXY {}\";", p.addr)),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("DIRECT\";"), "{}", reply.body);
}

#[test]
fn a_bad_pac_entry_is_refused_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    harness::write_config(
        dir.path(),
        &OriginCa::new("unused"),
        &[],
        &Options::proxy("\n[pac]\ndirect = [\"school.lan\", \"fd00::/8\"]\n"),
    );
    let config = dir.path().join("hallpass.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(&config)
        .arg("check")
        .env_remove("HALLPASS_CONFIG")
        .output()
        .expect("hallpass runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let text = std::fs::read_to_string(&config).expect("config");
    let line = text
        .lines()
        .position(|l| l.contains("fd00::/8"))
        .expect("line")
        + 1;
    assert!(
        stderr.contains(&format!("hallpass.toml:{line}:")) && stderr.contains("IPv4"),
        "{stderr}"
    );
}

#[test]
fn a_reload_keeps_the_compiled_lists_only_while_their_files_are_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin: SocketAddr = (harness::ORIGIN_IP, 8080).into();
    let options = Options {
        policy: Some(policy_with_keywords(&["first"])),
        ..Options::default()
    };
    harness::write_config(
        dir.path(),
        &OriginCa::new("ops test origin CA"),
        &[origin],
        &options,
    );
    let config = dir.path().join("hallpass.toml");
    let games = dir.path().join("lists/t/games/domains");
    let load = |generation, previous: &proxy::snapshot::Snapshot| {
        proxy::snapshot::load_reusing(&config, generation, previous).expect("loads")
    };
    let first = proxy::snapshot::load(&config, 1).expect("loads");
    let blocks =
        |snap: &proxy::snapshot::Snapshot, host: &str| snap.lists.matcher().lookup(host, "/") != 0;
    assert!(blocks(&first, "games.test") && !blocks(&first, "newgame.test"));

    // A policy edit alone: the same compiled lists, the new rule in force.
    std::fs::write(
        dir.path().join("policy.toml"),
        policy_with_keywords(&["second"]),
    )
    .expect("policy");
    let second = load(2, &first);
    assert!(second.lists.shares_matcher_with(&first.lists));
    let keyword_blocks = |snap: &proxy::snapshot::Snapshot, word: &str| {
        let url = policy::CanonicalUrl::parse(&format!("http://site.test/?q={word}")).expect("url");
        let group = snap.policy.group_id("year4").expect("year4");
        let mask = policy::ListLookup::lookup(&snap.lists, &url);
        snap.policy.decide(group, &url, mask).action == policy::Action::Block
    };
    assert!(keyword_blocks(&first, "first") && !keyword_blocks(&first, "second"));
    assert!(keyword_blocks(&second, "second") && !keyword_blocks(&second, "first"));

    // A list file that changes is compiled again, even at the same size.
    std::fs::write(&games, "newgame.test\n").expect("list");
    let third = load(3, &second);
    assert!(!third.lists.shares_matcher_with(&second.lists));
    assert!(blocks(&third, "newgame.test") && !blocks(&third, "games.test"));
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&games, "oldgame.test\n").expect("list");
    let fourth = load(4, &third);
    assert!(!fourth.lists.shares_matcher_with(&third.lists));
    assert!(blocks(&fourth, "oldgame.test") && !blocks(&fourth, "newgame.test"));

    // A squidGuard folder that gains a file it did not have is compiled again.
    std::fs::write(dir.path().join("lists/t/games/urls"), "site.test/games\n").expect("urls");
    let fifth = load(5, &fourth);
    assert!(!fifth.lists.shares_matcher_with(&fourth.lists));
    assert_ne!(fifth.lists.matcher().lookup("site.test", "/games/x"), 0);
    // ... and nothing changed since: kept.
    assert!(load(6, &fifth).lists.shares_matcher_with(&fifth.lists));

    // A folder that becomes ambiguous (`urls` and `urls.gz`) is not quietly
    // kept: the reload is refused at the policy line that names the list.
    std::fs::write(dir.path().join("lists/t/games/urls.gz"), b"").expect("urls.gz");
    match proxy::snapshot::load_reusing(&config, 7, &fifth) {
        Err(proxy::snapshot::LoadError::Invalid(problems)) => {
            let text = problems.to_string();
            assert!(
                text.contains("policy.toml:") && text.contains("games"),
                "{text}"
            );
        }
        Err(e) => panic!("expected the policy's problems, got {e}"),
        Ok(_) => panic!("an ambiguous list folder was accepted"),
    }
}

#[tokio::test]
async fn a_list_entry_added_before_a_reload_blocks_after_it() {
    let p = Running::start("").await;
    assert_eq!(get(p.proxy, &p.url("/")).await.status, 200);
    // The origin's address joins the games list (an address matches only itself).
    let games = p.dir().join("lists/t/games/domains");
    let mut text = std::fs::read_to_string(&games).expect("list");
    text.push_str(&format!("{}\n", p.origin.addr.ip()));
    std::fs::write(&games, text).expect("list");
    let out = p.hallpass(&["reload"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = get(p.proxy, &p.url("/")).await;
    assert_eq!(after.status, 403, "{}", after.body);
    assert!(
        after.body.contains("Games sites are not allowed"),
        "{}",
        after.body
    );
}
