//! Block events: from the request path to whatever stores them, durable before
//! the block page goes out.
//!
//! In: [`BlockEvent`]s from the block stage. Out: batches handed to an
//! [`EventSink`], and an acknowledgement per event once it is durable. This
//! crate ships [`JsonLinesSink`] (one JSON object per line, appended to
//! `events.jsonl` in the state directory); the incident store implements the
//! same trait.
//!
//! [`EventQueue::record`] is what the block path awaits: the event goes into a
//! bounded channel and the request waits until the writer says it is durable.
//! So a pupil who saw a reference number on a block page can rely on the event
//! surviving a kill -9 of the proxy. Where "durable" is depends on the sink
//! ([`EventSink::acknowledge`]):
//!
//! - **[`AckPoint::Journal`]** (the incident store, the default). The writer
//!   appends each batch to the local journal (JSON lines, one `write` to a file
//!   opened with `O_APPEND`) and acknowledges it from there; a second thread,
//!   the store thread, fills the sink from the journal in large batches (up to
//!   [`STORE_BATCH`]) and removes what the sink took. A block page thus waits
//!   for one local append, never for a database: the store's commit work
//!   happens off the request path, in a few large transactions instead of one
//!   per handful of waiting requests, and a slow or down database changes
//!   nothing for pupils. The append survives a kill -9 as soon as it returns
//!   (the kernel holds it). It is not fsync'd on the request path: a flush
//!   costs ~4 ms on the disks measured, and 64 waiting connections would then
//!   be held to ~15,000 blocks/s whatever the store. Instead the store's own
//!   commit (fsync'd) makes an event power-cut safe milliseconds later, and
//!   when the store fails, the store thread fsyncs the journal at once and
//!   every second while it waits, so a backlog is never exposed for long.
//! - **[`AckPoint::Sink`]** (the JSON-lines file). The sink's own write is a
//!   local append that survives a kill -9 as soon as it returns, so a journal
//!   would only write everything twice: the writer acknowledges once the sink
//!   took the batch.
//!
//! Common to both:
//!
//! - **Group commit.** The writer takes whatever is queued (up to [`MAX_BATCH`])
//!   and makes it durable as one batch, without waiting to fill it: every
//!   blocked request is waiting on an acknowledgement, so nothing more would
//!   arrive during such a wait. Under load the batches grow by themselves (the
//!   requests that arrive during one write share the next), so throughput
//!   holds while a lone request pays one write.
//! - **Bounded.** The channel holds [`Settings::event_queue`](crate::Settings)
//!   events; a full channel, or an acknowledgement that takes longer than
//!   [`DEFAULT_ACK_TIMEOUT`], makes the request append its own event to the
//!   journal (fsync'd) and go on. A sink that accepts the queued copy later
//!   stores it twice in that case; the incident store ignores the second copy by
//!   its reference.
//! - **Failing sink.** What the sink refuses stays in the journal (with
//!   [`AckPoint::Sink`], the refused batch is appended to it) and is replayed,
//!   oldest first, until the sink takes it: the store thread (or the writer, for
//!   [`AckPoint::Sink`]) retries every second. The replayed file is renamed
//!   first and removed only after the sink took all of it, so a kill during
//!   replay replays it again (never loses it); the journal is read in chunks,
//!   so a backlog of a long outage is never held in memory at once.
//!
//! The journal is `events.spool.jsonl` in the state directory (and
//! `events.spool.jsonl.replaying` while the sink takes it); what a previous run
//! left there is stored first. Events are not lost unless the disk itself
//! fails, and that is logged at error and counted.
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

/// Most events the store thread hands to the sink in one batch (one
/// transaction of the incident store).
pub const STORE_BATCH: usize = 4096;

/// How long the store thread lets events gather after storing some.
const STORE_LINGER: Duration = Duration::from_millis(20);

/// How often an idle writer (or a store thread after a failure) retries the journal.
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
    /// process cannot undo it. On error the batch stays in (or goes to) the
    /// journal and is offered again later, so a sink may see an event twice
    /// after a failure or a crash (the incident store keeps one by reference).
    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError>;

    /// When a blocked request may go on: once the local journal has its event
    /// (the default), or once this sink took it.
    fn acknowledge(&self) -> AckPoint {
        AckPoint::Journal
    }
}

