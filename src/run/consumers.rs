//! The tasks that consume a run's observations while the engine drives it:
//! the `/metrics` endpoint, a capacity search's controller, the checkpoint
//! loop (and stop signals), the live progress line, the watcher of
//! `abort_on_fail` thresholds, fail fast (`fail_fast.rs`) and Prometheus
//! remote write (`remote_write.rs`). Started together before the engine, stopped
//! together after it, in that order.
//!
//! Imports: `engine` (the stop handle), `metrics`, `scenario`.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::capacity::{capacity_controller, CapacityRun};
use super::checkpoint::{checkpoint_loop, signals_since, Checkpoints, Judging, STOP_SIGNALS};
use super::outputs::Outputs;
use super::raw_results::{RawSummary, RawWriter};
use super::remote_write::{RemoteWriter, RunLabels};
use super::{live, RunError, RunRequest};
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
    metrics_server: Option<JoinHandle<()>>,
    controller: Option<JoinHandle<()>>,
    checkpoints: JoinHandle<()>,
    progress: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<Option<String>>>,
    fail_fast: Option<JoinHandle<Option<String>>>,
    memory: Option<JoinHandle<Option<String>>>,
    remote: Option<RemoteWriter>,
    /// The raw-results stream, when asked for.
    pub raw: Option<RawWriter>,
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
    let metrics_server = match req.metrics_addr {
        None => None,
        Some(addr) => {
            let plan = sc.workload.plan.shard(req.shard);
            let labels = Arc::new(live::LiveLabels {
                tags: sc.tags.clone(),
                step_tags: sc.metric_tags(),
            });
            Some(live::serve_metrics(addr, collector.sender(), plan, t0, labels).await?)
        }
    };
    let stop: engine::StopHandle = Arc::default();
    let (started_tx, started_rx) = watch::channel(None);
    let (done_tx, done_rx) = oneshot::channel();
    let capacity = sc.workload.capacity.clone().map(|search| CapacityRun {
        search,
        open: sc.workload.open().is_some(),
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
    let progress = req.progress.then(|| {
        if std::io::stderr().is_terminal() {
            tokio::spawn(live::live_progress(
                collector.sender(),
                sc.workload.plan.clone(),
                sc.workload.open().cloned(),
                t0,
            ))
        } else {
            tokio::spawn(super::progress::plain_progress(
                collector.sender(),
                sc.workload.plan.shard(req.shard),
                t0,
                sc.live.progress_every.unwrap_or(sc.interval),
            ))
        }
    });
    let remote = sc.live.remote_write.clone().map(|url| {
        let run = RunLabels {
            run_id: out.run_id.clone(),
            scenario: sc.name.clone(),
            tags: sc.tags.clone(),
            step_tags: sc.metric_tags(),
        };
        let plan = sc.workload.plan.shard(req.shard);
        RemoteWriter::start(url, collector.sender(), plan, t0, sc.interval, run)
    });
    let raw = if sc.live.raw_results {
        Some(RawWriter::start(&out.dir, sc.tags.clone(), sc.step_tags())?)
    } else {
        None
    };
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
    Ok(Consumers {
        stop,
        started: Some(started_tx),
        started_rx,
        done: done_tx,
        metrics_server,
        controller,
        checkpoints,
        progress,
        watcher,
        fail_fast,
        memory,
        remote,
        raw,
        signals_at_start,
        capacity,
    })
}

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
        if let Some(p) = self.progress {
            p.abort();
            let _ = p.await;
        }
        self.checkpoints.abort();
        let _ = self.checkpoints.await;
        let raw = match self.raw {
            Some(w) => Some(w.finish().await),
            None => None,
        };
        let remote_write_failures = match self.remote {
            Some(r) => r.finish().await,
            None => 0,
        };
        if let Some(m) = self.metrics_server {
            m.abort();
            let _ = m.await;
        }
        Stopped {
            aborted_by,
            failed_fast,
            memory_limit,
            signalled: signals_since(self.signals_at_start) > 0,
            signals_at_start: self.signals_at_start,
            remote_write_failures,
            raw,
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
