//! The tasks that consume a run's observations while the engine drives it:
//! the live outputs (`live_outputs.rs`: `/metrics`, the progress line,
//! remote write, the raw stream), a capacity search's controller, the
//! checkpoint loop (and stop signals), the watcher of `abort_on_fail`
//! thresholds and fail fast (`fail_fast.rs`). Started together before the
//! engine, stopped together after it, in that order.
//!
//! Imports: `engine` (the stop handle), `metrics`, `scenario`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::capacity::{capacity_controller, CapacityRun};
use super::checkpoint::{checkpoint_loop, signals_since, Checkpoints, Judging, STOP_SIGNALS};
use super::live_outputs::LiveOutputs;
use super::outputs::Outputs;
use super::raw_results::RawSummary;
use super::{RunError, RunRequest};
use crate::engine;
use crate::metrics::snapshot::Snapshot;
use crate::metrics::threshold::Threshold;
use crate::metrics::{Collector, ObsSender};

/// The running consumers, and what the engine shares with them.
pub(super) struct Consumers {
    pub stop: engine::StopHandle,
    /// Set by the engine when the plan's clock starts; taken by its config.
    pub started: Option<watch::Sender<Option<Instant>>>,
    started_rx: watch::Receiver<Option<Instant>>,
    done: oneshot::Sender<()>,
    controller: Option<JoinHandle<()>>,
    checkpoints: JoinHandle<()>,
    watcher: Option<JoinHandle<Option<String>>>,
    fail_fast: Option<JoinHandle<Option<String>>>,
    memory: Option<JoinHandle<Option<String>>>,
    /// Watches the realtime clock against the monotonic one (`clock.jumps`).
    clock: JoinHandle<()>,
    /// `/metrics`, progress, remote write, the raw stream.
    pub live: LiveOutputs,
    signals_at_start: u32,
    capacity: Option<CapacityRun>,
}

/// How the consumers saw the run end.
pub(super) struct Stopped {
    /// Why an `abort_on_fail` threshold stopped the users early.
    pub aborted_by: Option<String>,
    /// Why fail fast stopped the users: the first connects all failed.
    pub failed_fast: Option<String>,
    /// Why a safety stop (the memory limit, a failed write) stopped the users.
    pub memory_limit: Option<String>,
    /// A stop signal arrived during the run.
    pub signalled: bool,
    /// The count of stop signals when the run started.
    pub signals_at_start: u32,
    /// Remote-write pushes that failed.
    pub remote_write_failures: u64,
    /// How the raw-results stream ended (None: not asked for).
    pub raw: Option<RawSummary>,
    pub capacity: Option<CapacityRun>,
}

/// Starts every consumer; refused when the metrics address cannot be bound.
pub(super) async fn start(
    req: &RunRequest,
    collector: &Collector,
    template: &Snapshot,
    out: &Outputs,
    t0: Instant,
) -> Result<Consumers, RunError> {
    let sc = &req.scenario;
    let signals_at_start = STOP_SIGNALS.load(Ordering::SeqCst);
    let live = LiveOutputs::start(req, collector, out, t0).await?;
    let stop: engine::StopHandle = Arc::default();
    let (started_tx, started_rx) = watch::channel(None);
    let (done_tx, done_rx) = oneshot::channel();
    let capacity = sc.workload.capacity.clone().map(|search| CapacityRun {
        search,
        open: sc.workload.open().is_some(),
        run_timeout: sc
            .journeys
            .iter()
            .flat_map(|j| crate::scenario::Step::await_timeouts(&j.steps))
            .max()
            .unwrap_or_default(),
        log: Arc::default(),
    });
    let controller = capacity.clone().map(|run| {
        tokio::spawn(capacity_controller(
            collector.sender(),
            run,
            started_rx.clone(),
            done_rx,
            stop.clone(),
        ))
    });
    let checkpoints = tokio::spawn(checkpoint_loop(Checkpoints {
        obs: collector.sender(),
        template: template.clone(),
        judging: Judging {
            thresholds: sc.thresholds.clone(),
            capacity: capacity.clone(),
        },
        path: out.snapshot_path.clone(),
        period: sc.checkpoint,
        t0,
        signals_at_start,
        stop: stop.clone(),
        write_failure: out.write_failure.clone(),
    }));
    let watcher = watcher(&sc.thresholds, collector, t0, &stop);
    let users = sc.workload.plan.shard(req.shard).peak_users();
    let fail_fast = (sc.target.fail_fast && users > 0).then(|| {
        tokio::spawn(super::fail_fast::watch(
            collector.sender(),
            users,
            stop.clone(),
        ))
    });
    let memory = Some(tokio::spawn(super::safety::watch(
        super::safety::limit(sc.limits.max_rss),
        out.write_failure.clone(),
        stop.clone(),
    )));
    let clock = tokio::spawn(watch_clock(collector.sender()));
    Ok(Consumers {
        clock,
        stop,
        started: Some(started_tx),
        started_rx,
        done: done_tx,
        controller,
        checkpoints,
        watcher,
        fail_fast,
        memory,
        live,
        signals_at_start,
        capacity,
    })
}

