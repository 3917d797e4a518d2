//! Proxy logins through the real proxy: `Proxy-Authorization: Basic`, the band
//! of the account's group, identity inside tunnels, back-off, reloads of the
//! accounts file and subnet mapping. Every refusal checks the origin saw nothing.
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use policy::event::BlockKind;

use crate::harness::{self, Options, Reply, TestAccounts, TestProxy};

/// Two bands apart (KS1 allowlist-only, KS2 filtered) plus staff; no subnets,
/// so every client must log in. `allowed.test/secret` is denied to KS2 only.
const POLICY: &str = r#"version = 1

[school]
name = "Test School"

[baseline]
child-abuse = ["t:child-abuse"]
terrorism = ["t:terrorism"]
malware = ["t:malware"]
phishing = ["t:phishing"]

[categories.games]
lists = ["t:games"]
reason = "Games sites are not allowed in school time."

[categories.banking]
lists = ["t:bank"]
reason = "Online banking."

[no_intercept]
categories = ["banking"]

[bands.ks1]
label = "Key Stage 1"
ages = "4-6"
default = "block"

[bands.ks2]
label = "Key Stage 2"
ages = "7-10"
default = "allow"
block = ["games"]
[bands.ks2.deny]
urls = ["allowed.test/secret"]

[bands.staff]
label = "Staff"
ages = "18+"
default = "allow"

[groups]
year1 = { band = "ks1" }
year4 = { band = "ks2" }
staff = { band = "staff" }
"#;

/// The test accounts: a KS1 shared login, a KS2 pupil, a member of staff.
const ACCOUNTS: &[(&str, &str, &str)] = &[
    ("year1", "year1", "frog"),
    ("amy.p", "year4", "amy-secret-1"),
    ("j.smith", "staff", "correct horse"),
];

/// Every test ends within this, whatever the proxy does.
const BOUND: Duration = Duration::from_secs(30);

fn options(policy: &str, setup: TestAccounts) -> Options {
    Options {
        policy: Some(policy.to_string()),
        accounts: Some(setup),
        ..Options::default()
    }
}

async fn start() -> TestProxy {
    harness::start_with(options(POLICY, TestAccounts::new(ACCOUNTS))).await
}

/// `Proxy-Authorization` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `GET url` on a fresh connection, with credentials when given.
async fn get_as(p: &TestProxy, login: Option<(&str, &str)>, url: &str) -> Reply {
    let mut req = Request::get(url);
    if let Some((user, password)) = login {
        req = req.header("proxy-authorization", basic(user, password));
    }
    harness::send(p.addr, req.body(Full::new(Bytes::new())).expect("request")).await
}

