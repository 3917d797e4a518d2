//! Intake: block events from the proxy into the store, batched, acknowledged,
//! never dropped.
//!
//! In: [`BlockEvent`]s through [`Intake::submit`] (waits for the acknowledgement)
//! or [`Intake::try_submit`] (does not wait), and [`AuthFailure`]s. Out: an
//! [`Ack`] per event once it is durable, in the store or in the spool.
//!
//! How:
//! 1. Events enter a bounded queue. A full queue means the store is falling
//!    behind: the event is appended to the [`Spool`] (fsync'd) and acknowledged
//!    at once, so the pupil's block page never waits on the database.
//! 2. One writer thread takes up to [`IntakeOptions::max_batch`] events (4,096) or
//!    whatever arrives within [`IntakeOptions::max_wait`] (5 ms), and commits them
//!    in one transaction, with the incidents the rules open. Then it acknowledges
//!    each event.
//! 3. A failing store (down, refused, timed out) sends the batch to the spool and
//!    the writer reconnects every [`IntakeOptions::retry_every`]; once the store
//!    answers, the spool is replayed oldest first before new batches. A store
//!    that is merely slow is covered by `submit`'s deadline: past
//!    [`IntakeOptions::ack_timeout`] the event is spooled and acknowledged, and
//!    whichever copy arrives second is ignored by its reference.
//!
//! The writer is a plain thread, not a task: both store clients block, and a
//! thread keeps the proxy's async workers free of database calls.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use policy::event::BlockEvent;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::error::Error;
use crate::model::AuthFailure;
use crate::recorder::Recorder;
use crate::rules::RuleEngine;
use crate::spool::{Entry, Spool};
use crate::store::Store;

/// At most this many events per transaction (the design said 256; measured,
/// SQLite's commit and checkpoint work per 256 events held the intake to
/// ~65,000 events per CPU-second, and 4,096 gives ~90,000: see BENCHMARKS.md)...
pub const MAX_BATCH: usize = 4096;
/// ... or whatever arrives within this long after the first.
pub const MAX_WAIT: Duration = Duration::from_millis(5);

/// Where an acknowledged event is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Committed to the store.
    Stored,
    /// Fsync'd to the spool; the writer will store it when it can.
    Spooled,
}

/// What [`Intake::try_submit`] did (it does not wait for the store).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    /// In the queue; the writer will store it.
    Queued,
    /// The queue was full: fsync'd to the spool.
    Spooled,
}

/// The intake's limits. [`IntakeOptions::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeOptions {
    /// Events the queue holds (default 8192).
    pub capacity: usize,
    /// Most events per transaction (default [`MAX_BATCH`]).
    pub max_batch: usize,
    /// Longest wait to fill a batch (default [`MAX_WAIT`]).
    pub max_wait: Duration,
    /// How long `submit` waits before spooling (default 250 ms).
    pub ack_timeout: Duration,
    /// How often a failed store is retried (default 2 s).
    pub retry_every: Duration,
    /// The spool file.
    pub spool_path: std::path::PathBuf,
}

impl IntakeOptions {
    /// The defaults, with the spool at `spool_path`.
    pub fn new(spool_path: std::path::PathBuf) -> Self {
        IntakeOptions {
            capacity: 8192,
            max_batch: MAX_BATCH,
            max_wait: MAX_WAIT,
            ack_timeout: Duration::from_millis(250),
            retry_every: Duration::from_secs(2),
            spool_path,
        }
    }
}

/// Counters of the intake (read them for `hallpass_incident_events_*_total`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events put in the queue.
    pub queued: AtomicU64,
    /// Events committed to the store from the queue.
    pub written: AtomicU64,
    /// Events appended to the spool (queue full, store down or slow).
    pub spooled: AtomicU64,
    /// Spooled entries committed to the store on replay.
    pub replayed: AtomicU64,
    /// Store operations that failed (each sends its batch to the spool).
    pub store_errors: AtomicU64,
    /// Incidents opened by the rules.
    pub incidents_opened: AtomicU64,
}

