//! The log's writer: lines are gathered in memory and written by a thread of
//! their own, in batches.
//!
//! A request never waits on stderr (a slow journald must not slow pupils down),
//! and the writing costs one `write` per batch instead of a thread wake-up and a
//! `write` per few lines. The stock non-blocking writer (tracing-appender) woke
//! its thread for every line and spun in `sched_yield` while waiting; on a
//! proxy confined to one CPU each wake-up is a context switch away from serving
//! (measured: 1.8 % less CPU per allowed request with this writer; BENCHMARKS.md,
//! "The floor, the allocator and batched log writes").
//!
//! The thread sleeps until a line arrives, then lingers [`LINGER`] so that the
//! lines of a busy moment go out together (sooner when [`FLUSH_AT`] bytes are
//! waiting). Lines are whole: the formatter hands each one over in a single
//! `write`. Past [`MAX_PENDING`] bytes waiting (stderr blocked), lines are
//! dropped and counted, and the count is written as its own line once the
//! writer catches up; block events never go through here (they have their
//! own durable journal).
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// How long the writer waits for more lines after the first of a batch.
pub const LINGER: Duration = Duration::from_millis(10);
/// Waiting bytes that end the linger early.
pub const FLUSH_AT: usize = 256 * 1024;
/// Waiting bytes past which lines are dropped.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// What the writer thread is doing, so a line wakes it only when it must.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asleep until a line arrives.
    Idle,
    /// Gathering a batch until `LINGER` passes or `FLUSH_AT` bytes wait.
    Lingering,
    /// Writing a batch (lines go into the next one).
    Writing,
    /// Told to write what is left and end.
    Closing,
}

struct State {
    pending: Vec<u8>,
    dropped: u64,
    phase: Phase,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep logging.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` given to the subscriber. Cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the thread when dropped (keep it for the
/// life of the process).
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The log's line format, for the line this writer adds itself.
#[derive(Clone, Copy, Debug)]
pub enum Format {
    Json,
    Text,
}

/// Starts the writer thread over `out`.
pub fn spawn<W: Write + Send + 'static>(
    format: Format,
    out: W,
) -> io::Result<(BatchWriter, Guard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(64 * 1024),
            dropped: 0,
            phase: Phase::Idle,
        }),
        wake: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("hallpass-log".into())
        .spawn({
            let shared = shared.clone();
            move || run(&shared, format, out)
        })?;
    Ok((
        BatchWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write>(shared: &Shared, format: Format, mut out: W) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && state.dropped == 0 && state.phase != Phase::Closing {
            state.phase = Phase::Idle;
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.phase != Phase::Closing {
            state.phase = Phase::Lingering;
            let (s, _) = shared
                .wake
                .wait_timeout_while(state, LINGER, |s| {
                    s.phase == Phase::Lingering && s.pending.len() < FLUSH_AT
                })
                .unwrap_or_else(|p| p.into_inner());
            state = s;
        }
        let closing = state.phase == Phase::Closing;
        if !closing {
            state.phase = Phase::Writing;
        }
        std::mem::swap(&mut batch, &mut state.pending);
        let dropped = std::mem::take(&mut state.dropped);
        drop(state);
        if dropped > 0 {
            batch.extend_from_slice(dropped_line(format, dropped).as_bytes());
        }
        // Nowhere to report a failed write to but the log itself: the next
        // batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > FLUSH_AT * 4 {
            batch.shrink_to(64 * 1024);
        }
        if closing && shared.lock().pending.is_empty() {
            return;
        }
    }
}

/// What the line that counts dropped lines says.
const DROPPED: &str = "log lines dropped: the log output could not keep up";

/// The line that says how many lines were dropped, in the log's own format.
fn dropped_line(format: Format, dropped: u64) -> String {
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    match format {
        Format::Json => {
            serde_json::json!({
                "timestamp": timestamp,
                "level": "WARN",
                "fields": {"message": DROPPED, "dropped": dropped},
                "target": "hallpass::log",
            })
            .to_string()
                + "\n"
        }
        Format::Text => format!("{timestamp}  WARN hallpass::log: {DROPPED} dropped={dropped}\n"),
    }
}

impl Write for &BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > MAX_PENDING {
            state.dropped += 1;
            return Ok(line.len());
        }
        state.pending.extend_from_slice(line);
        let wake = match state.phase {
            Phase::Idle => true,
            Phase::Lingering => state.pending.len() >= FLUSH_AT,
            Phase::Writing | Phase::Closing => false,
        };
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().phase = Phase::Closing;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer owns it; counts writes.
    #[derive(Clone, Default)]
    struct Captured {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        /// When set, every write waits for it to be cleared (a stuck stderr).
        stuck: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.stuck;
            let mut stuck = lock.lock().expect("lock");
            while *stuck {
                stuck = cv.wait(stuck).expect("wait");
            }
            self.bytes.lock().expect("lock").extend_from_slice(buf);
            *self.writes.lock().expect("lock") += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().expect("lock").clone()).expect("utf-8")
        }
        fn set_stuck(&self, on: bool) {
            *self.stuck.0.lock().expect("lock") = on;
            self.stuck.1.notify_all();
        }
    }

    fn line(writer: &BatchWriter, text: &str) {
        (&mut &*writer)
            .write_all(text.as_bytes())
            .expect("a line is always taken");
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_in_few_writes() {
        let out = Captured::default();
        let (writer, guard) = spawn(Format::Json, out.clone()).expect("writer thread");
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for i in 0..1000 {
            line(&writer, &format!("line {i}\n"));
        }
        wait_for(|| out.text().len() == expected.len());
        assert_eq!(out.text(), expected);
        let writes = *out.writes.lock().expect("lock");
        assert!(writes < 100, "1000 lines took {writes} writes");
        drop(guard);
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_more() {
        let out = Captured::default();
        let (writer, _guard) = spawn(Format::Json, out.clone()).expect("writer thread");
        line(&writer, "started\n");
        wait_for(|| out.text() == "started\n");
    }

    #[test]
    fn lines_still_waiting_are_written_when_the_guard_is_dropped() {
        let out = Captured::default();
        let (writer, guard) = spawn(Format::Json, out.clone()).expect("writer thread");
        for i in 0..50 {
            line(&writer, &format!("{i}\n"));
        }
        drop(guard);
        let expected: String = (0..50).map(|i| format!("{i}\n")).collect();
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn a_stuck_output_drops_lines_past_the_limit_and_says_how_many() {
        let out = Captured::default();
        let (writer, guard) = spawn(Format::Json, out.clone()).expect("writer thread");
        out.set_stuck(true);
        // The first line is taken into a batch whose write then hangs.
        line(&writer, "first\n");
        wait_for(|| writer.shared.lock().phase == Phase::Writing);
        let big = format!("{}\n", "x".repeat(1023));
        let fits = MAX_PENDING / big.len();
        for _ in 0..fits + 10 {
            line(&writer, &big); // never blocks
        }
        assert_eq!(writer.shared.lock().dropped, 10);
        out.set_stuck(false);
        drop(guard);
        let text = out.text();
        assert!(text.starts_with("first\n"));
        assert_eq!(text.matches(&big).count(), fits);
        let last = text.lines().last().expect("a last line");
        let json: serde_json::Value =
            serde_json::from_str(last).expect("the dropped-lines line is JSON");
        assert_eq!(json["fields"]["dropped"], 10);
        assert_eq!(json["level"], "WARN");
    }
}
