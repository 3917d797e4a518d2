//! `hallpass run`: the proxy daemon. Loads the configuration (failing closed on
//! any problem), creates the school CA on first run, serves until SIGTERM/SIGINT,
//! and reloads policy and lists on SIGHUP or `hallpass reload` without dropping
//! connections (see `reload` and `control`).
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
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
    let _log_guard = init_tracing(args.text_log)?;
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
    for p in snap.list_problems.iter() {
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
    let (sink, incident_reload, incident_alerts, store) =
        crate::incident_sink::incident_sink(&snap, &settings.state_dir)?;
    let console_settings = console::Settings::from_table(&snap.config.file, &snap.config.console)?;
    let snapshots = Arc::new(ArcSwap::from_pointee(snap));
    let runtime = proxy::runtime()?;
    let logins = (Arc::new(verifier), max_hashes);
    let console_ctx = console::Context {
        snapshots: snapshots.clone(),
        verifier: logins.0.clone(),
        store,
        filter_check: None,
    };
    let served = runtime.block_on(serve(
        config,
        settings,
        snapshots,
        (sink, incident_reload, incident_alerts.metrics.clone()),
        logins,
        (console_settings, console_ctx),
    ));
    incident_alerts.stop();
    served
}

/// The console listener's routes.
///
/// `/metrics` sits beside the console's pages, outside its sign-in: Prometheus
/// scrapes without a session, and no label carries a host, a person or an address.
fn console_router(
    settings: &console::Settings,
    ctx: console::Context,
    metrics: axum::Router,
) -> axum::Router {
    console::app(settings, ctx).merge(metrics)
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

async fn serve(
    config: &Path,
    settings: Settings,
    snapshots: Arc<ArcSwap<Snapshot>>,
    (sink, incident_reload, alert_metrics): (
        crate::incident_sink::IncidentSink,
        crate::incident_sink::IncidentReload,
        Arc<incidents::AlertMetrics>,
    ),
    (verifier, max_hashes): (Arc<accounts::Verifier>, usize),
    (console_settings, mut console_ctx): (console::Settings, console::Context),
) -> anyhow::Result<ExitCode> {
    let settings_state_dir = settings.state_dir.clone();
    let registry = proxy::prometheus::Registry::new();
    let metrics = proxy::metrics::ProxyMetrics::new(&registry)?;
    let reloader = Arc::new(crate::reload::Reloader::new(
        config.to_path_buf(),
        snapshots.clone(),
        metrics.clone(),
        &registry,
        incident_reload,
    )?);
    let control_path = crate::control::socket_path(&snapshots.load().config, config);
    let control = crate::control::ControlSocket::bind(&control_path).await?;
    let server = ProxyBuilder::new(settings, snapshots.clone())
        .metrics(metrics.clone())
        .event_sink(Box::new(sink))
        .verifier(verifier, max_hashes)
        .bind()
        .await?;
    for addr in server.local_addrs() {
        tracing::info!(%addr, "listening");
        eprintln!("hallpass: listening on {addr}; try: curl -x http://{addr} http://example.com/");
    }
    // The console's "Run now" filter check probes this proxy, with the files
    // `hallpass filter-check` uses by default.
    console_ctx.filter_check = server.local_addrs().first().map(|&addr| {
        console::checks::Setup::new(addr, &snapshots.load().policy_path, &settings_state_dir)
    });
    let dirs = console::Dirs {
        config_dir: snapshots.load().config_dir.clone(),
        state_dir: settings_state_dir,
    };
    let console = console::Console::bind(&console_settings, &dirs).await?;
    for addr in console.local_addrs() {
        tracing::info!(%addr, "console listening");
        eprintln!("hallpass: staff console on {}://{addr}/", console.scheme());
    }
    if console_settings.roles.is_empty() && !console_settings.listen.is_empty() {
        eprintln!("hallpass: no [console.roles] in the config: nobody can sign in to the console");
    }
    tracing::info!(socket = %control_path.display(), "control socket listening");
    let reload = tokio::spawn(crate::reload::on_sighup(reloader.clone()));
    let control = tokio::spawn(control.serve(reloader));
    // One signal stops both the proxy and the console.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
    });
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the proxy is ready");
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = console_router(
        &console_settings,
        console_ctx,
        crate::metrics::router(registry, metrics, alert_metrics)?,
    );
    let console_task = tokio::spawn(console.serve(router, stopped(stop_rx.clone())));
    server.run(stopped(stop_rx)).await?;
    reload.abort();
    control.abort();
    // The socket file goes with the listener.
    let _ = control.await;
    console_task.await??;
    Ok(ExitCode::SUCCESS)
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

fn init_tracing(text: bool) -> anyhow::Result<crate::log_writer::Guard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A thread of its own writes the log in batches, so a request never waits
    // on stderr (see log_writer).
    let format = if text {
        crate::log_writer::Format::Text
    } else {
        crate::log_writer::Format::Json
    };
    let (writer, guard) = crate::log_writer::spawn(format, std::io::stderr())
        .context("cannot start the log writer thread")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if text {
        builder.init();
    } else {
        // One flat JSON object per line (see log_format). Spans are left out:
        // the access line already carries who, group, URL and verdict, and
        // re-serialising every enclosing span costs more than the request itself.
        builder.event_format(crate::log_format::JsonLine).init();
    }
    Ok(guard)
}