/// Where an event is acknowledged (see the module documentation).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AckPoint {
    /// After the writer appended it to the local journal; the store thread
    /// fills the sink from the journal. For databases.
    Journal,
    /// After the sink's `write_batch` returned `Ok`, on the writer thread. Only
    /// for a sink whose write is itself a cheap local append.
    Sink,
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
    /// A batch's lines, reused between batches.
    text: Vec<u8>,
}

impl JsonLinesSink {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> Result<Self, EventSinkError> {
        let file = open_append(path)?;
        Ok(JsonLinesSink {
            path: path.to_path_buf(),
            file,
            text: Vec::new(),
        })
    }

    /// The default file in a state directory: `events.jsonl`.
    pub fn in_state_dir(state_dir: &Path) -> Result<Self, EventSinkError> {
        Self::open(&state_dir.join("events.jsonl"))
    }
}

impl EventSink for JsonLinesSink {
    /// A JSON-lines append is already a local file the kernel holds: a journal
    /// in front of it would write every event twice.
    fn acknowledge(&self) -> AckPoint {
        AckPoint::Sink
    }

    fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
        self.text.clear();
        write_lines(&mut self.text, events);
        // One write per batch: with O_APPEND the lines of a batch stay together.
        self.file
            .write_all(&self.text)
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

/// Appends one JSON line per event to `text`.
fn write_lines(text: &mut Vec<u8>, events: &[BlockEvent]) {
    for event in events {
        let start = text.len();
        // Serialising plain data with string keys cannot fail; were it to,
        // the partial line is taken back rather than written.
        match serde_json::to_writer(&mut *text, event) {
            Ok(()) => text.push(b'\n'),
            Err(_) => text.truncate(start),
        }
    }
}

/// The journal: events the sink has not taken yet, as JSON lines.
///
/// `path` collects new entries; replay first renames it to `replaying` (unless
/// an earlier, unfinished replay left one, which is older and goes first) and
/// removes that only once the sink took every event in it.
struct Journal {
    path: PathBuf,
    replaying: PathBuf,
    /// Held while appending and while claiming, so a batch goes wholly into
    /// one file or the other.
    lock: Mutex<Appender>,
    /// Something may be in either file (true at start: a previous run may have
    /// left entries).
    pending: AtomicBool,
}

/// The journal's open file (kept between appends: opening it is a path
/// lookup per batch) and the buffer a batch's lines are built in.
#[derive(Default)]
struct Appender {
    file: Option<File>,
    text: Vec<u8>,
}

impl Journal {
    fn new(path: PathBuf) -> Journal {
        Journal {
            replaying: replaying_path(&path),
            path,
            lock: Mutex::new(Appender::default()),
            pending: AtomicBool::new(true),
        }
    }

    /// Appends, and fsyncs when `sync` is set.
    fn append(&self, events: &[BlockEvent], sync: bool) -> Result<(), EventSinkError> {
        // Each append starts on a line of its own: after a crash in the middle
        // of an append (a torn line with no newline, never acknowledged), the
        // next run's first event must not be glued onto the torn line and be
        // skipped with it. The empty lines this leaves are ignored on reading.
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Appender { file, text } = &mut *guard;
        text.clear();
        text.push(b'\n');
        write_lines(text, events);
        let io = |source| EventSinkError::Io {
            path: self.path.clone(),
            source,
        };
        let open = match file {
            Some(open) => open,
            None => file.insert(open_append(&self.path)?),
        };
        // One write per batch: with O_APPEND the lines of a batch stay together.
        let written = open.write_all(text).and_then(|()| match sync {
            true => open.sync_data(),
            false => Ok(()),
        });
        if let Err(e) = written {
            // Opened again next time (the file may have been replaced).
            *file = None;
            return Err(io(e));
        }
        self.pending.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Fsyncs whatever is in the journal's files (the backlog of a failing
    /// store, which may now wait a long time).
    fn sync(&self) {
        for path in [&self.path, &self.replaying] {
            match File::open(path).and_then(|f| f.sync_data()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "event journal not synced")
                }
            }
        }
    }

