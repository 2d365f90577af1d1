//! A capacity search's two capacities, reported apart: the connect/auth
//! side (sockets opened, `ws_connect`, `ws_ready`, auth failures and 1011s
//! before ready, reconnects; measured over the whole step, warm-up
//! included) and the agent-run side (runs started in the step's measured
//! window, whatever step they end in: runs/s, `ttfe`, `ttc`, failures by
//! class, 1011s during runs). [`Side`] says which side an SLO judges,
//! [`StepFigures`] are a step's numbers for the table, each with the
//! numerator and denominator of the SLO it feeds, and [`SideKnee`] is one
//! side's knee.
//!
//! Imports `metrics` siblings, `scenario::thresholds` (through
//! `metrics::threshold`) and `names`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::capacity_step::StepResult;
use super::encoding::HistogramData;
use super::threshold::{unexplained_closes, Subject, Threshold};
use crate::names;

/// Which capacity an SLO judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Opening and authenticating sockets.
    Connect,
    /// Agent runs on open sockets.
    Run,
    /// Both (a close rate over every phase, or of idle sockets).
    Both,
}

/// Latency metrics of the connect side.
const CONNECT_METRICS: &[&str] = &[
    names::WS_CONNECT,
    names::WS_READY,
    names::RECONNECT_TIME,
    names::RECONNECT_BACKOFF,
    names::LOGIN,
    names::REST_TICKET,
];

impl Side {
    /// The side an SLO judges.
    pub fn of(t: &Threshold) -> Side {
        match &t.subject {
            Subject::Latency { metric, .. } => {
                if CONNECT_METRICS.contains(&metric.as_str()) {
                    Side::Connect
                } else {
                    Side::Run
                }
            }
            Subject::Rate { name } => match name.strip_prefix("close_") {
                Some(spec) => match spec.split_once('_').map(|(_, phase)| phase) {
                    Some("before_ready") => Side::Connect,
                    Some("first_exchange" | "during_run") => Side::Run,
                    _ => Side::Both,
                },
                None => match name.as_str() {
                    "connect_error" | "ready_timeout" | "auth_failure" => Side::Connect,
                    _ => Side::Run,
                },
            },
            Subject::PerThousandRuns { .. } => Side::Run,
            Subject::Count { counter } => {
                let connect = ["connections.", "tokens.", "reconnects"]
                    .iter()
                    .any(|p| counter.starts_with(p))
                    || counter.starts_with("closes_by_phase.before_ready.");
                if connect {
                    Side::Connect
                } else if counter.starts_with("closes") {
                    Side::Both
                } else {
                    Side::Run
                }
            }
        }
    }

    /// Whether a rule of side `self` judges `side`'s capacity.
    fn judges(self, side: Side) -> bool {
        self == side || self == Side::Both
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Connect => "connect/auth",
            Side::Run => "agent-run",
            Side::Both => "connect and agent-run",
        }
    }
}

/// One side's knee: the highest step before the first step where one of
/// its SLOs broke.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SideKnee {
    pub side: Side,
    /// The rules of this side (`Both` rules count on each side).
    pub slo: Vec<String>,
    pub knee: Option<f64>,
    pub knee_text: Option<String>,
    /// The first step where one of its rules broke (`None`: none did, the
    /// knee is a lower bound).
    pub broke_at: Option<u32>,
    pub broke_load_text: Option<String>,
    /// What broke there, with what was measured.
    pub broke: Vec<String>,
}

impl SideKnee {
    /// `connect/auth capacity: 20 users (step 3 at 40 users broke ...)`,
    /// or `at least 80 users` when no step broke.
    pub fn sentence(&self) -> String {
        let name = self.side.name();
        match (&self.knee_text, self.broke_at) {
            (Some(k), Some(i)) => format!(
                "{name} capacity: {k} (step {i} at {} broke {})",
                self.broke_load_text.as_deref().unwrap_or("?"),
                self.broke.join(", ")
            ),
            (Some(k), None) => format!("{name} capacity: at least {k} (no step broke its SLOs)"),
            (None, Some(i)) => format!(
                "{name} capacity: below the first step (step {i} at {} broke {})",
                self.broke_load_text.as_deref().unwrap_or("?"),
                self.broke.join(", ")
            ),
            (None, None) => format!("{name} capacity: not measured"),
        }
    }
}

