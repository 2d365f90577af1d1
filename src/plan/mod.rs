//! The load plan: every workload becomes one list of stages that `chatload
//! validate` prints and the engine executes.

use std::fmt;
use std::time::Duration;

/// A slice of the work: shard `index` of `count` (`0/1` when not sharded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Parses `I/N` (0-based index).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N, e.g. 0/3"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index `{i}` is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{n}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count (0-based)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// This shard's share of `total`: the remainder goes to the lowest indexes,
    /// so the shares add up to `total` exactly.
    pub fn share(&self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }

    /// The global user index of this shard's `local`-th user.
    pub fn global_user(&self, local: usize) -> usize {
        local * self.count as usize + self.index as usize
    }

    /// This shard's part of exact journey counts: global users are given to
    /// the journeys in order (the first `counts[0]` to the first, ...), and
    /// this shard runs global users `index`, `index + count`, ...; so the
    /// parts of every shard add up to each journey's count exactly, and to
    /// this shard's [`share`](Self::share) of the users.
    pub fn journey_counts(&self, counts: &[u64]) -> Vec<u64> {
        let n = u64::from(self.count);
        let i = u64::from(self.index);
        // Global users below `g` that are this shard's: g = i, i + n, ...
        let mine_below = |g: u64| if g <= i { 0 } else { (g - i).div_ceil(n) };
        let mut start = 0u64;
        counts
            .iter()
            .map(|&c| {
                let part = mine_below(start + c) - mine_below(start);
                start += c;
                part
            })
            .collect()
    }
}

/// One stage: the user count moves linearly from `from` to `to` between `start`
/// and `start + length`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    pub start_s: u64,
    pub length_s: u64,
    pub from: u64,
    pub to: u64,
}

/// The closed-model plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadPlan {
    pub stages: Vec<Stage>,
    /// When set, each user runs the journey this many times and then stops
    /// (all users start at once), instead of following the stages' clock.
    pub iterations: Option<u64>,
}

/// A ramp entry as written in the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RampStep {
    /// Move to `to` users over `over`.
    To { to: u64, over: Duration },
    /// Keep the current users for a while.
    Hold(Duration),
}

impl LoadPlan {
    pub fn from_ramp(steps: &[RampStep], iterations: Option<u64>) -> LoadPlan {
        let mut stages = Vec::new();
        let (mut t, mut users) = (0u64, 0u64);
        for s in steps {
            let (len, to) = match s {
                RampStep::To { to, over } => (over.as_secs(), *to),
                RampStep::Hold(d) => (d.as_secs(), users),
            };
            stages.push(Stage {
                start_s: t,
                length_s: len,
                from: users,
                to,
            });
            t += len;
            users = to;
        }
        LoadPlan { stages, iterations }
    }

    pub fn peak_users(&self) -> u64 {
        self.stages
            .iter()
            .map(|s| s.to.max(s.from))
            .max()
            .unwrap_or(0)
    }

    pub fn total(&self) -> Duration {
        Duration::from_secs(self.stages.iter().map(|s| s.length_s).sum())
    }

    /// Users the plan wants at `elapsed` (pure; used by progress and tests).
    pub fn users_at(&self, elapsed: Duration) -> u64 {
        let t = elapsed.as_secs_f64();
        for s in &self.stages {
            let end = (s.start_s + s.length_s) as f64;
            if t < end {
                if s.length_s == 0 {
                    return s.to;
                }
                let frac = (t - s.start_s as f64) / s.length_s as f64;
                return (s.from as f64 + (s.to as f64 - s.from as f64) * frac).floor() as u64;
            }
        }
        0
    }

    /// This shard's part of the plan: every stage's user counts are its share.
    pub fn shard(&self, shard: Shard) -> LoadPlan {
        let stages = self
            .stages
            .iter()
            .map(|s| Stage {
                from: shard.share(s.from),
                to: shard.share(s.to),
                ..s.clone()
            })
            .collect();
        LoadPlan {
            stages,
            iterations: self.iterations,
        }
    }

    /// Replaces the peak with `users`, scaling every stage's user counts.
    pub fn with_users(&self, users: u64) -> LoadPlan {
        let peak = self.peak_users().max(1);
        let scale = |n: u64| ((n as u128 * users as u128 + peak as u128 / 2) / peak as u128) as u64;
        let stages = self
            .stages
            .iter()
            .map(|s| Stage {
                from: scale(s.from),
                to: scale(s.to),
                ..s.clone()
            })
            .collect();
        LoadPlan {
            stages,
            iterations: self.iterations,
        }
    }

