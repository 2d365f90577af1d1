//! How a run ended, in notes and an `Ending` for the one judge
//! (`metrics/judge.rs`): a shard without users, a saturated generator,
//! arrivals the open model could not start, an `abort_on_fail` stop, stop
//! signals, an engine error, no socket ever ready; then the baseline
//! comparison. The abort, signal and no-ready rules live here; the verdict
//! is the judge's.
//!
//! Imports: `engine` (its error), `metrics`, `scenario`, `report` (close
//! labels), `names`, `units`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::checkpoint::{fill, signals_since};
use super::consumers::Stopped;
use super::RunRequest;
use crate::metrics::judge::{Ending, Inputs};
use crate::metrics::snapshot::{IntervalData, Snapshot};
use crate::metrics::Recorder;
use crate::names;

/// What the run left when its engine and consumers stopped.
pub(super) struct Ended {
    pub rec: Recorder,
    pub intervals: Vec<IntervalData>,
    pub elapsed: Duration,
    pub ended_at: DateTime<Utc>,
    pub server_truth: Option<serde_json::Value>,
    /// The CPU figures when the users started.
    pub cpu_before: super::generator_health::CpuStart,
    pub engine: Result<(), crate::engine::EngineError>,
    pub stopped: Stopped,
    /// The probes' series (shard 0 of a scenario with `[[probe]]`).
    pub probes: Option<crate::metrics::probes::ProbeSeries>,
}

/// The final snapshot: `template` filled with the recorded data, judged,
/// with the notes that explain how the run ended, and compared with the
/// baseline when one was given.
pub(super) fn judge(req: &RunRequest, template: &Snapshot, ended: Ended) -> Snapshot {
    let sc = &req.scenario;
    let rec = &ended.rec;
    let shard_users = sc.workload.plan.shard(req.shard).peak_users();
    let mut notes = Vec::new();
    if shard_users == 0 {
        notes.push(format!(
            "shard {}/{} has no users: the plan's users are fewer than the shards",
            req.shard.index, req.shard.count
        ));
    }
    let generator =
        super::generator_health::health(&ended.cpu_before, ended.elapsed, rec, &sc.generator);
    if generator.saturated {
        notes.push(format!(
            "the generator may have been the bottleneck ({}; CPU {:.1} s over {:.0} s, {:.1} CPUs usable); results may understate the target",
            generator.saturated_by.join("; "),
            generator.cpu_s.unwrap_or(0.0),
            ended.elapsed.as_secs_f64(),
            generator.usable_cpus.unwrap_or(generator.cores as f64),
        ));
    }
    if let Some(why) = generator
        .receive_times
        .as_deref()
        .filter(|t| t.starts_with("user (kernel stamps unavailable"))
    {
        notes.push(format!("frames were timed in user space, {}: latencies include chatload's own delay in reading them", why.trim_start_matches("user ")));
    }
    let jumps = generator.clock_jumps;
    if jumps > 0 {
        notes.push(format!("the realtime clock stepped {jumps} time(s) by over 1 ms during the run (NTP?): frames received across a step are off by it"));
    }
    if let Some(note) = not_offered_note(rec, sc.workload.open()) {
        notes.push(note);
    }
    let ending = stop_notes(req, &ended, shard_users, &mut notes);
    notes.extend(crate::report::console::auth_note(&rec.counters));
    notes.extend(history_notes(&rec.counters));
    let mut snapshot = fill(template, rec, &ended.intervals, ended.elapsed);
    snapshot.validity = validity(req, rec, ended.server_truth.as_ref());
    snapshot.offered = offered(req, &ended.intervals, ended.elapsed);
    if let Some(p) = &ended.probes {
        snapshot.probes = Some(p.clone());
    } else if !sc.probe_rules.is_empty() {
        notes.push(format!(
            "{} probe rule(s) not judged here: only shard 0 probes the target, and `chatload merge` judges them on its readings",
            sc.probe_rules.len()
        ));
    }
    snapshot.judge(
        rec,
        Inputs {
            rules: &sc.thresholds,
            probe_rules: &sc.probe_rules,
            capacity: ended.stopped.capacity.as_ref().map(|c| c.result()),
            ending,
        },
    );
    snapshot.notes = notes;
    snapshot.generator = Some(generator);
    snapshot.server_truth = ended.server_truth;
    snapshot.ended_at = ended.ended_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    if let Some(base) = &req.baseline {
        compare_with(base, &mut snapshot, sc);
    }
    snapshot
}

