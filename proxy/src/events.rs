//! Block events: from the request path to whatever stores them, durable before
//! the block page goes out.
//!
//! In: [`BlockEvent`]s from the block stage. Out: batches handed to an
//! [`EventSink`] on a dedicated writer thread, and an acknowledgement per event
//! once it is durable. This crate ships [`JsonLinesSink`] (one JSON object per
//! line, appended to `events.jsonl` in the state directory); the incident store
//! implements the same trait.
//!
//! [`EventQueue::record`] is what the block path awaits: the event goes into a
//! bounded channel and the request waits until the writer says it is stored
//! (the sink accepted its batch) or spooled (appended to the spool file and
//! fsync'd). So a pupil who saw a reference number on a block page can rely on
//! the event surviving a kill -9 of the proxy.
//!
//! - **Group commit.** The writer takes whatever is queued (up to [`MAX_BATCH`])
//!   and hands it to the sink as one batch, without waiting to fill it: every
//!   blocked request is waiting on an acknowledgement, so nothing more would
//!   arrive during such a wait. Under load the batches grow by themselves (the
//!   requests that arrive during one commit share the next), so throughput
//!   holds while a lone request pays one commit.
//! - **Bounded.** The channel holds [`Settings::event_queue`](crate::Settings)
//!   events; a full channel, or an acknowledgement that takes longer than
//!   [`DEFAULT_ACK_TIMEOUT`], makes the request append its own event to the
//!   spool (fsync'd) and go on. A sink that accepts the queued copy later
//!   stores it twice in that case; the incident store ignores the second copy by
//!   its reference.
//! - **Failing sink.** A refused batch goes to the spool and is acknowledged from
//!   there. The writer replays the spool, oldest first, before its next batch and
//!   every second while idle. The replayed file is renamed first and removed only
//!   after the sink took all of it, so a kill during replay replays it again
//!   (never loses it).
//!
//! Events are not lost unless the disk itself fails, and that is logged at error.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::event::BlockEvent;
use tokio::sync::oneshot;

/// Most events written in one batch.
pub const MAX_BATCH: usize = 256;

/// How long a blocked request waits for its event to be stored before it
/// spools the event itself: a slow store costs a pupil at most this (plus one
/// fsync), never an unbounded wait.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_millis(250);

/// How often an idle writer retries the spool.
const IDLE_REPLAY: Duration = Duration::from_secs(1);

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
    /// Stores a batch, all or nothing, durably enough that a kill -9 of this
    /// process cannot undo it: the writer acknowledges every event of the batch
    /// when this returns `Ok`. On error the batch is spooled and retried.
    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError>;
}

/// Appends events as JSON lines to a file.
///
/// A batch is one `write` to a file opened with `O_APPEND`, which survives a
/// kill -9 of the proxy as soon as it returns (the kernel holds it); it is not
/// fsync'd, so a power cut may lose the last batches. The incident store
/// (SQLite with `synchronous = FULL`, or PostgreSQL) survives both.
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

/// The spool: events that could not be stored yet, as fsync'd JSON lines.
///
/// `path` collects new entries; replay first renames it to `replaying` (unless
/// an earlier, unfinished replay left one, which is older and goes first) and
/// removes that only once the sink took every event in it.
struct Spool {
    path: PathBuf,
    replaying: PathBuf,
    lock: Mutex<()>,
    /// Something may be in either file (true at start: a previous run may have
    /// left entries).
    pending: AtomicBool,
}

impl Spool {
    fn new(path: PathBuf) -> Spool {
        let mut replaying = path.clone().into_os_string();
        replaying.push(".replaying");
        Spool {
            path,
            replaying: replaying.into(),
            lock: Mutex::new(()),
            pending: AtomicBool::new(true),
        }
    }

    /// Appends and fsyncs; only then is an event acknowledged as spooled.
    fn append(&self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| EventSinkError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = open_append(&self.path)?;
        file.write_all(to_lines(events).as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.pending.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The file to replay now, if any.
    fn claim(&self) -> Option<PathBuf> {
        if !self.pending.load(Ordering::SeqCst) {
            return None;
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.replaying.exists() {
            return Some(self.replaying.clone());
        }
        if self.path.exists() {
            return match std::fs::rename(&self.path, &self.replaying) {
                Ok(()) => Some(self.replaying.clone()),
                Err(e) => {
                    tracing::error!(error = %e, path = %self.path.display(), "spool cannot be replayed");
                    None
                }
            };
        }
        self.pending.store(false, Ordering::SeqCst);
        None
    }

    /// The events of a claimed file, oldest first. A line that does not parse
    /// (torn by a crash in the middle of an append, so never acknowledged) is
    /// skipped with a warning.
    fn read(path: &Path) -> Vec<BlockEvent> {
        let Ok(file) = File::open(path) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .filter_map(|(n, line)| match serde_json::from_str(&line) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::warn!(path = %path.display(), line = n + 1, error = %e, "spool line skipped");
                    None
                }
            })
            .collect()
    }
}

/// Counters of the event path.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events the sink stored (`hallpass_events_written_total`).
    pub written: AtomicU64,
    /// Events that went to the spool (`hallpass_events_spooled_total`).
    pub spooled: AtomicU64,
    /// Spooled events the sink took on replay (`hallpass_events_replayed_total`).
    pub replayed: AtomicU64,
    /// Batches the sink refused (`hallpass_event_sink_errors_total`).
    pub sink_errors: AtomicU64,
    /// Events that could be neither stored nor spooled (the disk failed;
    /// `hallpass_events_lost_total`).
    pub lost: AtomicU64,
    /// Events in the queue, not yet taken by the writer
    /// (`hallpass_event_queue_depth`).
    pub queued: AtomicU64,
}

