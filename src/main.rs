//! `hallpass`: a filtering web proxy for schools.
//!
//! This binary is wiring only: each subcommand parses its arguments, calls the
//! library crates (`policy`, `blocklists`, `proxy`) and prints. Exit codes: 0 ok,
//! 1 a problem was found, 2 a usage error.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// First, so that its `out!` and `out_raw!` macros are in scope in every module below.
#[macro_use]
mod output;

mod ca;
mod check;
mod control;
mod explain;
mod filter_check;
mod incident_sink;
mod incidents_cmd;
mod lists;
mod log_format;
mod log_writer;
mod metrics;
mod reload;
mod report;
mod run;
mod users;

/// jemalloc instead of glibc malloc: see Cargo.toml. Its options are built in
/// (`.cargo/config.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A filtering web proxy for schools.
#[derive(Parser)]
#[command(name = "hallpass", version, about, propagate_version = true)]
struct Cli {
    /// The main configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "HALLPASS_CONFIG",
        default_value = "config/hallpass.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the main job). SIGHUP reloads policy and lists; SIGTERM stops gracefully.
    Run(run::Args),
    /// Reload the running proxy's policy and lists (a bad file keeps the running policy).
    Reload(control::Args),
    /// Manage the school's interception CA.
    Ca(ca::Args),
    /// Validate the configuration, the policy and every list, and run the policy's [[test]]s.
    Check(check::Args),
    /// Show the verdict for a URL and why: every precedence step and the policy line that decided.
    Explain(explain::Args),
    /// Add, change, disable, enable, remove and list the proxy's accounts.
    Users(users::Args),
    /// Incidents: list, show, review, close, reopen, sign off, export, evidence, report, delete.
    Incidents(incidents_cmd::Args),
    /// The raw block log (--since 7d --who --category), or --prune for retention.
    Events(incidents_cmd::EventsArgs),
    /// Show the loaded lists, or import a third-party list tree.
    Lists(lists::Args),
    /// Send the probe suite through the running proxy as each group: blocked, open, safe search.
    FilterCheck(filter_check::Args),
    /// The review report for a period: blocks by category and group with the trend, incidents, filter checks, policy changes.
    Report(report::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&cli.config, args),
        Command::Reload(args) => control::run(&cli.config, args),
        Command::Ca(args) => ca::run(&cli.config, args),
        Command::Check(args) => check::run(&cli.config, args),
        Command::Explain(args) => explain::run(&cli.config, args),
        Command::Users(args) => users::run(&cli.config, args),
        Command::Incidents(args) => incidents_cmd::run(&cli.config, args),
        Command::Events(args) => incidents_cmd::run_events(&cli.config, args),
        Command::Lists(args) => lists::run(&cli.config, args),
        Command::FilterCheck(args) => filter_check::run(&cli.config, args),
        Command::Report(args) => report::run(&cli.config, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hallpass: {e:#}");
            ExitCode::from(1)
        }
    }
}
