//! Run validity, separate from the SLOs: whether the numbers describe the
//! planned test (DESIGN.md, exit 4 INVALID). A cause is something the
//! *generator* did not do: connects that failed on this machine (EMFILE,
//! ENFILE, EADDRNOTAVAIL, EADDRINUSE), connections the embedded reference
//! server could not accept (it shares this machine's fds), open-model
//! arrivals dropped or started late beyond `workload.start_tolerance`, a
//! capacity step that reached the generator's limit. The target's own
//! misbehaviour (refusals, ready timeouts, 1011s) is never a cause: it is
//! counted and the SLOs judge it.
//!
//! [`causes`] lists them from the recorded data and the run's facts; the
//! judge (`judge.rs`) folds them into the verdict with [`fold`]: an aborted
//! or partial run keeps its verdict, otherwise any cause makes the run
//! INVALID, thresholds judged and shown all the same.
//!
//! Imports: `recorder`, `names`, `outcome`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::recorder::Recorder;
use crate::names;
use crate::outcome::Verdict;

/// The share of the open model's intended arrivals that may be dropped or
/// start late before the run is INVALID, unless `workload.start_tolerance`
/// says otherwise.
pub use crate::plan::DEFAULT_START_TOLERANCE;

/// Cause of connects that failed on this machine, by errno (`local_error.emfile`).
pub const LOCAL_ERROR: &str = "local_error";
/// Cause of connections the embedded server could not accept (`server_accept_error.emfile`).
pub const SERVER_ACCEPT_ERROR: &str = "server_accept_error";
/// Cause of open-model arrivals dropped or late beyond the tolerance.
pub const STARTS_NOT_ON_TIME: &str = "starts_not_on_time";
/// Cause of a capacity search that reached the generator's limit.
pub const GENERATOR_LIMIT: &str = "generator_limit";
/// Cause of a generator too late reading its frames (`[generator]` delay rule).
pub const GENERATOR_DELAY: &str = "generator_delay";

/// One reason the run is INVALID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidityCause {
    /// A short name: `local_error.emfile`, `starts_not_on_time`, ...
    pub cause: String,
    /// How many times it happened.
    pub count: u64,
    /// What it means and what to do, for people.
    pub detail: String,
}

/// What the causes are computed from besides the recorded counters.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The open model's tolerance for arrivals not started on time; `None`:
    /// the closed model, or a capacity search (its steps judge their own
    /// arrivals).
    pub start_tolerance: Option<f64>,
    /// Accept errors of the embedded reference server, by errno name.
    pub accept_errors: BTreeMap<String, u64>,
    /// `[generator]`'s rule on chatload's own delay (`None`: off).
    pub max_delay: Option<crate::scenario::generator::DelayLimit>,
}

/// Every validity cause of a run's data.
pub fn causes(rec: &Recorder, facts: &Facts) -> Vec<ValidityCause> {
    let mut out = local_errors(rec);
    for (errno, n) in facts.accept_errors.iter().filter(|(_, n)| **n > 0) {
        out.push(ValidityCause {
            cause: format!("{SERVER_ACCEPT_ERROR}.{errno}"),
            count: *n,
            detail: format!(
                "the embedded reference server's accept failed {n} times ({}, retried after a pause): it shares this process's file descriptors, so users waited or never reached it; raise `ulimit -n`, run fewer users, or run the server apart (`chatload serve`, then --target)",
                errno.to_uppercase()
            ),
        });
    }
    if let Some(tol) = facts.start_tolerance {
        out.extend(starts_not_on_time(rec, tol));
    }
    out.extend(facts.max_delay.and_then(|l| generator_delay(rec, l)));
    out
}

/// Late frames a run needs before its generator is judged late: p99 of a
/// short run is its single worst stall (a 1-second run of 52 frames read
/// one frame 28 ms late on a busy machine and was otherwise on time).
pub const LATE_FRAMES_MIN: u64 = 10;

/// What the delay rule judges (µs and counts), when both metrics were recorded.
struct DelayFigures {
    p99: u64,
    ttfe_p50: u64,
    frames: u64,
    /// Frames read later than the rule's bound.
    late: u64,
}

fn delay_figures(
    rec: &Recorder,
    limit: crate::scenario::generator::DelayLimit,
) -> Option<DelayFigures> {
    let h = |m: &str| rec.histograms.get(m).filter(|h| !h.is_empty());
    let (delay, ttfe) = (h(names::GENERATOR_DELAY)?, h(names::TTFE)?);
    let ttfe_p50 = ttfe.value_at_quantile(0.5);
    let bound = (limit.share * ttfe_p50 as f64).max(limit.floor.as_micros() as f64) as u64;
    Some(DelayFigures {
        p99: delay.value_at_quantile(0.99),
        ttfe_p50,
        frames: delay.len(),
        late: delay.len() - delay.count_between(0, bound),
    })
}