/// Where an event is once [`EventQueue::record`] returns.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Durable {
    /// The sink stored it.
    Stored,
    /// It is in the spool (fsync'd); the writer stores it later.
    Spooled,
    /// Neither the sink nor the spool took it (logged at error and counted).
    Lost,
}

struct Item {
    event: BlockEvent,
    ack: Option<oneshot::Sender<Durable>>,
}

/// The sending side, held by the proxy.
#[derive(Clone)]
pub struct EventQueue {
    tx: SyncSender<Item>,
    spool: Arc<Spool>,
    counters: Arc<EventCounters>,
    ack_timeout: Duration,
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
    /// Starts the writer thread with a queue of `capacity` events and a spool
    /// file; [`record`](Self::record) waits at most [`DEFAULT_ACK_TIMEOUT`].
    pub fn start(
        sink: Box<dyn EventSink>,
        capacity: usize,
        spool_path: PathBuf,
    ) -> std::io::Result<(EventQueue, EventWriter)> {
        Self::start_with(sink, capacity, spool_path, DEFAULT_ACK_TIMEOUT)
    }

    /// As [`start`](Self::start), with the longest wait of [`record`](Self::record).
    pub fn start_with(
        sink: Box<dyn EventSink>,
        capacity: usize,
        spool_path: PathBuf,
        ack_timeout: Duration,
    ) -> std::io::Result<(EventQueue, EventWriter)> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let spool = Arc::new(Spool::new(spool_path));
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
                ack_timeout,
            },
            EventWriter {
                thread: Some(thread),
            },
        ))
    }

    /// Hands an event over and waits until it is durable: stored by the sink,
    /// or fsync'd to the spool. Past the queue's ack timeout, or when the queue
    /// is full, the event is spooled here (a short blocking fsync on the calling
    /// worker, on the slow path only).
    pub async fn record(&self, event: BlockEvent) -> Durable {
        let (ack_tx, ack_rx) = oneshot::channel();
        // Kept for the slow path, where the queued copy cannot be taken back.
        let copy = event.clone();
        let item = Item {
            event,
            ack: Some(ack_tx),
        };
        // Counted before the send, so the writer never takes one that is not counted.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                return self.spool_own(item.event);
            }
        }
        match tokio::time::timeout(self.ack_timeout, ack_rx).await {
            Ok(Ok(durable)) => durable,
            // The writer is slow, or dropped the ack because the spool failed
            // too: this copy goes to the spool (a second copy is ignored by
            // reference in the incident store).
            Ok(Err(_)) | Err(_) => self.spool_own(copy),
        }
    }

    /// Hands an event over without waiting: queue, or spool when the queue is
    /// full. For events no page depends on (repeated login failures).
    pub fn emit(&self, event: BlockEvent) {
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Item { event, ack: None }) {
            Ok(()) => {}
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                let _ = self.spool_own(item.event);
            }
        }
    }

    fn spool_own(&self, event: BlockEvent) -> Durable {
        spool_batch(&self.spool, std::slice::from_ref(&event), &self.counters)
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

fn spool_batch(spool: &Spool, events: &[BlockEvent], counters: &EventCounters) -> Durable {
    match spool.append(events) {
        Ok(()) => {
            counters
                .spooled
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            Durable::Spooled
        }
        Err(e) => {
            counters
                .lost
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, lost = events.len(), "block events could not be spooled");
            Durable::Lost
        }
    }
}

