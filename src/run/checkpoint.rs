//! Checkpoints and stop signals: `snapshot.json` rewritten every
//! `[output] checkpoint` with everything recorded so far (judged as
//! incomplete by `metrics/judge.rs`), atomically, and the stop-signal count
//! the CLI's handler feeds: the first signal drains the users, the second
//! writes a last checkpoint and exits at once.
//!
//! Imports: `engine` (the stop handle), `metrics`, `outcome`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use super::capacity::CapacityRun;
use crate::engine;
use crate::metrics::judge::{Ending, Inputs};
use crate::metrics::snapshot::{IntervalData, Snapshot};
use crate::metrics::threshold::Threshold;
use crate::metrics::{ObsSender, Recorder};

/// Stop signals (SIGINT, SIGTERM) received by this process; the CLI's handler
/// counts them, the run in progress drains on the first and flushes and exits
/// on the second.
pub static STOP_SIGNALS: AtomicU32 = AtomicU32::new(0);

/// Stop signals received since `at_start` (a load of [`STOP_SIGNALS`]).
pub(super) fn signals_since(at_start: u32) -> u32 {
    STOP_SIGNALS.load(Ordering::SeqCst).saturating_sub(at_start)
}

pub(super) const CHECKPOINT_NOTE: &str =
    "incomplete: this is a checkpoint of a run in progress (or of a run that was killed); render it with `chatload report`";

/// Writes a file so that a reader (or a crash) sees either the old or the new
/// content, never a torn one: temp file, fsync, rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            // A failed write (a full disk) leaves no half-written file behind.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A snapshot of `template` filled with recorded data.
pub(super) fn fill(
    template: &Snapshot,
    rec: &Recorder,
    intervals: &[IntervalData],
    elapsed: Duration,
) -> Snapshot {
    let mut s = template.clone();
    s.histograms = Snapshot::histograms_from(rec);
    s.counters = rec.counters.clone();
    s.samples = rec.samples.clone();
    // The shared-identity notes ride the failure list to the run's end
    // (`run/ending.rs` makes them notes); they are not connect failures.
    s.failures = rec
        .failures
        .iter()
        .filter(|f| f.stage != crate::engine::identity::IDENTITY_STAGE)
        .cloned()
        .collect();
    s.intervals = intervals.to_vec();
    s.duration_s = elapsed.as_secs_f64();
    s.ended_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    s
}

/// What a checkpoint judges: the thresholds, and a capacity search's steps so far.
pub(super) struct Judging {
    pub thresholds: Vec<Threshold>,
    pub capacity: Option<CapacityRun>,
}

/// Where and how often the checkpoint loop writes, and what it acts on.
pub(super) struct Checkpoints {
    pub obs: ObsSender,
    pub template: Snapshot,
    pub judging: Judging,
    pub path: PathBuf,
    pub period: Duration,
    pub t0: Instant,
    pub signals_at_start: u32,
    pub stop: engine::StopHandle,
    /// Set when a checkpoint cannot be written (`safety.rs` stops the run).
    pub write_failure: super::safety::WriteFailure,
}

/// Rewrites `snapshot.json` every `period` with everything recorded so far, and
/// acts on stop signals: the first stops the users (they drain), the second
/// writes a last checkpoint and exits at once with code 3.
pub(super) async fn checkpoint_loop(c: Checkpoints) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last = Instant::now();
    let mut stopping = false;
    loop {
        tick.tick().await;
        let signals = signals_since(c.signals_at_start);
        if signals >= 1 && !stopping {
            stopping = true;
            say_err!("stop signal: users stop after their current step; in-flight runs drain (a second signal exits at once)");
            engine::stop_early(&c.stop, "stop signal");
        }
        if signals >= 2 || last.elapsed() >= c.period {
            let s = checkpoint(&c).await;
            if signals >= 2 {
                exit_now(s, &c.path);
            }
            if let Err(e) = write_atomic(&c.path, s.into_json().as_bytes()) {
                say_err!("error: checkpoint {} failed: {e}", c.path.display());
                let _ = c.write_failure.set(format!("{}: {e}", c.path.display()));
            }
            last = Instant::now();
        }
    }
}

/// Everything recorded so far, judged as incomplete.
async fn checkpoint(c: &Checkpoints) -> Snapshot {
    let all = c.obs.peek_all().await;
    let mut s = fill(&c.template, &all.total, &[], c.t0.elapsed());
    // Moved, not copied: a long run's checkpoint is mostly its intervals.
    s.intervals = all.intervals;
    s.judge(
        &all.total,
        Inputs {
            rules: &c.judging.thresholds,
            // A checkpoint holds no probe readings: probe rules are judged at the end.
            probe_rules: &[],
            capacity: c.judging.capacity.as_ref().map(CapacityRun::result),
            ending: Ending::Incomplete,
        },
    );
    s
}

/// The second stop signal: writes the last checkpoint and exits with code 3.
fn exit_now(mut s: Snapshot, path: &std::path::Path) -> ! {
    s.notes
        .push("aborted: a second stop signal exited at once after this checkpoint".into());
    let _ = write_atomic(path, s.into_json().as_bytes());
    say_err!(
        "second stop signal: exited; {} holds everything recorded",
        path.display()
    );
    // No stdout_guard::finish: exiting at once must not wait on
    // a stdout reader that stopped reading.
    std::process::exit(i32::from(crate::outcome::exit::ABORTED));
}
