//! Policy snapshots: load, compile and hold one consistent view of the
//! configuration, the policy and the compiled lists.
//!
//! In: the path of `hallpass.toml`. Out: a [`Snapshot`], or every problem found
//! (`file:line:col: message`). Each request loads exactly one snapshot, so a reload
//! never mixes old and new rules.
//!
//! Relative paths in `hallpass.toml` resolve against the folder of that file, so
//! the shipped config works from any working directory. Every list entry goes
//! through [`policy::host::canonicalize`], the same function requests go through.
//!
//! A reload ([`load_reusing`]) keeps the running snapshot's compiled lists when
//! the policy asks for the same lists and not one of their files has changed
//! (same device, inode, size, modification and change times, nanoseconds): a
//! technician's edit to `policy.toml` then takes effect in milliseconds instead
//! of recompiling a million domains, and costs no second copy of the lists in
//! memory. Any change to a list file, a list added, dropped or renumbered,
//! recompiles everything. A file is stamped before it is read, so a write that
//! races the compile can only make the next reload compile again, never keep
//! stale lists.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blocklists::{Builder, LineProblem, Matcher};
use policy::config::{Config, ListFormat};
use policy::{
    CanonicalUrl, ListEntryHit, ListId, ListLookup, ListMask, Location, Policy, Problems,
};

/// One consistent view of configuration, policy and lists.
pub struct Snapshot {
    /// The parsed main config.
    pub config: Config,
    /// The folder `hallpass.toml` is in (relative paths resolve against it).
    pub config_dir: PathBuf,
    /// The policy file that was loaded.
    pub policy_path: PathBuf,
    /// The compiled policy.
    pub policy: Policy,
    /// The compiled lists the policy references.
    pub lists: Lists,
    /// Bad lines found in third-party lists: skipped when serving, refused by `check`.
    pub list_problems: Arc<Vec<LineProblem>>,
    /// Increases by one on every successful load.
    pub generation: u64,
    /// What the lists were compiled from.
    list_inputs: ListInputs,
}

impl Snapshot {
    /// Resolves a path from `hallpass.toml` against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.config_dir.join(path)
    }
}

/// The compiled lists, as the policy sees them.
pub struct Lists {
    matcher: Arc<Matcher>,
}

impl Lists {
    /// The compiled matcher (for statistics).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Whether two snapshots share one compiled matcher (a reload reused it).
    pub fn shares_matcher_with(&self, other: &Lists) -> bool {
        Arc::ptr_eq(&self.matcher, &other.matcher)
    }
}

impl ListLookup for Lists {
    fn lookup(&self, url: &CanonicalUrl) -> ListMask {
        let host = url.host().as_str();
        match url.query() {
            // Most requests have no query: avoid building a string on the hot path.
            None => self.matcher.lookup(host, url.path()),
            Some(_) => self.matcher.lookup(host, &url.path_and_query()),
        }
    }

