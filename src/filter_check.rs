//! `hallpass filter-check`: the probe suite through the running proxy, as each
//! group (see the `filtercheck` crate for how probes are judged).
//!
//! Reads only `hallpass.toml` and the policy (not the lists: the running proxy
//! decides, this command only asks it). The suite is `filter-check.toml` beside
//! the policy unless `--suite` names another; logins come from
//! `<state_dir>/filter-check-logins.toml`; the school CA from
//! `<state_dir>/ca/hallpass-ca.crt`. Exit 0 when every probe passed, 1 when
//! any failed (a must-block probe got through, a must-allow probe was blocked,
//! safe search was not forced, or a probe got no verdict), 2 for a usage error.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `hallpass filter-check`.
#[derive(clap::Args)]
pub struct Args {
    /// Check only this group (repeat for several). Default: every group that
    /// has a login in the logins file or whose subnet this machine is in.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Store the run (who, when, every result) in the incident store.
    #[arg(long)]
    record: bool,
    /// The proxy to probe. Default: the first `[proxy] listen` address
    /// (a wildcard address is reached on loopback).
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// The probe suite. Default: `filter-check.toml` beside the policy file.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// The logins file. Default: `<state_dir>/filter-check-logins.toml`.
    #[arg(long)]
    logins: Option<PathBuf>,
    /// The school CA certificate trusted for HTTPS probes. Default:
    /// `<state_dir>/ca/hallpass-ca.crt`.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Who is running the check (stored with `--record`); default: $USER.
    #[arg(long, env = "HALLPASS_USER")]
    by: Option<String>,
    /// The incident store for `--record`: `sqlite`, `sqlite:PATH` or a
    /// postgres:// URL. Default: `[incidents] store` in the config.
    #[arg(long, env = "HALLPASS_INCIDENTS_STORE")]
    store: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `hallpass.toml` and the compiled policy, without the lists.
pub(crate) struct Light {
    pub config: policy::config::Config,
    pub config_dir: PathBuf,
    pub policy_path: PathBuf,
    pub policy: policy::Policy,
}

impl Light {
    pub(crate) fn load(config: &Path) -> anyhow::Result<Light> {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("reading {}", config.display()))?;
        let parsed = policy::config::Config::parse(&config.display().to_string(), &text)
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        let config_dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let policy_path = config_dir.join(&parsed.policy);
        let policy_text = std::fs::read_to_string(&policy_path)
            .with_context(|| format!("reading {}", policy_path.display()))?;
        let policy = policy::Policy::compile(&policy_path.display().to_string(), &policy_text)
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        Ok(Light {
            config: parsed,
            config_dir,
            policy_path,
            policy,
        })
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.config_dir.join(&self.config.state_dir)
    }

    /// The incident store, `override_` replacing `[incidents] store`.
    pub(crate) fn store(&self, override_: Option<&str>) -> anyhow::Result<incidents::Store> {
        let mut settings: incidents::Settings = self
            .config
            .incidents
            .clone()
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: [incidents]: {e}", self.config.file))?;
        if let Some(store) = override_ {
            settings.store = store.to_string();
        }
        settings.validate()?;
        let location = settings.location(&self.state_dir())?;
        incidents::Store::open(&location)
            .with_context(|| format!("opening the incident store {location}"))
    }
}

/// Who is acting: `--by`, else $USER.
pub(crate) fn who(by: Option<&str>) -> String {
    by.map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn default_proxy(light: &Light) -> anyhow::Result<SocketAddr> {
    let first = light.config.proxy.listen.first().copied().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: [proxy] listen is empty: give --proxy",
            light.config.file
        )
    })?;
    Ok(filtercheck::run::dial_address(first))
}

/// Runs `hallpass filter-check`.
pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let light = Light::load(config)?;
    let suite_path = args.suite.clone().unwrap_or_else(|| {
        light
            .policy_path
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf)
            .join("filter-check.toml")
    });
    let suite_text = std::fs::read_to_string(&suite_path)
        .with_context(|| format!("reading the probe suite {}", suite_path.display()))?;
    let suite = match filtercheck::Suite::parse(&suite_path.display().to_string(), &suite_text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let problems = suite.check_against(&light.policy);
    if !problems.is_empty() {
        eprintln!("{}", problems.join("\n"));
        return Ok(ExitCode::from(1));
    }
    let state_dir = light.state_dir();
    let logins_path = args
        .logins
        .clone()
        .unwrap_or_else(|| filtercheck::logins::file_path(&state_dir));
    let logins = filtercheck::logins::load(&logins_path)?;
    let ca_path = args
        .ca
        .clone()
        .unwrap_or_else(|| proxy::ca::ca_files(&state_dir).cert);
    let ca_pem = match std::fs::read(&ca_path) {
        Ok(pem) => pem,
        Err(e) if args.ca.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "hallpass: no school CA at {}: HTTPS probes can only pass for sites the proxy does not intercept",
                ca_path.display()
            );
            Vec::new()
        }
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", ca_path.display())),
    };
    let tls = filtercheck::probe::tls_config(&ca_pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_path.display()))?;
    let proxy = match args.proxy {
        Some(p) => p,
        None => default_proxy(&light)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let client_ip = filtercheck::run::local_address(proxy)
            .await
            .with_context(|| format!("cannot reach the proxy at {proxy}: is it running?"))?;
        let (plans, skipped) =
            match filtercheck::plan(&suite, &light.policy, &args.groups, &logins, client_ip) {
                Ok(p) => p,
                Err(e) => return Ok::<_, anyhow::Error>(Err(e)),
            };
        let target = filtercheck::Target::new(proxy, tls);
        Ok(Ok(filtercheck::run(&suite, &plans, skipped, &target).await))
    })?;
    let report = match report {
        Ok(r) => r,
        Err(filtercheck::Error::Group(e)) => {
            eprintln!("hallpass: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out_raw!("{}", report.render_text());
    }
    if args.record {
        let record = report.to_record(
            &who(args.by.as_deref()),
            &suite_path.display().to_string(),
            &light.policy_path.display().to_string(),
        );
        let mut store = light.store(args.store.as_deref())?;
        let id = store.record_filter_check(&record)?;
        eprintln!("hallpass: recorded as filter check {id}");
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