fn write_loop(
    mut sink: Box<dyn EventSink>,
    rx: Receiver<Item>,
    spool: &Spool,
    counters: &EventCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Replay what a previous run left in the spool.
    replay(&mut *sink, spool, counters);
    loop {
        match rx.recv_timeout(IDLE_REPLAY) {
            Ok(first) => {
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(first);
            }
            Err(RecvTimeoutError::Timeout) => {
                replay(&mut *sink, spool, counters);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Group commit: whatever queued up meanwhile shares this batch.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => {
                    counters.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        replay(&mut *sink, spool, counters);
        store(&mut *sink, &mut batch, spool, counters);
    }
    // Every sender is gone: whatever was spooled after the last batch goes now.
    replay(&mut *sink, spool, counters);
}

fn replay(sink: &mut dyn EventSink, spool: &Spool, counters: &EventCounters) {
    let Some(path) = spool.claim() else {
        return;
    };
    let events = Spool::read(&path);
    for chunk in events.chunks(MAX_BATCH) {
        if let Err(e) = sink.write_batch(chunk) {
            // The file stays; what the sink took already is taken again next
            // time (the incident store ignores it by reference).
            counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "spool replay stopped; will retry");
            return;
        }
        counters
            .replayed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::error!(error = %e, path = %path.display(), "replayed spool could not be removed");
    } else if !events.is_empty() {
        tracing::info!(events = events.len(), "spooled events replayed");
    }
}

fn store(sink: &mut dyn EventSink, batch: &mut Vec<Item>, spool: &Spool, counters: &EventCounters) {
    let mut events = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for item in batch.drain(..) {
        events.push(item.event);
        acks.extend(item.ack);
    }
    let durable = match sink.write_batch(&events) {
        Ok(()) => {
            counters
                .written
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            Durable::Stored
        }
        Err(e) => {
            counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, events = events.len(), "event sink refused a batch; spooling it");
            spool_batch(spool, &events, counters)
        }
    };
    // A lost batch drops its acks: each waiting request tries the spool with
    // its own copy.
    if durable != Durable::Lost {
        for ack in acks {
            // The request may have given up waiting (and spooled its own copy).
            let _ = ack.send(durable);
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

    struct Slow(Arc<Mutex<Vec<BlockEvent>>>, Duration);
    impl EventSink for Slow {
        fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
            std::thread::sleep(self.1);
            self.0.lock().expect("lock").extend_from_slice(events);
            Ok(())
        }
    }

    #[tokio::test]
    async fn record_waits_for_the_sink_and_concurrent_events_share_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = Arc::new(Mutex::new(Vec::new()));
        let sink = Slow(stored.clone(), Duration::from_millis(20));
        let (queue, writer) =
            EventQueue::start(Box::new(sink), 64, dir.path().join("spool.jsonl")).expect("start");
        let waits: Vec<_> = (0..40)
            .map(|n| {
                let (queue, stored) = (queue.clone(), stored.clone());
                tokio::spawn(async move {
                    let durable = queue.record(event(n)).await;
                    // Acknowledged means already in the sink.
                    let reference = format!("R{n}");
                    let seen = stored
                        .lock()
                        .expect("lock")
                        .iter()
                        .any(|e| e.reference == reference);
                    (durable, seen)
                })
            })
            .collect();
        for wait in waits {
            assert_eq!(wait.await.expect("task"), (Durable::Stored, true));
        }
        let written = queue.counters().written.load(Ordering::SeqCst);
        assert_eq!(written, 40);
        drop(queue);
        writer.join();
    }

    #[tokio::test]
    async fn a_slow_sink_costs_at_most_the_ack_timeout_and_the_event_is_spooled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool.jsonl");
        let stored = Arc::new(Mutex::new(Vec::new()));
        let sink = Slow(stored.clone(), Duration::from_millis(600));
        let (queue, writer) =
            EventQueue::start_with(Box::new(sink), 8, spool.clone(), Duration::from_millis(100))
                .expect("start");
        let started = std::time::Instant::now();
        assert_eq!(queue.record(event(1)).await, Durable::Spooled);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let text = std::fs::read_to_string(&spool).expect("spooled before the ack");
        assert!(text.contains("\"R1\""), "{text}");
        drop(queue);
        writer.join();
        // Both copies reached the sink (the incident store keeps one by reference);
        // the spool is empty after replay.
        let refs: Vec<String> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.reference.clone())
            .collect();
        assert!(
            refs.iter().all(|r| r == "R1") && !refs.is_empty(),
            "{refs:?}"
        );
        assert!(!spool.exists());
    }

    #[tokio::test]
    async fn a_failing_sink_acknowledges_from_the_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool.jsonl");
        let stored = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sink = Failing(stored.clone(), down.clone());
        let (queue, writer) = EventQueue::start(Box::new(sink), 8, spool.clone()).expect("start");
        assert_eq!(queue.record(event(7)).await, Durable::Spooled);
        assert!(
            std::fs::read_to_string(&spool)
                .expect("spool")
                .contains("\"R7\"")
        );
        down.store(false, Ordering::SeqCst);
        drop(queue);
        writer.join();
        let refs: Vec<String> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.reference.clone())
            .collect();
        assert_eq!(refs, ["R7"]);
    }
}
