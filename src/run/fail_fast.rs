//! Fail fast: a run whose first connects all fail measures nothing, so it
//! stops at once (exit 3) instead of waiting out its plan. The rule: no
//! socket became ready, and either the first min(20, users) connect
//! attempts failed, or every attempt made in the 5 s after the first one
//! failed. A failure is what the target (or this machine) answered: a
//! refused or failed connect, an upgrade refused with an HTTP status, a
//! close or a ready timeout before ready, a refused ticket, a failed login.
//! The reasons
//! are the first distinct ones the recorder keeps (`failures`).
//!
//! Imports: `engine` (the stop handle), `metrics`, `names`.

use std::time::{Duration, Instant};

use crate::engine;
use crate::metrics::{ObsSender, Recorder};
use crate::names;

/// At most this many failed first attempts before the run stops.
pub(super) const FIRST_ATTEMPTS: u64 = 20;
/// Every attempt in this window after the first failed: the run stops.
pub(super) const WINDOW: Duration = Duration::from_secs(5);
/// How often the counters are read, until a socket is ready.
const TICK: Duration = Duration::from_millis(100);

/// Connect attempts that ended in a failure.
pub(super) fn connect_failures(rec: &Recorder) -> u64 {
    [
        "connections.failed.",
        "connections.rejected.",
        "closes_by_phase.before_ready.",
        "tickets.rejected.",
    ]
    .iter()
    .map(|p| rec.counter_prefix_sum(p))
    .sum::<u64>()
        + rec.counter(names::CONN_READY_TIMEOUT)
        + rec.counter(names::TICKETS_FAILED)
        // A login the token source refused (its status, a redirect not
        // followed or refused): the attempt never reached the target.
        + rec.counter_prefix_sum(names::TOKENS_LOGIN_FAILED)
}

/// Why the run must stop now, if it must: `since_first` is the time since
/// the first attempt was seen.
pub(super) fn verdict(rec: &Recorder, users: u64, since_first: Duration) -> Option<String> {
    if rec.counter(names::CONN_READY) > 0 {
        return None;
    }
    let attempted = rec.counter(names::CONN_ATTEMPTED);
    let failed = connect_failures(rec);
    let first = users.clamp(1, FIRST_ATTEMPTS);
    let why = if failed >= first {
        format!("the first {failed} connect attempts all failed")
    } else if since_first >= WINDOW && failed > 0 && failed >= attempted {
        format!(
            "every connect attempt in the {} s after the first failed ({failed} of {attempted})",
            since_first.as_secs()
        )
    } else {
        return None;
    };
    let reasons = rec
        .failures
        .iter()
        .map(|f| format!("{} x{} ({})", f.reason, f.count, f.stage))
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!(
        "aborted by fail fast: {why} and no connection became ready, so the rest of the plan would measure nothing{}{reasons}",
        if reasons.is_empty() { "" } else { ". Why: " }
    ))
}

/// Watches the counters until a socket is ready; stops the users and says
/// why when the rule above trips.
pub(super) async fn watch(obs: ObsSender, users: u64, stop: engine::StopHandle) -> Option<String> {
    let mut tick = tokio::time::interval(TICK);
    let mut first_seen: Option<Instant> = None;
    loop {
        tick.tick().await;
        let rec = obs.peek().await;
        if rec.counter(names::CONN_READY) > 0 {
            return None;
        }
        if rec.counter(names::CONN_ATTEMPTED) == 0 {
            continue;
        }
        let since = first_seen.get_or_insert_with(Instant::now).elapsed();
        if let Some(why) = verdict(&rec, users, since) {
            engine::stop_early(&stop, &why);
            return Some(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempts_or_the_first_seconds_all_failing_stop_the_run() {
        let mut rec = Recorder::default();
        rec.count(names::CONN_ATTEMPTED, 19);
        rec.count("connections.failed.refused", 19);
        let s = Duration::from_secs;
        assert_eq!(verdict(&rec, 400, s(1)), None, "19 of the first 20");
        assert!(verdict(&rec, 19, s(1)).is_some(), "all of 19 users");
        rec.count(names::CONN_ATTEMPTED, 1);
        rec.count("connections.rejected.403", 1);
        let why = verdict(&rec, 400, s(1)).unwrap();
        assert!(
            why.contains("the first 20 connect attempts all failed"),
            "{why}"
        );
        // One ready socket: the target works, nothing stops.
        rec.count(names::CONN_READY, 1);
        assert_eq!(verdict(&rec, 400, s(9)), None);

        // A slow ramp: 3 attempts in 5 s, all failed (a close before ready
        // and a ready timeout count); one still in flight waits.
        let mut slow = Recorder::default();
        slow.count(names::CONN_ATTEMPTED, 3);
        slow.count("closes_by_phase.before_ready.1008", 2);
        assert_eq!(verdict(&slow, 400, s(6)), None, "one attempt in flight");
        slow.count(names::CONN_READY_TIMEOUT, 1);
        assert_eq!(verdict(&slow, 400, s(4)), None, "not 5 s yet");
        let why = verdict(&slow, 400, s(5)).unwrap();
        assert!(why.contains("(3 of 3)"), "{why}");
        // Failures on the token side (an expired file token) are not the
        // target's answer: they never trip it.
        let mut token = Recorder::default();
        token.count(names::CONN_ATTEMPTED, 30);
        token.count(names::TOKENS_EXPIRED, 30);
        assert_eq!(verdict(&token, 400, s(30)), None);
    }
}
