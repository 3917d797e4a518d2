//! A running console over a seeded store, for the security and browser tests.
//!
//! The policy is the shipped primary-school config; the events are real
//! request URLs from the 2019 crawl in `../shared/data` that this policy
//! blocks for Year 3–6, spread over the last ten days; the rules open the
//! incidents; one locked-baseline hit opens an illegal incident and one pupil
//! asks for a block to be reviewed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use accounts::{Accounts, HashParams, Password, PasswordRules};
use incidents::{
    IncidentFilter, IncidentKind, LockedCategories, Role, RuleEngine, Rules, Store, StoreLocation,
};
use policy::CanonicalUrl;
use policy::decide::{Action, ListLookup};
use policy::event::{BlockEvent, BlockKind};
use proxy::arc_swap::ArcSwap;
use proxy::snapshot::Snapshot;

/// Every staff account's password.
pub const PASSWORD: &str = "correct horse battery";

/// The staff accounts and their console roles; `s.pupil` has no role.
pub const STAFF: [(&str, Role); 5] = [
    ("e.safety", Role::EsafetyOfficer),
    ("d.lead", Role::SafeguardingLead),
    ("p.head", Role::Principal),
    ("g.gov", Role::Governor),
    ("t.tech", Role::Technician),
];

/// The host of the seeded illegal incident's URL. Not the locked list's
/// `.invalid` test entry: a block of a name that can never resolve is a probe
/// of the filter and opens no incident.
pub const ILLEGAL_HOST: &str = "gallery.child-abuse-host.example";

/// The URL of the seeded illegal incident (blocked as `child-abuse`).
pub const ILLEGAL_URL: &str = "https://gallery.child-abuse-host.example/photos";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The shipped primary-school snapshot, loaded once per test binary.
pub fn snapshot() -> Arc<Snapshot> {
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    SNAP.get_or_init(|| {
        Arc::new(
            proxy::snapshot::load(&root().join("config/hallpass.toml"), 1)
                .expect("the shipped config loads"),
        )
    })
    .clone()
}

/// Blocked (URL, category) pairs for `group` from the real crawl.
pub fn blocked_urls(snap: &Snapshot, group: &str, max: usize) -> Vec<(String, String)> {
    let path = root().join("../shared/data/requests/cliqz-top500-adguard-subset/urls.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the tests need ../shared/data)", path.display()));
    let gid = snap.policy.group_id(group).expect("group");
    let mut out = Vec::new();
    let mut hosts = std::collections::HashMap::<String, usize>::new();
    for line in text.lines() {
        let Ok(url) = CanonicalUrl::parse(line) else {
            continue;
        };
        let verdict = snap.policy.decide(gid, &url, snap.lists.lookup(&url));
        if verdict.action != Action::Block {
            continue;
        }
        let Some(category) = verdict.category else {
            continue;
        };
        // A few requests per host, so the report is not one site.
        let n = hosts.entry(url.host().as_str().to_string()).or_default();
        *n += 1;
        if *n > 6 || line.len() > 200 {
            continue;
        }
        out.push((line.to_string(), category.to_string()));
        if out.len() == max {
            break;
        }
    }
    out
}

/// What the console's filter checks probe.
#[derive(Clone, Copy, Debug)]
pub enum Checks {
    /// Nothing: the console is not serving beside a proxy.
    Off,
    /// A real proxy started for the fixture: the shipped primary snapshot, on
    /// a free loopback port, with a resolver that knows no name (so allowed
    /// sites get the proxy's 502 with its allow verdict, and nothing leaves
    /// the machine).
    Proxy,
    /// Whatever listens at this address.
    At(SocketAddr),
}

/// Resolves nothing: allowed probes get the proxy's own 502, offline.
struct NoNames;

impl proxy::Resolve for NoNames {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::IpAddr>>> + Send + 'a>,
    > {
        Box::pin(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the tests resolve no names",
            ))
        })
    }
}

