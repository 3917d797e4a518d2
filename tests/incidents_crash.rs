//! `hallpass run` killed with SIGKILL under blocked-request load loses no block
//! event whose page a client received: every reference number read from a block
//! page is in the incident store exactly once after a restart.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Client threads sending blocked requests at once.
const CLIENTS: usize = 16;
/// The load runs at most this long before the kill...
const LOAD_FOR: Duration = Duration::from_millis(1500);
/// ... or until this many block pages were received.
const MAX_PAGES: usize = 20_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped primary config in a temporary folder, listening on `port`, with
/// the console off and the state directory inside.
fn scratch_config(port: u16) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = root().join("blocklists/lists");
    let text = std::fs::read_to_string(root().join("config/hallpass.toml"))
        .expect("shipped config")
        .replace("\"../blocklists/lists", &format!("\"{}", lists.display()))
        .replace("primary/policy.toml", "policy.toml")
        .replace("state_dir = \"../state\"", "state_dir = \"state\"")
        .replace("127.0.0.1:3128", &format!("127.0.0.1:{port}"))
        .replace("listen = [\"127.0.0.1:8080\"]", "listen = []");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("listen = []"), "{text}");
    std::fs::write(dir.path().join("hallpass.toml"), text).expect("write config");
    std::fs::copy(
        root().join("config/primary/policy.toml"),
        dir.path().join("policy.toml"),
    )
    .expect("copy policy");
    let path = dir.path().join("hallpass.toml");
    (dir, path)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts `hallpass run` and waits until it accepts connections.
fn start(config: &Path, addr: SocketAddr) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("-c")
        .arg(config)
        .args(["run", "--text-log"])
        .env_remove("HALLPASS_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the hallpass binary runs");
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("hallpass run exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "hallpass run did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// One blocked request; the reference number on the block page, if the whole
/// page arrived.
fn blocked_reference(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(
            b"GET http://www.pornhub.com/ HTTP/1.1\r\nHost: www.pornhub.com\r\nConnection: close\r\n\r\n",
        )
        .ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.starts_with("HTTP/1.1 403") || !text.contains("</html>") {
        return None;
    }
    let at = text.find("review?ref=")? + "review?ref=".len();
    let reference: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!reference.is_empty()).then_some(reference)
}

#[test]
fn sigkill_under_blocked_load_loses_no_served_reference() {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (dir, config) = scratch_config(port);
    let mut proxy = start(&config, addr);

    let received = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match blocked_reference(addr) {
                        Some(reference) => {
                            let mut all = received.lock().expect("lock");
                            all.push(reference);
                            if all.len() >= MAX_PAGES {
                                break;
                            }
                        }
                        // The proxy is gone (killed): stop.
                        None if stop.load(Ordering::SeqCst) => break,
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < LOAD_FOR && received.lock().expect("lock").len() < MAX_PAGES {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL in the middle of the load: requests are in flight.
    proxy.kill().expect("SIGKILL");
    proxy.wait().expect("reaped");
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let received = received.lock().expect("lock").clone();
    assert!(
        received.len() >= 100,
        "the load produced too few block pages to mean anything: {}",
        received.len()
    );

    // The restart replays the spool; a graceful stop lets the writer finish.
    let mut proxy = start(&config, addr);
    std::thread::sleep(Duration::from_millis(500));
    let pid = proxy.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let stopped = Instant::now();
    while proxy.try_wait().expect("wait").is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "hallpass run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut store = incidents::Store::open_sqlite(&dir.path().join("state/incidents.sqlite3"))
        .expect("open the incident store");
    let stored = store
        .events(&incidents::EventFilter::default())
        .expect("events");
    let mut counts = std::collections::HashMap::new();
    for event in &stored {
        *counts.entry(event.reference.as_str()).or_insert(0u32) += 1;
    }
    let missing: Vec<&String> = received
        .iter()
        .filter(|r| !counts.contains_key(r.as_str()))
        .collect();
    let twice: Vec<&String> = received
        .iter()
        .filter(|r| counts.get(r.as_str()).is_some_and(|n| *n > 1))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} served references are not in the store, e.g. {:?}",
        missing.len(),
        received.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    eprintln!(
        "crash test: {} block pages served before SIGKILL, {} events stored",
        received.len(),
        stored.len()
    );
}
