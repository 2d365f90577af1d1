//! Offered vs achieved: for each phase of the load plan (the closed model's
//! ramp and hold stages, the open model's rate stages), what the plan asked
//! for and what the run did, from the run's interval counters: users
//! (sockets open: `connections.ready` minus `connections.closed`), the
//! arrival rate (open model: intended minus dropped arrivals per second)
//! and runs per second. Stored in the snapshot (`offered`) so `report`
//! re-renders it. An interval's counts go to the phases it overlaps, in
//! proportion to the overlap; the plan's clock is taken to start with the
//! run's (goose's own start-up, well under an interval, is ignored).
//! Phases that begin after the run ended are left out.
//!
//! Imports: `encoding` (interval data), `plan`, `names`.

use serde::{Deserialize, Serialize};

use super::encoding::IntervalData;
use crate::names;
use crate::plan::{LoadPlan, OpenModel};

/// One phase of the plan, planned and achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferedPhase {
    /// `ramp`, `hold`, `rate ramp`, `rate` or `iterations`, numbered from 1.
    pub phase: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Users the plan asks for at the phase's start and end (the open
    /// model: its session pool).
    pub users_from: u64,
    pub users_to: u64,
    /// Sockets open at the phase's end, and the most open at any interval's end in it.
    pub users_end: u64,
    pub users_max: u64,
    /// Open model: arrivals per second the plan asks for (mean over the
    /// phase) and that started (intended minus dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals_planned_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals_per_s: Option<f64>,
    /// Runs started and runs ok per second.
    pub runs_per_s: f64,
    pub runs_ok_per_s: f64,
}

/// A phase of the plan before measuring.
struct Planned {
    phase: String,
    start_s: f64,
    end_s: f64,
    users: (u64, u64),
    arrivals: Option<f64>,
}

/// The plan's phases (`plan`: this process's users; `open`: the open
/// model's rates), measured on `intervals`; `run_s`: how long the run went
/// (a plan of iterations has one phase, the whole run).
pub fn offered(
    plan: &LoadPlan,
    open: Option<&OpenModel>,
    intervals: &[IntervalData],
    run_s: f64,
) -> Vec<OfferedPhase> {
    planned(plan, open, run_s)
        .into_iter()
        // A phase the run never reached (it stopped before: a capacity
        // search's step after the failing one, an abort) offered nothing.
        .filter(|p| p.start_s < run_s)
        .map(|p| measure(p, intervals))
        .collect()
}

fn planned(plan: &LoadPlan, open: Option<&OpenModel>, run_s: f64) -> Vec<Planned> {
    let peak = plan.peak_users();
    if let Some(m) = open {
        return m
            .rate
            .stages
            .iter()
            .filter(|s| s.length_s > 0)
            .enumerate()
            .map(|(i, s)| {
                let (a, b) = (s.start_s as f64, (s.start_s + s.length_s) as f64);
                let kind = if s.from == s.to { "rate" } else { "rate ramp" };
                Planned {
                    phase: format!("{} {kind}", i + 1),
                    start_s: a,
                    end_s: b,
                    users: (m.max_users, m.max_users),
                    arrivals: Some((m.rate.expected(b) - m.rate.expected(a)) / (b - a)),
                }
            })
            .collect();
    }
    if plan.iterations.is_some() || plan.total().is_zero() {
        return vec![Planned {
            phase: "1 iterations".into(),
            start_s: 0.0,
            end_s: run_s,
            users: (peak, peak),
            arrivals: None,
        }];
    }
    plan.stages
        .iter()
        .filter(|s| s.length_s > 0)
        .enumerate()
        .map(|(i, s)| Planned {
            phase: format!("{} {}", i + 1, if s.from == s.to { "hold" } else { "ramp" }),
            start_s: s.start_s as f64,
            end_s: (s.start_s + s.length_s) as f64,
            users: (s.from, s.to),
            arrivals: None,
        })
        .collect()
}

fn measure(p: Planned, intervals: &[IntervalData]) -> OfferedPhase {
    let c = |i: &IntervalData, k: &str| i.counters.get(k).copied().unwrap_or(0) as f64;
    let (mut runs, mut ok, mut arrivals) = (0.0, 0.0, 0.0);
    let mut open = 0i64;
    let (mut users_end, mut users_max) = (0u64, 0u64);
    for i in intervals {
        let (a, b) = (i.start_s, i.start_s + i.length_s);
        open += c(i, names::CONN_READY) as i64 - c(i, names::CONN_CLOSED) as i64;
        let overlap = (b.min(p.end_s) - a.max(p.start_s)).max(0.0);
        let share = if i.length_s > 0.0 {
            overlap / i.length_s
        } else {
            0.0
        };
        runs += share * c(i, names::RUNS_STARTED);
        ok += share * c(i, names::RUNS_OK);
        arrivals += share * (c(i, names::STARTS_INTENDED) - c(i, names::STARTS_DROPPED));
        // Sockets open at the end of each interval that ends in the phase
        // (the last one that ends before the phase's end is its end).
        if b > p.start_s && b <= p.end_s + 0.5 * i.length_s {
            users_end = open.max(0) as u64;
            users_max = users_max.max(users_end);
        }
    }
    let len = (p.end_s - p.start_s).max(1e-9);
    OfferedPhase {
        phase: p.phase,
        start_s: p.start_s,
        end_s: p.end_s,
        users_from: p.users.0,
        users_to: p.users.1,
        users_end,
        users_max,
        arrivals_planned_per_s: p.arrivals,
        arrivals_per_s: p.arrivals.map(|_| arrivals / len),
        runs_per_s: runs / len,
        runs_ok_per_s: ok / len,
    }
}

