//! The raw-results stream's records (`--raw-results`, `[output]
//! raw_results`): one [`RawRun`] per finished agent run, handed by the
//! engine to a bounded channel ([`RawSink`]) that `run/raw_results.rs`
//! drains into `runs.jsonl` as the run goes. Bounded memory: at most
//! [`RAW_QUEUE`] records wait; past that a record is dropped and counted
//! (the run's notes say how many), the engine never waits on a disk.
//!
//! Imports: nothing of chatload's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Records that may wait for the writer.
pub const RAW_QUEUE: usize = 65_536;

/// One finished run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawRun {
    /// When it ended (RFC 3339, milliseconds, UTC).
    pub ended_at: String,
    /// From its start (the send, or the open model's intended start) to its end.
    pub duration_ms: f64,
    /// From its start to its first agent event (none: no event came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfe_ms: Option<f64>,
    /// From its start to its terminal event (none: none came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttc_ms: Option<f64>,
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// The failure class counted under `runs.failed.<class>` (failed runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub user: String,
    /// The `send` step that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Where the engine hands records; cheap to clone.
#[derive(Clone, Debug)]
pub struct RawSink {
    tx: mpsc::Sender<RawRun>,
    dropped: Arc<AtomicU64>,
}

impl RawSink {
    /// A sink and the receiving end of its queue.
    pub fn channel() -> (RawSink, mpsc::Receiver<RawRun>) {
        let (tx, rx) = mpsc::channel(RAW_QUEUE);
        (
            RawSink {
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// Queues a record; never waits (a full queue drops and counts it).
    pub fn emit(&self, r: RawRun) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
