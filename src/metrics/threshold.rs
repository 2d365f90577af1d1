//! Thresholds judged on a run's recorded data: a whole run, a run's drift
//! windows, or the running data of an `abort_on_fail` rule. The rules'
//! grammar and parser are `scenario/thresholds.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Recorder;
use crate::names;
pub use crate::scenario::thresholds::{samples_needed, DriftSpec, Op, Stat, Subject, Threshold};
use crate::units::{format_us, format_value};

/// A statistic of a recorded latency metric, `None` without samples.
fn stat_of(rec: &Recorder, metric: &str, stat: Stat) -> Option<f64> {
    rec.histograms
        .get(metric)
        .filter(|h| !h.is_empty())
        .map(|h| match stat {
            Stat::Percentile(q) => h.value_at_quantile(q / 100.0) as f64,
            Stat::Mean => h.mean(),
            Stat::Max => h.max() as f64,
            Stat::Min => h.min() as f64,
        })
}

/// Index ranges of the first and last windows among the steady intervals.
fn window_ranges(
    intervals: &[super::snapshot::IntervalData],
    spec: DriftSpec,
) -> Option<(Vec<usize>, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let steady: Vec<usize> = (0..intervals.len())
        .filter(|&i| intervals[i].start_s >= spec.warmup.as_secs_f64())
        .collect();
    if steady.len() < 2 {
        return None;
    }
    let k = ((steady.len() as f64 * spec.window).ceil() as usize).clamp(1, steady.len() / 2);
    let n = steady.len();
    Some((steady, 0..k, n - k..n))
}

/// The first and last windows of the steady phase, merged.
pub fn drift_windows(
    intervals: &[super::snapshot::IntervalData],
    spec: DriftSpec,
) -> Option<(Recorder, Recorder)> {
    let (steady, first, last) = window_ranges(intervals, spec)?;
    let merge = |r: std::ops::Range<usize>| {
        let mut rec = Recorder::default();
        for i in &steady[r] {
            rec.merge(&intervals[*i].to_recorder());
        }
        rec
    };
    Some((merge(first), merge(last)))
}

/// The time spans (seconds since the start) of the two drift windows, for charts.
pub fn drift_spans(
    intervals: &[super::snapshot::IntervalData],
    spec: DriftSpec,
) -> Option<[(f64, f64); 2]> {
    let (steady, first, last) = window_ranges(intervals, spec)?;
    let span = |r: std::ops::Range<usize>| {
        let (a, b) = (&intervals[steady[r.start]], &intervals[steady[r.end - 1]]);
        (a.start_s, b.start_s + b.length_s)
    };
    Some([span(first), span(last)])
}

/// Judges every rule: drift rules on the intervals, the others on the whole run.
pub fn judge_all(
    rules: &[Threshold],
    rec: &Recorder,
    intervals: &[super::snapshot::IntervalData],
) -> Vec<RuleResult> {
    rules.iter().map(|t| t.judge_run(rec, intervals)).collect()
}

/// The judgement of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub threshold: String,
    pub passed: bool,
    /// Measured value in the rule's unit (µs, fraction or count); `None` when there was no data.
    pub observed: Option<f64>,
    pub limit: f64,
    /// Human-readable measured value, e.g. `1.84s` or `0.12%`.
    pub observed_text: String,
    pub limit_text: String,
    /// `us`, `fraction`, `per_1k_runs` or `count`.
    pub unit: String,
    /// One of the default SLOs (not written in the scenario); reports mark it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