/// The phases of several shards, added phase by phase (the same plan, each
/// shard's share).
pub fn combine<'a>(lists: impl IntoIterator<Item = &'a [OfferedPhase]>) -> Vec<OfferedPhase> {
    let mut out: Vec<OfferedPhase> = Vec::new();
    for list in lists {
        if out.is_empty() {
            out = list.to_vec();
            continue;
        }
        for (o, p) in out.iter_mut().zip(list) {
            o.users_from += p.users_from;
            o.users_to += p.users_to;
            o.users_end += p.users_end;
            o.users_max += p.users_max;
            let add = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
            o.arrivals_planned_per_s = add(o.arrivals_planned_per_s, p.arrivals_planned_per_s);
            o.arrivals_per_s = add(o.arrivals_per_s, p.arrivals_per_s);
            o.runs_per_s += p.runs_per_s;
            o.runs_ok_per_s += p.runs_ok_per_s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Arrivals, RampStep, RatePlan, WhenFull};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn interval(start_s: f64, counts: &[(&str, u64)]) -> IntervalData {
        IntervalData {
            start_s,
            length_s: 1.0,
            counters: counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            histograms: BTreeMap::new(),
        }
    }

    #[test]
    fn a_ramp_and_a_hold_show_users_and_runs_per_phase() {
        let plan = LoadPlan::from_ramp(
            &[
                RampStep::To {
                    to: 4,
                    over: Duration::from_secs(2),
                },
                RampStep::Hold(Duration::from_secs(2)),
            ],
            None,
        );
        // 2 sockets ready in each ramp second; one is lost in the hold.
        let ints = [
            interval(0.0, &[("connections.ready", 2), ("runs.started", 2)]),
            interval(1.0, &[("connections.ready", 2), ("runs.started", 4)]),
            interval(2.0, &[("runs.started", 8), ("runs.ok", 8)]),
            interval(3.0, &[("connections.closed", 1), ("runs.started", 6)]),
        ];
        let rows = offered(&plan, None, &ints, 4.0);
        assert_eq!(rows.len(), 2);
        let (ramp, hold) = (&rows[0], &rows[1]);
        assert_eq!(ramp.phase, "1 ramp");
        assert_eq!((ramp.users_from, ramp.users_to), (0, 4));
        assert_eq!((ramp.users_end, ramp.users_max), (4, 4));
        assert_eq!(ramp.runs_per_s, 3.0);
        assert_eq!(hold.phase, "2 hold");
        assert_eq!((hold.users_end, hold.users_max), (3, 4));
        assert_eq!((hold.runs_per_s, hold.runs_ok_per_s), (7.0, 4.0));
        assert_eq!(hold.arrivals_per_s, None);
        // Stopped in the ramp (a capacity search's failing step, an
        // abort): the hold never ran and has no row.
        let stopped = offered(&plan, None, &ints[..2], 1.5);
        assert_eq!(stopped.len(), 1, "{stopped:?}");
        assert_eq!(stopped[0].phase, "1 ramp");
    }

    #[test]
    fn the_open_model_shows_planned_and_started_arrivals() {
        let rate = RatePlan::from_steps(10.0, &[(None, Duration::from_secs(2))]);
        let m = OpenModel {
            rate,
            arrivals: Arrivals::Constant,
            max_users: 5,
            when_full: WhenFull::Drop,
            time_unit: Duration::from_secs(1),
            start_tolerance: crate::plan::DEFAULT_START_TOLERANCE,
        };
        let ints = [
            interval(0.0, &[("starts.intended", 10), ("starts.dropped", 4)]),
            interval(1.0, &[("starts.intended", 10), ("starts.dropped", 2)]),
        ];
        let rows = offered(
            &crate::scenario::pool_plan(5, &m.rate),
            Some(&m),
            &ints,
            2.0,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].arrivals_planned_per_s, Some(10.0));
        assert_eq!(rows[0].arrivals_per_s, Some(7.0));
        let two = combine([rows.as_slice(), rows.as_slice()]);
        assert_eq!(two[0].arrivals_per_s, Some(14.0));
    }
}
