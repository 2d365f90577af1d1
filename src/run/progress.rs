//! Progress for a run whose stderr is not a terminal (CI, `2> file`, a
//! container's log): one plain line per interval (at most one per
//! `[output] progress_every`, to thin a 12-hour soak), so a long run is
//! never silent and a CI system never kills it for lack of output. On a
//! terminal the live spinner of `live.rs` is shown instead.
//!
//! A line: `progress 35s/60s users 20 runs/s 12.4 ttfe_p95 80.2ms 1011s 0 failed 0`:
//! elapsed/planned seconds, the users the plan wants now, finished runs per
//! second since the previous line, ttfe p95 of the last closed interval
//! (`-` before one), 1011 closes and failed runs so far.
//!
//! Imports: `metrics`, `plan`, `names`, `units`.

use std::time::{Duration, Instant};

use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;

/// Prints a progress line every `every` until aborted.
pub(super) async fn plain_progress(obs: ObsSender, plan: LoadPlan, t0: Instant, every: Duration) {
    // Ticks stay on the grid of `every` (a late one is caught up, not
    // shifted), so a loaded machine still prints one line per interval.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last = (Duration::ZERO, 0u64);
    loop {
        tick.tick().await;
        let rec = obs.peek().await;
        let p95 = obs
            .last_interval()
            .await
            .and_then(|i| i.histograms.get(names::TTFE).map(|h| h.p95_us));
        let elapsed = t0.elapsed();
        let done = rec.counter(names::RUNS_OK) + rec.counter(names::RUNS_FAILED);
        say_err!(
            "{}",
            line(Line {
                elapsed,
                total: plan.total(),
                users: plan.users_at(elapsed),
                runs_per_s: rate(done - last.1, elapsed.saturating_sub(last.0)),
                ttfe_p95_us: p95,
                closes_1011: rec.counter("closes.1011"),
                failed: rec.counter(names::RUNS_FAILED),
            })
        );
        last = (elapsed, done);
    }
}

/// What one progress line shows.
struct Line {
    elapsed: Duration,
    total: Duration,
    users: u64,
    runs_per_s: f64,
    ttfe_p95_us: Option<u64>,
    closes_1011: u64,
    failed: u64,
}

fn rate(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

fn line(l: Line) -> String {
    let ttfe = l
        .ttfe_p95_us
        .map_or_else(|| "-".to_string(), |v| crate::units::format_us(v as f64));
    format!(
        "progress {}s/{}s users {} runs/s {:.1} ttfe_p95 {ttfe} 1011s {} failed {}",
        l.elapsed.as_secs(),
        l.total.as_secs(),
        l.users,
        l.runs_per_s,
        l.closes_1011,
        l.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_every_figure() {
        let s = line(Line {
            elapsed: Duration::from_secs(35),
            total: Duration::from_secs(60),
            users: 20,
            runs_per_s: rate(62, Duration::from_secs(5)),
            ttfe_p95_us: Some(80_200),
            closes_1011: 1,
            failed: 2,
        });
        assert_eq!(
            s,
            format!(
                "progress 35s/60s users 20 runs/s 12.4 ttfe_p95 {} 1011s 1 failed 2",
                crate::units::format_us(80_200.0)
            )
        );
        assert!(line(Line {
            elapsed: Duration::ZERO,
            total: Duration::ZERO,
            users: 0,
            runs_per_s: rate(5, Duration::ZERO),
            ttfe_p95_us: None,
            closes_1011: 0,
            failed: 0
        })
        .contains("runs/s 0.0 ttfe_p95 - "));
    }
}