/// A running console.
pub struct Fixture {
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`).
    pub base: String,
    /// The listening address.
    pub addr: SocketAddr,
    /// The temp dir (accounts, store, CA).
    pub dir: tempfile::TempDir,
    /// The store's file.
    pub store: PathBuf,
    /// The seeded illegal incident.
    pub illegal: u64,
    /// A seeded inappropriate-use incident.
    pub inappropriate: u64,
    /// The seeded review request.
    pub review_request: u64,
    /// Events seeded.
    pub events: usize,
    /// The proxy started for filter checks ([`Checks::Proxy`]).
    pub proxy: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    proxy_stop: Option<tokio::sync::oneshot::Sender<()>>,
    proxy_task: Option<tokio::task::JoinHandle<Result<(), proxy::ProxyError>>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for stop in [self.stop.take(), self.proxy_stop.take()]
            .into_iter()
            .flatten()
        {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(task) = self.proxy_task.take() {
            task.abort();
        }
    }
}

/// Now in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock")
}

fn event(n: usize, time_ms: u64, who: &str, group: &str, url: &str, category: &str) -> BlockEvent {
    BlockEvent {
        reference: format!("seed-{n:06}"),
        time_ms,
        client_ip: format!("10.20.{}.{}", 2 + n % 5, 10 + n % 200)
            .parse()
            .expect("ip"),
        who: Some(who.to_string()),
        group: group.to_string(),
        band: "ks2".into(),
        method: "GET".into(),
        url: url.to_string(),
        category: Some(category.to_string()),
        rule: Some("category config/primary/policy.toml:129:50".into()),
        kind: BlockKind::Policy,
    }
}

/// Seeds the store at `path`: returns (events, illegal, inappropriate, review request).
pub fn seed(snap: &Snapshot, path: &Path) -> (usize, u64, u64, u64) {
    let mut store = Store::open_sqlite(path).expect("store");
    let locked = LockedCategories(
        snap.policy
            .baseline()
            .iter()
            .map(|c| c.name.to_string())
            .collect(),
    );
    let mut rules = RuleEngine::new(Rules::default(), locked);
    let urls = blocked_urls(snap, "year5", 900);
    assert!(urls.len() > 100, "the crawl should give blocked URLs");
    let now = now_ms();
    let groups = ["year3", "year4", "year5", "year6"];
    let mut events = Vec::new();
    // A deterministic spread over ten days, groups and pupils.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for (n, (url, category)) in urls.iter().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let age = x % (10 * 86_400_000);
        let group = groups[(x >> 20) as usize % groups.len()];
        let pupil = format!("{group}.pupil{}", (x >> 30) % 6 + 1);
        events.push(event(n, now - age, &pupil, group, url, category));
    }
    // One pupil keeps trying the same category: an inappropriate-use incident.
    let (games_url, games_cat) = urls[0].clone();
    for k in 0..12 {
        events.push(event(
            10_000 + k,
            now - 3_600_000 + k as u64 * 60_000,
            "year6.pupil1",
            "year6",
            &games_url,
            &games_cat,
        ));
    }
    // A locked-baseline hit.
    let mut illegal = event(
        20_000,
        now - 7_200_000,
        "year4.pupil2",
        "year4",
        ILLEGAL_URL,
        "child-abuse",
    );
    illegal.rule = Some("baseline config/primary/policy.toml:12:1".into());
    events.push(illegal);
    // A pupil asks for a block to be reviewed.
    let mut review = event(
        30_000,
        now - 1_800_000,
        "year5.pupil3",
        "year5",
        &urls[urls.len() / 2].0,
        &urls[urls.len() / 2].1,
    );
    review.kind = BlockKind::ReviewRequest;
    events.push(review);
    let count = events.len();
    store.record(&events, &[], &mut rules, now).expect("record");
    let mut first = |kind| {
        store
            .incident_list(&IncidentFilter {
                kind: Some(kind),
                ..IncidentFilter::default()
            })
            .expect("list")
            .last()
            .map(|i| i.number)
            .unwrap_or_else(|| panic!("the rules should open a {kind} incident"))
    };
    let illegal = first(IncidentKind::Illegal);
    let inappropriate = first(IncidentKind::Inappropriate);
    let review_request = first(IncidentKind::ReviewRequest);
    (count, illegal, inappropriate, review_request)
}

/// Writes the accounts file: the staff plus a pupil without a console role.
fn write_accounts(state: &Path) -> Arc<accounts::Verifier> {
    let mut list = Accounts::new();
    let groups: Vec<&str> = ["year5", "staff"].to_vec();
    let params = HashParams::OWASP;
    for (name, _) in STAFF.iter().copied().chain([("s.pupil", Role::Governor)]) {
        let group = if name == "s.pupil" { "year5" } else { "staff" };
        list.add(
            name,
            group,
            &Password::new(PASSWORD.to_string()),
            &groups,
            &PasswordRules::default(),
            &params,
            accounts::OffsetDateTime::now_utc(),
        )
        .expect("add account");
    }
    let path = accounts::file_path(state);
    list.save(&path).expect("save accounts");
    let list = Accounts::load(&path).expect("load accounts");
    Arc::new(
        accounts::Verifier::new(
            list,
            &accounts::Settings::default(),
            Arc::new(accounts::SystemClock),
        )
        .expect("verifier"),
    )
}

/// Starts a console on a free loopback port over a freshly seeded store;
/// `tls` adds `[console.tls]` (a certificate for `localhost` from a new CA).
/// Its filter checks have nothing to probe.
pub async fn start(tls: bool) -> Fixture {
    start_with(tls, Checks::Off).await
}

/// [`start`], with filter checks sent to `checks`.
pub async fn start_with(tls: bool, checks: Checks) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let snap = snapshot();
    let store = state.join("incidents.sqlite");
    let (events, illegal, inappropriate, review_request) = {
        let snap = snap.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || seed(&snap, &store))
            .await
            .expect("seed")
    };
    let verifier = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || write_accounts(&state))
            .await
            .expect("accounts")
    };
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\n");
    if tls || matches!(checks, Checks::Proxy) {
        proxy::ca::init(&state, "Test Primary School", false).expect("CA");
    }
    if tls {
        text.push_str("[tls]\nname = \"localhost\"\n");
    }
    let (proxy_addr, proxy_stop, proxy_task) = match checks {
        Checks::Proxy => {
            let (addr, stop, task) = start_proxy(snap.clone(), &state, verifier.clone()).await;
            (Some(addr), Some(stop), Some(task))
        }
        _ => (None, None, None),
    };
    let filter_check = match checks {
        Checks::Off => None,
        Checks::Proxy => proxy_addr,
        Checks::At(addr) => Some(addr),
    }
    .map(|addr| console::checks::Setup::new(addr, &snap.policy_path, &state));
    text.push_str("[roles]\n");
    for (name, role) in STAFF {
        text.push_str(&format!("\"{name}\" = \"{role}\"\n"));
    }
    let table: toml::Table = toml::from_str(&text).expect("toml");
    let settings = console::Settings::from_table("hallpass.toml", &table).expect("settings");
    let ctx = console::Context {
        snapshots: Arc::new(ArcSwap::new(snap)),
        verifier,
        store: StoreLocation::Sqlite(store.clone()),
        filter_check,
    };
    let dirs = console::Dirs {
        config_dir: dir.path().to_path_buf(),
        state_dir: state.clone(),
    };
    let console = console::Console::bind(&settings, &dirs)
        .await
        .expect("bind");
    let addr = console.local_addrs()[0];
    let base = if tls {
        format!("https://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = console::app(&settings, ctx);
    let task = tokio::spawn(console.serve(router, async move {
        let _ = stopped.await;
    }));
    Fixture {
        base,
        addr,
        dir,
        store,
        illegal,
        inappropriate,
        review_request,
        events,
        proxy: proxy_addr,
        stop: Some(stop),
        task: Some(task),
        proxy_stop,
        proxy_task,
    }
}

/// A real proxy on a free loopback port: the shipped primary snapshot, the
/// CA and accounts in `state`, no name resolution.
async fn start_proxy(
    snap: Arc<Snapshot>,
    state: &Path,
    verifier: Arc<accounts::Verifier>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), proxy::ProxyError>>,
) {
    let mut settings = proxy::Settings::from_config(&snap.config, &snap.config_dir);
    settings.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    settings.state_dir = state.to_path_buf();
    let server = proxy::ProxyBuilder::new(settings, Arc::new(ArcSwap::new(snap)))
        .resolver(Arc::new(NoNames))
        .verifier(verifier, 2)
        .bind()
        .await
        .expect("the proxy binds");
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

impl Fixture {
    /// Opens the store (for checking what changed).
    pub fn store(&self) -> Store {
        Store::open_sqlite(&self.store).expect("store")
    }

    /// An incident as the safeguarding lead's store sees it, with its trail
    /// length (read without going through the console).
    pub fn snapshot_of(&self, n: u64) -> (String, Option<String>, usize) {
        let mut s = self.store();
        let list = s.incident_list(&IncidentFilter::default()).expect("list");
        let i = list.into_iter().find(|i| i.number == n).expect("incident");
        let trail = s.audit_trail(n).expect("trail");
        (i.state.to_string(), i.review_result.clone(), trail.len())
    }

    /// The audit trail's actions of incident `n`.
    pub fn trail(&self, n: u64) -> Vec<(String, String, String)> {
        self.store()
            .audit_trail(n)
            .expect("trail")
            .into_iter()
            .map(|e| (e.actor, e.role, e.action))
            .collect()
    }
}
