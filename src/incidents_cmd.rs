//! `hallpass incidents` (list, show, review, close, reopen, sign, export,
//! evidence, report, delete) and `hallpass events` (the raw block log, and
//! `--prune` for retention).
//!
//! The store is the one `[incidents] store` names (SQLite in the state directory
//! by default); `--store` or `HALLPASS_INCIDENTS_STORE` overrides it. The acting
//! person and role (`--by`, `--role`) go to the audit trail and decide what is
//! allowed and shown: the URL of an `illegal` incident is printed for
//! `--role safeguarding-lead` only. Whoever can run this command can read the
//! database itself, so the role here records intent; the console enforces roles
//! against logins.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use incidents::clock::format_ms;
use incidents::{
    ActionTaken, Actor, Clock, EventFilter, Incident, IncidentFilter, IncidentKind, Role, Settings,
    State, Store, SystemClock,
};

/// Arguments of `hallpass incidents`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: IncidentsCommand,
    #[command(flatten)]
    common: Common,
}

/// Options every incidents and events command takes.
#[derive(clap::Args)]
struct Common {
    /// Who is acting (written to the audit trail); default: $USER.
    #[arg(long, global = true, env = "HALLPASS_USER")]
    by: Option<String>,
    /// The role acted in: technician, esafety-officer, safeguarding-lead,
    /// principal or governor.
    #[arg(long, global = true, env = "HALLPASS_ROLE", default_value = "technician", value_parser = parse_role)]
    role: Role,
    /// The store: `sqlite`, `sqlite:PATH` (relative to the state directory) or a
    /// postgres:// URL. Default: `[incidents] store` in the config.
    #[arg(long, global = true, env = "HALLPASS_INCIDENTS_STORE")]
    store: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show one incident with its audit trail.
    Show {
        /// The incident number.
        number: u64,
    },
    /// Record the review: result and actions taken (moves it to action-taken).
    Review {
        /// The incident number.
        number: u64,
        /// The result of the review.
        #[arg(long)]
        result: String,
        /// An action taken (repeat for several).
        #[arg(long = "action", value_enum)]
        actions: Vec<ActionArg>,
        /// The outcome, if already known.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Close an incident whose action is taken.
    Close {
        /// The incident number.
        number: u64,
        /// The outcome.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Reopen a closed incident (back to under-review; sign-offs are cleared).
    Reopen {
        /// The incident number.
        number: u64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Sign off a reviewed incident as principal or governor.
    Sign {
        /// The incident number.
        number: u64,
        /// Sign as.
        #[arg(long = "as", value_enum)]
        signer: Signer,
    },
    /// Export incidents (the incident log) as CSV or JSON on standard output.
    Export {
        /// CSV (one row per incident).
        #[arg(long, conflicts_with = "json_out")]
        csv: bool,
        /// JSON (an array of incidents).
        #[arg(long = "json-out", id = "json_out")]
        json_out: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// The police evidence export of an incident (event rows, SHA-256 of each
    /// row, times) as JSON. Safeguarding lead only; audited.
    Evidence {
        /// The incident number.
        number: u64,
    },
    /// Report an unsuitable site that was not blocked.
    Report {
        /// The URL.
        url: String,
        /// What is wrong with it.
        #[arg(long)]
        note: String,
    },
    /// Delete an incident (end of its keeping period). Safeguarding lead only;
    /// the audit trail is kept.
    Delete {
        /// The incident number.
        number: u64,
    },
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Only this state.
    #[arg(long, value_parser = parse_state)]
    state: Option<State>,
    /// Only this kind.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<IncidentKind>,
    /// Only incidents opened within this long (e.g. `7d`, `12h`).
    #[arg(long, value_parser = parse_duration)]
    since: Option<std::time::Duration>,
}

#[derive(Copy, Clone, ValueEnum)]
enum Signer {
    Principal,
    Governor,
}

#[derive(Copy, Clone, ValueEnum)]
enum ActionArg {
    InformParents,
    RiskAssessment,
    Counselling,
    Sanctions,
    ReferralLado,
    ReferralPolice,
    NoFurtherAction,
}

impl From<ActionArg> for ActionTaken {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::InformParents => ActionTaken::InformParents,
            ActionArg::RiskAssessment => ActionTaken::RiskAssessment,
            ActionArg::Counselling => ActionTaken::Counselling,
            ActionArg::Sanctions => ActionTaken::Sanctions,
            ActionArg::ReferralLado => ActionTaken::ReferralLado,
            ActionArg::ReferralPolice => ActionTaken::ReferralPolice,
            ActionArg::NoFurtherAction => ActionTaken::NoFurtherAction,
        }
    }
}

/// Arguments of `hallpass events`.
#[derive(clap::Args)]
pub struct EventsArgs {
    /// Events within this long (e.g. `7d`, `12h`, `30m`).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    since: std::time::Duration,
    /// Only this account.
    #[arg(long)]
    who: Option<String>,
    /// Only this category.
    #[arg(long)]
    category: Option<String>,
    /// At most this many (oldest first).
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Instead of listing, delete raw events older than `[incidents]
    /// retention_days` (events an incident refers to are kept).
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    common: Common,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}
fn parse_state(s: &str) -> Result<State, String> {
    s.parse()
}
fn parse_kind(s: &str) -> Result<IncidentKind, String> {
    s.parse()
}
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    incidents::duration::parse(s)
}

/// The `[incidents]` settings and the state directory, from `hallpass.toml`.
fn settings(config: &Path, common: &Common) -> anyhow::Result<(Settings, PathBuf)> {
    let snap = proxy::snapshot::load(config, 1)?;
    let state_dir = snap.resolve(&snap.config.state_dir);
    let mut settings: Settings = snap
        .config
        .incidents
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [incidents]: {e}", snap.config.file))?;
    if let Some(store) = &common.store {
        settings.store = store.clone();
    }
    settings.validate()?;
    Ok((settings, state_dir))
}

fn open(config: &Path, common: &Common) -> anyhow::Result<(Store, Settings)> {
    let (settings, state_dir) = settings(config, common)?;
    let location = settings.location(&state_dir)?;
    let store =
        Store::open(&location).with_context(|| format!("opening the incident store {location}"))?;
    Ok((store, settings))
}

fn actor(common: &Common, role: Role) -> Actor {
    let name = common
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    Actor::new(name, role)
}

/// Runs `hallpass incidents`.
pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let (mut store, _) = open(config, &args.common)?;
    let common = &args.common;
    let me = actor(common, common.role);
    let now = SystemClock.now_ms();
    match args.command {
        IncidentsCommand::List { filter } => {
            let list = store.incidents(&filter.to_filter(now), &me, now)?;
            if common.json {
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list);
            }
        }
        IncidentsCommand::Show { number } => {
            let incident = store.incident(number, &me, now)?;
            let trail = store.audit_trail(number)?;
            let alert = store.alert_status(number)?;
            if common.json {
                let v = serde_json::json!({
                    "incident": incident,
                    "audit": trail,
                    "alert": alert.as_ref().map(alert_json),
                });
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_incident(&incident);
                if let Some(a) = &alert {
                    out!("  alert:           {}", alert_text(a));
                }
                out!("audit trail:");
                for a in trail {
                    out!(
                        "  {}  {} ({})  {}  {}",
                        format_ms(a.at_ms),
                        a.actor,
                        a.role,
                        a.action,
                        a.detail
                    );
                }
            }
        }
        IncidentsCommand::Review {
            number,
            result,
            actions,
            outcome,
        } => {
            let actions: Vec<ActionTaken> = actions.into_iter().map(Into::into).collect();
            let i = store.record_review(number, &me, &result, &actions, outcome.as_deref(), now)?;
            report(common.json, &i)?;
        }
        IncidentsCommand::Close { number, outcome } => {
            let i = store.close(number, &me, outcome.as_deref(), now)?;
            report(common.json, &i)?;
        }
        IncidentsCommand::Reopen { number, reason } => {
            let i = store.reopen(number, &me, &reason, now)?;
            report(common.json, &i)?;
        }
        IncidentsCommand::Sign { number, signer } => {
            let role = match signer {
                Signer::Principal => Role::Principal,
                Signer::Governor => Role::Governor,
            };
            let i = store.sign(number, &actor(common, role), now)?;
            report(common.json, &i)?;
        }
        IncidentsCommand::Export {
            csv,
            json_out,
            filter,
        } => {
            let list = store.incidents(&filter.to_filter(now), &me, now)?;
            if csv || !(json_out || common.json) {
                out_raw!("{}", to_csv(&list));
            } else {
                out!("{}", serde_json::to_string_pretty(&list)?);
            }
        }
        IncidentsCommand::Evidence { number } => {
            let evidence = store.evidence(number, &me, now)?;
            out!("{}", serde_json::to_string_pretty(&evidence)?);
        }
        IncidentsCommand::Report { url, note } => {
            let number = store.report_unsuitable_site(&me, &url, &note, now)?;
            if common.json {
                out!("{}", serde_json::json!({ "number": number }));
            } else {
                out!("incident {number} opened (unsuitable-site)");
            }
        }
        IncidentsCommand::Delete { number } => {
            store.delete_incident(number, &me, now)?;
            out!("incident {number} deleted (its audit trail is kept)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `hallpass events`.
pub fn run_events(config: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let (mut store, settings) = open(config, &args.common)?;
    let now = SystemClock.now_ms();
    if args.prune {
        let n = incidents::retention::prune(&mut store, now, settings.retention_days)?;
        out!(
            "{n} events older than {} days pruned",
            settings.retention_days
        );
        return Ok(ExitCode::SUCCESS);
    }
    let filter = EventFilter {
        since_ms: Some(now.saturating_sub(incidents::duration::as_ms(args.since))),
        until_ms: None,
        who: args.who,
        category: args.category,
        limit: Some(args.limit),
    };
    let events = store.events(&filter)?;
    if args.common.json {
        out!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        for e in &events {
            out!(
                "{}  {}  {}  {}  {}  {}  {}",
                format_ms(e.time_ms),
                e.reference,
                e.who.as_deref().unwrap_or("-"),
                e.group,
                e.client_ip,
                e.category.as_deref().unwrap_or("-"),
                e.url
            );
        }
        eprintln!("{} events", events.len());
    }
    Ok(ExitCode::SUCCESS)
}

impl FilterArgs {
    fn to_filter(&self, now: u64) -> IncidentFilter {
        IncidentFilter {
            state: self.state,
            kind: self.kind,
            since_ms: self
                .since
                .map(|d| now.saturating_sub(incidents::duration::as_ms(d))),
        }
    }
}

fn report(json: bool, i: &Incident) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(i)?);
    } else {
        out!("incident {} is now {}", i.number, i.state);
    }
    Ok(())
}