    /// The file to replay now, if any.
    fn claim(&self) -> Option<PathBuf> {
        if !self.pending.load(Ordering::SeqCst) {
            return None;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.replaying.exists() {
            return Some(self.replaying.clone());
        }
        if self.path.exists() {
            // The open file goes with the rename: the next append opens a
            // new journal, so nothing is added to the file being replayed.
            guard.file = None;
            return match std::fs::rename(&self.path, &self.replaying) {
                Ok(()) => Some(self.replaying.clone()),
                Err(e) => {
                    tracing::error!(error = %e, path = %self.path.display(), "event journal cannot be replayed");
                    None
                }
            };
        }
        self.pending.store(false, Ordering::SeqCst);
        None
    }

    /// Hands the events of a claimed file to `take`, oldest first, at most
    /// `chunk` at a time, so a long outage's backlog is never in memory at once.
    /// A line that does not parse (torn by a crash in the middle of an append,
    /// so never acknowledged) is skipped with a warning. Stops at `take`'s
    /// first error; returns how many events it took.
    fn read_chunks(
        path: &Path,
        chunk: usize,
        mut take: impl FnMut(&[BlockEvent]) -> Result<(), EventSinkError>,
    ) -> Result<usize, EventSinkError> {
        let io = |source| EventSinkError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        let mut batch = Vec::with_capacity(chunk.min(STORE_BATCH));
        let mut taken = 0;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(event) => batch.push(event),
                Err(e) => {
                    tracing::warn!(path = %path.display(), line = n + 1, error = %e, "journal line skipped");
                }
            }
            if batch.len() >= chunk {
                take(&batch)?;
                taken += batch.len();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            take(&batch)?;
            taken += batch.len();
        }
        Ok(taken)
    }
}

/// The file a journal at `path` is renamed to while the sink takes it.
fn replaying_path(path: &Path) -> PathBuf {
    let mut replaying = path.as_os_str().to_owned();
    replaying.push(".replaying");
    replaying.into()
}

/// Bytes the sink has not taken yet in the journal at `path` (both its files).
pub fn journal_bytes(path: &Path) -> u64 {
    [path.to_path_buf(), replaying_path(path)]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Counters of the event path.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events handed to the writer (`hallpass_events_queued_total`).
    pub queued_total: AtomicU64,
    /// Events the sink stored in the normal course
    /// (`hallpass_events_written_total`).
    pub written: AtomicU64,
    /// Events acknowledged from the journal, which the store thread then
    /// stores (`hallpass_events_journaled_total`; [`AckPoint::Journal`] only).
    pub journaled: AtomicU64,
    /// Events spooled because the writer could not take them in time (queue
    /// full, slow acknowledgement) or because the sink refused their batch
    /// (`hallpass_events_spooled_total`).
    pub spooled: AtomicU64,
    /// Events the sink took after it had failed: the backlog of an outage or
    /// of a previous run (`hallpass_events_replayed_total`).
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
    /// In the journal in the normal course; the store thread stores it.
    Journaled,
    /// In the journal (fsync'd) because the queue was full, the writer slow or
    /// the sink failing; it is stored once the sink takes it.
    Spooled,
    /// Neither the sink nor the journal took it (logged at error and counted).
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
    journal: Arc<Journal>,
    counters: Arc<EventCounters>,
    ack_timeout: Duration,
}

/// The writer thread (and the store thread, with [`AckPoint::Journal`]);
/// dropping every [`EventQueue`] ends them after the last batch.
pub struct EventWriter {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EventWriter {
    /// Waits until every queued event has been handed to the sink, or left in
    /// the journal for the next start if the sink is failing (call after the
    /// proxy, and so every queue handle, is gone).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl EventQueue {
    /// Starts the writer thread with a queue of `capacity` events and a journal
    /// file; [`record`](Self::record) waits at most [`DEFAULT_ACK_TIMEOUT`].
    pub fn start(
        sink: Box<dyn EventSink>,
        capacity: usize,
        journal_path: PathBuf,
    ) -> std::io::Result<(EventQueue, EventWriter)> {
        Self::start_with(sink, capacity, journal_path, DEFAULT_ACK_TIMEOUT)
    }