    fn matched_entries(&self, url: &CanonicalUrl) -> Vec<ListEntryHit> {
        self.matcher
            .matched_entries(url.host().as_str(), &url.path_and_query())
            .into_iter()
            .map(|(id, entry)| ListEntryHit {
                list: ListId(id),
                entry,
            })
            .collect()
    }
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The configuration, the policy or a list has problems (each `file:line:col: message`).
    #[error("{0}")]
    Invalid(policy::Problems),
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The canonicaliser handed to the list loader: the one requests go through.
pub fn canonical_host_text(host: &str) -> Result<String, String> {
    policy::host::canonicalize(host)
        .map(|h| h.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// The path normaliser handed to the list loader for URL-prefix entries: the
/// one request paths go through (dot segments, `%XX`, `//`), on a placeholder
/// host, so `a.com/x/../y` in a list meets a request for `a.com/y`.
pub fn canonical_path_text(path_and_query: &str) -> Result<String, String> {
    policy::url::CanonicalUrl::from_parts(
        policy::url::Scheme::Https,
        "lists.invalid",
        path_and_query,
    )
    .map(|url| url.path_and_query())
    .map_err(|e| e.to_string())
}

/// Loads and compiles everything `config_path` names.
pub fn load(config_path: &Path, generation: u64) -> Result<Snapshot, LoadError> {
    load_with(config_path, generation, None)
}

/// [`load`] for a reload: the compiled lists of `previous` are kept when the
/// policy asks for the same lists from unchanged files (see the module docs).
pub fn load_reusing(
    config_path: &Path,
    generation: u64,
    previous: &Snapshot,
) -> Result<Snapshot, LoadError> {
    load_with(config_path, generation, Some(previous))
}

fn load_with(
    config_path: &Path,
    generation: u64,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, LoadError> {
    let config_text = read(config_path)?;
    let config = Config::parse(&config_path.display().to_string(), &config_text)
        .map_err(LoadError::Invalid)?;
    let config_dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let policy_path = config_dir.join(&config.policy);
    let policy_text = read(&policy_path)?;
    let policy = Policy::compile(&policy_path.display().to_string(), &policy_text)
        .map_err(LoadError::Invalid)?;
    let sources = list_sources(&config, &config_dir, &policy)?;
    let list_inputs = ListInputs::stamp(&sources)?;
    let (matcher, list_problems) = match previous {
        Some(p) if p.list_inputs == list_inputs => {
            (p.lists.matcher.clone(), p.list_problems.clone())
        }
        _ => {
            let (matcher, problems) = compile_lists(&sources, &policy)?;
            (Arc::new(matcher), Arc::new(problems))
        }
    };
    let lists = Lists { matcher };
    let problems = policy.check_against_lists(&lists);
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    Ok(Snapshot {
        config,
        config_dir,
        policy_path,
        policy,
        lists,
        list_problems,
        generation,
        list_inputs,
    })
}

/// Where one list of the policy is read from.
struct ListSource {
    id: u8,
    name: String,
    at: Location,
    files: ListFiles,
}

enum ListFiles {
    /// A squidGuard folder: its `domains`, `urls` and `expressions` files.
    Squidguard(PathBuf),
    /// One hosts file.
    Hosts(PathBuf),
}

/// The identity of every file the lists are compiled from, in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListInputs(Vec<(u8, PathBuf, Stamp)>);

/// A file's stamp, `None` when the file does not exist, or why the folder
/// cannot be read as a list (never equal to a stamp of lists that compiled).
type Stamp = Result<Option<FileStamp>, String>;

/// A file's identity and version as the file system reports it.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Result<FileStamp, LoadError> {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                modified: (meta.mtime(), meta.mtime_nsec()),
                changed: (meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let nanos = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64);
            Ok(FileStamp {
                dev: 0,
                ino: 0,
                len: meta.len(),
                modified: (nanos, 0),
                changed: (nanos, 0),
            })
        }
    }
}

impl ListInputs {
    /// Stamps every file the sources would read (a squidGuard folder's missing
    /// `urls`, say, is recorded as missing, so adding one recompiles).
    fn stamp(sources: &[ListSource]) -> Result<ListInputs, LoadError> {
        let mut out = Vec::new();
        for source in sources {
            match &source.files {
                ListFiles::Hosts(file) => {
                    out.push((source.id, file.clone(), Ok(Some(FileStamp::of(file)?))));
                }
                ListFiles::Squidguard(dir) => {
                    for kind in ["domains", "urls", "expressions"] {
                        // A folder the builder will refuse (both `domains` and
                        // `domains.gz`, say) stamps as the error: it never equals
                        // the stamp of lists that compiled, so the compile runs and
                        // reports the problem at the policy line that names it.
                        match blocklists::formats::find_list_file(dir, kind) {
                            Ok(Some(file)) => {
                                let stamp = FileStamp::of(&file)?;
                                out.push((source.id, file, Ok(Some(stamp))));
                            }
                            Ok(None) => out.push((source.id, dir.join(kind), Ok(None))),
                            Err(e) => out.push((source.id, dir.join(kind), Err(e.to_string()))),
                        }
                    }
                }
            }
        }
        Ok(ListInputs(out))
    }
}

/// Resolves every list the policy references to its files; every list that
/// cannot be found is a problem at the policy line that names it.
fn list_sources(
    config: &Config,
    config_dir: &Path,
    policy: &Policy,
) -> Result<Vec<ListSource>, LoadError> {
    let mut problems = Problems::default();
    let mut sources = Vec::new();
    for list in policy.lists() {
        let Some(source) = config.lists.get(&*list.source) else {
            let known: Vec<&str> = config.lists.keys().map(String::as_str).collect();
            problems.push(
                list.at.clone(),
                format!(
                    "unknown list source `{}` in `{}`: sources in {} are {}",
                    list.source,
                    list.name,
                    config.file,
                    known.join(", ")
                ),
            );
            continue;
        };
        let base = config_dir.join(&source.path);
        let files = match source.format {
            ListFormat::Squidguard => {
                let dir = base.join(&*list.list);
                if !dir.is_dir() {
                    problems.push(
                        list.at.clone(),
                        format!(
                            "list `{}` not found: no folder {}",
                            list.name,
                            dir.display()
                        ),
                    );
                    continue;
                }
                ListFiles::Squidguard(dir)
            }
            ListFormat::Hosts => match blocklists::formats::find_list_file(&base, &list.list) {
                Ok(Some(file)) => ListFiles::Hosts(file),
                Ok(None) => {
                    problems.push(
                        list.at.clone(),
                        format!(
                            "list `{}` not found: no file {}",
                            list.name,
                            base.join(&*list.list).display()
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    problems.push(list.at.clone(), format!("list `{}`: {e}", list.name));
                    continue;
                }
            },
        };
        sources.push(ListSource {
            id: list.id.0,
            name: list.name.to_string(),
            at: list.at.clone(),
            files,
        });
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    Ok(sources)
}

/// Compiles the lists into one matcher.
fn compile_lists(
    sources: &[ListSource],
    policy: &Policy,
) -> Result<(Matcher, Vec<LineProblem>), LoadError> {
    let canon = canonical_host_text;
    let paths = canonical_path_text;
    let mut builder = Builder::with_path_normaliser(&canon, &paths);
    let mut problems = Problems::default();
    let mut line_problems = Vec::new();
    for source in sources {
        let result = match &source.files {
            ListFiles::Squidguard(dir) => builder.add_squidguard_dir(source.id, dir),
            ListFiles::Hosts(file) => builder.add_hosts_file(source.id, file),
        };
        match result {
            Ok(report) => line_problems.extend(report.problems),
            Err(e) => problems.push(source.at.clone(), format!("list `{}`: {e}", source.name)),
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    let matcher = builder.build().map_err(|e| {
        let mut p = Problems::default();
        p.push(
            Location::file_start(&policy.file().into()),
            format!("compiling lists: {e}"),
        );
        LoadError::Invalid(p)
    })?;
    Ok((matcher, line_problems))
}