fn subject(i: &Incident) -> String {
    match (&i.subject.who, i.subject.identifiable) {
        (Some(w), true) => w.clone(),
        _ if i.subject.group.is_empty() => i.subject.ip.clone().unwrap_or_else(|| "-".into()),
        _ => format!("{} (shared)", i.subject.group),
    }
}

fn print_table(list: &[Incident]) {
    out!(
        "{:>6}  {:<20}  {:<16}  {:<7}  {:<13}  subject",
        "number",
        "opened",
        "kind",
        "urgency",
        "state"
    );
    for i in list {
        out!(
            "{:>6}  {:<20}  {:<16}  {:<7}  {:<13}  {}",
            i.number,
            format_ms(i.opened_ms).chars().take(19).collect::<String>(),
            i.kind,
            i.urgency,
            i.state,
            subject(i)
        );
    }
}

fn alert_json(a: &incidents::AlertStatus) -> serde_json::Value {
    serde_json::json!({
        "state": a.state.as_str(),
        "attempts": a.attempts,
        "last_error": a.last_error,
        "sent_ms": a.sent_ms,
    })
}

fn alert_text(a: &incidents::AlertStatus) -> String {
    let mut text = format!("{} after {} attempt(s)", a.state.as_str(), a.attempts);
    if let Some(at) = a.sent_ms {
        text.push_str(&format!(", delivered {}", format_ms(at)));
    }
    if let Some(e) = &a.last_error {
        text.push_str(&format!("; last error: {e}"));
    }
    text
}

