//! Block events: from the request path to whatever stores them, without ever
//! making a pupil's request wait.
//!
//! In: [`BlockEvent`]s from the block stage. Out: batches handed to an
//! [`EventSink`] on a dedicated writer thread. This crate ships [`JsonLinesSink`]
//! (one JSON object per line, appended to `events.jsonl` in the state directory);
//! the incident store implements the same trait.
//!
//! The request path only ever does `try_send` on a bounded channel. When the
//! channel is full (the sink is slow or down), the event is appended to a spool
//! file instead and `hallpass_events_spooled_total` counts it; the writer replays
//! the spool, oldest first, before its next batch. When the sink fails, the batch
//! goes to the spool too. Events are not dropped unless the disk itself fails, and
//! that is logged at error.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::event::BlockEvent;
use tokio::sync::mpsc;

/// Most events written in one batch.
pub const MAX_BATCH: usize = 256;

/// Why a sink could not store events.
#[derive(Debug, thiserror::Error)]
pub enum EventSinkError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Any other store failure.
    #[error("{0}")]
    Store(String),
}

/// Where block events go. Called on the writer thread, never on the request path,
/// so implementations may block.
pub trait EventSink: Send + 'static {
    /// Stores a batch, all or nothing. On error the batch is spooled and retried.
    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError>;
}

/// Appends events as JSON lines to a file.
pub struct JsonLinesSink {
    path: PathBuf,
    file: File,
}

impl JsonLinesSink {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<Self, EventSinkError> {
        let file = open_append(path)?;
        Ok(JsonLinesSink {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The default file in a state directory: `events.jsonl`.
    pub fn in_state_dir(state_dir: &Path) -> Result<Self, EventSinkError> {
        Self::open(&state_dir.join("events.jsonl"))
    }
}

impl EventSink for JsonLinesSink {
    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
        let text = to_lines(events);
        // One write per batch: with O_APPEND the lines of a batch stay together.
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| EventSinkError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

fn open_append(path: &Path) -> Result<File, EventSinkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| EventSinkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| EventSinkError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn to_lines(events: &[BlockEvent]) -> String {
    let mut text = String::new();
    for event in events {
        // Serialising plain data with string keys cannot fail.
        if let Ok(line) = serde_json::to_string(event) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// The spool file: events that could not be queued or stored yet.
struct Spool {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Spool {
    fn append(&self, events: &[BlockEvent]) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = open_append(&self.path).and_then(|mut f| {
            f.write_all(to_lines(events).as_bytes())
                .map_err(|source| EventSinkError::Io {
                    path: self.path.clone(),
                    source,
                })
        });
        if let Err(e) = result {
            tracing::error!(error = %e, lost = events.len(), "block events could not be spooled");
        }
    }

    /// Takes every spooled event out of the file, oldest first.
    fn take(&self) -> Vec<BlockEvent> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(file) = File::open(&self.path) else {
            return Vec::new();
        };
        let events: Vec<BlockEvent> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect();
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::error!(error = %e, path = %self.path.display(), "spool could not be emptied");
        }
        events
    }
}

/// Counters of the event path.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events the sink stored (`hallpass_events_written_total`).
    pub written: AtomicU64,
    /// Events that went to the spool (`hallpass_events_spooled_total`).
    pub spooled: AtomicU64,
    /// Batches the sink refused (`hallpass_event_sink_errors_total`).
    pub sink_errors: AtomicU64,
}

/// The sending side, held by the proxy.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<BlockEvent>,
    spool: Arc<Spool>,
    counters: Arc<EventCounters>,
}

/// The writer thread; dropping every [`EventQueue`] ends it after the last batch.
pub struct EventWriter {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventWriter {
    /// Waits until every queued event has been handed to the sink (call after the
    /// proxy, and so every queue handle, is gone).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EventQueue {
    /// Starts the writer thread with a queue of `capacity` events and a spool file.
    pub fn start(
        sink: Box<dyn EventSink>,
        capacity: usize,
        spool_path: PathBuf,
    ) -> std::io::Result<(EventQueue, EventWriter)> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let spool = Arc::new(Spool {
            path: spool_path,
            lock: Mutex::new(()),
        });
        let counters = Arc::new(EventCounters::default());
        let thread = {
            let spool = spool.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("hallpass-events".into())
                .spawn(move || write_loop(sink, rx, &spool, &counters))?
        };
        Ok((
            EventQueue {
                tx,
                spool,
                counters,
            },
            EventWriter {
                thread: Some(thread),
            },
        ))
    }