impl Threshold {
    /// Judges the rule on a run: drift rules on its intervals, others on the whole.
    pub fn judge_run(
        &self,
        rec: &Recorder,
        intervals: &[super::snapshot::IntervalData],
    ) -> RuleResult {
        let Some(spec) = self.drift else {
            return self.judge(rec);
        };
        let value = |r: &Recorder| -> Option<f64> {
            match &self.subject {
                Subject::Latency { metric, stat } => stat_of(r, metric, *stat),
                // Sockets open once and stay open in a soak, so a window has few
                // upgrades: close rates drift per run started in the window.
                Subject::Rate { name } => match name.strip_prefix("close_") {
                    Some(code) => {
                        let runs = r.counter(names::RUNS_STARTED);
                        let closes = unexplained_closes(r, code).unwrap_or(0);
                        (runs > 0).then(|| closes as f64 / runs as f64)
                    }
                    None => rate(r, name),
                },
                Subject::PerThousandRuns { .. } | Subject::Count { .. } => None,
            }
        };
        let windows = drift_windows(intervals, spec);
        let ends = windows.as_ref().and_then(|(a, b)| value(a).zip(value(b)));
        let (observed, unit) = match (&self.subject, ends) {
            (Subject::Latency { .. }, Some((f, l))) => ((f > 0.0).then(|| (l - f) / f), "fraction"),
            (Subject::Rate { .. }, Some((f, l))) => (Some(l - f), "points"),
            (Subject::Latency { .. }, None) => (None, "fraction"),
            (Subject::Rate { .. }, None)
            | (Subject::PerThousandRuns { .. } | Subject::Count { .. }, _) => (None, "points"),
        };
        // What the two windows measured, for people: "25.1ms -> 98.3ms".
        let between = ends.map(|(f, l)| match &self.subject {
            Subject::Latency { .. } => format!(" ({} -> {})", format_us(f), format_us(l)),
            Subject::Rate { .. } | Subject::PerThousandRuns { .. } | Subject::Count { .. } => {
                format!(
                    " ({} -> {})",
                    format_value(f, "fraction"),
                    format_value(l, "fraction")
                )
            }
        });
        let passed = observed.is_some_and(|o| self.op.holds(o, self.limit));
        let fmt = |v: f64| {
            if unit == "points" {
                format!("{:+.3}pp", v * 100.0)
            } else {
                format!("{:+.1}%", v * 100.0)
            }
        };
        RuleResult {
            threshold: self.expr.clone(),
            passed,
            observed,
            limit: self.limit,
            observed_text: observed.map_or_else(
                || "no data (too few intervals after warm-up)".to_string(),
                |o| fmt(o) + between.as_deref().unwrap_or(""),
            ),
            limit_text: fmt(self.limit),
            unit: unit.to_string(),
            default: self.default,
        }
    }

    /// Whether the rule fails on running data in a way that should stop the run:
    /// it has data, and that data breaks it. (No data yet is not a failure here.)
    pub fn breached_while_running(&self, rec: &Recorder) -> Option<RuleResult> {
        let v = self.judge(rec);
        (v.observed.is_some() && !v.passed).then_some(v)
    }

    /// Judges the rule on recorded data. A percentile of too few samples
    /// (see [`samples_needed`]) is "insufficient data": it does not pass,
    /// and, like "no data", it stops no run early.
    pub fn judge(&self, rec: &Recorder) -> RuleResult {
        if let Some(short) = self.insufficient(rec) {
            return short;
        }
        let (observed, unit) = match &self.subject {
            Subject::Latency { metric, stat } => (stat_of(rec, metric, *stat), "us"),
            Subject::Rate { name } => (rate(rec, name), "fraction"),
            Subject::PerThousandRuns { counter } => {
                let runs = rec.counter(names::RUNS_STARTED);
                // `close_CODE per_1k_runs` leaves auth failures out, as its rate does.
                let n = counter
                    .strip_prefix("closes.")
                    .and_then(|code| unexplained_closes(rec, code))
                    .unwrap_or_else(|| rec.counter(counter));
                let v = (runs > 0).then(|| n as f64 * 1000.0 / runs as f64);
                (v, "per_1k_runs")
            }
            Subject::Count { counter } => (Some(rec.counter(counter) as f64), "count"),
        };
        let passed = observed.is_some_and(|o| self.op.holds(o, self.limit));
        RuleResult {
            threshold: self.expr.clone(),
            passed,
            observed,
            limit: self.limit,
            observed_text: observed
                .map_or_else(|| "no data".to_string(), |o| format_value(o, unit)),
            limit_text: format_value(self.limit, unit),
            unit: unit.to_string(),
            default: self.default,
        }
    }