/// Whether chatload's own delay breaks `limit`: `generator_delay` p99
/// above `limit.share` of `ttfe` p50 and above `limit.floor`, with at least
/// [`LATE_FRAMES_MIN`] frames that late.
pub fn delay_broken(rec: &Recorder, limit: crate::scenario::generator::DelayLimit) -> bool {
    delay_figures(rec, limit).is_some_and(|f| {
        f.p99 as f64 > limit.share * f.ttfe_p50 as f64
            && u128::from(f.p99) > limit.floor.as_micros()
            && f.late >= LATE_FRAMES_MIN
    })
}

fn generator_delay(
    rec: &Recorder,
    limit: crate::scenario::generator::DelayLimit,
) -> Option<ValidityCause> {
    let f = delay_figures(rec, limit)?;
    if !delay_broken(rec, limit) {
        return None;
    }
    let us = |v: u64| crate::units::format_us(v as f64);
    Some(ValidityCause {
        cause: GENERATOR_DELAY.into(),
        count: f.late,
        detail: format!(
            "chatload read its frames late: generator_delay p99 {} is above {} of ttfe p50 ({}) and above {} ({} of {} frames that late). Latencies end at the kernel's receive time, but a generator this late also sends late and paces late, so the target was not offered the planned load on time; give it more CPU (fewer users per process, --shard, a machine of its own), or relax [generator] max_delay_share / max_delay_floor",
            us(f.p99),
            crate::units::format_value(limit.share, "fraction"),
            us(f.ttfe_p50),
            us(limit.floor.as_micros() as u64),
            f.late,
            f.frames,
        ),
    })
}

/// Connects that failed on this machine, one cause per errno.
pub fn local_errors(rec: &Recorder) -> Vec<ValidityCause> {
    names::LOCAL_ERRNOS
        .iter()
        .filter_map(|errno| {
            let n = rec.counter(&names::conn_local_error(errno));
            (n > 0).then(|| ValidityCause {
                cause: format!("{LOCAL_ERROR}.{errno}"),
                count: n,
                detail: local_detail(errno, n),
            })
        })
        .collect()
}

fn local_detail(errno: &str, n: u64) -> String {
    let what = match errno {
        "emfile" => "EMFILE, too many open files: this process reached its fd limit; raise `ulimit -n`, run fewer users per process, or split the load with --shards",
        "enfile" => "ENFILE, the system's file table is full; raise fs.file-max or spread the load over more machines",
        "eaddrnotavail" => "EADDRNOTAVAIL, no free local port to connect from; widen net.ipv4.ip_local_port_range or spread the load over more machines",
        "eaddrinuse" => "EADDRINUSE, the local port range is used up; widen net.ipv4.ip_local_port_range or spread the load over more machines",
        other => other,
    };
    format!("{n} connects failed on this machine ({what}): the target was offered fewer sockets than the plan")
}

fn starts_not_on_time(rec: &Recorder, tolerance: f64) -> Option<ValidityCause> {
    let intended = rec.counter(names::STARTS_INTENDED);
    let dropped = rec.counter(names::STARTS_DROPPED);
    let late = rec.counter(names::STARTS_LATE);
    let missed = dropped + late;
    if intended == 0 || missed as f64 <= tolerance * intended as f64 {
        return None;
    }
    Some(ValidityCause {
        cause: STARTS_NOT_ON_TIME.into(),
        count: missed,
        detail: format!(
            "{dropped} of {intended} arrivals dropped and {late} started late ({:.1}%, above the {} tolerance of workload.start_tolerance): the session pool (workload.max_users) was full, so the target was offered less than the plan; raise max_users",
            missed as f64 * 100.0 / intended as f64,
            crate::units::format_value(tolerance, "fraction")
        ),
    })
}

/// The verdict once validity is weighed: a run that finished (PASS or FAIL)
/// with any cause is INVALID; a run cut short keeps its verdict.
pub fn fold(verdict: Verdict, causes: &[ValidityCause]) -> Verdict {
    if causes.is_empty() {
        return verdict;
    }
    match verdict {
        Verdict::Pass | Verdict::Fail => Verdict::Invalid,
        Verdict::Invalid | Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => verdict,
    }
}

