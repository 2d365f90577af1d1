//! The closed model's plan: users ramp through stages (`LoadPlan`, built
//! from the scenario's `ramp` as `RampStep`s). Pure; imports only
//! `shard.rs`.

use std::fmt;
use std::time::Duration;

use super::Shard;

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
