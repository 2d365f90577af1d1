//! Thresholds: pass/fail rules judged on a run's recorded data.
//!
//! Grammar (key = value in the scenario's `[thresholds]` table):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `METRIC pNN` / `mean` / `max` / `min` | `< 2s`, `<= 500ms` | a latency statistic of a histogram metric |
//! | `close_CODE rate` | `< 0.1%` | closes with CODE / upgraded connections |
//! | `close_CODE per_1k_runs` | `< 1` | closes with CODE per 1000 started runs |
//! | `run_ok rate` | `> 99.5%` | ok runs / started runs |
//! | `run_failed rate` | `< 1%` | failed runs / started runs |
//! | `run_failed_CLASS rate` | `< 1%` | runs failed by CLASS / started runs |
//! | `connect_error rate` | `< 1%` | attempts not upgraded / attempted connections |
//! | `ready_timeout rate` | `< 1%` | ready timeouts / upgraded connections |
//! | `COUNTER count` | `== 0` | a raw counter (dotted name, e.g. `runs.failed.timeout`) |
//!
//! Operators: `<`, `<=`, `>`, `>=`, `==`. A rule with no data (no samples, a
//! zero denominator) fails: a release gate must not pass on nothing.
//!
//! A rule written as a table, `{ rule = "< 2s", abort_on_fail = true, grace = "1m" }`,
//! also stops the run early once it fails on the running data after the grace
//! period (k6's `abortOnFail` with `delayAbortEval`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names;
use crate::units::{format_us, format_value};
use super::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => (observed - limit).abs() < 1e-9,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Percentile(f64),
    Mean,
    Max,
    Min,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A statistic of a histogram metric; limit in microseconds.
    Latency { metric: String, stat: Stat },
    /// A ratio; limit as a fraction.
    Rate { name: String },
    /// Occurrences per 1000 started runs.
    PerThousandRuns { counter: String },
    /// A raw counter.
    Count { counter: String },
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The rule as written: `ttfe p95 < 2s`.
    pub expr: String,
    pub subject: Subject,
    pub op: Op,
    /// Microseconds for latencies, a fraction for rates, a number otherwise.
    pub limit: f64,
    /// Stop the run as soon as the rule fails on the running data (after `grace`).
    pub abort_on_fail: bool,
    /// Time from the run's start before `abort_on_fail` may act.
    pub grace: std::time::Duration,
    /// A drift rule: the statistic's change from the first to the last window
    /// of the steady phase (limit: a relative change for latencies, percentage
    /// points as a fraction for rates).
    pub drift: Option<DriftSpec>,
}

/// Which intervals a drift rule compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSpec {
    /// Intervals starting before this are warm-up, left out.
    pub warmup: std::time::Duration,
    /// Share of the remaining intervals in each window (first and last).
    pub window: f64,
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            warmup: std::time::Duration::ZERO,
            window: 0.1,
        }
    }
}

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
}

fn parse_op(s: &str) -> Option<(Op, &str)> {
    for (tok, op) in [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some(rest) = s.strip_prefix(tok) {
            return Some((op, rest.trim()));
        }
    }
    None
}

fn is_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

