//! A periodic task that runs only while there is something to do: the interceptors whose work
//! follows packets (`twcc.rs`, `sender_reports.rs`) tick while packets flow and sleep in between,
//! instead of one timer per connection for its whole life.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) struct Activity {
    /// Set by the task before it sleeps; the first `touch` after that wakes it.
    idle: AtomicBool,
    wake: Notify,
    closed: AtomicBool,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            idle: AtomicBool::new(true),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Something happened (a packet): wakes the task if it sleeps.
    pub fn touch(&self) {
        // Called per packet: a plain load first, so a flowing stream pays no read-modify-write.
        if self.idle.load(Ordering::Acquire) && self.idle.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Ends the task.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Runs `tick` every `interval` after a `touch`, for as long as it returns true; then
    /// sleeps until the next `touch`. Returns once closed.
    pub async fn run<F, Fut>(&self, interval: Duration, mut tick: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        while !self.closed.load(Ordering::Relaxed) {
            // `notify_one` stores a permit: a touch between the flag and the wait still wakes.
            self.wake.notified().await;
            loop {
                // While active only `close` notifies: it ends the task at once rather than an
                // interval later (the task holds the connection's RTCP writer).
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = self.wake.notified() => {}
                }
                if self.closed.load(Ordering::Relaxed) {
                    return;
                }
                if !tick().await {
                    self.idle.store(true, Ordering::Release);
                    break;
                }
            }
        }
    }
}
