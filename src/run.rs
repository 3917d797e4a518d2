//! `hallpass run`: the proxy daemon. Loads the configuration (failing closed on
//! any problem), creates the school CA on first run, serves until SIGTERM/SIGINT,
//! and reloads policy and lists on SIGHUP without dropping connections.
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use proxy::arc_swap::ArcSwap;
use proxy::snapshot::{self, LoadError, Snapshot};
use proxy::{ProxyBuilder, Settings};

/// Arguments of `hallpass run`.
#[derive(clap::Args)]
pub struct Args {
    /// Log in human-readable text instead of JSON lines.
    #[arg(long)]
    text_log: bool,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    // Held until `run` returns, so buffered log lines are flushed at exit.
    let _log_guard = init_tracing(args.text_log);
    let snap = match snapshot::load(config, 1) {
        Ok(s) => s,
        Err(LoadError::Invalid(mut problems)) => {
            problems.sort();
            eprintln!("{problems}");
            eprintln!(
                "hallpass: not starting: the configuration has problems (run `hallpass check`)"
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    for p in &snap.list_problems {
        tracing::warn!(problem = %p, "list line skipped");
    }
    let settings = Settings::from_config(&snap.config, &snap.config_dir);
    // Before anything is created in the state directory: a proxy nobody could
    // use must not start (or leave a CA behind).
    let Some((verifier, max_hashes)) = login_verifier(&snap, &settings.state_dir)? else {
        return Ok(ExitCode::from(1));
    };
    if settings.intercept {
        first_run_ca(
            &settings.state_dir,
            snap.policy.school().unwrap_or("hallpass"),
        )?;
    }
    let sink = incident_sink(&snap, &settings.state_dir)?;
    let snapshots = Arc::new(ArcSwap::from_pointee(snap));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let logins = (Arc::new(verifier), max_hashes);
    runtime.block_on(serve(config, settings, snapshots, sink, logins))
}

/// The proxy-login verifier, from `[accounts]` and `<state_dir>/accounts.toml`.
/// `None` (after saying why) when nobody could browse: no accounts and no
/// `[[subnets]]` would make every request a 407, which is a set-up mistake,
/// not a working filter.
fn login_verifier(
    snap: &Snapshot,
    state_dir: &Path,
) -> anyhow::Result<Option<(accounts::Verifier, usize)>> {
    let settings: accounts::Settings = snap
        .config
        .accounts
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [accounts]: {e}", snap.config.file))?;
    let path = accounts::file_path(state_dir);
    let list = accounts::Accounts::load_or_new(&path)?;
    match (list.is_empty(), snap.policy.has_subnets()) {
        (true, false) => {
            eprintln!(
                "hallpass: not starting: there are no accounts in {} and the policy maps no \
                 [[subnets]], so nobody could browse.\n\
                 Add a login first, for example:\n  \
                 hallpass users add year3 --group year3     (a shared year-group login)\n  \
                 hallpass users add j.smith --group staff   (an individual login)\n\
                 or map classroom devices to a group with [[subnets]] in the policy.",
                path.display()
            );
            return Ok(None);
        }
        (true, true) => eprintln!(
            "hallpass: no accounts yet: clients are identified by the policy's [[subnets]] only \
             (add logins with `hallpass users add NAME --group G`; no restart needed)"
        ),
        (false, _) => tracing::info!(accounts = list.len(), "accounts loaded"),
    }
    let max_hashes = settings.max_concurrent_hashes;
    let verifier = accounts::Verifier::new(list, &settings, Arc::new(accounts::SystemClock))?;
    Ok(Some((verifier, max_hashes)))
}

/// Block events go to the incident store (SQLite in the state directory, or
/// PostgreSQL), where the incident rules read them. The proxy's event writer
/// spools to disk whenever the store fails, so nothing is lost while it is down.
struct IncidentSink(incidents::Recorder);

impl proxy::events::EventSink for IncidentSink {
    fn write_batch(
        &mut self,
        events: &[policy::event::BlockEvent],
    ) -> Result<(), proxy::events::EventSinkError> {
        // Login failures go to the incident store's own table, where the
        // `access` rule counts them; everything else is a block event.
        let (failures, blocks): (Vec<_>, Vec<_>) = events
            .iter()
            .cloned()
            .partition(|e| e.kind == policy::event::BlockKind::AuthFailure);
        let failures: Vec<incidents::AuthFailure> = failures
            .into_iter()
            .map(|e| incidents::AuthFailure {
                time_ms: e.time_ms,
                client_ip: e.client_ip,
                who: e.who,
            })
            .collect();
        self.0
            .record(&blocks, &failures)
            .map(drop)
            .map_err(|e| proxy::events::EventSinkError::Store(e.to_string()))
    }
}

fn incident_sink(snap: &Snapshot, state_dir: &Path) -> anyhow::Result<IncidentSink> {
    let settings: incidents::Settings = snap
        .config
        .incidents
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [incidents]: {e}", snap.config.file))?;
    settings.validate()?;
    let location = settings.location(state_dir)?;
    let locked = incidents::LockedCategories(
        snap.policy
            .baseline()
            .iter()
            .map(|c| c.name.to_string())
            .collect(),
    );
    let rules = incidents::RuleEngine::new(settings.rules.clone(), locked);
    let recorder = incidents::Recorder::new(
        move || incidents::Store::open(&location),
        rules,
        Arc::new(incidents::SystemClock),
        settings.retry_every,
    );
    Ok(IncidentSink(recorder))
}

async fn serve(
    config: &Path,
    settings: Settings,
    snapshots: Arc<ArcSwap<Snapshot>>,
    sink: IncidentSink,
    (verifier, max_hashes): (Arc<accounts::Verifier>, usize),
) -> anyhow::Result<ExitCode> {
    let server = ProxyBuilder::new(settings, snapshots.clone())
        .event_sink(Box::new(sink))
        .verifier(verifier, max_hashes)
        .bind()
        .await?;
    for addr in server.local_addrs() {
        tracing::info!(%addr, "listening");
        eprintln!("hallpass: listening on {addr}; try: curl -x http://{addr} http://example.com/");
    }
    let reload = tokio::spawn(reload_on_sighup(config.to_path_buf(), snapshots));
    server.run(shutdown_signal()).await?;
    reload.abort();
    Ok(ExitCode::SUCCESS)
}

/// Reloads on SIGHUP: the new snapshot is compiled off the request path and
/// swapped in atomically; a bad file keeps the running policy.
async fn reload_on_sighup(config: std::path::PathBuf, snapshots: Arc<ArcSwap<Snapshot>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let generation = snapshots.load().generation + 1;
        let path = config.clone();
        match tokio::task::spawn_blocking(move || snapshot::load(&path, generation)).await {
            Ok(Ok(snap)) => {
                snapshots.store(Arc::new(snap));
                tracing::info!(generation, "policy reloaded");
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reload failed: keeping the running policy"),
            Err(e) => tracing::error!(error = %e, "reload task failed: keeping the running policy"),
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// On first run there is no school CA yet: create one and say how to trust it.
fn first_run_ca(state_dir: &Path, school: &str) -> anyhow::Result<()> {
    let files = proxy::ca::ca_files(state_dir);
    if files.key.exists() || files.cert.exists() {
        return Ok(());
    }
    let files = proxy::ca::init(state_dir, school, false)?;
    eprintln!(
        "hallpass: created the school CA at {} (key: {}, mode 0600).\n\
         To see HTTPS block pages, devices must trust it: download it through the proxy at\n\
         http://<proxy address>/hallpass-ca.crt (instructions are on that page), or with curl:\n\
         curl --cacert {} -x http://127.0.0.1:3128 https://example.com/",
        files.cert.display(),
        files.key.display(),
        files.cert.display()
    );
    Ok(())
}

fn init_tracing(text: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A background thread writes the log, so a request never waits on stderr
    // (measured: synchronous access-log writes cost ~20% of allowed-HTTP
    // throughput). When the buffer is full, lines are dropped rather than
    // slowing pupils down; block events are recorded separately and never dropped.
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if text {
        builder.init();
    } else {
        // One flat JSON object per line. The span list is left out: the access
        // line already carries who, group, URL and verdict, and re-serialising
        // every enclosing span costs more than the request itself.
        builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .init();
    }
    guard
}