    /// Sets the length of the last hold stage (or appends one) to `d`.
    pub fn with_hold(&self, d: Duration) -> LoadPlan {
        let mut stages = self.stages.clone();
        match stages.iter().rposition(|s| s.from == s.to && s.to > 0) {
            Some(i) => stages[i].length_s = d.as_secs(),
            None => {
                let users = stages.last().map_or(0, |s| s.to);
                stages.push(Stage {
                    start_s: 0,
                    length_s: d.as_secs(),
                    from: users,
                    to: users,
                });
            }
        }
        let mut t = 0;
        for s in &mut stages {
            s.start_s = t;
            t += s.length_s;
        }
        LoadPlan {
            stages,
            iterations: self.iterations,
        }
    }

    /// goose's `--test-plan` string: `users,seconds;...`, ending with `0,0`
    /// (stop every user at once when the plan ends).
    pub fn goose_test_plan(&self) -> String {
        let mut parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| format!("{},{}", s.to, s.length_s))
            .collect();
        // goose 0.19 never ends a plan whose last two steps both have 0 users,
        // so the stop step is only added when the plan ends with users running.
        if self.stages.last().is_none_or(|s| s.to > 0) {
            parts.push("0,0".into());
        }
        parts.join(";")
    }
}

impl fmt::Display for LoadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.iterations {
            return writeln!(
                f,
                "  {} users start together; each runs the journey {} time{}, then stops",
                self.peak_users(),
                n,
                if n == 1 { "" } else { "s" }
            );
        }
        writeln!(
            f,
            "  {:>3}  {:>9}  {:>9}  {:>13}",
            "#", "start", "end", "users"
        )?;
        for (i, s) in self.stages.iter().enumerate() {
            let span = |secs: u64| format!("{}m{:02}s", secs / 60, secs % 60);
            let users = if s.from == s.to {
                format!("hold {}", s.to)
            } else {
                format!("{} -> {}", s.from, s.to)
            };
            writeln!(
                f,
                "  {:>3}  {:>9}  {:>9}  {:>13}",
                i + 1,
                span(s.start_s),
                span(s.start_s + s.length_s),
                users
            )?;
        }
        writeln!(
            f,
            "  peak {} users, {}s in all, then every user stops",
            self.peak_users(),
            self.total().as_secs()
        )
    }
}

/// How arrivals are spaced in the open model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced at the current rate.
    Constant,
    /// A Poisson process at the current rate (exponential gaps, seeded).
    Poisson,
}

impl std::str::FromStr for Arrivals {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Arrivals::Constant),
            "poisson" => Ok(Arrivals::Poisson),
            other => Err(format!(
                "unknown arrivals `{other}` (expected constant or poisson)"
            )),
        }
    }
}

/// What an arrival does when every session of the pool is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// It is not started, and counted in `starts.dropped` (k6's dropped_iterations).
    Drop,
    /// It waits for the next free session, counted in `starts.late`; its
    /// latency is still measured from its intended start.
    Queue,
}

impl std::str::FromStr for WhenFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(WhenFull::Drop),
            "queue" => Ok(WhenFull::Queue),
            other => Err(format!(
                "unknown when_full `{other}` (expected drop or queue)"
            )),
        }
    }
}

/// One stage of an arrival-rate plan: the rate (arrivals per second) moves
/// linearly from `from` to `to` between `start_s` and `start_s + length_s`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RateStage {
    pub start_s: u64,
    pub length_s: u64,
    pub from: f64,
    pub to: f64,
}

/// The open model's plan: arrival-rate stages.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RatePlan {
    pub stages: Vec<RateStage>,
}

/// A rate entry as written: move to `to` (per time unit) over `over`, or hold.
pub type RateStep = (Option<f64>, Duration);

impl RatePlan {
    /// Builds stages from a start rate and `(to, over)` / `(None, hold)` steps,
    /// rates in arrivals per second.
    pub fn from_steps(start: f64, steps: &[RateStep]) -> RatePlan {
        let (mut t, mut rate) = (0u64, start);
        let mut stages = Vec::new();
        for (to, over) in steps {
            let to = to.unwrap_or(rate);
            stages.push(RateStage {
                start_s: t,
                length_s: over.as_secs(),
                from: rate,
                to,
            });
            t += over.as_secs();
            rate = to;
        }
        RatePlan { stages }
    }

