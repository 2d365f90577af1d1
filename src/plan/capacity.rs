//! Capacity search steps: `[capacity]` as a staircase of loads
//! (`CapacityPlan`, `CapacityStep`), turned into a closed or open plan. The
//! SLO rules that judge a step stay with the scenario (`CapacitySearch`).
//! Imports only the other plan files.

use std::fmt;
use std::time::Duration;

use super::{show_rate, LoadPlan, RampStep, RatePlan, RateStep};

/// One step of a capacity search.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CapacityStep {
    /// 1-based.
    pub index: u32,
    /// Users (closed model) or arrivals per second (open model).
    pub load: f64,
    pub start_s: u64,
    /// Measurement starts here (after the step's warm-up).
    pub measure_s: u64,
    pub end_s: u64,
}

/// `[capacity]`: step the load up until an SLO breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPlan {
    /// Users (closed) or arrivals per second (open).
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub step_duration: Duration,
    pub warmup: Duration,
    /// The load the service must carry; the report gives the headroom against it.
    pub target: Option<f64>,
    /// Rates are written and shown in this unit (open model); `None`: users.
    pub rate_unit: Option<Duration>,
}

impl CapacityPlan {
    pub fn steps(&self) -> Vec<CapacityStep> {
        let mut out = Vec::new();
        let len = self.step_duration.as_secs();
        let mut load = self.start;
        let mut t = 0;
        // A small tolerance keeps `max` itself when float steps add up to it.
        while load <= self.max + 1e-9 * self.max.abs().max(1.0) {
            out.push(CapacityStep {
                index: out.len() as u32 + 1,
                load,
                start_s: t,
                measure_s: t + self.warmup.as_secs(),
                end_s: t + len,
            });
            t += len;
            load = self.start + self.step * out.len() as f64;
        }
        out
    }

    /// A load as written: `12 users` or `20/s`.
    pub fn show_load(&self, load: f64) -> String {
        match self.rate_unit {
            None => format!("{} users", load.round() as u64),
            Some(u) => show_rate(load, u),
        }
    }

    /// The closed-model staircase: each step jumps to its users and holds.
    pub fn closed_plan(&self) -> LoadPlan {
        let steps: Vec<RampStep> = self
            .steps()
            .iter()
            .flat_map(|s| {
                [
                    RampStep::To {
                        to: s.load.round() as u64,
                        over: Duration::ZERO,
                    },
                    RampStep::Hold(self.step_duration),
                ]
            })
            .collect();
        LoadPlan::from_ramp(&steps, None)
    }

    /// The open-model staircase of rates.
    pub fn rate_plan(&self) -> RatePlan {
        let steps = self.steps();
        let first = steps.first().map_or(0.0, |s| s.load);
        let stages: Vec<RateStep> = steps
            .iter()
            .flat_map(|s| [(Some(s.load), Duration::ZERO), (None, self.step_duration)])
            .collect();
        let mut plan = RatePlan::from_steps(first, &stages);
        plan.stages.retain(|s| s.length_s > 0);
        plan
    }
}

impl fmt::Display for CapacityPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  capacity search: each step runs {}s ({}s warm-up not measured); the search stops at the first step that breaks an SLO",
            self.step_duration.as_secs(),
            self.warmup.as_secs()
        )?;
        writeln!(
            f,
            "  {:>3}  {:>9}  {:>9}  {:>9}  {:>12}",
            "#", "start", "measure", "end", "load"
        )?;
        let span = |secs: u64| format!("{}m{:02}s", secs / 60, secs % 60);
        for s in self.steps() {
            writeln!(
                f,
                "  {:>3}  {:>9}  {:>9}  {:>9}  {:>12}",
                s.index,
                span(s.start_s),
                span(s.measure_s),
                span(s.end_s),
                self.show_load(s.load)
            )?;
        }
        Ok(())
    }
}
