//! `hallpass explain --as WHO URL`: the verdict and every precedence step.
use std::path::Path;
use std::process::ExitCode;

use policy::CanonicalUrl;
use serde_json::json;

/// Arguments of `hallpass explain`.
#[derive(clap::Args)]
pub struct Args {
    /// Who is browsing: an account name (e.g. `j.smith`, decided for its group)
    /// or a group name (e.g. `year5`).
    #[arg(long = "as", value_name = "WHO")]
    who: String,
    /// The URL to decide (`http://` or `https://`).
    url: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let url = match CanonicalUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("hallpass: cannot explain `{}`: {e}", args.url);
            return Ok(ExitCode::from(2));
        }
    };
    let snap = proxy::snapshot::load(config, 1)?;
    let policy = &snap.policy;
    // An account means its group: the same lookup the proxy does at login. A
    // shared login is named after its group, so both readings agree.
    let accounts_file = accounts::file_path(&snap.config_dir.join(&snap.config.state_dir));
    let account_group = match accounts::Accounts::load_or_new(&accounts_file) {
        Ok(list) => list
            .get(&args.who.to_ascii_lowercase())
            .map(|a| a.group().to_string()),
        Err(e) => {
            eprintln!("hallpass: accounts not read ({e}): `--as` is taken as a group name");
            None
        }
    };
    let group_name = account_group.as_deref().unwrap_or(&args.who);
    let Some(group) = policy.group_id(group_name) else {
        let known: Vec<&str> = policy.groups().iter().map(|g| &*g.name).collect();
        match &account_group {
            Some(g) => eprintln!(
                "hallpass: account `{}` is in group `{g}`, which the policy does not have \
                 (the proxy refuses its logins): known groups are {}",
                args.who,
                known.join(", ")
            ),
            None => eprintln!(
                "hallpass: unknown user or group `{}`: known groups are {}",
                args.who,
                known.join(", ")
            ),
        }
        return Ok(ExitCode::from(2));
    };
    let e = policy.explain(group, &url, &snap.lists);
    let v = &e.verdict;
    if args.json {
        let out = json!({
            "verdict": v.action.as_str(),
            "who": args.who,
            "group": e.group,
            "band": e.band,
            "rule": v.rank.as_str(),
            "category": v.category.as_deref(),
            "service": v.service.as_deref(),
            "matched": v.matched.as_deref(),
            "source": v.rule.to_string(),
            "reason": &*v.reason,
            "url": url.to_string(),
            "lists": e.list_entries.iter().map(|(l, entry)| json!({"list": l, "entry": entry})).collect::<Vec<_>>(),
            "steps": e.steps.iter().map(|s| json!({"rule": s.rank.as_str(), "matched": s.matched, "detail": s.detail})).collect::<Vec<_>>(),
        });
        out!("{out:#}");
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}  {url}", v.action.as_str().to_uppercase());
    out!(
        "  who:      {} (group {}, band {})",
        args.who,
        e.group,
        e.band
    );
    out!("  rule:     {} (rank {})", v.rank, v.rank as u8);
    if let Some(c) = &v.category {
        out!("  category: {c}");
    }
    if let Some(s) = &v.service {
        out!("  service:  {s}");
    }
    if let Some(m) = &v.matched {
        out!("  matched:  {m}");
    }
    out!("  source:   {}", v.rule);
    out!("  reason:   {}", v.reason);
    if !e.list_entries.is_empty() {
        out!("lists containing it:");
        for (list, entry) in &e.list_entries {
            out!("  {list}: {entry}");
        }
    }
    out!("steps (first match decides):");
    for s in &e.steps {
        let mark = if s.rank == v.rank {
            "DECIDES"
        } else if s.matched {
            "match"
        } else {
            "-"
        };
        out!(
            "  {} {:<9} {:<5} {}",
            s.rank as u8,
            s.rank.as_str(),
            mark,
            s.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}
