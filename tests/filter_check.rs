//! `hallpass filter-check` against the real binary running the shipped primary
//! policy and lists (on an ephemeral port, in a temporary state directory):
//! every must-block probe blocked, every must-allow probe allowed, safe search
//! forced; and a band that loses a category fails loudly, naming it.
//!
//! There is no internet here: allowed sites get the proxy's 502 page with
//! `Hallpass-Verdict: allow`, which is exactly what the check must recognise as
//! allowed (and never as blocked).
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hallpass(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hallpass"));
    c.arg("-c").arg(config).env_remove("HALLPASS_CONFIG");
    c
}

/// A running `hallpass run`, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    console: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config folder: the shipped primary policy (optionally edited), the
/// shipped lists, ephemeral listeners, logins for year1 and staff.
fn setup(edit_policy: impl FnOnce(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = root();
    let policy = std::fs::read_to_string(r.join("config/primary/policy.toml")).expect("policy");
    std::fs::write(dir.path().join("policy.toml"), edit_policy(policy)).expect("policy copy");
    std::fs::copy(
        r.join("config/primary/filter-check.toml"),
        dir.path().join("filter-check.toml"),
    )
    .expect("suite copy");
    let lists = r.join("blocklists/lists");
    let config = format!(
        r#"version = 1
policy = "policy.toml"
state_dir = "state"
[lists.ut1]
format = "squidguard"
path = "{ut1}"
[lists.sinfonietta]
format = "hosts"
path = "{sin}"
[lists.baseline]
format = "squidguard"
path = "{base}"
[proxy]
listen = ["127.0.0.1:0"]
[console]
listen = ["127.0.0.1:0"]
[console.roles]
"check-staff" = "technician"
"#,
        ut1 = lists.join("ut1").display(),
        sin = lists.join("sinfonietta").display(),
        base = lists.join("baseline").display(),
    );
    let config_path = dir.path().join("hallpass.toml");
    std::fs::write(&config_path, config).expect("config");
    let mut logins = String::new();
    for group in ["year1", "staff"] {
        let password = format!("check-{group}-password-1234");
        let mut add = hallpass(&config_path)
            .args(["users", "add", &format!("check-{group}"), "--group", group])
            .arg("--password-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("users add");
        add.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("password");
        assert!(add.wait().expect("users add").success());
        logins.push_str(&format!(
            "[{group}]\naccount = \"check-{group}\"\npassword = \"{password}\"\n"
        ));
    }
    let logins_path = dir.path().join("state/filter-check-logins.toml");
    std::fs::write(&logins_path, logins).expect("logins");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&logins_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    (dir, config_path)
}

/// Starts `hallpass run` and waits for its "listening on" line.
fn start(config: &Path) -> Running {
    let mut child = hallpass(config)
        .args(["run", "--text-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hallpass run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("hallpass: listening on ") {
                let addr = rest.split(';').next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            } else if let Some(rest) = line.strip_prefix("hallpass: staff console on http://") {
                let _ = tx.send(rest.trim_end_matches('/').to_string());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let next = || -> SocketAddr {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("hallpass run says where it listens")
            .parse()
            .expect("a socket address")
    };
    let addr = next();
    let console = next();
    Running {
        child,
        addr,
        console,
    }
}

fn filter_check(config: &Path, proxy: SocketAddr, extra: &[&str]) -> Output {
    hallpass(config)
        .args([
            "filter-check",
            "--proxy",
            &proxy.to_string(),
            "--by",
            "tester",
        ])
        .args(extra)
        .output()
        .expect("filter-check runs")
}

#[test]
fn the_shipped_primary_policy_passes_and_a_recorded_run_is_stored() {
    let (dir, config) = setup(|p| p);
    let proxy = start(&config);
    let out = filter_check(&config, proxy.addr, &["--record"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // All three bands were probed: year1 and staff by login, year5 by the
    // loopback subnet the shipped policy maps to it.
    for line in [
        "group year1 (band ks1, as login check-year1)",
        "group staff (band staff, as login check-staff)",
        "group year5 (band ks2, as the subnet of 127.0.0.1)",
        "PASS  baseline    child-abuse",
        "PASS  block       social",
        "PASS  allow       wikipedia",
        "PASS  safe-search google",
        "PASS  safe-search youtube",
        "under-blocking 0, over-blocking 0, errors 0",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in\n{stdout}");
    }
    assert!(stderr.contains("recorded as filter check 1"), "{stderr}");

    let mut store = incidents::Store::open_sqlite(&dir.path().join("state/incidents.sqlite3"))
        .expect("the store the config names");
    let runs = store.filter_checks(0, u64::MAX, 10).expect("list");
    assert_eq!(runs.len(), 1);
    let run = store
        .filter_check(runs[0].id)
        .expect("get")
        .expect("stored");
    assert!(run.check.passed);
    assert_eq!(run.check.ran_by, "tester");
    assert_eq!(run.check.under_blocked + run.check.over_blocked, 0);
    assert_eq!(run.check.results.len() as u64, run.check.probes);
    assert!(run.check.probes > 90, "{}", run.check.probes);
    // An allowed site is judged without the internet: the proxy's 502 with
    // its allow verdict, never mistaken for a block.
    let wikipedia = run
        .check
        .results
        .iter()
        .find(|r| r.group == "year5" && r.category == "wikipedia")
        .expect("wikipedia probe");
    assert_eq!(
        (wikipedia.outcome.as_str(), wikipedia.status),
        ("allowed-unreachable", Some(502))
    );
    let google = run
        .check
        .results
        .iter()
        .find(|r| r.group == "year5" && r.category == "google")
        .expect("google probe");
    assert!(
        google.outcome == "enforced" && google.detail.contains("safe=active"),
        "{google:?}"
    );

    // The probes' blocks are stored (the check's evidence, named by account),
    // but the check pages nobody: its accounts open no incidents, and the
    // locked baseline's `.invalid` test entries open none from any group. The
    // subnet-identified group's probes of safeguarding categories still do:
    // that is why each group should have a login.
    let by_check = store
        .events(&incidents::EventFilter {
            who: Some("check-year1".into()),
            ..Default::default()
        })
        .expect("events");
    assert!(
        by_check
            .iter()
            .any(|e| e.url.contains("hallpass-test.invalid")),
        "the baseline probes are stored"
    );
    let opened = store
        .incident_list(&incidents::IncidentFilter::default())
        .expect("incidents");
    assert!(
        opened
            .iter()
            .all(|i| i.kind != incidents::IncidentKind::Illegal
                && i.subject.who.is_none()
                && i.subject.group == "year5"),
        "{opened:#?}"
    );
}

#[test]
fn a_band_that_loses_a_category_fails_loudly_naming_it() {
    let (_dir, config) = setup(|policy| {
        let edited = policy.replacen(
            "\"adult\", \"dating\", \"gambling\", \"social\", \"games\",",
            "\"adult\", \"dating\", \"gambling\", \"games\",",
            1,
        );
        assert_ne!(edited, policy, "the ks2 block line moved: update this test");
        edited
    });
    let proxy = start(&config);
    let out = filter_check(&config, proxy.addr, &["--group", "year5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("UNDER-BLOCKING: block `social` for group year5 (band ks2)"),
        "{stdout}"
    );
    // facebook.com is in another blocked category too, so it stays blocked;
    // the other two social probes get through.
    assert!(
        stdout.contains(
            "FAIL  block       social             1/3 ok; https://www.instagram.com/ allowed-unreachable; https://www.tiktok.com/ allowed-unreachable"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("under-blocking 2, over-blocking 0"),
        "{stdout}"
    );
    // Only social failed: the rest of the band still passes.
    assert_eq!(stdout.matches("FAIL").count(), 1, "{stdout}");

    // A group nobody can be identified as is a usage error, not a pass.
    let out = filter_check(&config, proxy.addr, &["--group", "year3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("group year3: no login"));
}

/// One request to the console (a fresh connection each time): status,
/// `Set-Cookie` and `Location` headers, body.
async fn console_request(
    console: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> (u16, Vec<String>, String, String) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(console)
        .await
        .expect("the console listens");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", console.to_string());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(form.unwrap_or_default()));
    let resp = tx
        .send_request(req.body(body).expect("request"))
        .await
        .expect("a response");
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        cookies,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The first CSRF token on a console page.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a token")
        + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().expect("token").to_string()
}

#[test]
fn the_consoles_run_now_probes_the_proxy_hallpass_run_serves() {
    let (dir, config) = setup(|p| p);
    let proxy = start(&config);
    let console = proxy.console;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Sign in as the technician (the password is plain ASCII and the
        // token hex, so the form needs no escaping).
        let (_, cookies, _, page) = console_request(console, "GET", "/login", None, None).await;
        let anon = cookies.first().expect("a session cookie").clone();
        let form = format!(
            "csrf={}&user=check-staff&password=check-staff-password-1234&next=%2F",
            csrf(&page)
        );
        let (status, cookies, _, body) =
            console_request(console, "POST", "/login", Some(&anon), Some(form)).await;
        assert_eq!(status, 303, "{body}");
        let session = cookies.first().expect("the signed-in cookie").clone();
        let (status, _, _, page) =
            console_request(console, "GET", "/filter-checks", Some(&session), None).await;
        assert_eq!(status, 200, "{page}");
        let form = format!("csrf={}", csrf(&page));
        let (status, _, location, body) = console_request(
            console,
            "POST",
            "/filter-checks/run",
            Some(&session),
            Some(form),
        )
        .await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/filter-checks"),
            "{body}"
        );
        // The run goes in the background; the page links it when it ends.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, _, _, page) =
                console_request(console, "GET", "/filter-checks", Some(&session), None).await;
            if page.contains("check-finished-link") {
                assert!(page.contains("PASS"), "{page}");
                break;
            }
            assert!(!page.contains("check-failed"), "{page}");
            assert!(Instant::now() < deadline, "the run did not finish: {page}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // Recorded in the store hallpass run uses, as the technician, against the
    // proxy it serves, with the groups the logins and the subnet identify.
    let mut store = incidents::Store::open_sqlite(&dir.path().join("state/incidents.sqlite3"))
        .expect("the store the config names");
    let runs = store.filter_checks(0, u64::MAX, 10).expect("list");
    assert_eq!(runs.len(), 1);
    let run = store
        .filter_check(runs[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(run.check.ran_by, "check-staff");
    assert_eq!(run.check.proxy, proxy.addr.to_string());
    assert!(run.check.passed && run.check.errors == 0, "{:?}", run.check);
    assert!(run.check.suite.ends_with("filter-check.toml"));
    for group in ["year1", "staff", "year5"] {
        assert!(
            run.check.results.iter().any(|r| r.group == group),
            "{group} probed"
        );
    }
}
