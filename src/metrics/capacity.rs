//! The result of a capacity search: one section per step (its own histograms
//! and counters, measured after the step's warm-up), each step judged against
//! the SLOs, and the knee: the highest step where every SLO held.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::snapshot::{HistogramData, Snapshot};
use super::threshold::{Threshold, Verdict};
use super::Recorder;
use crate::scenario::plan::CapacityStep;

/// One measured step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub index: u32,
    /// Users (closed model) or arrivals per second (open model).
    pub load: f64,
    /// The load as written (`12 users`, `20/s`).
    pub load_text: String,
    /// Seconds since the plan started: step start, measurement start, end.
    pub start_s: u64,
    pub measure_s: u64,
    pub end_s: u64,
    /// Every SLO held on this step's data.
    pub held: bool,
    pub slo: Vec<Verdict>,
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, HistogramData>,
}

/// The step where the search stopped and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirstFailing {
    pub index: u32,
    pub load: f64,
    pub load_text: String,
    /// The SLOs that failed on it.
    pub failed: Vec<Verdict>,
}

/// `snapshot.capacity`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityResult {
    /// `users` or `arrivals_per_s`.
    pub unit: String,
    /// The SLO rules as written.
    pub slo: Vec<String>,
    /// Measured steps, in order (the search stops at the first failing one).
    pub steps: Vec<StepResult>,
    /// The highest step where every SLO held (`None`: not even the first).
    pub knee: Option<f64>,
    pub knee_text: Option<String>,
    pub first_failing: Option<FirstFailing>,
    /// Every planned step held: the knee is at or above the plan's max.
    pub reached_max: bool,
    pub target: Option<f64>,
    pub target_text: Option<String>,
    /// `knee / target - 1`: 0.25 means 25% above the target load; negative
    /// means the knee is below it.
    pub headroom: Option<f64>,
}

/// Judges one step's data against the SLOs.
pub fn judge_step(
    step: &CapacityStep,
    load_text: String,
    slo: &[Threshold],
    rec: &Recorder,
) -> StepResult {
    let verdicts: Vec<Verdict> = slo.iter().map(|t| judge_in_step(t, rec)).collect();
    StepResult {
        index: step.index,
        load: step.load,
        load_text,
        start_s: step.start_s,
        measure_s: step.measure_s,
        end_s: step.end_s,
        held: verdicts.iter().all(|v| v.passed),
        slo: verdicts,
        counters: rec.counters.clone(),
        histograms: Snapshot::histograms_from(rec),
    }
}

/// Judges a rule on a step's data. A close-code rate is per new connection,
/// and a step of the closed model may open none (sockets outlive steps): with
/// no new connection and no such close, the rate is 0, not "no data".
fn judge_in_step(t: &Threshold, rec: &Recorder) -> Verdict {
    let v = t.judge(rec);
    if v.observed.is_some() {
        return v;
    }
    if let super::threshold::Subject::Rate { name } = &t.subject {
        if let Some(code) = name.strip_prefix("close_") {
            let closes = rec.counter(&format!("closes.{code}"));
            if closes == 0 && rec.counter(super::names::RUNS_STARTED) > 0 {
                let mut zero = Recorder::default();
                zero.count(super::names::CONN_UPGRADED, 1);
                return t.judge(&zero);
            }
            let mut v = v;
            v.observed_text = format!("{closes} closes and no new connection");
            return v;
        }
    }
    v
}

/// Names the knee from the measured steps.
pub fn conclude(
    steps: Vec<StepResult>,
    planned: usize,
    unit: &str,
    slo: &[Threshold],
    target: Option<(f64, String)>,
) -> CapacityResult {
    let first_bad = steps.iter().position(|s| !s.held);
    let held = &steps[..first_bad.unwrap_or(steps.len())];
    let knee = held.last();
    let headroom = match (&target, knee) {
        (Some((t, _)), Some(k)) if *t > 0.0 => Some(k.load / t - 1.0),
        (Some(_), None) => Some(-1.0),
        _ => None,
    };
    CapacityResult {
        unit: unit.to_string(),
        slo: slo.iter().map(|t| t.expr.clone()).collect(),
        knee: knee.map(|k| k.load),
        knee_text: knee.map(|k| k.load_text.clone()),
        first_failing: first_bad.map(|i| {
            let s = &steps[i];
            FirstFailing {
                index: s.index,
                load: s.load,
                load_text: s.load_text.clone(),
                failed: s.slo.iter().filter(|v| !v.passed).cloned().collect(),
            }
        }),
        reached_max: first_bad.is_none() && steps.len() == planned && planned > 0,
        target: target.as_ref().map(|t| t.0),
        target_text: target.map(|t| t.1),
        headroom,
        steps,
    }
}