/// The causes of several shards, summed by cause.
pub fn combine<'a>(lists: impl IntoIterator<Item = &'a [ValidityCause]>) -> Vec<ValidityCause> {
    let mut out: Vec<ValidityCause> = Vec::new();
    for c in lists.into_iter().flatten() {
        match out.iter_mut().find(|o| o.cause == c.cause) {
            Some(o) => o.count += c.count,
            None => out.push(c.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_rule_needs_both_the_share_and_the_floor() {
        use crate::scenario::generator::Generator;
        let limit = Generator::default().max_delay.unwrap(); // 25% and 25 ms
        let rec = |delay_us: u64, ttfe_us: u64| {
            let mut r = Recorder::default();
            for _ in 0..100 {
                r.record(names::GENERATOR_DELAY, delay_us);
                r.record(names::TTFE, ttfe_us);
            }
            r
        };
        let facts = Facts {
            max_delay: Some(limit),
            ..Facts::default()
        };
        assert!(
            causes(&rec(30_000, 200_000), &facts).is_empty(),
            "under 25%"
        );
        assert!(
            causes(&rec(24_000, 40_000), &facts).is_empty(),
            "under 25 ms"
        );
        let c = causes(&rec(30_000, 100_000), &facts);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].cause, GENERATOR_DELAY);
        assert_eq!(c[0].count, 100, "the frames that late");
        // A short run's single stall is not a late generator.
        let mut one_stall = rec(1_000, 100_000);
        for _ in 0..5 {
            one_stall.record(names::GENERATOR_DELAY, 40_000);
        }
        let p99 = one_stall.histograms[names::GENERATOR_DELAY].value_at_quantile(0.99);
        assert!(p99 > 25_000, "{p99}");
        assert!(
            causes(&one_stall, &facts).is_empty(),
            "5 late frames of 105"
        );
        assert!(c[0].detail.contains("p99 30"), "{}", c[0].detail);
        assert!(
            causes(&rec(30_000, 100_000), &Facts::default()).is_empty(),
            "off"
        );
        assert!(
            causes(&Recorder::default(), &facts).is_empty(),
            "nothing recorded"
        );
    }

    #[test]
    fn local_errnos_and_server_accept_errors_are_causes() {
        let mut rec = Recorder::default();
        rec.count("connections.local_error.emfile", 7);
        rec.count("connections.failed.refused", 3);
        rec.count("connections.ready_timeout", 2);
        rec.count("closes.1011", 9);
        let mut facts = Facts::default();
        facts.accept_errors.insert("emfile".into(), 4);
        let c = causes(&rec, &facts);
        let names: Vec<(&str, u64)> = c.iter().map(|c| (c.cause.as_str(), c.count)).collect();
        assert_eq!(
            names,
            [("local_error.emfile", 7), ("server_accept_error.emfile", 4)],
            "refusals, ready timeouts and 1011s are the target's: never causes"
        );
        assert!(c[0].detail.contains("ulimit -n"), "{}", c[0].detail);
        for e in crate::names::LOCAL_ERRNOS {
            let name = crate::names::conn_local_error(e);
            let known = crate::names::check_counter(&name, &crate::names::Vocabulary::unknown());
            assert!(known.is_ok(), "{name}");
        }
    }

    #[test]
    fn arrivals_beyond_the_tolerance_are_a_cause() {
        let mut rec = Recorder::default();
        rec.count("starts.intended", 1000);
        rec.count("starts.dropped", 6);
        rec.count("starts.late", 4);
        let tol = |t| Facts {
            start_tolerance: t,
            ..Facts::default()
        };
        assert!(
            causes(&rec, &tol(Some(0.01))).is_empty(),
            "10 of 1000 is 1%"
        );
        rec.count("starts.late", 1);
        let c = causes(&rec, &tol(Some(0.01)));
        assert_eq!((c[0].cause.as_str(), c[0].count), (STARTS_NOT_ON_TIME, 11));
        assert!(c[0]
            .detail
            .contains("6 of 1000 arrivals dropped and 5 started late"));
        assert!(causes(&rec, &tol(Some(0.02))).is_empty());
        assert!(causes(&rec, &tol(None)).is_empty(), "closed model");
    }

    #[test]
    fn an_invalid_run_stays_aborted_when_aborted_and_is_invalid_when_it_failed() {
        let c = vec![ValidityCause {
            cause: "local_error.emfile".into(),
            count: 1,
            detail: String::new(),
        }];
        let folded: Vec<Verdict> = Verdict::ALL.iter().map(|v| fold(*v, &c)).collect();
        assert_eq!(
            folded,
            [
                Verdict::Invalid,
                Verdict::Invalid,
                Verdict::Invalid,
                Verdict::Aborted,
                Verdict::Incomplete,
                Verdict::Partial
            ]
        );
        for v in Verdict::ALL {
            assert_eq!(fold(v, &[]), v);
        }
        let two = combine([c.as_slice(), c.as_slice()]);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].count, 2);
    }
}
