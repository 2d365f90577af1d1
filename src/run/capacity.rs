//! A capacity search's controller: marks each step's measured part as a
//! collector phase, judges the step against the SLOs when it ends, and stops
//! the load at the first step that breaks one. The steps are `plan/`; the
//! per-step results and the knee are `metrics/capacity.rs`.
//!
//! Imports: `engine` (the stop handle), `metrics`, `scenario`, `names`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine;
use crate::metrics::capacity::{CapacityResult, StepResult};
use crate::metrics::ObsSender;
use crate::names;
use crate::scenario::CapacitySearch;

/// Completed capacity steps, shared by the controller, checkpoints and the end of the run.
pub(super) type StepLog = Arc<std::sync::Mutex<Vec<StepResult>>>;

/// A capacity search in progress: the plan, whether it is the open model,
/// and the steps judged so far.
#[derive(Clone)]
pub(super) struct CapacityRun {
    pub search: CapacitySearch,
    pub open: bool,
    pub log: StepLog,
}

impl CapacityRun {
    /// The capacity section from the steps judged so far.
    pub fn result(&self) -> CapacityResult {
        capacity_result(&self.search, self.open, &self.log)
    }
}

/// A capacity search's clock: marks each step's measured part (after its
/// warm-up) as a collector phase, judges the step against the SLOs when it
/// ends, and stops the load at the first step that breaks one. Returns when
/// every step is judged, or when `done` says the engine has ended (a step
/// whose measured window was cut short by a stop is not judged; one that
/// ended as the engine did is).
pub(super) async fn capacity_controller(
    obs: ObsSender,
    run: CapacityRun,
    mut started: tokio::sync::watch::Receiver<Option<Instant>>,
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: engine::StopHandle,
) {
    let cap = &run.search.plan;
    let epoch = loop {
        if let Some(t) = *started.borrow_and_update() {
            break t;
        }
        tokio::select! {
            r = started.changed() => if r.is_err() { return },
            _ = &mut done => return,
        }
    };
    // The engine ends a plan on its clock, so its end and the last step's may
    // land together: a step that was that close to its end is judged.
    const END_SLACK: Duration = Duration::from_millis(250);
    let mut engine_done = false;
    for step in cap.steps() {
        let at = |s: u64| tokio::time::Instant::from_std(epoch + Duration::from_secs(s));
        if engine_done {
            return;
        }
        // The step's connects start before its measurement (in the warm-up):
        // this machine's failures count over the whole step.
        let at_step_start = obs.peek().await;
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.measure_s)) => {}
            _ = &mut done => return,
        }
        let total = obs.peek().await;
        let sockets_at_start = total
            .counter(names::CONN_READY)
            .saturating_sub(total.counter(names::CONN_CLOSED));
        obs.phase(Some(step.index));
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.end_s)) => {}
            _ = &mut done => {
                engine_done = true;
                if tokio::time::Instant::now() + END_SLACK < at(step.end_s) {
                    obs.phase(None);
                    return;
                }
            }
        }
        obs.phase(None);
        let window = StepWindow {
            sockets_at_start,
            at_step_start,
        };
        if !judge_step(&obs, &run, &step, window, &stop).await {
            return;
        }
    }
}

/// What a step's judge needs from before its measurement began.
struct StepWindow {
    /// Ready sockets open when the measurement began.
    sockets_at_start: u64,
    /// The whole run's data when the step began (its warm-up included).
    at_step_start: crate::metrics::Recorder,
}

/// Judges a step that ended, logs it, and stops the load when it broke an
/// SLO or reached the generator's limit. Whether the search goes on.
async fn judge_step(
    obs: &ObsSender,
    run: &CapacityRun,
    step: &crate::plan::CapacityStep,
    window: StepWindow,
    stop: &engine::StopHandle,
) -> bool {
    let cap = &run.search.plan;
    let mut rec = obs.peek_phase(step.index).await;
    // Connects that failed on this machine over the whole step, warm-up included.
    let now = obs.peek().await;
    for errno in names::LOCAL_ERRNOS {
        let k = names::conn_local_error(errno);
        let n = now
            .counter(&k)
            .saturating_sub(window.at_step_start.counter(&k));
        if n > 0 {
            rec.counters.insert(k, n);
        }
    }
    let sockets_at_start = window.sockets_at_start;
    let r = crate::metrics::capacity::judge_step(
        step,
        cap.show_load(step.load),
        &run.search.slo,
        &rec,
        crate::metrics::capacity::StepContext {
            sockets_at_start,
            open_model: run.open,
        },
    );
    let held = r.held;
    let why = r
        .slo
        .iter()
        .filter(|v| !v.passed)
        .map(|v| format!("broke `{}` (measured {})", v.threshold, v.observed_text))
        .chain(r.invalid.iter().map(|c| {
            format!(
                "reached the generator's limit before any SLO broke: {}",
                c.detail
            )
        }))
        .collect::<Vec<_>>()
        .join(", ");
    run.log.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    if !held {
        engine::stop_early(
            stop,
            &format!(
                "capacity search: step {} ({}) {why}",
                step.index,
                cap.show_load(step.load)
            ),
        );
    }
    held
}

/// The capacity section from the steps judged so far.
fn capacity_result(search: &CapacitySearch, open: bool, log: &StepLog) -> CapacityResult {
    let cap = &search.plan;
    let steps = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    crate::metrics::capacity::conclude(
        steps,
        cap.steps().len(),
        if open { "arrivals_per_s" } else { "users" },
        &search.slo,
        cap.target.map(|t| (t, cap.show_load(t))),
    )
}