    /// As [`start`](Self::start), with the longest wait of [`record`](Self::record).
    pub fn start_with(
        sink: Box<dyn EventSink>,
        capacity: usize,
        journal_path: PathBuf,
        ack_timeout: Duration,
    ) -> std::io::Result<(EventQueue, EventWriter)> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let journal = Arc::new(Journal::new(journal_path));
        let counters = Arc::new(EventCounters::default());
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(run)
        };
        let threads = match sink.acknowledge() {
            AckPoint::Sink => {
                let (journal, counters) = (journal.clone(), counters.clone());
                vec![spawn(
                    "hallpass-events",
                    Box::new(move || write_loop(sink, rx, &journal, &counters)),
                )?]
            }
            AckPoint::Journal => {
                // One wake-up is enough however many batches arrive meanwhile:
                // the store thread takes the whole journal each time.
                let (wake, woken) = mpsc::sync_channel(1);
                let store = {
                    let (journal, counters) = (journal.clone(), counters.clone());
                    spawn(
                        "hallpass-store",
                        Box::new(move || store_loop(sink, woken, &journal, &counters)),
                    )?
                };
                let (journal, counters) = (journal.clone(), counters.clone());
                let writer = spawn(
                    "hallpass-events",
                    Box::new(move || journal_loop(rx, wake, &journal, &counters)),
                )?;
                vec![writer, store]
            }
        };
        Ok((
            EventQueue {
                tx,
                journal,
                counters,
                ack_timeout,
            },
            EventWriter { threads },
        ))
    }

    /// Hands an event over and waits until it is durable: in the journal or
    /// stored by the sink (see [`AckPoint`]). Past the queue's ack timeout, or
    /// when the queue is full, the event is appended to the journal here (a
    /// short blocking fsync on the calling worker, on the slow path only).
    pub async fn record(&self, event: BlockEvent) -> Durable {
        let (ack_tx, ack_rx) = oneshot::channel();
        // Kept for the slow path, where the queued copy cannot be taken back.
        let copy = event.clone();
        let item = Item {
            event,
            ack: Some(ack_tx),
        };
        if let Some(event) = self.enqueue(item) {
            return self.spool_own(event);
        }
        match tokio::time::timeout(self.ack_timeout, ack_rx).await {
            Ok(Ok(durable)) => durable,
            // The writer is slow, or dropped the ack because the journal failed
            // too: this copy goes to the journal (a second copy is ignored by
            // reference in the incident store).
            Ok(Err(_)) | Err(_) => self.spool_own(copy),
        }
    }

    /// Hands an event over without waiting: queue, or journal when the queue is
    /// full. For events no page depends on (repeated login failures).
    pub fn emit(&self, event: BlockEvent) {
        if let Some(event) = self.enqueue(Item { event, ack: None }) {
            let _ = self.spool_own(event);
        }
    }

    /// Puts an item in the queue; gives its event back when the queue is full
    /// or the writer gone.
    fn enqueue(&self, item: Item) -> Option<BlockEvent> {
        // Counted before the send, so the writer never takes one that is not counted.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(item) {
            Ok(()) => {
                self.counters.queued_total.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                Some(item.event)
            }
        }
    }

    fn spool_own(&self, event: BlockEvent) -> Durable {
        append(
            &self.journal,
            std::slice::from_ref(&event),
            &self.counters,
            Durable::Spooled,
        )
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

/// Appends to the journal and counts the events as `how`: journaled (written,
/// not fsync'd: the store thread takes them within milliseconds, and fsyncs
/// the journal itself when the store fails) or spooled (fsync'd: the slow
/// paths); [`Durable::Lost`] when the disk refused.
fn append(
    journal: &Journal,
    events: &[BlockEvent],
    counters: &EventCounters,
    how: Durable,
) -> Durable {
    match journal.append(events, how != Durable::Journaled) {
        Ok(()) => {
            let counter = match how {
                Durable::Journaled => &counters.journaled,
                _ => &counters.spooled,
            };
            counter.fetch_add(events.len() as u64, Ordering::Relaxed);
            how
        }
        Err(e) => {
            counters
                .lost
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, lost = events.len(), "block events could not be written to the journal");
            Durable::Lost
        }
    }
}

