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
    pub users: u64,
    /// Ok runs in the second before this reading.
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
    /// Reads the figures from what the run recorded so far; `prev_ok` is
    /// the ok-run count of the previous reading, a second ago.
    pub fn read(
        rec: &Recorder,
        last: Option<&IntervalData>,
        plan: &LoadPlan,
        elapsed: Duration,
        prev_ok: u64,
    ) -> Figures {
        let ttfe_p95_us = last.and_then(|i| i.histograms.get(names::TTFE).map(|h| h.p95_us));
        let ok = rec.counter(names::RUNS_OK);
        let mut f = Figures {
            elapsed_s: elapsed.as_secs(),
            total_s: plan.total().as_secs(),
            users: plan.users_at(elapsed),
            runs_per_s: ok.saturating_sub(prev_ok),
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
            "{}s/{}s  users {}  runs/s {}  ttfe p95 {}  1011s {}  failed {}",
            self.elapsed_s,
            self.total_s,
            self.users,
            self.runs_per_s,
            self.ttfe_p95,
            self.closes_1011,
            self.failed
        )
    }
}

/// Reads the figures from the collector.
pub async fn read(obs: &ObsSender, plan: &LoadPlan, t0: Instant, prev_ok: u64) -> Figures {
    let rec = obs.peek().await;
    let last = obs.last_interval().await;
    Figures::read(&rec, last.as_ref(), plan, t0.elapsed(), prev_ok)
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
        let f = Figures::read(&rec, Some(&last), &plan, Duration::from_millis(12_400), 100);
        assert_eq!(
            f.line,
            "12s/20s  users 5  runs/s 30  ttfe p95 27ms  1011s 1  failed 2"
        );
        assert_eq!(f.runs_per_s, 30);
        assert_eq!(f.ttfe_p95_us, Some(last.histograms[names::TTFE].p95_us));
        let none = Figures::read(&Recorder::default(), None, &plan, Duration::ZERO, 0);
        assert_eq!(none.ttfe_p95, "-");
    }
}
