//! The spool: an append-only JSON-lines file on local disk for events the store
//! could not take in time (store slow or down, or the queue full).
//!
//! In: entries to keep. Out: the same entries, oldest first, when the writer
//! replays them. Each append is fsync'd before it returns, because the caller
//! acknowledges the event (and the proxy serves the block page) right after.
//!
//! Replay renames the file to `<name>.replaying` first, so new appends go to a
//! fresh file while the old one drains; the renamed file is removed only after
//! every chunk is committed. A crash in between replays it again, and the store
//! ignores the duplicates by reference. A torn last line (a crash inside an
//! append, never acknowledged) is skipped with a warning.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use policy::event::BlockEvent;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::AuthFailure;

/// Entries replayed per store transaction.
pub const REPLAY_CHUNK: usize = 256;

/// One spooled item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// A block event.
    Block(BlockEvent),
    /// An authentication failure.
    Auth(AuthFailure),
}

/// The spool file and its replay state.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    replaying: PathBuf,
    /// Serialises appends with the rename at the start of a replay.
    lock: Mutex<()>,
    pending: AtomicBool,
}

impl Spool {
    /// A spool at `path` (created on first append). Marks itself pending when a
    /// previous run left entries behind.
    pub fn new(path: PathBuf) -> Spool {
        let mut replaying = path.clone().into_os_string();
        replaying.push(".replaying");
        let replaying = PathBuf::from(replaying);
        let pending = path.exists() || replaying.exists();
        Spool {
            path,
            replaying,
            lock: Mutex::new(()),
            pending: AtomicBool::new(pending),
        }
    }

    /// The file appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether entries wait to be replayed.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Appends entries and fsyncs before returning.
    pub fn append(&self, entries: &[Entry]) -> Result<(), Error> {
        // Each append starts on a line of its own, so a line torn by a crash
        // (no newline, never acknowledged) cannot swallow the next run's first
        // entry; the empty lines this leaves are skipped on replay.
        let mut text = String::from("\n");
        for e in entries {
            // Plain data with string keys: serialising cannot fail.
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let io = |source| Error::Spool {
            path: self.path.clone(),
            source,
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        // One write per call: with O_APPEND the lines of a batch stay together.
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Hands every spooled entry to `store`, oldest first, in chunks of
    /// [`REPLAY_CHUNK`]. Stops at the first error (the entries stay spooled).
    /// Returns how many entries were handed over.
    pub fn replay(
        &self,
        mut store: impl FnMut(&[Entry]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            // An earlier replay that failed midway is finished first, so order holds.
            if !self.replaying.exists() && self.path.exists() {
                std::fs::rename(&self.path, &self.replaying).map_err(|source| Error::Spool {
                    path: self.path.clone(),
                    source,
                })?;
            }
            self.pending.store(false, Ordering::Release);
        }
        let result = self.drain(&mut store);
        if result.is_err() || self.path.exists() {
            self.pending.store(true, Ordering::Release);
        }
        result
    }

    fn drain(&self, store: &mut impl FnMut(&[Entry]) -> Result<(), Error>) -> Result<usize, Error> {
        let io = |source| Error::Spool {
            path: self.replaying.clone(),
            source,
        };
        let file = match File::open(&self.replaying) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        let mut total = 0;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) => chunk.push(e),
                Err(e) => tracing::warn!(
                    path = %self.replaying.display(), line = n + 1, error = %e,
                    "unreadable spool line skipped (a write torn by a crash is never acknowledged)"
                ),
            }
            if chunk.len() == REPLAY_CHUNK {
                store(&chunk)?;
                total += chunk.len();
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            store(&chunk)?;
            total += chunk.len();
        }
        std::fs::remove_file(&self.replaying).map_err(io)?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::event;

    #[test]
    fn append_replay_in_order_and_resume_after_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool.jsonl"));
        assert!(!spool.has_pending());
        for n in 0..600 {
            spool
                .append(&[Entry::Block(event(&format!("R{n:04}"), None, None))])
                .expect("append");
        }
        assert!(spool.has_pending());
        // The store fails on the second chunk: nothing is lost, the next replay
        // starts again from the oldest entry.
        let mut calls = 0;
        let err = spool.replay(|_| {
            calls += 1;
            if calls == 2 {
                Err(Error::WriterStopped)
            } else {
                Ok(())
            }
        });
        assert!(err.is_err());
        assert!(spool.has_pending());
        // A new append during the outage goes to a fresh file, replayed after.
        spool
            .append(&[Entry::Block(event("LATE", None, None))])
            .expect("append");
        let mut seen = Vec::new();
        spool
            .replay(|chunk| {
                seen.extend(chunk.iter().map(|e| match e {
                    Entry::Block(b) => b.reference.clone(),
                    Entry::Auth(_) => String::new(),
                }));
                Ok(())
            })
            .expect("replay");
        assert_eq!(seen.len(), 600);
        assert_eq!(seen[0], "R0000");
        assert!(spool.has_pending(), "the late entry is still waiting");
        let mut late = Vec::new();
        spool
            .replay(|c| {
                late.extend_from_slice(c);
                Ok(())
            })
            .expect("replay");
        assert_eq!(late.len(), 1);
        assert!(!spool.has_pending());
    }

    #[test]
    fn a_spool_left_by_a_previous_run_is_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.jsonl");
        Spool::new(path.clone())
            .append(&[Entry::Block(event("A", None, None))])
            .expect("append");
        std::fs::write(dir.path().join("torn"), "").expect("write");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"block\":{\"refer"); // a torn last line
        std::fs::write(&path, text).expect("write");
        let spool = Spool::new(path);
        assert!(spool.has_pending());
        // The next run's first entry is not glued onto the torn line.
        spool
            .append(&[Entry::Block(event("B", None, None))])
            .expect("append");
        let mut n = 0;
        spool
            .replay(|c| {
                n += c.len();
                Ok(())
            })
            .expect("replay");
        assert_eq!(n, 2);
    }
}
