//! A capacity search's steps and knee, formatted for every renderer
//! ([`CapacityView`]). Built from the snapshot's `metrics::capacity` result.
//!
//! Imports `metrics`, `names` and `units` (below `report`).

use crate::metrics::capacity_sides::{Percentiles, Ratio};
use crate::names;
use crate::units::{format_us, format_value, trim_float};

/// A capacity search, formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityView {
    /// The knee, what broke and the headroom, in one line.
    pub summary: String,
    pub slo: Vec<String>,
    pub rows: Vec<CapacityRow>,
    /// The step that is the knee.
    pub knee_index: Option<u32>,
    pub passed: bool,
    /// Each capacity apart (connect/auth, agent-run), when the SLOs judge both.
    pub sides: Vec<String>,
    /// The most load a step reached (`18 users reached`), for the header.
    pub reached: Option<String>,
    /// The run's 1011 closes and failed runs that belong to no step (in a
    /// warm-up, or after the last step's window), so the step table adds
    /// up to the key numbers; `None` when every one is in a step.
    pub outside: Option<String>,
}

/// One step of a capacity search: the load asked and reached, the
/// connect side over the whole step and the run side over the runs that
/// started in its measured window, each rate with the numerator and
/// denominator of the SLO it feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityRow {
    pub index: u32,
    /// The load asked (`12 users`, `20/s`, `15 at once`).
    pub load: String,
    /// Reached: ready sockets at the window's end (closed), runs started
    /// per second of the window (open).
    pub reached: String,
    /// The measured window, and the wait after it for its runs (`8s +0.4s`).
    pub window: String,
    /// Runs started in the window.
    pub runs: u64,
    pub runs_per_s: String,
    pub ttfe_p50: String,
    pub ttfe_p95: String,
    pub ttfe_p99: String,
    pub ttc_p50: String,
    pub ttc_p95: String,
    pub ttc_p99: String,
    /// Failed runs per started run (`run_failed rate`).
    pub error_rate: String,
    /// `run_ok rate` with its counts: `97% (97 of 100)`.
    pub run_ok: String,
    /// Failed runs by class: `closed 3, timeout 1`, or `-`.
    pub failures: String,
    /// 1011 closes (auth failures left out) per socket in use in the step,
    /// as `close_1011 rate` judges them: `25% (3 of 12 sockets)`.
    pub close_1011: String,
    /// 1011 closes by phase: before ready / during runs / idle.
    pub close_1011_phases: String,
    /// Sockets the plan opens at once (`-`: ramped or open model).
    pub at_once: String,
    /// Sockets that became ready in the step, per second of the step.
    pub opened_per_s: String,
    pub ws_connect_p95: String,
    pub ws_ready_p50: String,
    pub ws_ready_p95: String,
    pub ws_ready_p99: String,
    /// `auth_failure rate` with its counts: `1 of 5 connects`.
    pub auth_failures: String,
    pub reconnects: u64,
    /// Open model: arrivals of the step that did not start on time
    /// (`dropped D, late L`); `None` in the closed model.
    pub not_on_time: Option<String>,
    pub held: bool,
    /// The SLOs that failed, with what was measured.
    pub broke: String,
}

pub(super) fn capacity_view(
    c: &crate::metrics::capacity::CapacityResult,
    run_counters: &std::collections::BTreeMap<String, u64>,
) -> CapacityView {
    let rows = c.steps.iter().map(|st| row(c, st)).collect();
    let knee_index = c
        .steps
        .iter()
        .take_while(|s| s.held)
        .last()
        .map(|s| s.index)
        .filter(|_| c.generator_limit.is_none());
    CapacityView {
        summary: c.summary(),
        slo: c.slo.clone(),
        rows,
        knee_index,
        passed: c.passed(),
        sides: c.sides.iter().map(|s| s.sentence()).collect(),
        reached: reached(c),
        outside: outside(c, run_counters),
    }
}

/// The 1011 closes (auth failures left out, as the key numbers count them)
/// and failed runs of the whole run that no step accounts for.
fn outside(
    c: &crate::metrics::capacity::CapacityResult,
    run: &std::collections::BTreeMap<String, u64>,
) -> Option<String> {
    let at = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let closes = |m: &std::collections::BTreeMap<String, u64>| {
        at(m, "closes.1011").saturating_sub(at(m, "closes_auth.1011"))
    };
    let in_steps = |f: &dyn Fn(&std::collections::BTreeMap<String, u64>) -> u64| {
        c.steps.iter().map(|s| f(&s.counters)).sum::<u64>()
    };
    let failed = |m: &std::collections::BTreeMap<String, u64>| at(m, names::RUNS_FAILED);
    let closes_out = closes(run).saturating_sub(in_steps(&closes));
    let failed_out = failed(run).saturating_sub(in_steps(&failed));
    if closes_out == 0 && failed_out == 0 {
        return None;
    }
    Some(format!(
        "Outside any step (a warm-up, or after the last step's window): {closes_out} close_1011 of the run's {}, {failed_out} failed runs of its {}; the steps judge only their own.",
        closes(run),
        failed(run)
    ))
}

