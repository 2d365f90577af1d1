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
    /// Users (closed model), arrivals per second (open model), or sockets
    /// opened at once (a connect-burst search).
    pub load: f64,
    pub start_s: u64,
    /// Measurement starts here (after the step's warm-up).
    pub measure_s: u64,
    pub end_s: u64,
    /// Closed model: sockets the step opens at once (its new users, all
    /// at its start); `None` with a connect ramp or in the open model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_once: Option<u64>,
}

/// How a closed step's new users connect, apart from the step's level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConnectRamp {
    /// All at once at the step's start.
    AtOnce,
    /// This many new sockets per second (`connect_rate`).
    Rate(f64),
    /// Spread evenly over this long (`connect_over`, whole seconds).
    Over(Duration),
}

/// What the steps are levels of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Users (closed) or arrivals per second (open).
    Load,
    /// Sockets opened at once: step k adds that many users at its start,
    /// keeping the users of the steps before it (closed model only).
    ConnectBurst,
}

/// `[capacity]`: step the load up until an SLO breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPlan {
    /// The levels, in order: `levels = [...]` as written, or
    /// `start, start + step, ...` up to `max`.
    pub levels: Vec<f64>,
    pub step_duration: Duration,
    pub warmup: Duration,
    /// The load the service must carry; the report gives the headroom against it.
    pub target: Option<f64>,
    /// Rates are written and shown in this unit (open model); `None`: users.
    pub rate_unit: Option<Duration>,
    pub connect: ConnectRamp,
    pub mode: SearchMode,
}

/// `start, start + step, ...` up to `max` (a small tolerance keeps `max`
/// itself when float steps add up to it).
pub fn arithmetic_levels(start: f64, step: f64, max: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut load = start;
    while load <= max + 1e-9 * max.abs().max(1.0) && step > 0.0 {
        out.push(load);
        load = start + step * out.len() as f64;
    }
    out
}

impl CapacityPlan {
    pub fn steps(&self) -> Vec<CapacityStep> {
        let len = self.step_duration.as_secs();
        let mut users = 0u64;
        self.levels
            .iter()
            .enumerate()
            .map(|(i, &load)| {
                let t = i as u64 * len;
                let before = users;
                users = self.users_at(i);
                let at_once = (self.rate_unit.is_none() && self.connect == ConnectRamp::AtOnce)
                    .then(|| users.saturating_sub(before));
                CapacityStep {
                    index: i as u32 + 1,
                    load,
                    start_s: t,
                    measure_s: t + self.warmup.as_secs(),
                    end_s: t + len,
                    at_once,
                }
            })
            .collect()
    }

    /// Closed model: the users of step `i` (0-based): its level, or in a
    /// connect-burst search the sum of the bursts so far.
    pub fn users_at(&self, i: usize) -> u64 {
        match self.mode {
            SearchMode::Load => self.levels[i].round() as u64,
            SearchMode::ConnectBurst => self.levels[..=i].iter().map(|l| l.round() as u64).sum(),
        }
    }

    /// Closed model: how long step `i`'s new users take to connect.
    pub fn connect_time(&self, i: usize) -> Duration {
        let new = self
            .users_at(i)
            .saturating_sub(if i == 0 { 0 } else { self.users_at(i - 1) });
        match self.connect {
            ConnectRamp::AtOnce => Duration::ZERO,
            ConnectRamp::Over(d) => d,
            ConnectRamp::Rate(r) => Duration::from_secs((new as f64 / r).ceil() as u64),
        }
    }

    /// A load as written: `12 users` or `20/s`.
    pub fn show_load(&self, load: f64) -> String {
        match (self.rate_unit, self.mode) {
            (None, SearchMode::ConnectBurst) => format!("{} at once", load.round() as u64),
            (None, SearchMode::Load) => format!("{} users", load.round() as u64),
            (Some(u), _) => show_rate(load, u),
        }
    }

    /// A step's load as written; a connect-burst step also names its users
    /// (`20 at once (50 users)`).
    pub fn show_step(&self, step: &CapacityStep) -> String {
        let load = self.show_load(step.load);
        match (self.mode, self.rate_unit) {
            (SearchMode::ConnectBurst, None) => {
                format!("{load} ({} users)", self.users_at(step.index as usize - 1))
            }
            _ => load,
        }
    }

    /// The closed-model staircase: each step moves to its users (at once,
    /// or over its connect ramp) and holds for the rest of the step.
    pub fn closed_plan(&self) -> LoadPlan {
        let steps: Vec<RampStep> = (0..self.levels.len())
            .flat_map(|i| {
                let over = self.connect_time(i).min(self.step_duration);
                [
                    RampStep::To {
                        to: self.users_at(i),
                        over,
                    },
                    RampStep::Hold(self.step_duration - over),
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
        let what = match (self.mode, self.rate_unit) {
            (SearchMode::ConnectBurst, _) => {
                "sockets opened at once (each step adds them as new users)"
            }
            (SearchMode::Load, None) => "users",
            (SearchMode::Load, Some(_)) => "arrival rates",
        };
        writeln!(
            f,
            "  capacity search over {what}: each step runs {}s; runs that start in its last {}s (after a {}s warm-up) are its runs, however late they end; its connects are measured over the whole step; the search stops at the first step that breaks an SLO (when SLOs judge both the connect and the run side, at the first step where both have broken)",
            self.step_duration.as_secs(),
            self.step_duration.saturating_sub(self.warmup).as_secs(),
            self.warmup.as_secs()
        )?;
        match self.connect {
            ConnectRamp::AtOnce => {}
            ConnectRamp::Rate(r) => writeln!(f, "  new users of a step connect at {r}/s")?,
            ConnectRamp::Over(d) => {
                writeln!(f, "  new users of a step connect over {}s", d.as_secs())?
            }
        }
        writeln!(
            f,
            "  {:>3}  {:>9}  {:>9}  {:>9}  {:>12}  {:>8}",
            "#", "start", "measure", "end", "load", "at once"
        )?;
        let span = |secs: u64| format!("{}m{:02}s", secs / 60, secs % 60);
        for s in self.steps() {
            writeln!(
                f,
                "  {:>3}  {:>9}  {:>9}  {:>9}  {:>12}  {:>8}",
                s.index,
                span(s.start_s),
                span(s.measure_s),
                span(s.end_s),
                self.show_load(s.load),
                s.at_once.map_or("-".to_string(), |n| n.to_string())
            )?;
        }
        Ok(())
    }
}
