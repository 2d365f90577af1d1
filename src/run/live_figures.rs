//! The figures of the live view, read once a second from the running
//! collector: elapsed and planned seconds, users, runs per second (ok runs
//! in the last second), the last interval's ttfe p95, 1011 closes and
//! failed runs: the progress line's figures, and [`Figures::line`] is that
//! line, so the live page (`live_page.rs`) shows the same numbers.
//!
//! Imports: `metrics`, `plan`, `names`, `units`.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::snapshot::IntervalData;
use crate::metrics::{ObsSender, Recorder};
use crate::names;
use crate::plan::LoadPlan;

/// One reading of the live figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub elapsed_s: u64,
    pub total_s: u64,
    /// Users the plan wants now.
    pub users: u64,
    /// Users with a ready socket now (ready sockets not yet closed).
    pub connected: u64,
    /// Ok runs per second since the previous reading (over the real time
    /// between the two, rounded).
    pub runs_per_s: u64,
    pub runs_ok: u64,
    /// The last closed interval's ttfe p95 (µs), when one has closed.
    pub ttfe_p95_us: Option<u64>,
    pub ttfe_p95: String,
    pub closes_1011: u64,
    pub failed: u64,
    /// The progress line these figures make.
    pub line: String,
}

impl Figures {
    /// Reads the figures from what the run recorded so far; `prev` is the
    /// ok-run count and the elapsed time of the previous reading.
    pub fn read(
        rec: &Recorder,
        last: Option<&IntervalData>,
        plan: &LoadPlan,
        elapsed: Duration,
        prev: (u64, Duration),
    ) -> Figures {
        let ttfe_p95_us = last.and_then(|i| i.histograms.get(names::TTFE).map(|h| h.p95_us));
        let ok = rec.counter(names::RUNS_OK);
        let mut f = Figures {
            elapsed_s: elapsed.as_secs(),
            total_s: plan.total().as_secs(),
            users: plan.users_at(elapsed),
            connected: connected(rec),
            runs_per_s: per_s(ok.saturating_sub(prev.0), elapsed.saturating_sub(prev.1)).round()
                as u64,
            runs_ok: ok,
            ttfe_p95_us,
            ttfe_p95: ttfe_p95_us
                .map_or_else(|| "-".to_string(), |v| crate::units::format_us(v as f64)),
            closes_1011: rec.counter("closes.1011"),
            failed: rec.counter(names::RUNS_FAILED),
            line: String::new(),
        };
        f.line = f.line();
        f
    }

    /// The progress line (closed model).
    pub fn line(&self) -> String {
        format!(
            "{}s/{}s  users {}/{}  runs/s {}  ttfe p95 {}  1011s {}  failed {}",
            self.elapsed_s,
            self.total_s,
            self.connected,
            self.users,
            self.runs_per_s,
            self.ttfe_p95,
            self.closes_1011,
            self.failed
        )
    }
}

/// Reads the figures from the collector; `prev`: see [`Figures::read`].
pub async fn read(obs: &ObsSender, plan: &LoadPlan, t0: Instant, prev: (u64, Duration)) -> Figures {
    let rec = obs.peek().await;
    let last = obs.last_interval().await;
    Figures::read(&rec, last.as_ref(), plan, t0.elapsed(), prev)
}

/// Users running now, as far as the server sees them: ready sockets not yet
/// closed (`chatload_sockets_open`).
pub fn connected(rec: &Recorder) -> u64 {
    rec.counter(names::CONN_READY)
        .saturating_sub(rec.counter(names::CONN_CLOSED))
}

/// `n` per second over `over` of real time (0 over no time).
pub fn per_s(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_make_the_progress_line() {
        let mut rec = Recorder::default();
        rec.count(names::RUNS_OK, 130);
        rec.count(names::RUNS_FAILED, 2);
        rec.count("closes.1011", 1);
        let mut last = Recorder::default();
        last.record(names::TTFE, 27_000);
        let last = IntervalData::from_interval(&crate::metrics::collector::Interval {
            start_s: 10.0,
            length_s: 1.0,
            rec: last,
        });
        let plan = LoadPlan::from_ramp(
            &[
                crate::plan::RampStep::To {
                    to: 5,
                    over: Duration::ZERO,
                },
                crate::plan::RampStep::Hold(Duration::from_secs(20)),
            ],
            None,
        );
        rec.count(names::CONN_READY, 6);
        rec.count(names::CONN_CLOSED, 2);
        let elapsed = Duration::from_millis(12_400);
        let f = Figures::read(
            &rec,
            Some(&last),
            &plan,
            elapsed,
            (100, elapsed - Duration::from_secs(1)),
        );
        assert_eq!(
            f.line,
            "12s/20s  users 4/5  runs/s 30  ttfe p95 27ms  1011s 1  failed 2"
        );
        assert_eq!(f.runs_per_s, 30);
        // A reading soon after the previous one (a late tick caught up)
        // divides by the real time between them, not by a second.
        let soon = Figures::read(
            &rec,
            Some(&last),
            &plan,
            elapsed,
            (100, elapsed - Duration::from_secs(3)),
        );
        assert_eq!(soon.runs_per_s, 10);
        assert_eq!(f.ttfe_p95_us, Some(last.histograms[names::TTFE].p95_us));
        let none = Figures::read(
            &Recorder::default(),
            None,
            &plan,
            Duration::ZERO,
            (0, Duration::ZERO),
        );
        assert_eq!(none.ttfe_p95, "-");
    }
}