fn print_incident(i: &Incident) {
    let url = match (&i.url, i.url_withheld) {
        (_, true) => "(withheld: shown to the safeguarding lead only)".to_string(),
        (Some(u), false) => u.clone(),
        (None, false) => "-".into(),
    };
    let signoff = |s: &Option<incidents::SignOff>| {
        s.as_ref().map_or("-".to_string(), |s| {
            format!("{} at {}", s.by, format_ms(s.at_ms))
        })
    };
    let actions: Vec<&str> = i.actions.iter().map(|a| a.as_str()).collect();
    out!(
        "incident {}  {} {}  {}",
        i.number,
        i.urgency,
        i.kind,
        i.state
    );
    out!("  when:            {}", format_ms(i.opened_ms));
    out!("  reported by:     {}", i.reported_by);
    out!("  reported to:     {}", i.reported_to);
    out!("  description:     {}", i.description);
    out!(
        "  subject:         {}  (group {}, address {})",
        subject(i),
        if i.subject.group.is_empty() {
            "-"
        } else {
            &i.subject.group
        },
        i.subject.ip.as_deref().unwrap_or("-")
    );
    out!(
        "  identifiable:    {}",
        match (i.subject.identifiable, i.subject.group.is_empty()) {
            (true, _) => "yes",
            // Staff reports and address-only incidents name no group.
            (false, true) => "-",
            (false, false) => "no (shared login or subnet only)",
        }
    );
    out!(
        "  category:        {}",
        i.category.as_deref().unwrap_or("-")
    );
    out!("  url:             {url}");
    out!(
        "  review date:     {}",
        i.review_date_ms.map_or("-".into(), format_ms)
    );
    out!(
        "  review result:   {}",
        i.review_result.as_deref().unwrap_or("-")
    );
    out!(
        "  action taken:    {}",
        if actions.is_empty() {
            "-".into()
        } else {
            actions.join(", ")
        }
    );
    out!("  outcome:         {}", i.outcome.as_deref().unwrap_or("-"));
    out!("  principal:       {}", signoff(&i.principal_signoff));
    out!("  governor:        {}", signoff(&i.governor_signoff));
    out!("  events:          {}", i.references.join(", "));
}

