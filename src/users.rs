//! `hallpass users`: add, passwd, disable, enable, remove and list the proxy's
//! accounts in `<state_dir>/accounts.toml`.
//!
//! Passwords come from a no-echo prompt on the terminal (asked twice) or, with
//! `--password-stdin`, from one line of standard input; never from the command
//! line, where other users could read them in the process list. Without a
//! terminal and without `--password-stdin` the command refuses (exit 2) rather
//! than hang. `list` never prints hashes. A running proxy picks changes up
//! without a restart.
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use accounts::{Accounts, Error, OffsetDateTime, Password, PasswordRules, Settings};
use clap::Subcommand;
use serde_json::json;

/// Arguments of `hallpass users`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add an account. An account named after its group (e.g. `year3` in group
    /// `year3`) is a shared year-group login; any other is an individual login.
    Add {
        /// The login name: lower-case a-z, digits, `.`, `_`, `-` (at most 64).
        name: String,
        /// The policy group the account belongs to (it decides the band).
        #[arg(long)]
        group: String,
        /// Read the password from one line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password.
    Passwd {
        /// The account.
        name: String,
        /// Read the password from one line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Refuse the account's logins (it stays in the file).
    Disable {
        /// The account.
        name: String,
    },
    /// Allow a disabled account's logins again.
    Enable {
        /// The account.
        name: String,
    },
    /// Delete the account.
    Remove {
        /// The account.
        name: String,
    },
    /// List the accounts (never their hashes).
    List {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the password comes from.
#[derive(Copy, Clone)]
enum PasswordSource {
    Prompt,
    Stdin,
}

impl PasswordSource {
    fn from_flag(password_stdin: bool) -> PasswordSource {
        if password_stdin {
            PasswordSource::Stdin
        } else {
            PasswordSource::Prompt
        }
    }
}

/// Runs `hallpass users`.
pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let snap = proxy::snapshot::load(config, 1)?;
    let path = accounts::file_path(&snap.resolve(&snap.config.state_dir));
    let settings: Settings = snap
        .config
        .accounts
        .clone()
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [accounts]: {e}", snap.config.file))?;
    let groups: Vec<&str> = snap.policy.groups().iter().map(|g| &*g.name).collect();
    let outcome = match args.command {
        UsersCommand::Add {
            name,
            group,
            password_stdin,
        } => add(&path, &settings, &groups, &name, &group, password_stdin),
        UsersCommand::Passwd {
            name,
            password_stdin,
        } => passwd(&path, &settings, &name, password_stdin),
        UsersCommand::Disable { name } => set_disabled(&path, &name, true),
        UsersCommand::Enable { name } => set_disabled(&path, &name, false),
        UsersCommand::Remove { name } => remove(&path, &name),
        UsersCommand::List { json } => list(&path, &groups, json),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(Failure::Usage(message)) => {
            eprintln!("hallpass: {message}");
            Ok(ExitCode::from(2))
        }
        Err(Failure::Problem(message)) => {
            eprintln!("hallpass: {message}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Why a subcommand stopped: a usage error (exit 2) or a problem (exit 1).
enum Failure {
    Usage(String),
    Problem(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Problem(e.to_string())
    }
}

fn add(
    path: &Path,
    settings: &Settings,
    groups: &[&str],
    name: &str,
    group: &str,
    password_stdin: bool,
) -> Result<ExitCode, Failure> {
    let mut accounts = Accounts::load_or_new(path)?;
    // Everything that does not need the password is checked before asking for it.
    accounts::check_name(name)?;
    if accounts.get(name).is_some() {
        return Err(Error::AccountExists { name: name.into() }.into());
    }
    if !groups.contains(&group) {
        return Err(Error::UnknownGroup {
            group: group.into(),
            known: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
        .into());
    }
    let password = read_password(
        PasswordSource::from_flag(password_stdin),
        name,
        group,
        &settings.passwords,
    )?;
    accounts.add(
        name,
        group,
        &password,
        groups,
        &settings.passwords,
        &settings.hash,
        OffsetDateTime::now_utc(),
    )?;
    accounts.save(path)?;
    let kind = if PasswordRules::is_shared(name, group) {
        "shared year-group login"
    } else {
        "individual login"
    };
    out!("added {name} ({kind}, group {group}) to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn passwd(
    path: &Path,
    settings: &Settings,
    name: &str,
    password_stdin: bool,
) -> Result<ExitCode, Failure> {
    let mut accounts = Accounts::load(path)?;
    let Some(account) = accounts.get(name) else {
        return Err(Error::UnknownAccount { name: name.into() }.into());
    };
    let group = account.group().to_owned();
    let password = read_password(
        PasswordSource::from_flag(password_stdin),
        name,
        &group,
        &settings.passwords,
    )?;
    accounts.set_password(
        name,
        &password,
        &settings.passwords,
        &settings.hash,
        OffsetDateTime::now_utc(),
    )?;
    accounts.save(path)?;
    out!("changed the password of {name}");
    Ok(ExitCode::SUCCESS)
}

fn set_disabled(path: &Path, name: &str, disabled: bool) -> Result<ExitCode, Failure> {
    let mut accounts = Accounts::load(path)?;
    let word = if disabled { "disabled" } else { "enabled" };
    if accounts.set_disabled(name, disabled, OffsetDateTime::now_utc())? {
        accounts.save(path)?;
        out!("{word} {name}");
    } else {
        out!("{name} was already {word}");
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(path: &Path, name: &str) -> Result<ExitCode, Failure> {
    let mut accounts = Accounts::load(path)?;
    accounts.remove(name)?;
    accounts.save(path)?;
    out!("removed {name}");
    Ok(ExitCode::SUCCESS)
}

fn list(path: &Path, groups: &[&str], as_json: bool) -> Result<ExitCode, Failure> {
    let accounts = Accounts::load_or_new(path)?;
    let kind = |a: &accounts::Account| {
        if a.is_shared() {
            "shared"
        } else {
            "individual"
        }
    };
    if as_json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|a| {
                json!({
                    "name": a.name(),
                    "group": a.group(),
                    "group_in_policy": groups.contains(&a.group()),
                    "kind": kind(a),
                    "disabled": a.disabled(),
                    "created": accounts::rfc3339(a.created()),
                    "changed": accounts::rfc3339(a.changed()),
                })
            })
            .collect();
        out!("{:#}", json!(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if accounts.is_empty() {
        out!("no accounts in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<24} {:<12} {:<10} {:<8} CHANGED",
        "NAME",
        "GROUP",
        "KIND",
        "STATUS"
    );
    for a in accounts.iter() {
        let status = if a.disabled() { "disabled" } else { "enabled" };
        let note = if groups.contains(&a.group()) {
            ""
        } else {
            "  (group not in the policy: logins get no band)"
        };
        out!(
            "{:<24} {:<12} {:<10} {:<8} {}{note}",
            a.name(),
            a.group(),
            kind(a),
            status,
            accounts::rfc3339(a.changed())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a new password: one line of stdin, or a no-echo prompt asked twice.
fn read_password(
    source: PasswordSource,
    name: &str,
    group: &str,
    rules: &PasswordRules,
) -> Result<Password, Failure> {
    let password = match source {
        PasswordSource::Stdin => read_stdin_line()?,
        PasswordSource::Prompt => prompt_twice(name, group, rules)?,
    };
    // Checked here too, so a prompt can say what is wrong before hashing.
    rules
        .check(name, group, &password)
        .map_err(|e| Failure::Problem(e.to_string()))?;
    Ok(password)
}

fn read_stdin_line() -> Result<Password, Failure> {
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Problem(format!("reading the password from stdin: {e}")))?;
    if read == 0 {
        return Err(Failure::Problem(
            "--password-stdin: standard input is empty; expected one line with the password".into(),
        ));
    }
    // Trim the line ending in place and move the buffer into `Password` (which
    // wipes it on drop), so no second copy of the password is made.
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Password::new(line))
}

fn prompt_twice(name: &str, group: &str, rules: &PasswordRules) -> Result<Password, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "no terminal to ask for the password on; pipe it in with --password-stdin".into(),
        ));
    }
    let (min, kind) = if PasswordRules::is_shared(name, group) {
        (rules.shared_min, "shared year-group login")
    } else {
        (rules.individual_min, "individual account")
    };
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Password::new)
            .map_err(|e| Failure::Problem(format!("reading the password from the terminal: {e}")))
    };
    let first = ask(&format!(
        "Password for {name} ({kind}, at least {min} characters): "
    ))?;
    let second = ask("Repeat the password: ")?;
    if first.expose() != second.expose() {
        return Err(Failure::Problem(
            "the passwords do not match; nothing was changed".into(),
        ));
    }
    Ok(first)
}
