//! The run's stop signal: what every wait of the engine races against.
//!
//! May import: nothing of chatload's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A stop request that waiting code can both poll and await: set by a
/// signal, an `abort_on_fail` breach, a capacity search's failing step or the
/// load plan's end.
pub struct StopSignal {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    pub const fn new() -> StopSignal {
        StopSignal {
            flag: AtomicBool::new(false),
            notify: tokio::sync::Notify::const_new(),
        }
    }

    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until the stop is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps until `until`; `false` when the stop came first.
    pub async fn sleep_until(&self, until: Instant) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => !self.is_set(),
            _ = notified => false,
        }
    }
}
