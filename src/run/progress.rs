//! Progress for a run whose stderr is not a terminal (CI, `2> file`, a
//! container's log): one plain line per interval (at most one per
//! `[output] progress_every`, to thin a 12-hour soak), so a long run is
//! never silent and a CI system never kills it for lack of output. On a
//! terminal the live spinner of `live.rs` is shown instead.
//!
//! A line: `progress 35s/60s users 18/20 runs/s 12.4 ttfe_p95 80.2ms gen_delay_p99 41µs 1011s 0 failed 0`:
//! elapsed/planned seconds, users with a ready socket now / the users the
//! plan wants now, finished runs per second over the real time since the
//! previous line, ttfe p95 and chatload's own `generator_delay` p99 of the
//! last closed interval (`-` before one, or without kernel receive stamps),
//! 1011 closes and failed runs so far.
//!
//! Imports: `metrics`, `plan`, `names`, `units`.

use std::time::{Duration, Instant};

use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;

/// Prints a progress line every `every` until aborted.
pub(super) async fn plain_progress(obs: ObsSender, plan: LoadPlan, t0: Instant, every: Duration) {
    let mut tick = ticker(every);
    let mut last = (Duration::ZERO, 0u64);
    loop {
        tick.tick().await;
        let rec = obs.peek().await;
        let last_interval = obs.last_interval().await;
        let of = |m: &str| last_interval.as_ref().and_then(|i| i.histograms.get(m));
        let p95 = of(names::TTFE).map(|h| h.p95_us);
        let delay = of(names::GENERATOR_DELAY).map(|h| h.p99_us);
        let elapsed = t0.elapsed();
        let done = rec.counter(names::RUNS_OK) + rec.counter(names::RUNS_FAILED);
        say_err!(
            "{}",
            line(Line {
                elapsed,
                total: plan.total(),
                connected: super::live_figures::connected(&rec),
                users: plan.users_at(elapsed),
                runs_per_s: rate(done - last.1, elapsed.saturating_sub(last.0)),
                ttfe_p95_us: p95,
                delay_p99_us: delay,
                closes_1011: rec.counter("closes.1011"),
                failed: rec.counter(names::RUNS_FAILED),
            })
        );
        last = (elapsed, done);
    }
}

/// The progress line's clock: the first tick after `every`, then every
/// `every` after the previous one. A late tick (a loaded machine) delays
/// the next rather than being caught up in a burst, so no line's rate is
/// taken over the few microseconds between two catch-up ticks.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// What one progress line shows.
struct Line {
    elapsed: Duration,
    total: Duration,
    /// Users with a ready socket now.
    connected: u64,
    /// Users the plan wants now.
    users: u64,
    runs_per_s: f64,
    ttfe_p95_us: Option<u64>,
    delay_p99_us: Option<u64>,
    closes_1011: u64,
    failed: u64,
}

fn rate(n: u64, over: Duration) -> f64 {
    super::live_figures::per_s(n, over)
}

fn line(l: Line) -> String {
    let us =
        |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| crate::units::format_us(v as f64));
    let (ttfe, delay) = (us(l.ttfe_p95_us), us(l.delay_p99_us));
    format!(
        "progress {}s/{}s users {}/{} runs/s {:.1} ttfe_p95 {ttfe} gen_delay_p99 {delay} 1011s {} failed {}",
        l.elapsed.as_secs(),
        l.total.as_secs(),
        l.connected,
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
            connected: 18,
            users: 20,
            runs_per_s: rate(62, Duration::from_secs(5)),
            ttfe_p95_us: Some(80_200),
            delay_p99_us: Some(41),
            closes_1011: 1,
            failed: 2,
        });
        assert_eq!(
            s,
            format!(
                "progress 35s/60s users 18/20 runs/s 12.4 ttfe_p95 {} gen_delay_p99 {} 1011s 1 failed 2",
                crate::units::format_us(80_200.0),
                crate::units::format_us(41.0)
            )
        );
        assert!(line(Line {
            elapsed: Duration::ZERO,
            total: Duration::ZERO,
            connected: 0,
            users: 0,
            runs_per_s: rate(5, Duration::ZERO),
            ttfe_p95_us: None,
            delay_p99_us: None,
            closes_1011: 0,
            failed: 0
        })
        .contains("runs/s 0.0 ttfe_p95 - gen_delay_p99 - "));
    }

    /// A tick that comes late (the runtime stalled for 3.5 periods) is
    /// followed by the next a whole period later, not by a burst of
    /// catch-up ticks microseconds apart.
    #[tokio::test(start_paused = true)]
    async fn a_late_tick_is_not_caught_up_in_a_burst() {
        let every = Duration::from_secs(5);
        let mut tick = ticker(every);
        tick.tick().await;
        // A stall: the loop is busy (the clock is tokio's paused one).
        tokio::time::advance(every * 7 / 2).await;
        tick.tick().await;
        let late = tokio::time::Instant::now();
        tick.tick().await;
        assert!(
            tokio::time::Instant::now() - late >= every,
            "the tick after a late one came {:?} later",
            tokio::time::Instant::now() - late
        );
    }
}
