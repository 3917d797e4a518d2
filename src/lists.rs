//! `hallpass lists`: what is loaded (counts, provenance), and `lists import`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use blocklists::import::{self, FileReport};
use clap::{Subcommand, ValueEnum};
use proxy::snapshot::{self, canonical_host_text};
use serde_json::json;

/// Arguments of `hallpass lists`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<ListsCommand>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Import a third-party list: every entry canonicalised, bad lines reported
    /// (file:line) and skipped, duplicates removed, large files gzip-compressed.
    Import {
        /// The format of what is imported.
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// A squidGuard tree (folder of category folders) or a hosts file.
        #[arg(long)]
        from: PathBuf,
        /// The folder (squidguard) or file (hosts) to write.
        #[arg(long)]
        to: PathBuf,
        /// Only these categories of a squidGuard tree (default: every folder).
        #[arg(long = "category")]
        categories: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportFormat {
    Squidguard,
    Hosts,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        None => show(config, args.json),
        Some(ListsCommand::Import {
            format,
            from,
            to,
            categories,
        }) => {
            let canon = canonical_host_text;
            let files: Vec<FileReport> = match format {
                ImportFormat::Squidguard => {
                    let names: Vec<&str> = categories.iter().map(String::as_str).collect();
                    let only = (!names.is_empty()).then_some(names.as_slice());
                    import::import_squidguard_tree(&from, &to, only, &canon)?
                        .into_iter()
                        .flat_map(|c| c.files)
                        .collect()
                }
                ImportFormat::Hosts => vec![import::import_hosts_file(&from, &to, &canon)?],
            };
            let mut skipped = 0;
            for f in &files {
                for p in &f.problems {
                    eprintln!("{p} (skipped)");
                }
                skipped += f.problems.len();
                out!(
                    "{} -> {}: {} written, {} duplicates, {} covered by a parent domain, {} skipped",
                    f.source.display(),
                    f.output
                        .as_deref()
                        .map_or("(empty)".into(), |p| p.display().to_string()),
                    f.written,
                    f.duplicates,
                    f.covered,
                    f.problems.len()
                );
            }
            out!(
                "imported {} files; {skipped} bad lines skipped",
                files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let snap = snapshot::load(config, 1)?;
    let counts = snap.lists.matcher().list_counts();
    let mut rows = Vec::new();
    for list in snap.policy.lists() {
        let c = counts
            .iter()
            .find(|c| c.id == list.id.0)
            .cloned()
            .unwrap_or_default();
        let source = &snap.config.lists[&*list.source];
        let base = snap.resolve(&source.path);
        let provenance = base.join("PROVENANCE.md");
        let used_by: Vec<String> = snap
            .policy
            .baseline()
            .iter()
            .chain(snap.policy.categories())
            .filter(|cat| cat.mask & list.id.bit() != 0)
            .map(|cat| {
                if cat.locked {
                    format!("{} (locked)", cat.name)
                } else {
                    cat.name.to_string()
                }
            })
            .collect();
        rows.push(json!({
            "list": &*list.name,
            "domains": c.domains,
            "urls": c.urls,
            "expressions": c.expressions,
            "categories": used_by,
            "path": base.join(&*list.list).display().to_string(),
            "provenance": provenance.exists().then(|| provenance.display().to_string()),
        }));
    }
    if json {
        out!(
            "{:#}",
            json!({"lists": rows, "domains": snap.lists.matcher().domain_count()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<32} {:>9} {:>7} {:>5}  categories",
        "list",
        "domains",
        "urls",
        "expr"
    );
    for r in &rows {
        out!(
            "{:<32} {:>9} {:>7} {:>5}  {}",
            r["list"].as_str().unwrap_or(""),
            r["domains"],
            r["urls"],
            r["expressions"],
            r["categories"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    out!(
        "{} distinct domains in {} lists; provenance and licences beside each source (PROVENANCE.md)",
        snap.lists.matcher().domain_count(),
        rows.len()
    );
    Ok(ExitCode::SUCCESS)
}