/// Why the numbers may not describe the planned test (`metrics/validity.rs`):
/// connects that failed on this machine, connections the embedded server
/// could not accept, open-model arrivals not started on time beyond
/// `workload.start_tolerance` (a capacity search judges those per step).
fn validity(
    req: &RunRequest,
    rec: &Recorder,
    truth: Option<&serde_json::Value>,
) -> Vec<crate::metrics::validity::ValidityCause> {
    let w = &req.scenario.workload;
    let accept_errors = truth
        .and_then(serde_json::Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| {
                    let errno = k.strip_prefix(crate::server::truth::ACCEPT_ERRORS)?;
                    Some((errno.to_string(), v.as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let facts = crate::metrics::validity::Facts {
        start_tolerance: w
            .open()
            .filter(|_| w.capacity.is_none())
            .map(|m| m.start_tolerance),
        accept_errors,
        max_delay: req.scenario.generator.max_delay,
    };
    crate::metrics::validity::causes(rec, &facts)
}

/// Offered vs achieved per phase of this process's part of the plan.
fn offered(
    req: &RunRequest,
    intervals: &[IntervalData],
    elapsed: Duration,
) -> Vec<crate::metrics::offered::OfferedPhase> {
    let w = &req.scenario.workload;
    let open = w.open().map(|m| crate::plan::OpenModel {
        rate: m.rate.shard(req.shard),
        ..m.clone()
    });
    crate::metrics::offered::offered(
        &w.plan.shard(req.shard),
        open.as_ref(),
        intervals,
        elapsed.as_secs_f64(),
    )
}

/// Notes on why the run stopped (an `abort_on_fail` rule, stop signals, an
/// engine error, no socket ever ready); whether that aborts it.
fn stop_notes(
    req: &RunRequest,
    ended: &Ended,
    shard_users: u64,
    notes: &mut Vec<String>,
) -> Ending {
    let rec = &ended.rec;
    let mut ending = Ending::Finished;
    if let Some(why) = &ended.stopped.aborted_by {
        notes.push(why.clone());
    }
    if let Some(raw) = &ended.stopped.raw {
        if raw.dropped > 0 {
            notes.push(format!(
                "raw results: {} lines dropped (the writer fell {} lines behind); runs.jsonl is incomplete",
                raw.dropped,
                crate::metrics::raw::RAW_QUEUE
            ));
        }
        if let Some(e) = &raw.error {
            notes.push(format!("raw results: {e}; runs.jsonl is incomplete"));
        }
    }
    if ended.stopped.remote_write_failures > 0 {
        notes.push(format!(
            "remote write: {} pushes failed (the reports hold everything recorded)",
            ended.stopped.remote_write_failures
        ));
    }
    if let Some(why) = &ended.stopped.failed_fast {
        notes.push(why.clone());
        ending = Ending::Aborted;
    }
    if let Some(why) = &ended.stopped.memory_limit {
        notes.push(why.clone());
        ending = Ending::Aborted;
    }
    if signals_since(ended.stopped.signals_at_start) >= 2 {
        // The second signal came while the drain was ending, before the
        // checkpoint loop could act on it: the drain is done, so the reports
        // are written now, which is as fast as exiting.
        notes.push("aborted: a second stop signal arrived as the drain ended; every report holds everything recorded".into());
        ending = Ending::Aborted;
    } else if ended.stopped.signalled {
        if req.scenario.workload.on_signal_ends {
            notes.push("ended early by a stop signal (workload.on_signal = \"end\": judged as a normal end)".into());
        } else {
            notes.push("aborted: stopped by a signal (SIGINT or SIGTERM); in-flight runs were drained and every report written".into());
            ending = Ending::Aborted;
        }
    }
    if let Err(e) = &ended.engine {
        notes.push(format!("aborted: {e}"));
        ending = Ending::Aborted;
    } else if rec.counter(names::CONN_READY) == 0
        && rec.counter(names::CONN_ATTEMPTED) > 0
        && shard_users > 0
    {
        notes.push(explain_no_ready(rec));
        ending = Ending::Aborted;
    }
    // Identity collapse is said once per shared identity (engine/identity.rs).
    for f in rec
        .failures
        .iter()
        .filter(|f| f.stage == crate::engine::identity::IDENTITY_STAGE)
    {
        notes.push(f.reason.clone());
    }
    ending
}

/// Compares with the baseline run: only a significant regression beyond the
/// tolerances fails the run; inconclusive rows are reported, not failed. A
/// baseline of another scenario is not compared (a note says why).
fn compare_with(base: &Snapshot, snapshot: &mut Snapshot, sc: &crate::scenario::Scenario) {
    let tolerances = if sc.baseline.is_empty() {
        crate::scenario::baseline::Tolerance::defaults()
    } else {
        sc.baseline.clone()
    };
    match crate::metrics::judge::compare(base, snapshot, &tolerances, false) {
        Ok(c) => {
            for w in &c.warnings {
                snapshot.notes.push(format!("baseline: {w}"));
            }
            snapshot.verdict = snapshot.verdict.fail_if(c.regressed);
            if c.regressed {
                snapshot
                    .notes
                    .push(format!("regression against baseline {}", c.base_run));
            } else if c.verdict() == crate::metrics::compare::CompareVerdict::Inconclusive {
                snapshot.notes.push(format!(
                    "inconclusive against baseline {}: a statistic is beyond its tolerance but not significantly (not failed)",
                    c.base_run
                ));
            }
            snapshot.baseline = Some(c);
        }
        Err(e) => snapshot
            .notes
            .push(format!("the baseline could not be compared: {e}")),
    }
}

/// Explains a run in which no socket ever became ready.
fn explain_no_ready(rec: &Recorder) -> String {
    let mut parts = Vec::new();
    for (k, v) in &rec.counters {
        if let Some(code) = k.strip_prefix("closes_by_phase.before_ready.") {
            parts.push(format!(
                "{v} closed with {} before ready",
                crate::report::close_label(code)
            ));
        } else if let Some(st) = k.strip_prefix("connections.rejected.") {
            parts.push(format!("{v} upgrades refused with HTTP {st}"));
        } else if let Some(kind) = k.strip_prefix("connections.failed.") {
            parts.push(format!("{v} connects failed ({kind})"));
        } else if let Some(code) = k.strip_prefix("frames.server_error.") {
            parts.push(format!("{v} server error frames `{code}`"));
        } else if let Some(why) = k.strip_prefix("tokens.login_failed.") {
            parts.push(format!("{v} logins refused ({why})"));
        }
    }
    // The token source's own words (the login URL, its status and answer).
    if let Some(f) = rec.failures.iter().find(|f| f.stage == "token") {
        parts.push(format!("first: {}", f.reason));
    }
    let t = rec.counter(names::CONN_READY_TIMEOUT);
    if t > 0 {
        parts.push(format!("{t} ready timeouts"));
    }
    // Refused tokens get their own note (`report::console::auth_note`).
    format!(
        "aborted: no connection became ready ({} attempted: {})",
        rec.counter(names::CONN_ATTEMPTED),
        if parts.is_empty() {
            "no details".to_string()
        } else {
            parts.join(", ")
        }
    )
}

/// The open model's arrivals that did not start on time: the target was
/// offered less load than the plan, which no latency figure shows.
fn not_offered_note(rec: &Recorder, open: Option<&crate::plan::OpenModel>) -> Option<String> {
    let open = open?;
    let intended = rec.counter(names::STARTS_INTENDED);
    let dropped = rec.counter(names::STARTS_DROPPED);
    let late = rec.counter(names::STARTS_LATE);
    if intended == 0 || dropped + late == 0 {
        return None;
    }
    let pct = |n: u64| n as f64 * 100.0 / intended as f64;
    Some(format!(
        "the session pool ({} sessions) was full: {dropped} of {intended} arrivals dropped ({:.1}%) and {late} late ({:.1}%), so the target was offered less than the plan; raise workload.max_users, or gate on \"starts.dropped count\" = \"== 0\"",
        open.max_users,
        pct(dropped),
        pct(late)
    ))
}

/// History reads that ended early: at a cursor the server had already
/// given (it would page in a circle), or at the page cap with more pages
/// announced. Either way the messages after it were not checked.
fn history_notes(counters: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
    let c = |k: &str| counters.get(k).copied().unwrap_or(0);
    let mut out = Vec::new();
    let repeated = c(crate::names::HISTORY_CURSOR_REPEATED);
    if repeated > 0 {
        out.push(format!(
            "{repeated} history read(s) stopped at a repeated cursor (the server gave a cursor it had already given); messages past it were not checked"
        ));
    }
    let capped = c(crate::names::HISTORY_PAGES_CAPPED);
    if capped > 0 {
        out.push(format!(
            "{capped} history read(s) stopped at the page cap with more pages announced; messages past it were not checked"
        ));
    }
    out
}