/// Samples the realtime clock against the monotonic one every few seconds
/// and counts each step over 1 ms (`clock.jumps`): kernel receive stamps
/// are realtime (`engine/stamp.rs`).
async fn watch_clock(obs: ObsSender) {
    let mut watch = engine::stamp::ClockWatch::default();
    let mut tick = tokio::time::interval(CLOCK_SAMPLE);
    loop {
        tick.tick().await;
        if watch.sample().is_some() {
            obs.count(crate::names::CLOCK_JUMPS);
        }
    }
}

/// How often [`watch_clock`] samples.
const CLOCK_SAMPLE: Duration = Duration::from_secs(5);

/// The watcher of the `abort_on_fail` thresholds, when there are any.
fn watcher(
    thresholds: &[Threshold],
    collector: &Collector,
    t0: Instant,
    stop: &engine::StopHandle,
) -> Option<JoinHandle<Option<String>>> {
    let aborts: Vec<_> = thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .cloned()
        .collect();
    (!aborts.is_empty()).then(|| {
        tokio::spawn(watch_thresholds(
            collector.sender(),
            aborts,
            t0,
            stop.clone(),
        ))
    })
}

impl Consumers {
    /// Stops every consumer once the engine has ended: the capacity
    /// controller judges its last step first.
    pub async fn stop(self) -> Stopped {
        let _ = self.done.send(());
        if let Some(c) = self.controller {
            let _ = c.await;
        }
        drop(self.started_rx);
        let aborted_by = match self.watcher {
            Some(w) => {
                w.abort();
                w.await.ok().flatten()
            }
            None => None,
        };
        let failed_fast = match self.fail_fast {
            Some(w) => {
                w.abort();
                w.await.ok().flatten()
            }
            None => None,
        };
        let memory_limit = match self.memory {
            Some(w) => {
                w.abort();
                w.await.ok().flatten()
            }
            None => None,
        };
        self.clock.abort();
        self.checkpoints.abort();
        let _ = self.checkpoints.await;
        let live = self.live.stop().await;
        Stopped {
            aborted_by,
            failed_fast,
            memory_limit,
            signalled: signals_since(self.signals_at_start) > 0,
            signals_at_start: self.signals_at_start,
            remote_write_failures: live.remote_write_failures,
            raw: live.raw,
            capacity: self.capacity,
        }
    }
}

/// Judges `abort_on_fail` thresholds on the running data once a second; on the
/// first breach after its grace period, stops the users and says why.
async fn watch_thresholds(
    obs: ObsSender,
    rules: Vec<Threshold>,
    t0: Instant,
    stop: engine::StopHandle,
) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let elapsed = t0.elapsed();
        let rec = obs.peek().await;
        for t in rules.iter().filter(|t| elapsed >= t.grace) {
            if let Some(v) = t.breached_while_running(&rec) {
                let why = format!(
                    "stopped early at {}s: `{}` failed on the running data (measured {}) and has abort_on_fail",
                    elapsed.as_secs(),
                    v.threshold,
                    v.observed_text
                );
                engine::stop_early(&stop, &why);
                return Some(why);
            }
        }
    }
}