impl Threshold {
    /// Parses one rule from its key (`ttfe p95`) and value (`< 2s`).
    pub fn parse(key: &str, value: &str) -> Result<Threshold, String> {
        let mut words = key.split_whitespace();
        let (Some(metric), Some(stat), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "threshold key `{key}` must be `METRIC STAT`, e.g. \"ttfe p95\", \"close_1011 rate\", \"runs.failed count\""
            ));
        };
        if !is_metric_name(metric) {
            return Err(format!("`{metric}` is not a metric or counter name"));
        }
        let (op, rest) = parse_op(value.trim()).ok_or_else(|| {
            format!("threshold value `{value}` must start with <, <=, >, >= or ==, e.g. \"< 2s\"")
        })?;
        let expr = format!("{key} {} {rest}", op.as_str());
        let (subject, limit) = match stat {
            "rate" => {
                check_rate_name(metric)?;
                let limit = parse_fraction(rest)?;
                (
                    Subject::Rate {
                        name: metric.to_string(),
                    },
                    limit,
                )
            }
            "per_1k_runs" => {
                let counter = counter_alias(metric);
                let limit: f64 = rest
                    .parse()
                    .map_err(|_| format!("`{rest}` is not a number"))?;
                (Subject::PerThousandRuns { counter }, limit)
            }
            "count" => {
                let limit: f64 = rest
                    .parse()
                    .map_err(|_| format!("`{rest}` is not a number"))?;
                (
                    Subject::Count {
                        counter: counter_alias(metric),
                    },
                    limit,
                )
            }
            s => {
                let stat = match s {
                    "mean" | "avg" => Stat::Mean,
                    "max" => Stat::Max,
                    "min" => Stat::Min,
                    p if p.starts_with('p') => {
                        let q: f64 = p[1..].parse().map_err(|_| bad_stat(s))?;
                        if !(0.0..=100.0).contains(&q) {
                            return Err(format!("percentile `{s}` must be between p0 and p100"));
                        }
                        Stat::Percentile(q)
                    }
                    _ => return Err(bad_stat(s)),
                };
                let d = crate::units::parse_duration(rest)?;
                (
                    Subject::Latency {
                        metric: metric.to_string(),
                        stat,
                    },
                    d.as_micros() as f64,
                )
            }
        };
        Ok(Threshold {
            expr,
            subject,
            op,
            limit,
            abort_on_fail: false,
            grace: std::time::Duration::ZERO,
            drift: None,
        })
    }

    /// Whether the rule names a metric or counter chatload records for a
    /// scenario with `v` (see [`names::check_histogram`]): a rule on a name
    /// never recorded would judge "no data", or 0 for a counter, and so pass
    /// `== 0` whatever happened.
    pub fn check_names(&self, v: &names::Vocabulary) -> Result<(), String> {
        match &self.subject {
            Subject::Latency { metric, .. } => names::check_histogram(metric, v),
            Subject::Count { counter } | Subject::PerThousandRuns { counter } => {
                names::check_counter(counter, v)
            }
            Subject::Rate { name } => match name.strip_prefix("run_failed_") {
                Some(class) if !names::is_run_failure(class) => Err(format!(
                    "unknown failure class `{class}` (runs fail as {})",
                    names::RUN_FAILURES
                        .iter()
                        .chain(names::VIOLATIONS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => Ok(()),
            },
        }
    }

    /// Parses any rule: a drift rule when the key ends in `drift`, else a plain one.
    pub fn parse_with_drift(key: &str, value: &str, spec: DriftSpec) -> Result<Threshold, String> {
        if key.split_whitespace().nth(2) == Some("drift") {
            Threshold::parse_drift(key, value, spec)
        } else {
            Threshold::parse(key, value)
        }
    }

    /// Parses a drift rule: key `METRIC pNN drift` or `RATE rate drift`, value
    /// `< 20%` (relative change of a latency) or `< 0.05pp` (change of a rate).
    pub fn parse_drift(key: &str, value: &str, spec: DriftSpec) -> Result<Threshold, String> {
        let base = key
            .trim()
            .strip_suffix("drift")
            .map(str::trim)
            .ok_or_else(|| format!("`{key}` is not a drift rule"))?;
        let (op, rest) = parse_op(value.trim())
            .ok_or_else(|| format!("drift value `{value}` must start with <, <=, >, >= or =="))?;
        let inner = match base.split_whitespace().nth(1) {
            Some("rate") => Threshold::parse(base, "< 0")?,
            _ => Threshold::parse(base, "< 1s")?,
        };
        let limit = match &inner.subject {
            Subject::Latency { .. } => parse_percent_value(rest)?,
            Subject::Rate { .. } => rest
                .strip_suffix("pp")
                .and_then(|p| p.trim().parse::<f64>().ok())
                .map(|p| p / 100.0)
                .ok_or_else(|| format!("a rate drift limit is in percentage points, e.g. \"< 0.05pp\", not `{rest}`"))?,
            _ => return Err(format!("drift applies to latencies (`ttfe p95 drift`) and rates (`close_1011 rate drift`), not `{base}`")),
        };
        Ok(Threshold {
            expr: format!("{key} {} {rest}", op.as_str()),
            subject: inner.subject,
            op,
            limit,
            abort_on_fail: false,
            grace: std::time::Duration::ZERO,
            drift: Some(spec),
        })
    }

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
                        (runs > 0)
                            .then(|| r.counter(&format!("closes.{code}")) as f64 / runs as f64)
                    }
                    None => rate(r, name),
                },
                _ => None,
            }
        };
        let windows = drift_windows(intervals, spec);
        let ends = windows.as_ref().and_then(|(a, b)| value(a).zip(value(b)));
        let (observed, unit) = match (&self.subject, ends) {
            (Subject::Latency { .. }, Some((f, l))) => ((f > 0.0).then(|| (l - f) / f), "fraction"),
            (Subject::Rate { .. }, Some((f, l))) => (Some(l - f), "points"),
            (Subject::Latency { .. }, None) => (None, "fraction"),
            _ => (None, "points"),
        };
        // What the two windows measured, for people: "25.1ms -> 98.3ms".
        let between = ends.map(|(f, l)| match &self.subject {
            Subject::Latency { .. } => format!(" ({} -> {})", format_us(f), format_us(l)),
            _ => format!(
                " ({} -> {})",
                format_value(f, "fraction"),
                format_value(l, "fraction")
            ),
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
        }
    }

    /// Whether the rule fails on running data in a way that should stop the run:
    /// it has data, and that data breaks it. (No data yet is not a failure here.)
    pub fn breached_while_running(&self, rec: &Recorder) -> Option<RuleResult> {
        let v = self.judge(rec);
        (v.observed.is_some() && !v.passed).then_some(v)
    }

    /// Judges the rule on recorded data.
    pub fn judge(&self, rec: &Recorder) -> RuleResult {
        let (observed, unit) = match &self.subject {
            Subject::Latency { metric, stat } => (stat_of(rec, metric, *stat), "us"),
            Subject::Rate { name } => (rate(rec, name), "fraction"),
            Subject::PerThousandRuns { counter } => {
                let runs = rec.counter(names::RUNS_STARTED);
                let v = (runs > 0).then(|| rec.counter(counter) as f64 * 1000.0 / runs as f64);
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
        }
    }
}