impl Metrics {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A plain copy of every counter: (queued, written, spooled, replayed).
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.queued.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
            self.spooled.load(Ordering::Relaxed),
            self.replayed.load(Ordering::Relaxed),
        ]
    }
}

enum Item {
    Block(BlockEvent, Option<oneshot::Sender<Ack>>),
    Auth(AuthFailure),
}

/// The sending side; cheap to clone, one per proxy worker if you like.
#[derive(Clone, Debug)]
pub struct Intake {
    tx: SyncSender<Item>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    ack_timeout: Duration,
}

/// The writer thread. Dropping every [`Intake`] ends it after the last batch.
#[derive(Debug)]
pub struct IntakeWriter {
    thread: Option<JoinHandle<()>>,
}

impl IntakeWriter {
    /// Waits for the writer to store everything queued (call after every
    /// [`Intake`] handle is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the incident writer panicked; its queue is in the spool or lost");
        }
    }
}

impl Intake {
    /// Starts the writer. `open` connects to the store; it is called again after
    /// every store failure (every `retry_every`), so the store may be down at start.
    pub fn start(
        open: impl FnMut() -> Result<Store, Error> + Send + 'static,
        rules: RuleEngine,
        clock: Arc<dyn Clock>,
        options: IntakeOptions,
    ) -> Result<(Intake, IntakeWriter), Error> {
        let (tx, rx) = mpsc::sync_channel(options.capacity.max(1));
        let spool = Arc::new(Spool::new(options.spool_path.clone()));
        let metrics = Arc::new(Metrics::default());
        let writer = Writer {
            recorder: Recorder::new(open, rules, clock, options.retry_every),
            spool: spool.clone(),
            metrics: metrics.clone(),
            options: options.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("hallpass-incidents".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the incident writer: {e}")))?;
        Ok((
            Intake {
                tx,
                spool,
                metrics,
                ack_timeout: options.ack_timeout,
            },
            IntakeWriter {
                thread: Some(thread),
            },
        ))
    }

    /// Hands an event over and waits until it is durable (stored or spooled).
    /// Must be awaited inside a tokio runtime with the time driver.
    ///
    /// The spool write on the fallback path is a short blocking fsync on the
    /// calling worker; it happens only when the store is failing or slow.
    pub async fn submit(&self, event: BlockEvent) -> Result<Ack, Error> {
        let (ack_tx, ack_rx) = oneshot::channel();
        let copy = event.clone();
        match self.tx.try_send(Item::Block(event, Some(ack_tx))) {
            Ok(()) => {
                Metrics::add(&self.metrics.queued, 1);
                match tokio::time::timeout(self.ack_timeout, ack_rx).await {
                    Ok(Ok(ack)) => Ok(ack),
                    // Slow store, or the writer dropped the ack after failing to
                    // spool: keep our own copy. A duplicate is ignored by reference.
                    Ok(Err(_)) | Err(_) => {
                        self.spool_one(Entry::Block(copy)).map(|()| Ack::Spooled)
                    }
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.spool_one(Entry::Block(copy)).map(|()| Ack::Spooled)
            }
        }
    }

    /// Hands an event over without waiting: queued, or spooled when the queue is full.
    pub fn try_submit(&self, event: BlockEvent) -> Result<Queued, Error> {
        self.enqueue(Item::Block(event, None))
    }

    /// Records an authentication failure (counted by the `access` rule).
    pub fn submit_auth_failure(&self, failure: AuthFailure) -> Result<Queued, Error> {
        self.enqueue(Item::Auth(failure))
    }

    fn enqueue(&self, item: Item) -> Result<Queued, Error> {
        match self.tx.try_send(item) {
            Ok(()) => {
                Metrics::add(&self.metrics.queued, 1);
                Ok(Queued::Queued)
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                let entry = match item {
                    Item::Block(ev, _) => Entry::Block(ev),
                    Item::Auth(f) => Entry::Auth(f),
                };
                self.spool_one(entry).map(|()| Queued::Spooled)
            }
        }
    }

    fn spool_one(&self, entry: Entry) -> Result<(), Error> {
        self.spool.append(std::slice::from_ref(&entry))?;
        Metrics::add(&self.metrics.spooled, 1);
        Ok(())
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A shared handle on the counters (for a metrics endpoint).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
}

struct Writer {
    recorder: Recorder,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    options: IntakeOptions,
}

impl Writer {
    fn run(mut self, rx: Receiver<Item>) {
        let mut batch = Vec::with_capacity(self.options.max_batch);
        let mut open = true;
        while open {
            // Wake up now and then even when idle, to retry a down store and
            // drain the spool.
            match rx.recv_timeout(self.options.retry_every) {
                Ok(item) => {
                    batch.push(item);
                    open = self.fill(&rx, &mut batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            self.replay_spool();
            if !batch.is_empty() {
                self.write(&mut batch);
            }
        }
        // Every sender is gone: one last attempt at what was spooled.
        self.replay_spool();
    }

    /// Adds whatever arrives within `max_wait` (up to `max_batch`); false when
    /// every sender is gone.
    fn fill(&self, rx: &Receiver<Item>, batch: &mut Vec<Item>) -> bool {
        let deadline = Instant::now() + self.options.max_wait;
        while batch.len() < self.options.max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(item) => batch.push(item),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return false,
                    }
                }
            }
        }
        true
    }

    fn replay_spool(&mut self) {
        if !self.spool.has_pending() || !self.recorder.is_ready() {
            return;
        }
        let (recorder, metrics) = (&mut self.recorder, &self.metrics);
        let result = self.spool.replay(|chunk| {
            let (events, auth) = split(chunk);
            let stats = recorder.record(&events, &auth)?;
            Metrics::add(&metrics.replayed, chunk.len());
            Metrics::add(&metrics.incidents_opened, stats.incidents_opened);
            Ok(())
        });
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                entries = n,
                "spooled events replayed into the incident store"
            ),
            Err(e) if e.is_store_failure() => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "spool replay stopped; will retry");
            }
            Err(e) => tracing::error!(error = %e, "spool replay failed"),
        }
    }

    fn write(&mut self, batch: &mut Vec<Item>) {
        let mut events = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let mut auth = Vec::new();
        for item in batch.drain(..) {
            match item {
                Item::Block(ev, ack) => {
                    events.push(ev);
                    acks.extend(ack);
                }
                Item::Auth(f) => auth.push(f),
            }
        }
        // Spooled entries are older than this batch: they go first, or not at all.
        if !self.spool.has_pending() && self.recorder.is_ready() {
            match self.recorder.record(&events, &auth) {
                Ok(stats) => {
                    Metrics::add(&self.metrics.written, events.len());
                    Metrics::add(&self.metrics.incidents_opened, stats.incidents_opened);
                    for ack in acks {
                        // The submitter may have given up waiting (and spooled its copy).
                        let _ = ack.send(Ack::Stored);
                    }
                    return;
                }
                Err(e) => {
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = events.len(), "incident store refused a batch; spooling it");
                }
            }
        }
        let entries: Vec<Entry> = events
            .into_iter()
            .map(Entry::Block)
            .chain(auth.into_iter().map(Entry::Auth))
            .collect();
        match self.spool.append(&entries) {
            Ok(()) => {
                Metrics::add(&self.metrics.spooled, entries.len());
                for ack in acks {
                    let _ = ack.send(Ack::Spooled);
                }
            }
            // Dropping the acks tells each waiting submitter to spool its own copy.
            Err(e) => {
                tracing::error!(error = %e, entries = entries.len(), "events could not be spooled")
            }
        }
    }
}

fn split(chunk: &[Entry]) -> (Vec<BlockEvent>, Vec<AuthFailure>) {
    let mut events = Vec::new();
    let mut auth = Vec::new();
    for e in chunk {
        match e {
            Entry::Block(ev) => events.push(ev.clone()),
            Entry::Auth(f) => auth.push(f.clone()),
        }
    }
    (events, auth)
}