async fn status_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    url: &str,
    authorization: Option<String>,
) -> u16 {
    let mut req = Request::get(url);
    if let Some(value) = authorization {
        req = req.header("proxy-authorization", value);
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    // Drain the body so the connection can carry the next request.
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    status
}

#[tokio::test]
async fn no_credentials_get_407_and_nothing_is_forwarded() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let url = p.http_url("allowed.test", "/");
        let reply = get_as(&p, None, &url).await;
        assert_eq!(reply.status, 407);
        assert_eq!(
            reply.headers["proxy-authenticate"],
            "Basic realm=\"hallpass\""
        );
        let (status, _, _) = harness::connect(p.addr, &p.https_authority("allowed.test")).await;
        assert_eq!(status, 407, "no tunnel before the identity is known");
        // Malformed headers get exactly the same reply.
        for bad in ["Basic", "Basic !!!!", "Bearer abc", "Basic eWVhcjE="] {
            let req = Request::get(&url)
                .header("proxy-authorization", bad)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let again = harness::send(p.addr, req).await;
            assert_eq!(
                (again.status, &again.body),
                (reply.status, &reply.body),
                "{bad}"
            );
        }
        assert_eq!(p.http.connections() + p.https.connections(), 0);
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn wrong_passwords_get_the_same_407_then_back_off() {
    tokio::time::timeout(BOUND, async {
        let mut setup = TestAccounts::new(ACCOUNTS);
        setup.settings.throttle.after = 3;
        setup.settings.throttle.initial = Duration::from_secs(30);
        setup.settings.throttle.max = Duration::from_secs(60);
        let p = harness::start_with(options(POLICY, setup)).await;
        let url = p.http_url("allowed.test", "/");
        let unknown = get_as(&p, Some(("nobody", "frog")), &url).await;
        let wrong = get_as(&p, Some(("j.smith", "wrong horse")), &url).await;
        assert_eq!(unknown.status, 407);
        // No user-exists oracle: the same status, headers and body.
        assert_eq!(
            (
                wrong.status,
                &wrong.body,
                wrong.headers.get("proxy-authenticate")
            ),
            (
                unknown.status,
                &unknown.body,
                unknown.headers.get("proxy-authenticate")
            )
        );
        assert_eq!(
            get_as(&p, Some(("j.smith", "still wrong")), &url)
                .await
                .status,
            407
        );
        // Three failures: now the name and this address back off, for known and
        // unknown names alike, even with the right password.
        for login in [("j.smith", "correct horse"), ("nobody", "x")] {
            let reply = get_as(&p, Some(login), &url).await;
            assert_eq!(reply.status, 429, "{}", login.0);
            let wait: u64 = reply.headers["retry-after"]
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("retry-after seconds");
            assert!((25..=30).contains(&wait), "{wait}");
        }
        assert_eq!(p.http.connections(), 0);
        // Each rejected login (not the throttled tries) is an auth-failure
        // event, naming the account only when it exists, and nothing secret:
        // the incident rules decide when they are repeated enough.
        let events = p.events().await;
        let who: Vec<Option<&str>> = events
            .iter()
            .filter(|e| e.kind == BlockKind::AuthFailure)
            .map(|e| e.who.as_deref())
            .collect();
        assert_eq!(who, [None, Some("j.smith"), Some("j.smith")]);
        let text = format!("{events:?}");
        for secret in ["horse", "wrong", "Basic"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn a_login_decides_with_its_groups_band() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let allowed = p.http_url("allowed.test", "/");
        let games = p.http_url("games.test", "/");
        // KS2 allows allowed.test; the KS1 shared login is allowlist-only.
        assert_eq!(
            get_as(&p, Some(("amy.p", "amy-secret-1")), &allowed)
                .await
                .status,
            200
        );
        let ks1 = get_as(&p, Some(("Year1", "frog")), &allowed).await;
        assert_eq!(ks1.status, 403, "KS1 blocked from a KS2-allowed site");
        // Games: blocked for KS2, allowed for staff.
        assert_eq!(
            get_as(&p, Some(("amy.p", "amy-secret-1")), &games)
                .await
                .status,
            403
        );
        assert_eq!(
            get_as(&p, Some(("j.smith", "correct horse")), &games)
                .await
                .status,
            200
        );
        let events = p.events().await;
        let ks1_block = events
            .iter()
            .find(|e| e.group == "year1")
            .expect("KS1 block event");
        assert_eq!(
            (ks1_block.who.as_deref(), &*ks1_block.band),
            (Some("year1"), "ks1")
        );
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn a_tunnel_carries_its_login_to_every_intercepted_request() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let authority = p.https_authority("allowed.test");
        let auth = format!(
            "Proxy-Authorization: {}\r\n",
            basic("amy.p", "amy-secret-1")
        );
        let (status, stream, text) = harness::connect_with(p.addr, &authority, &auth).await;
        assert_eq!(status, 200, "{text}");
        let stream = stream.expect("tunnel");
        let tls = harness::tls(
            stream,
            "allowed.test",
            harness::client_tls(&[&p.school_ca_pem], &[b"http/1.1"]),
        )
        .await
        .expect("intercepted TLS");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake in tunnel");
        tokio::spawn(conn);
        let mut get = |path: &'static str| {
            let req = Request::get(path)
                .header("host", &authority)
                .body(Full::new(Bytes::new()))
                .expect("request");
            sender.send_request(req)
        };
        let first = get("/").await.expect("first response");
        assert_eq!(first.status(), 200);
        let _ = http_body_util::BodyExt::collect(first.into_body()).await;
        // KS2's URL deny applies inside the tunnel: the identity came with it
        // (there are no subnets to fall back on).
        let second = get("/secret").await.expect("second response");
        assert_eq!(second.status(), 403);
        let events = p.events().await;
        let block = events
            .iter()
            .find(|e| e.url.contains("/secret"))
            .expect("block event inside the tunnel");
        assert_eq!(block.who.as_deref(), Some("amy.p"));
        assert_eq!((&*block.group, &*block.band), ("year4", "ks2"));
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn different_credentials_on_one_connection_are_rechecked() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let games = p.http_url("games.test", "/");
        let (mut c, _) = harness::one_connection(p.addr).await;
        assert_eq!(
            status_on(&mut c, &games, Some(basic("j.smith", "correct horse"))).await,
            200
        );
        // Without credentials the connection keeps its login.
        assert_eq!(status_on(&mut c, &games, None).await, 200);
        // Another login on the same connection is decided as that person.
        assert_eq!(
            status_on(&mut c, &games, Some(basic("amy.p", "amy-secret-1"))).await,
            403
        );
        // A failed login ends the connection's login.
        assert_eq!(
            status_on(&mut c, &games, Some(basic("j.smith", "nope"))).await,
            407
        );
        assert_eq!(status_on(&mut c, &games, None).await, 407);
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn a_disabled_account_is_refused_within_the_cache_ttl() {
    tokio::time::timeout(BOUND, async {
        let mut setup = TestAccounts::new(ACCOUNTS);
        setup.settings.cache.ttl = Duration::from_secs(1);
        let p = harness::start_with(options(POLICY, setup)).await;
        let url = p.http_url("allowed.test", "/");
        let staff = Some(("j.smith", "correct horse"));
        assert_eq!(get_as(&p, staff, &url).await.status, 200);
        assert_eq!(get_as(&p, staff, &url).await.status, 200, "cached");
        p.edit_accounts(|a| {
            a.set_disabled("j.smith", true, accounts::OffsetDateTime::now_utc())
                .expect("disable");
        });
        let disabled_at = std::time::Instant::now();
        loop {
            if get_as(&p, staff, &url).await.status == 407 {
                break;
            }
            assert!(
                disabled_at.elapsed() < Duration::from_secs(1),
                "a disabled account still browsed after the cache TTL"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(get_as(&p, staff, &url).await.status, 407);
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn subnets_map_and_credentials_override_them() {
    tokio::time::timeout(BOUND, async {
        let policy = format!("{POLICY}\n[[subnets]]\ncidr = \"127.0.0.0/8\"\ngroup = \"year4\"\n");
        let p = harness::start_with(options(&policy, TestAccounts::new(ACCOUNTS))).await;
        let allowed = p.http_url("allowed.test", "/");
        let games = p.http_url("games.test", "/");
        // No login: the subnet's KS2.
        assert_eq!(get_as(&p, None, &allowed).await.status, 200);
        assert_eq!(get_as(&p, None, &games).await.status, 403);
        // A login wins over the subnet, towards stricter and towards looser bands.
        assert_eq!(
            get_as(&p, Some(("year1", "frog")), &allowed).await.status,
            403
        );
        assert_eq!(
            get_as(&p, Some(("j.smith", "correct horse")), &games)
                .await
                .status,
            200
        );
        // Wrong credentials are refused, not quietly mapped to the subnet.
        assert_eq!(
            get_as(&p, Some(("j.smith", "wrong")), &allowed)
                .await
                .status,
            407
        );
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn a_corrupted_accounts_file_keeps_the_last_good_accounts() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let url = p.http_url("allowed.test", "/");
        // Overwritten in place: the mode (0600) stays, the contents break.
        std::fs::write(p.accounts_path(), "version = 1\n[[account]]\nname = \n").expect("corrupt");
        // Several polls pass.
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Never verified before, so this ran argon2 against the kept accounts.
        assert_eq!(
            get_as(&p, Some(("amy.p", "amy-secret-1")), &url)
                .await
                .status,
            200
        );
        assert_eq!(get_as(&p, Some(("amy.p", "wrong")), &url).await.status, 407);
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn an_added_account_works_without_a_restart() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let url = p.http_url("allowed.test", "/");
        let login = Some(("b.jones", "another staff pw"));
        assert_eq!(get_as(&p, login, &url).await.status, 407);
        let groups = ["year1", "year4", "staff"];
        p.edit_accounts(|a| {
            a.add(
                "b.jones",
                "staff",
                &accounts::Password::new("another staff pw".into()),
                &groups,
                &accounts::PasswordRules::default(),
                &harness::FAST_HASH,
                accounts::OffsetDateTime::now_utc(),
            )
            .expect("add");
        });
        let added_at = std::time::Instant::now();
        while get_as(&p, login, &url).await.status != 200 {
            assert!(added_at.elapsed() < Duration::from_secs(5), "not picked up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn credentials_are_asked_for_again_after_their_lifetime() {
    tokio::time::timeout(BOUND, async {
        let mut setup = TestAccounts::new(ACCOUNTS);
        setup.settings.credential_lifetime = Duration::from_millis(500);
        let p = harness::start_with(options(POLICY, setup)).await;
        let url = p.http_url("allowed.test", "/");
        let staff = Some(("j.smith", "correct horse"));
        assert_eq!(get_as(&p, staff, &url).await.status, 200);
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Once: the browser must ask the person; what they type next starts a
        // new session.
        assert_eq!(get_as(&p, staff, &url).await.status, 407);
        assert_eq!(get_as(&p, staff, &url).await.status, 200);
    })
    .await
    .expect("test in time");
}

#[tokio::test]
async fn a_login_whose_group_left_the_policy_is_refused() {
    tokio::time::timeout(BOUND, async {
        let p = start().await;
        let url = p.http_url("allowed.test", "/");
        let staff = Some(("j.smith", "correct horse"));
        assert_eq!(get_as(&p, staff, &url).await.status, 200);
        p.reload_policy(&POLICY.replace("staff = { band = \"staff\" }\n", ""));
        let reply = get_as(&p, staff, &url).await;
        assert_eq!(reply.status, 407, "never a default band");
        assert_eq!(
            p.http.connections(),
            1,
            "only the first request reached the origin"
        );
    })
    .await
    .expect("test in time");
}

/// The shipped config `rel` (under config/) and its policy copied into a
/// temporary folder, with absolute list paths and the state directory inside.
fn scratch_config(rel: &str, policy_rel: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(root.join("config").join(rel)).expect("shipped config");
    let lists = root.join("blocklists/lists");
    let text = text
        .replace(
            "\"../../blocklists/lists",
            &format!("\"{}", lists.display()),
        )
        .replace("\"../blocklists/lists", &format!("\"{}", lists.display()))
        .replace(policy_rel, "policy.toml")
        .replace("state_dir = \"../../state\"", "state_dir = \"state\"")
        .replace("state_dir = \"../state\"", "state_dir = \"state\"");
    assert!(text.contains("state_dir = \"state\""), "{text}");
    std::fs::write(dir.path().join("hallpass.toml"), text).expect("write config");
    let config_folder = root.join("config").join(rel);
    let config_folder = config_folder.parent().expect("config folder");
    std::fs::copy(
        config_folder.join(policy_rel),
        dir.path().join("policy.toml"),
    )
    .expect("copy policy");
    let path = dir.path().join("hallpass.toml");
    (dir, path)
}

/// Runs the binary, killed if it takes longer than `limit`.
fn hallpass(
    config: &std::path::Path,
    args: &[&str],
    stdin: &str,
    limit: Duration,
) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("HALLPASS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hallpass binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn run_refuses_to_start_with_no_accounts_and_no_subnets() {
    // The secondary example maps no subnets: everyone logs in.
    let (dir, config) = scratch_config("secondary/hallpass.toml", "policy.toml");
    let out = hallpass(&config, &["run", "--text-log"], "", Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hallpass users add"), "{stderr}");
    assert!(stderr.contains("[[subnets]]"), "{stderr}");
    // Nothing was created on the way out.
    assert!(!dir.path().join("state/ca").exists());
}

#[test]
fn explain_as_an_account_decides_for_its_group() {
    let (_dir, config) = scratch_config("hallpass.toml", "primary/policy.toml");
    let limit = Duration::from_secs(60);
    let out = hallpass(
        &config,
        &[
            "users",
            "add",
            "j.smith",
            "--group",
            "staff",
            "--password-stdin",
        ],
        "correct horse battery\n",
        limit,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = "https://twitter.com/";
    let explain = |who: &str| {
        let out = hallpass(&config, &["explain", "--json", "--as", who, url], "", limit);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let account = explain("j.smith");
    let group = explain("staff");
    assert_eq!(account["group"], "staff");
    assert_eq!(account["who"], "j.smith");
    assert_eq!(account["verdict"], group["verdict"]);
    let unknown = hallpass(&config, &["explain", "--as", "nobody", url], "", limit);
    assert_eq!(unknown.status.code(), Some(2));
}