/// What [`next_batch`] found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Next {
    /// A batch is ready.
    Batch,
    /// Nothing arrived for [`IDLE_REPLAY`].
    Idle,
    /// Every sender is gone.
    Closed,
}

/// Takes the next batch: blocks for the first item (up to [`IDLE_REPLAY`]),
/// then adds whatever is already queued, up to [`MAX_BATCH`].
fn next_batch(rx: &Receiver<Item>, counters: &EventCounters, batch: &mut Vec<Item>) -> Next {
    match rx.recv_timeout(IDLE_REPLAY) {
        Ok(first) => batch.push(first),
        Err(RecvTimeoutError::Timeout) => return Next::Idle,
        Err(RecvTimeoutError::Disconnected) => return Next::Closed,
    }
    // Group commit: whatever queued up meanwhile shares this batch. The
    // first event's send woke this thread, and on a proxy confined to one CPU
    // the scheduler runs a woken thread at once: without giving the CPU back
    // first, every batch would hold the one event that woke it, and each
    // blocked request would pay a write and two context switches of its own.
    std::thread::yield_now();
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    counters
        .queued
        .fetch_sub(batch.len() as u64, Ordering::Relaxed);
    Next::Batch
}

/// A batch's events and the acknowledgements their requests wait for.
fn split(batch: &mut Vec<Item>) -> (Vec<BlockEvent>, Vec<oneshot::Sender<Durable>>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for item in batch.drain(..) {
        events.push(item.event);
        acks.extend(item.ack);
    }
    (events, acks)
}

/// Sends every ack of a batch; a lost batch drops its acks instead, so each
/// waiting request tries the journal with its own copy.
fn acknowledge(acks: Vec<oneshot::Sender<Durable>>, durable: Durable) {
    if durable == Durable::Lost {
        return;
    }
    for ack in acks {
        // The request may have given up waiting (and journaled its own copy).
        let _ = ack.send(durable);
    }
}

/// [`AckPoint::Sink`]: the writer stores each batch itself and replays the
/// journal (what the sink refused) before the next one and every second.
fn write_loop(
    mut sink: Box<dyn EventSink>,
    rx: Receiver<Item>,
    journal: &Journal,
    counters: &EventCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Replay what a previous run left in the journal.
    replay(&mut *sink, journal, counters, &counters.replayed);
    loop {
        match next_batch(&rx, counters, &mut batch) {
            Next::Batch => {}
            Next::Idle => {
                replay(&mut *sink, journal, counters, &counters.replayed);
                continue;
            }
            Next::Closed => break,
        }
        replay(&mut *sink, journal, counters, &counters.replayed);
        let (events, acks) = split(&mut batch);
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
                append(journal, &events, counters, Durable::Spooled)
            }
        };
        acknowledge(acks, durable);
    }
    // Every sender is gone: whatever was spooled after the last batch goes now.
    replay(&mut *sink, journal, counters, &counters.replayed);
}

/// [`AckPoint::Journal`], the writer: each batch to the journal, acknowledged,
/// and the store thread woken.
fn journal_loop(
    rx: Receiver<Item>,
    wake: SyncSender<()>,
    journal: &Journal,
    counters: &EventCounters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        match next_batch(&rx, counters, &mut batch) {
            Next::Batch => {}
            Next::Idle => continue,
            Next::Closed => break,
        }
        let (events, acks) = split(&mut batch);
        let durable = append(journal, &events, counters, Durable::Journaled);
        acknowledge(acks, durable);
        // Full means a wake-up is already pending: this batch rides on it.
        let _ = wake.try_send(());
    }
    // Dropping `wake` tells the store thread to finish the journal and stop.
}

