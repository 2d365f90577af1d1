//! A capacity search's controller: makes each step a collector phase (its
//! connects over the whole step) and opens its measured window (the runs
//! that start in it are its runs, however late they end), judges the step
//! once those runs have ended or timed out, and stops the load when the
//! search ends (the first step that breaks an SLO; with SLOs of both the
//! connect and the run side, the first step where both have broken). The
//! steps are `plan/`; the per-step results and the knees are
//! `metrics/capacity.rs` and `metrics/capacity_sides.rs`.
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
/// the longest a run may take, and the steps judged so far.
#[derive(Clone)]
pub(super) struct CapacityRun {
    pub search: CapacitySearch,
    pub open: bool,
    /// The journey's longest `await` timeout: how long a step's window
    /// waits, after its end, for the runs that started in it.
    pub run_timeout: Duration,
    pub log: StepLog,
}

impl CapacityRun {
    /// The capacity section from the steps judged so far.
    pub fn result(&self) -> CapacityResult {
        capacity_result(&self.search, self.open, &self.log)
    }
}

/// A capacity search's clock. Each step is a collector phase from its
/// start (the connect side is measured over the whole step, warm-up
/// included); its measured window (after the warm-up) decides which runs
/// belong to it: those that start in it, whatever step they end in. When
/// the window ends, the step is handed to [`judge_steps`], which waits for
/// those runs to end (or time out) before judging, while the next step
/// runs. Returns when every step that ended is judged, or when `done` says
/// the engine has ended (a step whose measured window was cut short by a
/// stop is not judged; one that ended as the engine did is).
pub(super) async fn capacity_controller(
    obs: ObsSender,
    run: CapacityRun,
    mut started: tokio::sync::watch::Receiver<Option<Instant>>,
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: engine::StopHandle,
) {
    // The first step's phase opens with the run: sockets opened before the
    // plan's clock starts (the open model's pool) count in it, not nowhere.
    obs.phase(Some(1));
    let epoch = loop {
        if let Some(t) = *started.borrow_and_update() {
            break t;
        }
        let gone = tokio::select! {
            r = started.changed() => r.is_err(),
            _ = &mut done => true,
        };
        if gone {
            obs.phase(None);
            return;
        }
    };
    let (ended_tx, ended_rx) = tokio::sync::watch::channel(false);
    let (queue, steps) = tokio::sync::mpsc::unbounded_channel();
    let judge = tokio::spawn(judge_steps(obs.clone(), run.clone(), steps, ended_rx, stop));
    let ended = time_steps(&obs, &run, epoch, &mut done, &queue).await;
    obs.measure(None);
    obs.phase(None);
    drop(queue);
    if !ended {
        // The plan's clock ran out: the engine ends on its own.
        let _ = done.await;
    }
    let _ = ended_tx.send(true);
    let _ = judge.await;
}

/// A step whose window ended, handed to the judge.
struct Ended {
    step: crate::plan::CapacityStep,
    window: StepWindow,
}

/// Walks the steps on the plan's clock: opens each step's phase and its
/// measured window, and hands each step whose window ended to the judge.
/// Returns at the last step's end (false), or when the engine ended
/// (`done`: true).
async fn time_steps(
    obs: &ObsSender,
    run: &CapacityRun,
    epoch: Instant,
    done: &mut tokio::sync::oneshot::Receiver<()>,
    queue: &tokio::sync::mpsc::UnboundedSender<Ended>,
) -> bool {
    // The engine ends a plan on its clock, so its end and the last step's may
    // land together: a step that was that close to its end is judged.
    const END_SLACK: Duration = Duration::from_millis(250);
    let at = |s: u64| tokio::time::Instant::from_std(epoch + Duration::from_secs(s));
    for step in run.search.plan.steps() {
        obs.phase(Some(step.index));
        // The first step's phase holds every socket since the run began.
        let sockets_at_start = match step.index {
            1 => 0,
            _ => open_sockets(&obs.peek().await),
        };
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.measure_s)) => {}
            _ = &mut *done => return true,
        }
        obs.measure(Some(step.index));
        let opened = Instant::now();
        let mut cut = false;
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.end_s)) => {}
            _ = &mut *done => {
                cut = true;
                if tokio::time::Instant::now() + END_SLACK < at(step.end_s) {
                    return true;
                }
            }
        }
        obs.measure(None);
        let window = StepWindow {
            sockets_at_start,
            sockets_at_end: open_sockets(&obs.peek().await),
            window_s: opened.elapsed().as_secs_f64(),
            closed: Instant::now(),
            drain_s: 0.0,
        };
        if queue.send(Ended { step, window }).is_err() || cut {
            return cut;
        }
    }
    false
}

