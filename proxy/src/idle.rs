//! Idle timeouts for byte streams that have no request structure to time.
//!
//! In: any stream. Out: [`Activity`], the same stream noting every read and
//! write in a shared [`Clock`]; [`Clock::expired`] completes once nothing
//! moved for the idle time; [`splice`] copies both ways until either side closes
//! or the pair goes idle. Used for spliced and intercepted tunnels and for
//! upstream connections, so a silent peer never holds a task forever.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Whether any wrapped stream moved since the clock last looked.
///
/// A read or write only sets a flag: no clock is read per I/O (for every
/// forwarded request that was two reads of the system clock and an atomic
/// read-modify-write). [`expired`](Clock::expired) looks at the flag
/// [`CHECKS`] times per idle period instead, so a silent stream is closed
/// after between `idle` and `idle + idle / CHECKS` of silence.
#[derive(Debug, Default)]
pub struct Clock {
    moved: AtomicBool,
}

/// How many times per idle period [`Clock::expired`] looks for activity.
pub const CHECKS: u32 = 8;

impl Clock {
    /// A clock whose idle time starts now.
    pub fn new() -> Arc<Clock> {
        Arc::default()
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Completes once nothing moved for `idle` (and at most `idle / CHECKS` more).
    pub async fn expired(&self, idle: Duration) {
        let step = (idle / CHECKS).max(Duration::from_millis(1));
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(step).await;
            let now = Instant::now();
            if self.moved.swap(false, Ordering::Relaxed) {
                quiet_since = now;
            } else if now.duration_since(quiet_since) >= idle {
                return;
            }
        }
    }
}

/// A stream that notes its activity on a [`Clock`].
#[derive(Debug)]
pub struct Activity<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Activity<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, clock: Arc<Clock>) -> Self {
        Activity { inner, clock }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.touch();
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How a splice ended.
#[derive(Debug)]
pub enum SpliceEnd {
    /// One side closed; bytes copied client→server and server→client.
    Closed(u64, u64),
    /// Nothing moved for the idle time.
    Idle,
    /// A read or write failed.
    Failed(io::Error),
}

/// Copies both ways between `a` and `b` until one closes, an error, or `idle`
/// passes with no byte in either direction.
pub async fn splice<A, B>(a: A, b: B, idle: Duration) -> SpliceEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Clock::new();
    let mut a = Activity::new(a, clock.clone());
    let mut b = Activity::new(b, clock.clone());
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut a, &mut b) => match result {
            Ok((up, down)) => SpliceEnd::Closed(up, down),
            Err(e) => SpliceEnd::Failed(e),
        },
        () = clock.expired(idle) => SpliceEnd::Idle,
    }
}

/// A stream that first yields `prefix`, then reads from `inner` (bytes read ahead
/// to sniff a protocol are handed on unchanged).
#[derive(Debug)]
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    /// `prefix`, then `inner`.
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn splice_ends_when_idle() {
        let (a, _a_peer) = tokio::io::duplex(64);
        let (b, _b_peer) = tokio::io::duplex(64);
        let end = splice(a, b, Duration::from_secs(30)).await;
        assert!(matches!(end, SpliceEnd::Idle), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_expires_only_after_the_idle_time_of_silence() {
        let idle = Duration::from_secs(80);
        let clock = Clock::new();
        let start = Instant::now();
        let watcher = tokio::spawn({
            let clock = clock.clone();
            async move { clock.expired(idle).await }
        });
        // Activity every 30 s for 5 minutes keeps it open.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            clock.touch();
        }
        assert!(!watcher.is_finished(), "expired while streams were moving");
        let last = Instant::now();
        watcher.await.expect("the watcher");
        let silence = Instant::now() - last;
        assert!(
            silence >= idle && silence <= idle + idle / CHECKS,
            "expired after {silence:?} of silence (idle {idle:?})"
        );
        assert!(last - start >= Duration::from_secs(300));
    }
}