/// The side each verdict of a step judged: the SLOs in order, then the
/// open model's offered rule (run side).
fn verdict_side(slo: &[Threshold], i: usize) -> Side {
    slo.get(i).map_or(Side::Run, Side::of)
}

/// The sides a search has rules of (a `Both` rule alone makes one side:
/// the search then stops at its first break, as ever).
pub fn sides_with_rules(slo: &[Threshold]) -> Vec<Side> {
    let has = |s: Side| slo.iter().any(|t| Side::of(t) == s);
    if has(Side::Connect) && has(Side::Run) {
        vec![Side::Connect, Side::Run]
    } else {
        Vec::new()
    }
}

/// Whether `step` broke a rule of `side` (an invalid step breaks every side).
fn broke(step: &StepResult, slo: &[Threshold], side: Side) -> bool {
    !step.invalid.is_empty()
        || step
            .slo
            .iter()
            .enumerate()
            .any(|(i, v)| !v.passed && verdict_side(slo, i).judges(side))
}

/// Whether the search goes on after the steps so far: every step held, or
/// the SLOs judge both capacities apart and one of them has not broken yet
/// (so one search finds both). An invalid step always ends it.
pub fn search_goes_on(steps: &[StepResult], slo: &[Threshold]) -> bool {
    if steps.iter().any(|s| !s.invalid.is_empty()) {
        return false;
    }
    match sides_with_rules(slo).as_slice() {
        [] => steps.iter().all(|s| s.held),
        sides => sides
            .iter()
            .any(|side| !steps.iter().any(|s| broke(s, slo, *side))),
    }
}

/// Each side's knee, when the SLOs judge both capacities apart.
pub fn side_knees(steps: &[StepResult], slo: &[Threshold]) -> Vec<SideKnee> {
    sides_with_rules(slo)
        .into_iter()
        .map(|side| {
            let first = steps.iter().position(|s| broke(s, slo, side));
            let knee = steps[..first.unwrap_or(steps.len())].last();
            let at = first.map(|i| &steps[i]);
            SideKnee {
                side,
                slo: slo
                    .iter()
                    .filter(|t| Side::of(t).judges(side))
                    .map(|t| t.expr.clone())
                    .collect(),
                knee: knee.map(|k| k.load),
                knee_text: knee.map(|k| k.load_text.clone()),
                broke_at: at.map(|s| s.index),
                broke_load_text: at.map(|s| s.load_text.clone()),
                broke: at.map_or_else(Vec::new, |s| {
                    s.slo
                        .iter()
                        .enumerate()
                        .filter(|(i, v)| !v.passed && verdict_side(slo, *i).judges(side))
                        .map(|(_, v)| format!("`{}` (measured {})", v.threshold, v.observed_text))
                        .chain(s.invalid.iter().map(|c| format!("INVALID: {}", c.detail)))
                        .collect()
                }),
            }
        })
        .collect()
}

/// The side that broke first (`Both`: on the same step), when both did.
pub fn first_broke(knees: &[SideKnee]) -> Option<Side> {
    let at = |side: Side| knees.iter().find(|k| k.side == side)?.broke_at;
    match (at(Side::Connect), at(Side::Run)) {
        (Some(c), Some(r)) if c < r => Some(Side::Connect),
        (Some(c), Some(r)) if r < c => Some(Side::Run),
        (Some(_), Some(_)) => Some(Side::Both),
        (Some(_), None) => Some(Side::Connect),
        (None, Some(_)) => Some(Side::Run),
        (None, None) => None,
    }
}

/// p50, p95 and p99 in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub count: u64,
}

impl Percentiles {
    fn of(h: Option<&HistogramData>) -> Option<Percentiles> {
        h.filter(|h| h.count > 0).map(|h| Percentiles {
            p50_us: h.p50_us,
            p95_us: h.p95_us,
            p99_us: h.p99_us,
            count: h.count,
        })
    }
}