/// Ready sockets open now.
fn open_sockets(total: &crate::metrics::Recorder) -> u64 {
    total
        .counter(names::CONN_READY)
        .saturating_sub(total.counter(names::CONN_CLOSED))
}

/// Judges the steps in order as their windows end: waits for each step's
/// runs to end (every one started is ok or failed), at most the journey's
/// longest run twice over (an ok run is counted when the next run on its
/// socket settles) plus a second, or until the engine ended; then judges
/// it. Stops when the search ends (`capacity_sides::search_goes_on`).
async fn judge_steps(
    obs: ObsSender,
    run: CapacityRun,
    mut steps: tokio::sync::mpsc::UnboundedReceiver<Ended>,
    ended: tokio::sync::watch::Receiver<bool>,
    stop: engine::StopHandle,
) {
    let wait_max = run.run_timeout * 2 + Duration::from_secs(1);
    while let Some(Ended { step, mut window }) = steps.recv().await {
        let deadline = window.closed + wait_max;
        loop {
            let rec = obs.peek_phase(step.index).await;
            let settled = rec.counter(names::RUNS_OK) + rec.counter(names::RUNS_FAILED);
            if settled >= rec.counter(names::RUNS_STARTED)
                || *ended.borrow()
                || Instant::now() >= deadline
            {
                break;
            }
            // A poll of the step's counters: runs end on the target's time.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        window.drain_s = window.closed.elapsed().as_secs_f64();
        if !judge_step(&obs, &run, &step, window, &stop).await {
            return;
        }
    }
}

/// What a step's judge needs from its window.
struct StepWindow {
    /// Ready sockets open when the step began.
    sockets_at_start: u64,
    /// Ready sockets open when its measured window ended (the users reached).
    sockets_at_end: u64,
    /// How long the measured window was open.
    window_s: f64,
    /// When it closed.
    closed: Instant,
    /// How long the judge waited after it for the step's runs.
    drain_s: f64,
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
    // The step's phase holds its connect side over the whole step (local
    // connect failures included) and the runs that started in its window.
    let rec = obs.peek_phase(step.index).await;
    let r = crate::metrics::capacity::judge_step(
        step,
        cap.show_step(step),
        &run.search.slo,
        &rec,
        crate::metrics::capacity::StepContext {
            sockets_at_start: window.sockets_at_start,
            open_model: run.open,
            sockets_at_end: Some(window.sockets_at_end),
            window_s: Some(window.window_s),
            drain_s: Some(window.drain_s),
        },
    );
    let held = r.held;
    let mut log = run.log.lock().unwrap_or_else(|e| e.into_inner());
    log.push(r.clone());
    let goes_on = crate::metrics::capacity_sides::search_goes_on(&log, &run.search.slo);
    drop(log);
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
    if !goes_on {
        engine::stop_early(
            stop,
            &format!(
                "capacity search: step {} ({}) {why}",
                step.index,
                cap.show_step(step)
            ),
        );
    } else if !held {
        say_err!(
            "capacity search: step {} ({}) {why}; the search goes on for the capacity that still holds",
            step.index,
            cap.show_step(step)
        );
    }
    goes_on
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