    pub fn total(&self) -> Duration {
        Duration::from_secs(self.stages.iter().map(|s| s.length_s).sum())
    }

    pub fn peak_rate(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.from.max(s.to))
            .fold(0.0, f64::max)
    }

    /// Arrivals per second at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        for s in &self.stages {
            let end = (s.start_s + s.length_s) as f64;
            if t < end {
                let frac = (t - s.start_s as f64) / s.length_s as f64;
                return s.from + (s.to - s.from) * frac;
            }
        }
        0.0
    }

    /// Arrivals expected by `t` seconds: the integral of the rate.
    pub fn expected(&self, t: f64) -> f64 {
        let mut sum = 0.0;
        for s in &self.stages {
            let (a, len) = (s.start_s as f64, s.length_s as f64);
            let x = (t - a).clamp(0.0, len);
            if x > 0.0 {
                sum += s.from * x + (s.to - s.from) * x * x / (2.0 * len);
            }
            if t <= a + len {
                break;
            }
        }
        sum
    }

    /// The time (seconds) at which `expected` reaches `target`; `None` when the
    /// plan ends first. Inverts each stage's quadratic in a form that stays
    /// exact when the rate is flat or starts at zero.
    pub fn time_of(&self, target: f64) -> Option<f64> {
        let mut before = 0.0;
        for s in &self.stages {
            let len = s.length_s as f64;
            let area = (s.from + s.to) * len / 2.0;
            if target < before + area {
                let need = target - before;
                let a = (s.to - s.from) / (2.0 * len);
                let b = s.from;
                let root = (b * b + 4.0 * a * need).max(0.0).sqrt();
                let x = if b + root > 0.0 {
                    2.0 * need / (b + root)
                } else {
                    0.0
                };
                return Some(s.start_s as f64 + x.clamp(0.0, len));
            }
            before += area;
        }
        None
    }

    /// This shard's part: every rate divided by the shard count.
    pub fn shard(&self, shard: Shard) -> RatePlan {
        let n = f64::from(shard.count);
        RatePlan {
            stages: self
                .stages
                .iter()
                .map(|s| RateStage {
                    from: s.from / n,
                    to: s.to / n,
                    ..s.clone()
                })
                .collect(),
        }
    }
}

/// What the pacer says to do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Start arrival number `count` now; it was intended at `intended`
    /// (seconds since the plan started), which may be in the past.
    Start { intended: Duration },
    /// Nothing is due yet: wait this long.
    Wait(Duration),
    /// The plan has no more arrivals.
    Stop,
}

/// Turns a [`RatePlan`] into arrival times. Pure: the answer depends only on
/// the elapsed time and how many arrivals were started (`count` never
/// decreases), so it is tested as a table.
///
/// Arrival `k` is due when the expected arrivals reach `s_k`: `s_k = k + phase`
/// for constant spacing (a shard's phase interleaves shards exactly), and the
/// running sum of seeded Exp(1) draws for Poisson (the time-rescaling of a
/// unit-rate Poisson process, so ramps stay Poisson).
#[derive(Debug, Clone)]
pub struct Pacer {
    plan: RatePlan,
    arrivals: Arrivals,
    phase: f64,
    rng: rand_chacha::ChaCha8Rng,
    /// The arrival whose target is in `target` (`u64::MAX` before the first).
    k: u64,
    target: f64,
}

impl Pacer {
    pub fn new(plan: RatePlan, arrivals: Arrivals, seed: u64, shard: Shard) -> Pacer {
        use rand::SeedableRng;
        let phase = f64::from(shard.index) / f64::from(shard.count);
        Pacer {
            plan,
            arrivals,
            phase,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(
                seed ^ 0x0A11_1FA1 ^ (u64::from(shard.index) << 32),
            ),
            k: u64::MAX,
            target: 0.0,
        }
    }

    fn target_of(&mut self, count: u64) -> f64 {
        use rand::Rng;
        while self.k != count {
            self.k = self.k.wrapping_add(1);
            self.target = match self.arrivals {
                Arrivals::Constant => self.k as f64 + self.phase,
                Arrivals::Poisson => {
                    // Exp(1) by inversion; 1 - u is in (0, 1], so ln is finite.
                    let u: f64 = self.rng.random();
                    self.target - (1.0 - u).ln()
                }
            };
        }
        self.target
    }