impl CapacityResult {
    /// Whether the search passes: some step held, and the knee carries the target load.
    pub fn passed(&self) -> bool {
        match (self.knee, self.target) {
            (None, _) => false,
            (Some(k), Some(t)) => k >= t,
            (Some(_), None) => true,
        }
    }

    /// One line for people: the knee, what broke, the headroom.
    pub fn summary(&self) -> String {
        let mut s = match (&self.knee_text, &self.first_failing) {
            (Some(k), Some(f)) => format!(
                "knee: {k} (the highest step where every SLO held); step {} at {} broke {}",
                f.index,
                f.load_text,
                f.failed
                    .iter()
                    .map(|v| format!("`{}` (measured {})", v.threshold, v.observed_text))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(k), None) if self.reached_max => {
                format!("knee: at least {k}: every step held up to the plan's max; raise capacity.max to find it")
            }
            (Some(k), None) => format!("knee: at least {k}: the search ended before a step broke"),
            (None, Some(f)) => format!(
                "no step held: the first step ({}) already broke {}",
                f.load_text,
                f.failed
                    .iter()
                    .map(|v| format!("`{}` (measured {})", v.threshold, v.observed_text))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, None) => "no step was measured".to_string(),
        };
        if let (Some(h), Some(t)) = (self.headroom, &self.target_text) {
            s.push_str(&format!(
                "; headroom against the target {t}: {:+.0}%",
                h * 100.0
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: u32, load: f64, ttc_ms: u64) -> StepResult {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let mut rec = Recorder::default();
        for _ in 0..10 {
            rec.record("ttc", ttc_ms * 1000);
        }
        let s = CapacityStep {
            index,
            load,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
        };
        judge_step(&s, format!("{load} users"), &slo, &rec)
    }

    #[test]
    fn the_knee_is_the_last_step_before_the_first_failure() {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let r = conclude(
            vec![step(1, 4.0, 50), step(2, 8.0, 80), step(3, 12.0, 150)],
            5,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(r.knee, Some(8.0));
        let f = r.first_failing.as_ref().unwrap();
        assert_eq!((f.index, f.failed.len()), (3, 1));
        assert!((r.headroom.unwrap() - (8.0 / 6.0 - 1.0)).abs() < 1e-12);
        assert!(r.passed() && !r.reached_max);
        assert!(r.summary().contains("knee: 8 users"), "{}", r.summary());
        assert!(r.summary().contains("+33%"), "{}", r.summary());
        // Below the target: fails.
        let low = conclude(
            vec![step(1, 4.0, 50), step(2, 8.0, 150)],
            5,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(low.knee, Some(4.0));
        assert!(!low.passed());
        // No step held.
        let none = conclude(vec![step(1, 4.0, 150)], 5, "users", &slo, None);
        assert_eq!(none.knee, None);
        assert!(!none.passed());
        assert!(none.summary().starts_with("no step held"));
        // A close rate with no new connection in the step: 0 when nothing closed.
        let rate = vec![Threshold::parse("close_1011 rate", "< 1%").unwrap()];
        let mut rec = Recorder::default();
        rec.count("runs.started", 10);
        let s = CapacityStep {
            index: 1,
            load: 1.0,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
        };
        assert!(judge_step(&s, "1".into(), &rate, &rec).held);
        rec.count("closes.1011", 2);
        let broke = judge_step(&s, "1".into(), &rate, &rec);
        assert!(!broke.held);
        assert_eq!(broke.slo[0].observed_text, "2 closes and no new connection");
        // Every step held.
        let all = conclude(
            vec![step(1, 4.0, 10), step(2, 8.0, 10)],
            2,
            "users",
            &slo,
            None,
        );
        assert!(all.reached_max && all.passed());
        assert!(all.summary().contains("at least 8 users"));
    }
}