/// The most load a step reached: `18 users reached`, `19.5/s reached`.
fn reached(c: &crate::metrics::capacity::CapacityResult) -> Option<String> {
    let figures: Vec<_> = c.steps.iter().map(|s| s.figures()).collect();
    if c.unit == "arrivals_per_s" {
        let best = figures
            .iter()
            .filter_map(|f| f.runs_per_s)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))?;
        return Some(format!("{} runs/s reached", trim_float(best, 1)));
    }
    let users = figures.iter().filter_map(|f| f.sockets_at_end).max()?;
    Some(format!("{users} users reached"))
}

fn row(
    c: &crate::metrics::capacity::CapacityResult,
    st: &crate::metrics::capacity::StepResult,
) -> CapacityRow {
    let f = st.figures();
    let n = |k: &str| st.counters.get(k).copied().unwrap_or(0);
    let pct = |p: Option<Percentiles>, q: fn(&Percentiles) -> u64| {
        p.as_ref()
            .map_or_else(|| "n/a".to_string(), |p| format_us(q(p) as f64))
    };
    let ratio = |r: Ratio, of: &str| match r.value() {
        Some(v) => format!("{} ({} of {} {of})", format_value(v, "fraction"), r.n, r.of),
        None => "n/a".to_string(),
    };
    let open = c.unit == "arrivals_per_s";
    CapacityRow {
        index: st.index,
        load: st.load_text.clone(),
        reached: match (open, f.runs_per_s, f.sockets_at_end) {
            (true, Some(r), _) => format!("{}/s", trim_float(r, 1)),
            (false, _, Some(u)) => format!("{u} users"),
            _ => "n/a".to_string(),
        },
        window: match (f.window_s, f.drain_s) {
            (Some(w), Some(d)) => format!("{}s +{}s", trim_float(w, 1), trim_float(d, 1)),
            (Some(w), None) => format!("{}s", trim_float(w, 1)),
            _ => "n/a".to_string(),
        },
        runs: f.runs.of,
        runs_per_s: f
            .runs_per_s
            .map_or_else(|| "n/a".to_string(), |r| trim_float(r, 1)),
        ttfe_p50: pct(f.ttfe, |p| p.p50_us),
        ttfe_p95: pct(f.ttfe, |p| p.p95_us),
        ttfe_p99: pct(f.ttfe, |p| p.p99_us),
        ttc_p50: pct(f.ttc, |p| p.p50_us),
        ttc_p95: pct(f.ttc, |p| p.p95_us),
        ttc_p99: pct(f.ttc, |p| p.p99_us),
        error_rate: Ratio {
            n: n(names::RUNS_FAILED),
            of: f.runs.of,
        }
        .value()
        .map_or_else(|| "n/a".to_string(), |v| format_value(v, "fraction")),
        run_ok: ratio(f.runs, "runs"),
        failures: if f.failed_by_class.is_empty() {
            "-".to_string()
        } else {
            f.failed_by_class
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        close_1011: ratio(f.close_1011, "sockets"),
        close_1011_phases: format!(
            "{} / {} / {}",
            f.close_1011_before_ready, f.close_1011_during_runs, f.close_1011_idle
        ),
        at_once: f.at_once.map_or_else(|| "-".to_string(), |n| n.to_string()),
        opened_per_s: trim_float(f.opened_per_s, 1),
        ws_connect_p95: pct(f.ws_connect, |p| p.p95_us),
        ws_ready_p50: pct(f.ws_ready, |p| p.p50_us),
        ws_ready_p95: pct(f.ws_ready, |p| p.p95_us),
        ws_ready_p99: pct(f.ws_ready, |p| p.p99_us),
        auth_failures: ratio(f.auth_failures, "connects"),
        reconnects: f.reconnects,
        not_on_time: st.counters.contains_key(names::STARTS_INTENDED).then(|| {
            format!(
                "{} dropped, {} late",
                n(names::STARTS_DROPPED),
                n(names::STARTS_LATE)
            )
        }),
        held: st.held,
        broke: st
            .slo
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("{} (measured {})", v.threshold, v.observed_text))
            .chain(st.invalid.iter().map(|c| format!("INVALID: {}", c.detail)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

impl super::ReportData {
    /// The load the header states: a capacity search's load reached
    /// (`18 users reached`, not the plan's peak), else the plan's users.
    pub fn load_text(&self) -> String {
        self.capacity
            .as_ref()
            .and_then(|c| c.reached.clone())
            .unwrap_or_else(|| format!("{} users", self.users))
    }
}