    /// When arrival number `count` (0-based) is intended; `None` past the plan.
    pub fn intended(&mut self, count: u64) -> Option<Duration> {
        let s = self.target_of(count);
        self.plan.time_of(s).map(Duration::from_secs_f64)
    }

    /// What to do at `elapsed` after `count` arrivals were started.
    pub fn next(&mut self, elapsed: Duration, count: u64) -> Pace {
        match self.intended(count) {
            None => Pace::Stop,
            Some(t) if t <= elapsed => Pace::Start { intended: t },
            Some(t) => Pace::Wait(t - elapsed),
        }
    }
}

/// The open model: arrivals at a rate, served by a bounded pool of sessions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpenModel {
    /// Arrival rates in arrivals per second.
    pub rate: RatePlan,
    pub arrivals: Arrivals,
    /// Sessions in the pool: the most journeys in flight at once.
    pub max_users: u64,
    pub when_full: WhenFull,
    /// The unit rates are written and shown in (1 s, 1 min).
    pub time_unit: Duration,
}

impl OpenModel {
    /// A rate per second written in the scenario's time unit, e.g. `12/s` or `600/min`.
    pub fn show_rate(&self, per_second: f64) -> String {
        show_rate(per_second, self.time_unit)
    }

    /// Arrivals in each stage of the plan, adding up to the plan's total.
    /// Evenly spaced arrivals are exact: arrival k (from 0) is due when the
    /// expected count reaches k, so a plan expecting E arrivals by its end
    /// starts ceil(E) and a stage gets those with k in [E_before, E_after).
    /// Poisson arrivals get the same counts as the expected value (their
    /// real number varies with the seed).
    pub fn arrival_counts(&self) -> Vec<u64> {
        // ceil, forgiving float noise: 10/s for 2 s is 20, not 21.
        let due = |e: f64| (e - 1e-9).ceil().max(0.0) as u64;
        let mut before = 0.0;
        self.rate
            .stages
            .iter()
            .map(|s| {
                let after = before + (s.from + s.to) * s.length_s as f64 / 2.0;
                let n = due(after) - due(before);
                before = after;
                n
            })
            .collect()
    }
}

/// A rate per second in `unit`: `12/s`, `600/min`, `2.5/10s`.
pub fn show_rate(per_second: f64, unit: Duration) -> String {
    let v = per_second * unit.as_secs_f64();
    let n = if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    };
    let u = match unit.as_secs() {
        1 => "s".to_string(),
        60 => "min".to_string(),
        3600 => "h".to_string(),
        _ => humantime::format_duration(unit).to_string(),
    };
    format!("{n}/{u}")
}