    /// Hands an event over without waiting: queue, or spool when the queue is full.
    pub fn emit(&self, event: BlockEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(
                mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
            ) => {
                self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                self.spool.append(std::slice::from_ref(&event));
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &EventCounters {
        &self.counters
    }

    /// A shared handle on the counters.
    pub fn counters_handle(&self) -> Arc<EventCounters> {
        self.counters.clone()
    }
}

fn write_loop(
    mut sink: Box<dyn EventSink>,
    mut rx: mpsc::Receiver<BlockEvent>,
    spool: &Spool,
    counters: &EventCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Replay what a previous run left in the spool.
    replay(&mut *sink, spool, counters);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Gather what is already queued, up to the batch limit; a short wait lets a
        // burst share one write.
        let deadline = std::time::Instant::now() + Duration::from_millis(5);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(_) => break,
            }
        }
        replay(&mut *sink, spool, counters);
        store(&mut *sink, &batch, spool, counters);
        batch.clear();
    }
    // Every sender is gone: whatever was spooled after the last batch goes now.
    replay(&mut *sink, spool, counters);
}

fn replay(sink: &mut dyn EventSink, spool: &Spool, counters: &EventCounters) {
    let spooled = spool.take();
    for chunk in spooled.chunks(MAX_BATCH) {
        store(sink, chunk, spool, counters);
    }
}

fn store(sink: &mut dyn EventSink, batch: &[BlockEvent], spool: &Spool, counters: &EventCounters) {
    match sink.write_batch(batch) {
        Ok(()) => {
            counters
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, events = batch.len(), "event sink refused a batch; spooling it");
            spool.append(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::event::BlockKind;

    fn event(n: u32) -> BlockEvent {
        BlockEvent {
            reference: format!("R{n}"),
            time_ms: 1,
            client_ip: [127, 0, 0, 1].into(),
            who: None,
            group: "year4".into(),
            band: "ks2".into(),
            method: "GET".into(),
            url: "http://blocked.test/".into(),
            category: None,
            rule: None,
            kind: BlockKind::Policy,
        }
    }

    struct Failing(
        Arc<Mutex<Vec<BlockEvent>>>,
        Arc<std::sync::atomic::AtomicBool>,
    );
    impl EventSink for Failing {
        fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
            if self.1.load(Ordering::SeqCst) {
                return Err(EventSinkError::Store("down".into()));
            }
            self.0.lock().expect("lock").extend_from_slice(events);
            Ok(())
        }
    }

    #[test]
    fn json_lines_sink_appends_every_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = JsonLinesSink::in_state_dir(dir.path()).expect("open");
        let (queue, writer) =
            EventQueue::start(Box::new(sink), 8, dir.path().join("spool.jsonl")).expect("start");
        for n in 0..20 {
            queue.emit(event(n));
        }
        drop(queue);
        writer.join();
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("events");
        let refs: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<BlockEvent>(l)
                    .expect("json")
                    .reference
            })
            .collect();
        // Full-queue events were spooled and replayed: all 20 arrive, none twice.
        let mut sorted = refs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20, "{refs:?}");
    }

    #[test]
    fn a_failing_sink_spools_and_recovers_without_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sink = Failing(stored.clone(), down.clone());
        let (queue, writer) =
            EventQueue::start(Box::new(sink), 4, dir.path().join("spool.jsonl")).expect("start");
        for n in 0..10 {
            queue.emit(event(n));
        }
        for _ in 0..200 {
            if queue.counters().sink_errors.load(Ordering::SeqCst) > 0
                && dir.path().join("spool.jsonl").exists()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        down.store(false, Ordering::SeqCst);
        queue.emit(event(10));
        drop(queue);
        writer.join();
        let mut refs: Vec<String> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.reference.clone())
            .collect();
        refs.sort();
        refs.dedup();
        assert_eq!(refs.len(), 11, "{refs:?}");
    }
}
