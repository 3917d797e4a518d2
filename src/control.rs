//! The local control socket of `hallpass run`, and `hallpass reload`, which
//! talks to it.
//!
//! The socket is a Unix stream socket, `control.sock` in the state directory
//! unless `[control] socket` names another path, mode 0660 (the service's
//! user and group; a technician in that group may reload). One command per
//! connection, one line each way:
//!
//! ```text
//! > reload
//! < ok 7                      (generation 7 is in effect)
//! < problems                  (the running policy was kept)
//! < config/primary/policy.toml:12:5: unknown category `gamez` ...
//! ```
//!
//! A stale socket file left by a crashed run is replaced; a live one (another
//! `hallpass run` answers on it) stops start-up.
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::reload::{Outcome, Reloader};

/// The longest command line read from a client.
const MAX_COMMAND: u64 = 64;
/// How long a client may take to send its command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `hallpass reload` waits for the answer (a ~1 M-domain policy
/// compiles in about a second on a small server).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `hallpass reload`.
#[derive(clap::Args)]
pub struct Args {}

/// The socket path for the config at `config_path`: `[control] socket`, else
/// `control.sock` in the state directory (both relative to the config's folder).
pub fn socket_path(config: &policy::config::Config, config_path: &Path) -> PathBuf {
    let dir = config_path.parent().unwrap_or(Path::new(""));
    match &config.control.socket {
        Some(path) => dir.join(path),
        None => dir.join(&config.state_dir).join("control.sock"),
    }
}

/// The bound control socket; the file is removed when it is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (mode 0660), replacing a stale socket file but never a
    /// live one or a file of another kind.
    pub async fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                anyhow::bail!(
                    "[control] socket {}: a file that is not a socket is in the way",
                    path.display()
                );
            }
            if UnixStream::connect(path).await.is_ok() {
                anyhow::bail!(
                    "[control] socket {}: another hallpass is running and answers on it",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("[control] socket: creating {}", parent.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("[control] socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("[control] socket {}: setting mode 0660", path.display()))?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Answers commands until the task is dropped.
    pub async fn serve(self, reloader: Arc<Reloader>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let reloader = reloader.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &reloader).await {
                    tracing::info!(error = %e, "control connection ended early");
                }
            });
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: UnixStream, reloader: &Reloader) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_COMMAND));
    match tokio::time::timeout(COMMAND_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(result) => {
            result?;
        }
        Err(_) => return Ok(()),
    }
    let reply = match line.trim() {
        "reload" => match reloader.reload("hallpass reload").await {
            Outcome::Reloaded { generation } => format!("ok {generation}\n"),
            Outcome::Kept(lines) => {
                let mut text = String::from("problems\n");
                for l in lines {
                    // One problem per line, whatever the message holds.
                    text.push_str(&l.replace('\n', " "));
                    text.push('\n');
                }
                text
            }
        },
        other => format!(
            "error unknown command {:?} (the control socket understands: reload)\n",
            other.chars().take(32).collect::<String>()
        ),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// `hallpass reload`: asks the running proxy to reload and prints what it said.
pub fn run(config: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let parsed = match policy::config::Config::parse(&config.display().to_string(), &text) {
        Ok(c) => c,
        Err(mut problems) => {
            // The running proxy would refuse this file too; say why here.
            problems.sort();
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "hallpass: not reloaded: the configuration has problems; the running policy is kept"
            );
            return Ok(ExitCode::from(1));
        }
    };
    let path = socket_path(&parsed, config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(ask(&path))
}

async fn ask(path: &Path) -> anyhow::Result<ExitCode> {
    let mut stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "hallpass: cannot reach a running hallpass on {}: {e}\n\
                 Is `hallpass run` started with this configuration? (with systemd: systemctl status hallpass)",
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
    };
    stream.write_all(b"reload\n").await?;
    let mut reply = String::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_string(&mut reply))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from {} within {ANSWER_TIMEOUT:?}",
                path.display()
            )
        })??;
    let mut lines = reply.lines();
    match lines.next().unwrap_or("") {
        first if first.starts_with("ok ") => {
            out!(
                "hallpass: reloaded: policy generation {} is in effect",
                first.trim_start_matches("ok ")
            );
            Ok(ExitCode::SUCCESS)
        }
        "problems" => {
            let problems: Vec<&str> = lines.collect();
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{} problem{} found; the running policy is kept",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(1))
        }
        other => {
            eprintln!(
                "hallpass: unexpected answer from {}: {other}",
                path.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