/// A count and what it is counted against (the SLO's numerator and denominator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub n: u64,
    pub of: u64,
}

impl Ratio {
    pub fn value(self) -> Option<f64> {
        (self.of > 0).then(|| self.n as f64 / self.of as f64)
    }
}

/// A step's numbers for planners: the load asked and reached, then each
/// side's figures. Rates carry the numerator and denominator of the SLO of
/// the same name (`close_1011 rate` per socket in use in the step,
/// `run_ok rate` per run started in the window, `auth_failure rate` per
/// connect attempted).
#[derive(Debug, Clone, PartialEq)]
pub struct StepFigures {
    /// Seconds the measured window was open, and waited after it for its runs.
    pub window_s: Option<f64>,
    pub drain_s: Option<f64>,
    /// Ready sockets when the window ended (closed model: users reached).
    pub sockets_at_end: Option<u64>,
    /// Sockets the plan opens at once in the step (`None`: not planned).
    pub at_once: Option<u64>,
    // The connect side, over the whole step (warm-up included).
    pub step_s: u64,
    pub connects_ready: u64,
    pub opened_per_s: f64,
    pub ws_connect: Option<Percentiles>,
    pub ws_ready: Option<Percentiles>,
    pub auth_failures: Ratio,
    pub close_1011_before_ready: u64,
    pub reconnects: u64,
    // The run side: runs started in the measured window.
    pub runs: Ratio,
    pub runs_per_s: Option<f64>,
    pub ttfe: Option<Percentiles>,
    pub ttc: Option<Percentiles>,
    pub failed_by_class: BTreeMap<String, u64>,
    pub close_1011_during_runs: u64,
    pub close_1011_idle: u64,
    /// 1011 closes (auth failures left out) per socket in use in the step.
    pub close_1011: Ratio,
}

impl StepResult {
    /// This step's figures (see [`StepFigures`]).
    pub fn figures(&self) -> StepFigures {
        let n = |k: &str| self.counters.get(k).copied().unwrap_or(0);
        let rec = super::Recorder {
            counters: self.counters.clone(),
            ..super::Recorder::default()
        };
        let closes = |spec: &str| unexplained_closes(&rec, spec).unwrap_or(0);
        let started = n(names::RUNS_STARTED);
        let step_s = self.end_s.saturating_sub(self.start_s);
        let in_use = n(names::CONN_UPGRADED) + self.sockets_at_start.unwrap_or(0);
        let prefix = format!("{}.", names::RUNS_FAILED);
        StepFigures {
            window_s: self.window_s,
            drain_s: self.drain_s,
            sockets_at_end: self.sockets_at_end,
            at_once: self.at_once,
            step_s,
            connects_ready: n(names::CONN_READY),
            opened_per_s: n(names::CONN_READY) as f64 / step_s.max(1) as f64,
            ws_connect: Percentiles::of(self.histograms.get(names::WS_CONNECT)),
            ws_ready: Percentiles::of(self.histograms.get(names::WS_READY)),
            auth_failures: Ratio {
                n: n(names::TOKENS_REJECTED),
                of: n(names::CONN_ATTEMPTED),
            },
            close_1011_before_ready: closes("1011_before_ready"),
            reconnects: n(names::RECONNECTS),
            runs: Ratio {
                n: n(names::RUNS_OK),
                of: started,
            },
            runs_per_s: self
                .window_s
                .filter(|w| *w > 0.0)
                .map(|w| started as f64 / w),
            ttfe: Percentiles::of(self.histograms.get(names::TTFE)),
            ttc: Percentiles::of(self.histograms.get(names::TTC)),
            failed_by_class: self
                .counters
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), *v)))
                .filter(|(k, n)| !k.contains('.') && *n > 0)
                .collect(),
            close_1011_during_runs: closes("1011_first_exchange") + closes("1011_during_run"),
            close_1011_idle: closes("1011_idle"),
            close_1011: Ratio {
                n: closes("1011"),
                of: in_use.max(1),
            },
        }
    }
}

#[cfg(test)]
mod tests;