impl fmt::Display for OpenModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  open model: {} arrivals, a pool of {} sessions; an arrival that finds every session busy is {}",
            match self.arrivals {
                Arrivals::Constant => "evenly spaced",
                Arrivals::Poisson => "Poisson (seeded)",
            },
            self.max_users,
            match self.when_full {
                WhenFull::Drop => "dropped (starts.dropped)",
                WhenFull::Queue => "queued and started late (starts.late)",
            }
        )?;
        writeln!(
            f,
            "  {:>3}  {:>9}  {:>9}  {:>21}  {:>9}",
            "#", "start", "end", "rate", "arrivals"
        )?;
        let counts = self.arrival_counts();
        for (i, (s, n)) in self.rate.stages.iter().zip(&counts).enumerate() {
            let span = |secs: u64| format!("{}m{:02}s", secs / 60, secs % 60);
            let rate = if s.from == s.to {
                format!("hold {}", self.show_rate(s.to))
            } else {
                format!("{} -> {}", self.show_rate(s.from), self.show_rate(s.to))
            };
            writeln!(
                f,
                "  {:>3}  {:>9}  {:>9}  {:>21}  {:>9}",
                i + 1,
                span(s.start_s),
                span(s.start_s + s.length_s),
                rate,
                n
            )?;
        }
        writeln!(
            f,
            "  peak {}, {}{} arrivals in {}s; run latencies are measured from each arrival's intended start",
            self.show_rate(self.rate.peak_rate()),
            match self.arrivals {
                Arrivals::Constant => "",
                Arrivals::Poisson => "about ",
            },
            counts.iter().sum::<u64>(),
            self.rate.total().as_secs()
        )
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan::from_ramp(
            &[
                RampStep::To {
                    to: 20,
                    over: Duration::from_secs(10),
                },
                RampStep::Hold(Duration::from_secs(30)),
                RampStep::To {
                    to: 0,
                    over: Duration::from_secs(5),
                },
            ],
            None,
        )
    }

    #[test]
    fn users_over_time() {
        let p = plan();
        let table = [
            (0, 0),
            (5, 10),
            (10, 20),
            (39, 20),
            (40, 20),
            (44, 4),
            (45, 0),
            (100, 0),
        ];
        for (t, want) in table {
            assert_eq!(p.users_at(Duration::from_secs(t)), want, "at {t}s");
        }
        assert_eq!(p.peak_users(), 20);
        assert_eq!(p.total(), Duration::from_secs(45));
    }

    #[test]
    fn journey_counts_split_exactly_across_shards() {
        // (counts, shards) -> each shard's parts
        type Case = (&'static [u64], u32, &'static [&'static [u64]]);
        let table: [Case; 4] = [
            (&[6, 3, 1], 1, &[&[6, 3, 1]]),
            (&[4, 4, 2], 2, &[&[2, 2, 1], &[2, 2, 1]]),
            (&[6, 3, 1], 2, &[&[3, 2, 0], &[3, 1, 1]]),
            (&[7, 2, 1], 3, &[&[3, 0, 1], &[2, 1, 0], &[2, 1, 0]]),
        ];
        for (counts, n, want) in table {
            let total: u64 = counts.iter().sum();
            let mut sums = vec![0u64; counts.len()];
            for (index, w) in want.iter().enumerate() {
                let shard = Shard {
                    index: index as u32,
                    count: n,
                };
                let parts = shard.journey_counts(counts);
                assert_eq!(parts, w.to_vec(), "{counts:?} shard {index}/{n}");
                assert_eq!(parts.iter().sum::<u64>(), shard.share(total));
                for (s, p) in sums.iter_mut().zip(&parts) {
                    *s += p;
                }
            }
            assert_eq!(sums, counts.to_vec());
        }
    }

    #[test]
    fn shard_shares_add_up_exactly() {
        for total in [0u64, 1, 2, 7, 10, 1000, 1001] {
            for n in 1..=5u32 {
                let sum: u64 = (0..n)
                    .map(|i| Shard { index: i, count: n }.share(total))
                    .sum();
                assert_eq!(sum, total, "{total} over {n}");
            }
        }
        let mut seen: Vec<usize> = (0..3u32)
            .flat_map(|i| {
                let s = Shard { index: i, count: 3 };
                (0..s.share(10) as usize).map(move |l| s.global_user(l))
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..10).collect::<Vec<_>>(),
            "disjoint and complete identities"
        );
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert!(
            Shard::parse("3/3").is_err()
                && Shard::parse("1").is_err()
                && Shard::parse("0/0").is_err()
        );
        let p = plan().shard(Shard { index: 1, count: 3 });
        assert_eq!(p.goose_test_plan(), "7,10;7,30;0,5");
    }

    #[test]
    fn goose_plan_and_overrides() {
        let p = plan();
        assert_eq!(p.goose_test_plan(), "20,10;20,30;0,5");
        let q = p.with_users(100).with_hold(Duration::from_secs(60));
        assert_eq!(q.goose_test_plan(), "100,10;100,60;0,5");
        let hold_only = LoadPlan::from_ramp(
            &[
                RampStep::To {
                    to: 3,
                    over: Duration::ZERO,
                },
                RampStep::Hold(Duration::from_secs(2)),
            ],
            None,
        );
        assert_eq!(hold_only.goose_test_plan(), "3,0;3,2;0,0");
        assert_eq!(q.total(), Duration::from_secs(75));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn near(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    /// (elapsed, arrivals started so far) -> what the pacer says.
    fn check(pacer: &mut Pacer, table: &[(Duration, u64, Pace)]) {
        for (elapsed, count, want) in table {
            let got = pacer.next(*elapsed, *count);
            let same = match (got, want) {
                (Pace::Start { intended: a }, Pace::Start { intended: b }) => near(a, *b),
                (Pace::Wait(a), Pace::Wait(b)) => near(a, *b),
                (a, b) => a == *b,
            };
            assert!(
                same,
                "at {elapsed:?} after {count}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn pacer_constant_rate_table() {
        // 10 arrivals per second for 2 s: due at 0, 0.1, ..., 1.9 s.
        let plan = RatePlan::from_steps(10.0, &[(None, Duration::from_secs(2))]);
        let mut p = Pacer::new(plan, Arrivals::Constant, 1, Shard::default());
        check(
            &mut p,
            &[
                (ms(0), 0, Pace::Start { intended: ms(0) }),
                (ms(0), 1, Pace::Wait(ms(100))),
                (ms(40), 1, Pace::Wait(ms(60))),
                (ms(150), 1, Pace::Start { intended: ms(100) }),
                // A generator that fell behind gets the past-due arrivals at
                // once, each with its own intended start.
                (ms(1000), 2, Pace::Start { intended: ms(200) }),
                (ms(1000), 3, Pace::Start { intended: ms(300) }),
                (ms(1950), 19, Pace::Start { intended: ms(1900) }),
                (ms(1950), 20, Pace::Stop),
                (ms(5000), 20, Pace::Stop),
            ],
        );
    }

    #[test]
    fn pacer_ramp_and_shard_tables() {
        // 0 -> 10/s over 2 s: expected(t) = 2.5 t², so arrival k is due at sqrt(k / 2.5).
        let plan = RatePlan::from_steps(0.0, &[(Some(10.0), Duration::from_secs(2))]);
        assert!((plan.expected(2.0) - 10.0).abs() < 1e-9);
        let mut p = Pacer::new(plan.clone(), Arrivals::Constant, 1, Shard::default());
        let due = |k: f64| Duration::from_secs_f64((k / 2.5).sqrt());
        check(
            &mut p,
            &[
                (ms(0), 0, Pace::Start { intended: ms(0) }),
                (ms(0), 1, Pace::Wait(due(1.0))),
                (ms(900), 2, Pace::Start { intended: due(2.0) }),
                (ms(900), 3, Pace::Wait(due(3.0) - ms(900))),
                (ms(2000), 9, Pace::Start { intended: due(9.0) }),
                (ms(2000), 10, Pace::Stop),
            ],
        );
        // Two shards of 10/s each run 5/s, interleaved: shard 1 is due half a gap later.
        let flat = RatePlan::from_steps(10.0, &[(None, Duration::from_secs(1))]);
        let shard = |index| Shard { index, count: 2 };
        let mut s0 = Pacer::new(flat.shard(shard(0)), Arrivals::Constant, 1, shard(0));
        let mut s1 = Pacer::new(flat.shard(shard(1)), Arrivals::Constant, 1, shard(1));
        check(
            &mut s0,
            &[
                (ms(0), 0, Pace::Start { intended: ms(0) }),
                (ms(0), 1, Pace::Wait(ms(200))),
            ],
        );
        check(
            &mut s1,
            &[
                (ms(0), 0, Pace::Wait(ms(100))),
                (ms(100), 0, Pace::Start { intended: ms(100) }),
                (ms(100), 1, Pace::Wait(ms(200))),
                (ms(1000), 5, Pace::Stop),
            ],
        );
        // A hold at rate 0 has no arrivals; the plan resumes after it.
        let gap = RatePlan::from_steps(
            2.0,
            &[
                (None, Duration::from_secs(1)),
                (Some(0.0), Duration::ZERO),
                (None, Duration::from_secs(3)),
                (Some(2.0), Duration::ZERO),
                (None, Duration::from_secs(1)),
            ],
        );
        let mut g = Pacer::new(gap, Arrivals::Constant, 1, Shard::default());
        check(
            &mut g,
            &[
                (ms(600), 1, Pace::Start { intended: ms(500) }),
                (ms(600), 2, Pace::Wait(ms(3400))),
                (ms(4600), 3, Pace::Start { intended: ms(4500) }),
                (ms(4600), 4, Pace::Stop),
            ],
        );
    }

    /// Kolmogorov-Smirnov distance between `xs` and the Exp(rate) distribution.
    fn ks_exponential(xs: &mut [f64], rate: f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = 1.0 - (-rate * x).exp();
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn poisson_gaps_fit_the_exponential_distribution() {
        // 100/s for 100 s: about 10,000 arrivals.
        let plan = RatePlan::from_steps(100.0, &[(None, Duration::from_secs(100))]);
        let mut p = Pacer::new(plan.clone(), Arrivals::Poisson, 7, Shard::default());
        let mut times = Vec::new();
        while let Some(t) = p.intended(times.len() as u64) {
            times.push(t.as_secs_f64());
        }
        let n = times.len();
        // The count of a Poisson process: mean 10,000, sd 100.
        assert!((9_700..=10_300).contains(&n), "{n} arrivals");
        let mut gaps: Vec<f64> = std::iter::once(times[0])
            .chain(times.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.01).abs() < 0.0004, "mean gap {mean}");
        // KS critical value at the 1% level: 1.628 / sqrt(n).
        let d = ks_exponential(&mut gaps, 100.0);
        let critical = 1.628 / (n as f64).sqrt();
        assert!(d < critical, "KS distance {d} >= {critical}");
        // The same check must be able to fail: evenly spaced arrivals are not exponential.
        let mut even = vec![0.01; n];
        assert!(ks_exponential(&mut even, 100.0) > critical);
        // Seeded: the same seed gives the same arrivals, another seed others.
        let mut again = Pacer::new(plan.clone(), Arrivals::Poisson, 7, Shard::default());
        let mut other = Pacer::new(plan, Arrivals::Poisson, 8, Shard::default());
        let a: Vec<_> = (0..100).map(|k| again.intended(k)).collect();
        let b: Vec<_> = (0..100).map(|k| other.intended(k)).collect();
        let t: Vec<_> = times[..100]
            .iter()
            .map(|&x| Some(Duration::from_secs_f64(x)))
            .collect();
        assert_eq!(a, t);
        assert_ne!(a, b);
    }

    /// The plan printout's stage counts add up to its total, and match what
    /// the pacer starts (4.5 expected arrivals are 5 starts: at 0, 1, 2, 3, 4).
    #[test]
    fn arrival_counts_add_up_and_match_the_pacer() {
        let open = |stages: &[RateStep]| OpenModel {
            rate: RatePlan::from_steps(1.5, stages),
            arrivals: Arrivals::Constant,
            max_users: 1,
            when_full: WhenFull::Drop,
            time_unit: Duration::from_secs(1),
        };
        let s = Duration::from_secs;
        // 1.5/s for 1 s three times: 1.5 expected per stage, 4.5 in all.
        let cases: [(&[RateStep], &[u64]); 4] = [
            (&[(None, s(1)), (None, s(1)), (None, s(1))], &[2, 1, 2]),
            (&[(None, s(2))], &[3]),
            (&[(Some(10.0), s(2))], &[12]),
            (&[(None, s(2)), (Some(0.0), s(0)), (None, s(5))], &[3, 0, 0]),
        ];
        for (stages, want) in cases {
            let m = open(stages);
            assert_eq!(m.arrival_counts(), want, "{stages:?}");
            let mut pacer = Pacer::new(m.rate.clone(), Arrivals::Constant, 1, Shard::default());
            let mut started = 0;
            while pacer.intended(started).is_some() {
                started += 1;
            }
            assert_eq!(started, want.iter().sum::<u64>(), "{stages:?}");
        }
        let text = open(&[(None, s(1)), (None, s(1)), (None, s(1))]).to_string();
        assert!(text.contains(", 5 arrivals in 3s"), "{text}");
        let poisson = OpenModel {
            arrivals: Arrivals::Poisson,
            ..open(&[(None, s(3))])
        };
        assert!(
            poisson.to_string().contains("about 5 arrivals"),
            "{poisson}"
        );
    }

    #[test]
    fn capacity_steps_and_plans() {
        let cap = CapacityPlan {
            start: 4.0,
            step: 4.0,
            max: 12.0,
            step_duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            target: None,
            rate_unit: None,
        };
        let steps = cap.steps();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.index, s.load, s.start_s, s.measure_s, s.end_s))
                .collect::<Vec<_>>(),
            vec![
                (1, 4.0, 0, 2, 10),
                (2, 8.0, 10, 12, 20),
                (3, 12.0, 20, 22, 30)
            ]
        );
        assert_eq!(
            cap.closed_plan().goose_test_plan(),
            "4,0;4,10;8,0;8,10;12,0;12,10;0,0"
        );
        let r = cap.rate_plan();
        assert_eq!(r.total(), Duration::from_secs(30));
        assert_eq!(r.rate_at(15.0), 8.0);
        assert!((r.expected(30.0) - 240.0).abs() < 1e-9);
        // Float steps keep `max` itself.
        let f = CapacityPlan {
            start: 0.1,
            step: 0.1,
            max: 0.3,
            ..cap
        };
        assert_eq!(f.steps().len(), 3);
    }
}
