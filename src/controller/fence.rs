//! The write fence of an elected process: refuses its API writes once it was paused or starved
//! long enough that another process may lead by now, and then ends its leadership.
//!
//! A process stopped (SIGSTOP, a frozen VM, a long GC-like stall) past its lease cannot know it
//! lost the lease until its lease task runs again; in between, work that was queued when it
//! stopped runs on wake and would write beside the new leader. A ticker records that the process
//! is running; a write is let through only if the ticker ran within the bound. Whichever runs
//! first on wake, the write or the ticker, the write is refused: the ticker's last tick is old,
//! or the ticker saw the gap and tripped the fence for good. Reads (GET, including lists and
//! watches) always pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::client::Body;
use tokio::sync::watch;
use tower::filter::FilterLayer;
use tracing::error;

/// How often the ticker records that the process runs.
const TICK: Duration = Duration::from_millis(100);

/// The refusal a fenced write gets instead of reaching the API server.
#[derive(Debug, thiserror::Error)]
#[error(
    "write refused: this process was paused for {0:?}, past its write bound, and gives up leadership"
)]
pub struct Fenced(Duration);

pub struct WriteFence {
    start: Instant,
    /// Milliseconds since `start` at the ticker's last run.
    last_tick_ms: AtomicU64,
    bound: Duration,
    tripped: AtomicBool,
    tripped_tx: watch::Sender<bool>,
}

impl WriteFence {
    /// A fence that refuses writes after a pause longer than `bound`, with its ticker running.
    pub fn start(bound: Duration) -> Arc<WriteFence> {
        let fence = Arc::new(WriteFence {
            start: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            bound,
            tripped: AtomicBool::new(false),
            tripped_tx: watch::channel(false).0,
        });
        let ticker = fence.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                if !ticker.tick() {
                    return;
                }
            }
        });
        fence
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Records a run of the ticker; trips the fence (and returns false) after a gap over the bound.
    fn tick(&self) -> bool {
        let now = self.now_ms();
        let gap =
            Duration::from_millis(now.saturating_sub(self.last_tick_ms.load(Ordering::Acquire)));
        if gap > self.bound {
            self.trip(gap);
            return false;
        }
        self.last_tick_ms.store(now, Ordering::Release);
        true
    }

    fn trip(&self, gap: Duration) {
        if !self.tripped.swap(true, Ordering::AcqRel) {
            error!(
                paused = ?gap,
                bound = ?self.bound,
                "this process was paused past its write bound: refusing every write and giving up leadership"
            );
            self.tripped_tx.send_replace(true);
        }
    }

    /// Ok while the process has run without a gap over the bound; trips the fence otherwise.
    pub fn check(&self) -> Result<(), Fenced> {
        let gap = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_tick_ms.load(Ordering::Acquire)),
        );
        if gap > self.bound {
            self.trip(gap);
        }
        if self.tripped.load(Ordering::Acquire) {
            return Err(Fenced(gap));
        }
        Ok(())
    }

    /// Completes once the fence has tripped.
    pub async fn tripped(&self) {
        let mut rx = self.tripped_tx.subscribe();
        let _ = rx.wait_for(|t| *t).await;
    }

    /// A client layer that sends reads through and writes only while [`WriteFence::check`] allows.
    pub fn layer(
        self: &Arc<Self>,
    ) -> FilterLayer<
        impl Fn(http::Request<Body>) -> Result<http::Request<Body>, Fenced> + Clone + use<>,
    > {
        let fence = self.clone();
        FilterLayer::new(move |request: http::Request<Body>| {
            if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
                fence.check()?;
            }
            Ok(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_past_the_bound_refuses_writes_for_good() {
        let fence = WriteFence::start(Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(fence.check().is_ok(), "a running process may write");
        // A pause: the ticker cannot run while this thread blocks (current-thread runtime).
        std::thread::sleep(Duration::from_millis(500));
        assert!(fence.check().is_err(), "the first write after the pause");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(fence.check().is_err(), "and every later one");
        tokio::time::timeout(Duration::from_secs(1), fence.tripped())
            .await
            .expect("the trip is announced");
    }

    #[tokio::test]
    async fn the_ticker_trips_the_fence_when_it_runs_first_after_the_pause() {
        let fence = WriteFence::start(Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(500));
        // The ticker runs before any write does.
        tokio::time::timeout(Duration::from_secs(1), fence.tripped())
            .await
            .expect("the ticker saw the gap");
        assert!(fence.check().is_err());
    }
}
