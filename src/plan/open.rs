//! The open model: arrival-rate plans (`RatePlan`), the pure pacer that
//! turns them into arrival times (`Pacer`, `Pace`), and the model itself
//! (`OpenModel`, `Arrivals`, `WhenFull`, `show_rate`). Imports only
//! `shard.rs`.

use std::fmt;
use std::time::Duration;

use super::Shard;

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
    /// The share of intended arrivals that may be dropped or start late
    /// before the run is INVALID (`workload.start_tolerance`).
    pub start_tolerance: f64,
}

/// `workload.start_tolerance` unless written: 1% of the intended arrivals.
pub const DEFAULT_START_TOLERANCE: f64 = 0.01;

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