fn bad_stat(s: &str) -> String {
    format!("unknown statistic `{s}` (expected pNN such as p95 or p99.9, mean, max, min, rate, per_1k_runs or count)")
}

/// Maps friendly names to counters: `close_1011` -> `closes.1011`,
/// `run_failed` -> `runs.failed`; dotted names pass through.
pub fn counter_alias(name: &str) -> String {
    if let Some(code) = name.strip_prefix("close_") {
        return format!("closes.{code}");
    }
    match name {
        "run_ok" => names::RUNS_OK.into(),
        "run_failed" => names::RUNS_FAILED.into(),
        "runs_started" => names::RUNS_STARTED.into(),
        "reconnects" => names::RECONNECTS.into(),
        other => match other.strip_prefix("run_failed_") {
            Some(class) => names::run_failed(class),
            None => other.to_string(),
        },
    }
}

fn check_rate_name(name: &str) -> Result<(), String> {
    let ok = name
        .strip_prefix("close_")
        .is_some_and(|c| c.parse::<u16>().is_ok())
        || matches!(
            name,
            "run_ok" | "run_failed" | "connect_error" | "ready_timeout"
        )
        || name
            .strip_prefix("run_failed_")
            .is_some_and(|c| !c.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown rate `{name}` (known: close_CODE, run_ok, run_failed, run_failed_CLASS, connect_error, ready_timeout)"
        ))
    }
}

/// The value of a named rate, `None` when its denominator is zero.
pub fn rate(rec: &Recorder, name: &str) -> Option<f64> {
    let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
    let upgraded = rec.counter(names::CONN_UPGRADED);
    let started = rec.counter(names::RUNS_STARTED);
    if let Some(code) = name.strip_prefix("close_") {
        return ratio(rec.counter(&format!("closes.{code}")), upgraded);
    }
    match name {
        "run_ok" => ratio(rec.counter(names::RUNS_OK), started),
        "run_failed" => ratio(rec.counter(names::RUNS_FAILED), started),
        "connect_error" => {
            let attempted = rec.counter(names::CONN_ATTEMPTED);
            ratio(attempted.saturating_sub(upgraded), attempted)
        }
        "ready_timeout" => ratio(rec.counter(names::CONN_READY_TIMEOUT), upgraded),
        other => {
            let class = other.strip_prefix("run_failed_")?;
            ratio(rec.counter(&names::run_failed(class)), started)
        }
    }
}

fn parse_percent_value(s: &str) -> Result<f64, String> {
    crate::units::parse_percent(s)
        .map_err(|_| format!("a latency drift limit is a percentage, e.g. \"< 20%\", not `{s}`"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    if s.ends_with('%') {
        crate::units::parse_percent(s)
    } else {
        s.parse::<f64>()
            .map_err(|_| format!("`{s}` is not a rate; write e.g. \"0.1%\""))
    }
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
    fn bad_rules_are_explained() {
        for (k, v) in [
            ("ttfe", "< 2s"),
            ("ttfe p95", "2s"),
            ("ttfe p95", "< soon"),
            ("ttfe p101", "< 2s"),
            ("ttfe median", "< 2s"),
            ("happiness rate", "< 1%"),
            ("close_1011 rate", "< lots"),
        ] {
            assert!(
                Threshold::parse(k, v).is_err(),
                "{k} = {v} should be refused"
            );
        }
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