/// The incident log as CSV (RFC 4180 quoting). Cells that a spreadsheet would
/// run as a formula (a pupil-supplied URL starting with `=`, `+`, `-`, `@`) are
/// prefixed with `'`.
fn to_csv(list: &[Incident]) -> String {
    let mut out = String::from(
        "number,kind,urgency,state,when,reported_by,reported_to,description,subject,group,address,identifiable,category,url,review_date,review_result,action_taken,outcome,principal_signed_by,principal_signed_at,governor_signed_by,governor_signed_at,events\n",
    );
    for i in list {
        let ts = |v: Option<u64>| v.map(format_ms).unwrap_or_default();
        let cells = [
            i.number.to_string(),
            i.kind.to_string(),
            i.urgency.to_string(),
            i.state.to_string(),
            format_ms(i.opened_ms),
            i.reported_by.clone(),
            i.reported_to.clone(),
            i.description.clone(),
            i.subject.who.clone().unwrap_or_default(),
            i.subject.group.clone(),
            i.subject.ip.clone().unwrap_or_default(),
            i.subject.identifiable.to_string(),
            i.category.clone().unwrap_or_default(),
            if i.url_withheld {
                "(withheld)".into()
            } else {
                i.url.clone().unwrap_or_default()
            },
            ts(i.review_date_ms),
            i.review_result.clone().unwrap_or_default(),
            i.actions
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            i.outcome.clone().unwrap_or_default(),
            i.principal_signoff
                .as_ref()
                .map(|s| s.by.clone())
                .unwrap_or_default(),
            ts(i.principal_signoff.as_ref().map(|s| s.at_ms)),
            i.governor_signoff
                .as_ref()
                .map(|s| s.by.clone())
                .unwrap_or_default(),
            ts(i.governor_signoff.as_ref().map(|s| s.at_ms)),
            i.references.join(";"),
        ];
        let row: Vec<String> = cells.iter().map(|c| incidents::csv::cell(c)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