    /// The "insufficient data" result of a percentile rule judged on fewer
    /// samples than [`samples_needed`]; `None` when there are enough (or no
    /// samples at all: that is "no data").
    fn insufficient(&self, rec: &Recorder) -> Option<RuleResult> {
        let Subject::Latency {
            metric,
            stat: Stat::Percentile(q),
        } = &self.subject
        else {
            return None;
        };
        let h = rec.histograms.get(metric).filter(|h| !h.is_empty())?;
        let need = samples_needed(*q)?;
        let n = h.len();
        (n < need).then(|| RuleResult {
            threshold: self.expr.clone(),
            passed: false,
            observed: None,
            limit: self.limit,
            observed_text: format!(
                "insufficient data ({n} samples, p{} needs {need}; measured {})",
                format_quantile(*q),
                format_us(h.value_at_quantile(q / 100.0) as f64)
            ),
            limit_text: format_value(self.limit, "us"),
            unit: "us".to_string(),
            default: self.default,
        })
    }
}

/// `99`, `99.9`, `50` as written after the `p`.
fn format_quantile(q: f64) -> String {
    let s = format!("{q:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The value of a named rate, `None` when its denominator is zero.
pub fn rate(rec: &Recorder, name: &str) -> Option<f64> {
    rate_parts(rec, name).map(|(num, den)| num as f64 / den as f64)
}

/// A named rate as (numerator, denominator), `None` when the denominator is
/// zero: what a comparison resamples (`metrics/compare/`).
pub fn rate_parts(rec: &Recorder, name: &str) -> Option<(u64, u64)> {
    let ratio = |num: u64, den: u64| (den > 0).then_some((num, den));
    let upgraded = rec.counter(names::CONN_UPGRADED);
    let started = rec.counter(names::RUNS_STARTED);
    if let Some(spec) = name.strip_prefix("close_") {
        return ratio(unexplained_closes(rec, spec)?, upgraded);
    }
    match name {
        "run_ok" => ratio(rec.counter(names::RUNS_OK), started),
        "run_failed" => ratio(rec.counter(names::RUNS_FAILED), started),
        "connect_error" => {
            let attempted = rec.counter(names::CONN_ATTEMPTED);
            ratio(attempted.saturating_sub(upgraded), attempted)
        }
        "ready_timeout" => ratio(rec.counter(names::CONN_READY_TIMEOUT), upgraded),
        "violations" => ratio(rec.counter(names::VIOLATIONS_ALL), started),
        "auth_failure" => ratio(
            rec.counter(names::TOKENS_REJECTED),
            rec.counter(names::CONN_ATTEMPTED),
        ),
        "thread_switch_timeout" => ratio(
            rec.counter(names::THREADS_SWITCH_TIMEOUT),
            rec.counter(names::THREADS_SWITCH_REQUESTED),
        ),
        "rest error" => {
            let (errors, calls) = rest_calls(rec, None);
            ratio(errors, calls)
        }
        other if other.starts_with("rest.") && other.ends_with(" error") => {
            let step = &other["rest.".len()..other.len() - " error".len()];
            let (errors, calls) = rest_calls(rec, Some(step));
            ratio(errors, calls)
        }
        other => {
            let class = other.strip_prefix("run_failed_")?;
            ratio(rec.counter(&names::run_failed(class)), started)
        }
    }
}

/// The closes a close rate counts: `spec` is `CODE` (every phase) or
/// `CODE_PHASE` (`1011_first_exchange`); the closes that ended a recognised
/// auth failure (`closes_auth.*`, counted as `tokens.rejected`) are left out.
/// `None` when `spec` names no close code.
pub fn unexplained_closes(rec: &Recorder, spec: &str) -> Option<u64> {
    let (code, phase) = match spec.split_once('_') {
        Some((code, phase)) => (code, Some(phase)),
        None => (spec, None),
    };
    let code: u16 = code.parse().ok()?;
    let [auth_by_code, auth_by_phase] = names::close_auth(phase.unwrap_or(""), code);
    let (all, auth) = match phase {
        None => (names::close_code(code), auth_by_code),
        Some(phase) => (names::close_phase(phase, code), auth_by_phase),
    };
    Some(rec.counter(&all).saturating_sub(rec.counter(&auth)))
}

/// REST calls that failed (answered with a status >= 400 their step does
/// not expect, `rest.<step>.error`, or not at all, `rest.<step>.failed`)
/// and all REST calls (`rest.<step>.<status>` and `.failed`), of one step
/// or of every step.
pub fn rest_calls(rec: &Recorder, step: Option<&str>) -> (u64, u64) {
    let (mut errors, mut calls) = (0, 0);
    for (k, n) in &rec.counters {
        let Some((s, what)) = k
            .strip_prefix("rest.")
            .and_then(|rest| rest.rsplit_once('.'))
        else {
            continue;
        };
        if step.is_some_and(|want| want != s) {
            continue;
        }
        match what {
            "failed" => {
                calls += n;
                errors += n;
            }
            "error" => errors += n,
            status if status.len() == 3 && status.parse::<u16>().is_ok() => calls += n,
            _ => {}
        }
    }
    (errors, calls)
}

impl fmt::Display for RuleResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (measured {})",
            if self.passed { "PASS" } else { "FAIL" },
            self.threshold,
            self.observed_text
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Recorder {
        let mut r = Recorder::default();
        for v in 1..=1000u64 {
            r.record("ttfe", v * 1000); // 1ms..1s
        }
        r.count(names::CONN_UPGRADED, 1000);
        r.count("closes.1011", 2);
        r.count(names::RUNS_STARTED, 200);
        r.count(names::RUNS_OK, 199);
        r.count(names::RUNS_FAILED, 1);
        r.count("runs.failed.timeout", 1);
        r
    }

    #[test]
    fn table_of_rules() {
        let r = rec();
        let cases = [
            ("ttfe p95", "< 2s", true),
            ("ttfe p95", "< 900ms", false),
            ("ttfe p50", "<= 501ms", true),
            ("ttfe max", "< 1s", false),
            ("ttfe mean", "< 600ms", true),
            ("close_1011 rate", "< 0.1%", false),
            ("close_1011 rate", "< 0.5%", true),
            ("close_1011 per_1k_runs", "<= 10", true),
            ("run_ok rate", "> 99%", true),
            ("run_ok rate", ">= 99.6%", false),
            ("run_failed_timeout rate", "< 1%", true),
            ("runs.failed.timeout count", "== 1", true),
            ("run_failed count", "== 0", false),
            ("ws_connect p95", "< 1s", false), // no samples: fails
            ("connect_error rate", "< 1%", false), // zero attempts: no data
        ];
        for (k, v, want) in cases {
            let t = Threshold::parse(k, v).unwrap_or_else(|e| panic!("{k} = {v}: {e}"));
            assert_eq!(t.judge(&r).passed, want, "{k} {v}: {:?}", t.judge(&r));
        }
    }

    #[test]
    fn close_rates_leave_recognised_auth_failures_out() {
        let mut r = Recorder::default();
        r.count(names::CONN_UPGRADED, 100);
        r.count(names::RUNS_STARTED, 50);
        // 30 auth failures closed with 1011 before ready, 1 unexplained 1011
        // at the first exchange, 2 while idle (one of them an auth failure).
        r.count("closes.1011", 33);
        r.count("closes_by_phase.before_ready.1011", 30);
        r.count("closes_by_phase.first_exchange.1011", 1);
        r.count("closes_by_phase.idle.1011", 2);
        for phase in ["before_ready", "before_ready", "idle"] {
            for name in names::close_auth(phase, 1011) {
                r.count(&name, if phase == "idle" { 1 } else { 15 });
            }
        }
        let rate = |name: &str| super::rate(&r, name);
        assert_eq!(rate("close_1011"), Some(0.02));
        assert_eq!(rate("close_1011_before_ready"), Some(0.0));
        assert_eq!(rate("close_1011_first_exchange"), Some(0.01));
        assert_eq!(rate("close_1011_during_run"), Some(0.0));
        assert_eq!(rate("close_1011_idle"), Some(0.01));
        let judged = |k: &str, v: &str| Threshold::parse(k, v).unwrap().judge(&r).observed;
        assert_eq!(judged("close_1011 per_1k_runs", "< 1"), Some(40.0));
        assert_eq!(
            judged("closes.1011 count", "== 0"),
            Some(33.0),
            "the raw counter"
        );
        let names_ok = [
            "tokens.rejected.idle",
            "closes_auth.1011",
            "closes_auth_by_phase.idle.1011",
        ];
        for n in names_ok {
            assert!(
                names::check_counter(n, &names::Vocabulary::unknown()).is_ok(),
                "{n}"
            );
        }
        assert!(
            names::check_counter("tokens.rejected.lunch", &names::Vocabulary::unknown()).is_err()
        );
    }

    #[test]
    fn new_rates_table() {
        let mut r = rec();
        r.count(names::VIOLATIONS_ALL, 2);
        r.count(names::CONN_ATTEMPTED, 1000);
        r.count(names::TOKENS_REJECTED, 3);
        r.count(names::THREADS_SWITCH_REQUESTED, 4);
        r.count(names::THREADS_SWITCH_TIMEOUT, 4);
        r.count("rest.create_thread.201", 90);
        r.count("rest.create_thread.500", 5);
        r.count("rest.create_thread.error", 5);
        r.count("rest.create_thread.failed", 5);
        r.count("rest.probe.404", 50); // expected by its `http` step: no error
        r.count("rest.history.200", 50);
        r.count("rest.create_thread.capture_missing", 7); // not a call
        let cases = [
            ("violations rate", "== 0", false),
            ("violations rate", "<= 1%", true), // 2 of 200 runs
            ("violations count", "== 2", true),
            ("auth_failure rate", "< 0.1%", false), // 0.3%
            ("auth_failure rate", "< 0.5%", true),
            ("thread_switch_timeout rate", "< 1%", false), // 4 of 4
            ("rest error rate", "< 5.1%", true),           // 10 of 200
            ("rest error rate", "< 4.9%", false),
            ("rest.probe error rate", "== 0", true),
            ("rest.create_thread error rate", "== 10%", true), // 10 of 100
            ("rest.history error rate", "== 0", true),
        ];
        for (k, v, want) in cases {
            let t = Threshold::parse(k, v).unwrap_or_else(|e| panic!("{k} = {v}: {e}"));
            assert_eq!(t.judge(&r).passed, want, "{k} {v}: {:?}", t.judge(&r));
        }
        // No REST call at all: no data, which fails.
        let t = Threshold::parse("rest error rate", "< 1%").unwrap();
        assert_eq!(t.judge(&Recorder::default()).observed, None);
    }

    #[test]
    fn percentiles_on_too_few_samples_are_insufficient_data() {
        assert_eq!(samples_needed(99.0), Some(1000));
        assert_eq!(samples_needed(95.0), Some(200));
        assert_eq!(samples_needed(50.0), Some(20));
        assert_eq!(samples_needed(99.9), Some(10_000));
        assert_eq!(samples_needed(100.0), None);
        let mut r = Recorder::default();
        for v in 1..=199u64 {
            r.record("ttfe", v);
        }
        // Well under the limit, but 199 samples cannot show a p95.
        let v = Threshold::parse("ttfe p95", "< 1s").unwrap().judge(&r);
        assert!(!v.passed);
        assert_eq!(v.observed, None, "insufficient data stops no run early");
        assert!(
            v.observed_text
                .starts_with("insufficient data (199 samples, p95 needs 200"),
            "{}",
            v.observed_text
        );
        // A mean, a max and p50 (20 samples) are judged.
        for (k, want) in [("ttfe mean", true), ("ttfe max", true), ("ttfe p50", true)] {
            assert_eq!(
                Threshold::parse(k, "< 1s").unwrap().judge(&r).passed,
                want,
                "{k}"
            );
        }
        r.record("ttfe", 200);
        assert!(
            Threshold::parse("ttfe p95", "< 1s")
                .unwrap()
                .judge(&r)
                .passed
        );
        let v = Threshold::parse("ttfe p99", "< 1s").unwrap().judge(&r);
        assert!(
            v.observed_text
                .starts_with("insufficient data (200 samples, p99 needs 1000"),
            "{}",
            v.observed_text
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_us(850.0), "850µs");
        assert_eq!(format_us(12_340.0), "12.3ms");
        assert_eq!(format_us(1_840_000.0), "1.84s");
        assert_eq!(format_us(123_000_000.0), "2m03s");
        assert_eq!(format_value(0.0012, "fraction"), "0.12%");
    }
}