/// [`AckPoint::Journal`], the store thread: the journal into the sink in large
/// batches whenever the writer adds to it, every second after a failure, and
/// once more when the writer stops.
fn store_loop(
    mut sink: Box<dyn EventSink>,
    woken: Receiver<()>,
    journal: &Journal,
    counters: &EventCounters,
) {
    // A previous run's journal is a backlog: counted as replayed.
    let mut behind = true;
    loop {
        behind = !store_journal(&mut *sink, journal, counters, behind);
        if behind {
            // The store may stay away for hours: what waits for it must
            // survive a power cut too, not only a crash of this process.
            journal.sync();
        } else {
            // Let the next events gather: under load this makes transactions
            // of hundreds of events instead of one per writer batch (the
            // commit, not the insert, is a store's dearest part), and a lone
            // event after a quiet spell is still stored at once.
            std::thread::sleep(STORE_LINGER);
        }
        let open = if behind {
            wait_out(&woken, IDLE_REPLAY)
        } else {
            woken.recv().is_ok()
        };
        if !open {
            break;
        }
    }
    // The writer is gone: what it journaled last goes now (or stays for the
    // next start if the sink is failing).
    store_journal(&mut *sink, journal, counters, behind);
}

/// Waits `period` whatever the writer says meanwhile (a failing store is
/// retried once a period, not on every batch the writer journals); false as
/// soon as the writer is gone.
fn wait_out(woken: &Receiver<()>, period: Duration) -> bool {
    let until = std::time::Instant::now() + period;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match woken.recv_timeout(left) {
            Ok(()) if !left.is_zero() => {}
            Ok(()) | Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// [`replay`] counting into `replayed` when the sink is catching up after a
/// failure (or a previous run), else into `written`.
fn store_journal(
    sink: &mut dyn EventSink,
    journal: &Journal,
    counters: &EventCounters,
    behind: bool,
) -> bool {
    let counter = if behind {
        &counters.replayed
    } else {
        &counters.written
    };
    replay(sink, journal, counters, counter)
}

/// Hands the journal to the sink, oldest first, in batches of [`STORE_BATCH`],
/// counting what it took in `counter`. False when the sink refused (the file
/// stays, and is offered again from its start: the incident store ignores
/// what it already has by reference).
fn replay(
    sink: &mut dyn EventSink,
    journal: &Journal,
    counters: &EventCounters,
    counter: &AtomicU64,
) -> bool {
    loop {
        let Some(path) = journal.claim() else {
            return true;
        };
        let taken = Journal::read_chunks(&path, STORE_BATCH, |chunk| {
            sink.write_batch(chunk)?;
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok(())
        });
        match taken {
            Ok(n) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::error!(error = %e, path = %path.display(), "stored journal could not be removed");
                    return false;
                }
                tracing::debug!(events = n, "journal stored");
            }
            Err(e) => {
                counters.sink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the event sink refused the journal; will retry");
                return false;
            }
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

    /// A sink that stores in memory, after `delay`, with every batch's size
    /// kept, and refuses while `down` is set.
    #[derive(Clone)]
    struct TestSink {
        stored: Arc<Mutex<Vec<BlockEvent>>>,
        batches: Arc<Mutex<Vec<usize>>>,
        down: Arc<AtomicBool>,
        delay: Duration,
        ack: AckPoint,
    }

    impl TestSink {
        fn new(ack: AckPoint) -> TestSink {
            TestSink {
                stored: Arc::default(),
                batches: Arc::default(),
                down: Arc::default(),
                delay: Duration::ZERO,
                ack,
            }
        }

        fn slow(ack: AckPoint, delay: Duration) -> TestSink {
            TestSink {
                delay,
                ..TestSink::new(ack)
            }
        }

        fn refs(&self) -> Vec<String> {
            let stored = self.stored.lock().expect("lock");
            stored.iter().map(|e| e.reference.clone()).collect()
        }

        fn has(&self, reference: &str) -> bool {
            let stored = self.stored.lock().expect("lock");
            stored.iter().any(|e| e.reference == reference)
        }
    }

    impl EventSink for TestSink {
        fn write_batch(&mut self, events: &[BlockEvent]) -> Result<(), EventSinkError> {
            std::thread::sleep(self.delay);
            if self.down.load(Ordering::SeqCst) {
                return Err(EventSinkError::Store("down".into()));
            }
            self.batches.lock().expect("lock").push(events.len());
            self.stored.lock().expect("lock").extend_from_slice(events);
            Ok(())
        }

        fn acknowledge(&self) -> AckPoint {
            self.ack
        }
    }

    fn sorted_unique(mut refs: Vec<String>) -> Vec<String> {
        refs.sort();
        refs.dedup();
        refs
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
        assert_eq!(sorted_unique(refs.clone()).len(), 20, "{refs:?}");
    }

    #[test]
    fn a_failing_sink_loses_nothing_and_catches_up_when_it_recovers() {
        for ack in [AckPoint::Sink, AckPoint::Journal] {
            let dir = tempfile::tempdir().expect("tempdir");
            let sink = TestSink::new(ack);
            sink.down.store(true, Ordering::SeqCst);
            let (queue, writer) =
                EventQueue::start(Box::new(sink.clone()), 4, dir.path().join("spool.jsonl"))
                    .expect("start");
            for n in 0..10 {
                queue.emit(event(n));
            }
            for _ in 0..400 {
                if queue.counters().sink_errors.load(Ordering::SeqCst) > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                queue.counters().sink_errors.load(Ordering::SeqCst) > 0,
                "{ack:?}"
            );
            assert!(sink.refs().is_empty());
            sink.down.store(false, Ordering::SeqCst);
            queue.emit(event(10));
            drop(queue);
            writer.join();
            assert_eq!(
                sorted_unique(sink.refs()).len(),
                11,
                "{ack:?}: {:?}",
                sink.refs()
            );
            assert_eq!(journal_bytes(&dir.path().join("spool.jsonl")), 0, "{ack:?}");
        }
    }

    #[tokio::test]
    async fn sink_mode_waits_for_the_sink_and_concurrent_events_share_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = TestSink::slow(AckPoint::Sink, Duration::from_millis(20));
        let (queue, writer) =
            EventQueue::start(Box::new(sink.clone()), 64, dir.path().join("spool.jsonl"))
                .expect("start");
        let waits: Vec<_> = (0..40)
            .map(|n| {
                let (queue, sink) = (queue.clone(), sink.clone());
                tokio::spawn(async move {
                    let durable = queue.record(event(n)).await;
                    // Acknowledged means already in the sink.
                    (durable, sink.has(&format!("R{n}")))
                })
            })
            .collect();
        for wait in waits {
            assert_eq!(wait.await.expect("task"), (Durable::Stored, true));
        }
        assert_eq!(queue.counters().written.load(Ordering::SeqCst), 40);
        assert!(
            sink.batches.lock().expect("lock").len() < 40,
            "batches were shared"
        );
        drop(queue);
        writer.join();
    }

    #[tokio::test]
    async fn journal_mode_acknowledges_from_the_journal_and_stores_in_large_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("spool.jsonl");
        // A store whose every transaction takes 100 ms, far longer than a request should wait.
        let sink = TestSink::slow(AckPoint::Journal, Duration::from_millis(100));
        let (queue, writer) =
            EventQueue::start(Box::new(sink.clone()), 4096, journal.clone()).expect("start");
        let started = std::time::Instant::now();
        let waits: Vec<_> = (0..2000)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.record(event(n)).await })
            })
            .collect();
        for wait in waits {
            assert_eq!(wait.await.expect("task"), Durable::Journaled);
        }
        // Every request went on once its event was in the journal,
        // long before the store could have taken 2,000 events in batches of
        // the writer's size (8 x 100 ms).
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(queue.counters().journaled.load(Ordering::SeqCst), 2000);
        drop(queue);
        writer.join();
        let refs = sink.refs();
        assert_eq!(refs.len(), 2000, "each event stored once");
        assert_eq!(sorted_unique(refs).len(), 2000);
        let batches = sink.batches.lock().expect("lock").clone();
        assert!(
            batches.iter().any(|&b| b > MAX_BATCH),
            "the store fills larger batches than the writer's: {batches:?}"
        );
        assert!(batches.iter().all(|&b| b <= STORE_BATCH), "{batches:?}");
        assert_eq!(journal_bytes(&journal), 0);
    }

    #[test]
    fn a_journal_left_by_a_previous_run_is_stored_first_and_counted_as_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("spool.jsonl");
        // The first run's store is down throughout: its events stay in the journal.
        let down = TestSink::new(AckPoint::Journal);
        down.down.store(true, Ordering::SeqCst);
        let (queue, writer) =
            EventQueue::start(Box::new(down.clone()), 64, journal.clone()).expect("start");
        for n in 0..5 {
            queue.emit(event(n));
        }
        drop(queue);
        writer.join();
        assert!(down.refs().is_empty());
        // A crash inside an append leaves a torn line, never acknowledged.
        let mut file = open_append(&journal).expect("journal");
        file.write_all(b"{\"reference\":\"R9").expect("torn");
        drop(file);

        let sink = TestSink::new(AckPoint::Journal);
        let (queue, writer) =
            EventQueue::start(Box::new(sink.clone()), 64, journal.clone()).expect("start");
        queue.emit(event(5));
        let counters = queue.counters_handle();
        drop(queue);
        writer.join();
        assert_eq!(sink.refs(), ["R0", "R1", "R2", "R3", "R4", "R5"]);
        // The backlog counts as replayed (and so may the new event, when the
        // store thread took it in the same pass).
        let replayed = counters.replayed.load(Ordering::SeqCst);
        assert!(replayed >= 5, "{replayed}");
        assert_eq!(replayed + counters.written.load(Ordering::SeqCst), 6);
        assert_eq!(journal_bytes(&journal), 0);
    }

    #[test]
    fn a_failing_store_is_retried_once_a_second_not_on_every_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = TestSink::new(AckPoint::Journal);
        sink.down.store(true, Ordering::SeqCst);
        let (queue, writer) =
            EventQueue::start(Box::new(sink.clone()), 64, dir.path().join("spool.jsonl"))
                .expect("start");
        // 40 batches over ~0.6 s while the store is down.
        for n in 0..40 {
            queue.emit(event(n));
            std::thread::sleep(Duration::from_millis(15));
        }
        let errors = queue.counters().sink_errors.load(Ordering::SeqCst);
        assert!((1..=2).contains(&errors), "{errors} attempts in 0.6 s");
        sink.down.store(false, Ordering::SeqCst);
        drop(queue);
        writer.join();
        assert_eq!(sorted_unique(sink.refs()).len(), 40);
    }

    #[tokio::test]
    async fn a_slow_sink_costs_at_most_the_ack_timeout_and_the_event_is_spooled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool.jsonl");
        let sink = TestSink::slow(AckPoint::Sink, Duration::from_millis(600));
        let (queue, writer) = EventQueue::start_with(
            Box::new(sink.clone()),
            8,
            spool.clone(),
            Duration::from_millis(100),
        )
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
        let refs = sink.refs();
        assert!(
            refs.iter().all(|r| r == "R1") && !refs.is_empty(),
            "{refs:?}"
        );
        assert!(!spool.exists());
    }

    #[tokio::test]
    async fn a_failing_sink_acknowledges_from_the_journal() {
        for (ack, expected) in [
            (AckPoint::Sink, Durable::Spooled),
            (AckPoint::Journal, Durable::Journaled),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let spool = dir.path().join("spool.jsonl");
            let sink = TestSink::new(ack);
            sink.down.store(true, Ordering::SeqCst);
            let (queue, writer) =
                EventQueue::start(Box::new(sink.clone()), 8, spool.clone()).expect("start");
            assert_eq!(queue.record(event(7)).await, expected);
            let files = [spool.clone(), replaying_path(&spool)];
            let text: String = files
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect();
            assert!(text.contains("\"R7\""), "{ack:?}: {text}");
            sink.down.store(false, Ordering::SeqCst);
            drop(queue);
            writer.join();
            assert_eq!(sink.refs(), ["R7"], "{ack:?}");
        }
    }
}
