//! hyper's timer for one HTTP/1.1 client connection: the header read timeout
//! without a timer-wheel entry per request.
//!
//! In: the deadlines hyper asks for (it starts one each time it waits for a
//! request head, and drops it once the head is read). Out: futures that
//! complete at those deadlines.
//!
//! hyper's stock tokio timer allocates, registers and deregisters a tokio
//! `Sleep` for every request on a keep-alive connection: counted with
//! benches/instructions.sh, ~800 instructions of an allowed request. Here a
//! connection keeps one tokio `Sleep` for its whole life and each of hyper's
//! deadlines shares it:
//!
//! - a deadline later than the one the shared sleep is set to leaves it alone:
//!   when it fires early, the waiting future moves it to its own deadline and
//!   waits on (one extra wake-up per timeout period, not per request);
//! - an earlier deadline moves the shared sleep forward.
//!
//! A deadline hyper dropped (the head arrived) costs nothing more than the
//! extra wake-up when the shared sleep fires for it. Every deadline still
//! completes exactly when tokio's own sleep would.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The timer of one connection (hand a new one to each connection's builder).
#[derive(Clone, Default)]
pub(crate) struct HeadTimer {
    shared: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::from(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline {
            at: Instant::from_std(deadline),
            shared: self.shared.clone(),
        })
    }

    /// tokio's clock, so that hyper's deadlines follow paused time in tests as
    /// the stock timer's do.
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// One of hyper's deadlines.
struct Deadline {
    at: Instant,
    shared: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl hyper::rt::Sleep for Deadline {}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let sleep = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        // Set no later than this deadline, it wakes this task in time;
        // set later, it must come forward.
        if sleep.deadline() > at {
            sleep.as_mut().reset(at);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if sleep.deadline() >= at {
                return Poll::Ready(());
            }
            // It fired for an earlier deadline of this connection, one hyper
            // has dropped: on to this one.
            sleep.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    /// Polls `fut` once without waiting.
    fn poll_once(fut: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> Poll<()> {
        let waker = std::task::Waker::noop();
        fut.as_mut().poll(&mut Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_completes_when_it_passes_and_not_before() {
        let timer = HeadTimer::default();
        let start = Instant::now();
        timer.sleep(Duration::from_secs(10)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_deadline_does_not_cut_short_a_later_one() {
        let timer = HeadTimer::default();
        let start = Instant::now();
        let mut first = timer.sleep(Duration::from_secs(10));
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        // A request later, hyper waits for the next head.
        tokio::time::advance(Duration::from_secs(3)).await;
        timer.sleep(Duration::from_secs(10)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_shared_sleep_forward() {
        let timer = HeadTimer::default();
        let start = Instant::now();
        let mut long = timer.sleep(Duration::from_secs(60));
        assert!(poll_once(&mut long).is_pending());
        timer.sleep(Duration::from_secs(2)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        // The longer one still completes at its own deadline.
        long.await;
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }
}
