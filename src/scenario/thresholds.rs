//! `[thresholds]`: pass/fail rules as written in the scenario, parsed and
//! checked against the metric vocabulary (`names.rs`). Judging them on
//! recorded data is `metrics/threshold.rs`. The table readers
//! (`read_thresholds`, `read_drift`, and `read_rules`, shared with
//! `[capacity.slo]`) are at the end. Imports `names`, `units` and the `doc`
//! readers.
//!
//! Grammar (key = value in the scenario's `[thresholds]` table):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `METRIC pNN` / `mean` / `max` / `min` | `< 2s`, `<= 500ms` | a latency statistic of a histogram metric |
//! | `close_CODE rate` | `< 0.1%` | closes with CODE / upgraded connections |
//! | `close_CODE_PHASE rate` | `< 0.1%` | closes with CODE in PHASE (`before_ready`, `first_exchange`, `during_run`, `idle`) / upgraded connections |
//! | `close_CODE per_1k_runs` | `< 1` | closes with CODE per 1000 started runs |
//!
//! The close rates leave out the closes that ended a recognised auth failure
//! (`closes_auth.*`, counted as `tokens.rejected`; see `protocol::AuthFailure`).
//! | `run_ok rate` | `> 99.5%` | ok runs / started runs |
//! | `run_failed rate` | `< 1%` | failed runs / started runs |
//! | `run_failed_CLASS rate` | `< 1%` | runs failed by CLASS / started runs |
//! | `connect_error rate` | `< 1%` | attempts not upgraded / attempted connections |
//! | `ready_timeout rate` | `< 1%` | ready timeouts / upgraded connections |
//! | `violations rate` | `== 0` | protocol violations (all classes) / started runs |
//! | `auth_failure rate` | `< 0.1%` | `tokens.rejected` / attempted connections |
//! | `rest error rate` | `< 1%` | REST calls answered >= 400 (unless expected) or not at all / REST calls |
//! | `rest.STEP error rate` | `< 1%` | the same for one REST step |
//! | `thread_switch_timeout rate` | `< 1%` | `threads.switch_timeout` / switches requested |
//! | `COUNTER count` | `== 0` | a raw counter (dotted name, e.g. `runs.failed.timeout`) |
//!
//! Operators: `<`, `<=`, `>`, `>=`, `==`. A rule with no data (no samples, a
//! zero denominator) fails: a release gate must not pass on nothing.
//!
//! Default SLOs (`defaults.rs`) join the written rules unless the scenario
//! gates the same metric itself or sets `[thresholds] defaults = false`; a
//! capacity search has none.
//!
//! A rule written as a table, `{ rule = "< 2s", abort_on_fail = true, grace = "1m" }`,
//! also stops the run early once it fails on the running data after the grace
//! period (k6's `abortOnFail` with `delayAbortEval`).

use serde::{Deserialize, Serialize};

use crate::names;

use super::doc::Obj;

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
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => (observed - limit).abs() < 1e-9,
        }
    }
    pub fn as_str(self) -> &'static str {
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

/// The fewest samples a percentile can be judged on: 10 / (1 - q), so at
/// least ten samples lie beyond it (p99: 1,000, p95: 200, p50: 20); `None`
/// for p100 (the maximum).
pub fn samples_needed(q: f64) -> Option<u64> {
    let tail = 1.0 - q / 100.0;
    (tail > 1e-9).then(|| (10.0 / tail - 1e-6).ceil() as u64)
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
    /// One of the default SLOs, not written in the scenario.
    pub default: bool,
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

/// The operator a rule starts with, and the rest (trimmed).
pub(super) fn parse_op(s: &str) -> Option<(Op, &str)> {
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
        if let Some(t) = Threshold::parse_error_rate(key, value) {
            return t;
        }
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
            default: false,
        })
    }

    /// `rest error rate` and `rest.STEP error rate` (three words: the
    /// one rate whose key is not `METRIC STAT`); `None` for any other key.
    fn parse_error_rate(key: &str, value: &str) -> Option<Result<Threshold, String>> {
        let words: Vec<&str> = key.split_whitespace().collect();
        let [metric, "error", "rate"] = words[..] else {
            return None;
        };
        Some((|| {
            if metric != "rest" && !metric.starts_with("rest.") {
                return Err(format!(
                    "`{metric} error rate`: error rates are `rest error rate` and `rest.STEP error rate`"
                ));
            }
            let (op, rest) = parse_op(value.trim()).ok_or_else(|| {
                format!(
                    "threshold value `{value}` must start with <, <=, >, >= or ==, e.g. \"< 1%\""
                )
            })?;
            let name = format!("{metric} error");
            check_rate_name(&name)?;
            Ok(Threshold {
                expr: format!("{} {} {rest}", words.join(" "), op.as_str()),
                subject: Subject::Rate { name },
                op,
                limit: parse_fraction(rest)?,
                abort_on_fail: false,
                grace: std::time::Duration::ZERO,
                drift: None,
                default: false,
            })
        })())
    }

    /// The metric a rule gates, as a default SLO would name it: a rule on
    /// it (any statistic, any operator, drift included) replaces that
    /// default. `run_ok` and `run_failed` are one metric.
    pub fn gated_metric(&self) -> String {
        let name = match &self.subject {
            Subject::Latency { metric, .. } => return metric.clone(),
            Subject::Rate { name } => counter_alias(name),
            Subject::PerThousandRuns { counter } | Subject::Count { counter } => counter.clone(),
        };
        if name == names::RUNS_FAILED {
            names::RUNS_OK.to_string()
        } else {
            name
        }
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
            Subject::Rate { name } if name == "thread_switch_timeout" => {
                names::check_histogram(names::THREAD_SWITCH, v)
            }
            // A REST step's rate: the step must be one (its counters say so).
            Subject::Rate { name } if name.starts_with("rest.") => {
                let step = name.trim_start_matches("rest.").trim_end_matches(" error");
                names::check_counter(&format!("rest.{step}.failed"), v)
                    .map_err(|_| format!("`{step}` is not a REST step of the journey (`rest.STEP error rate` names a `create_thread`, `list_threads`, `history` or `http` step)"))
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
        if is_drift_key(key) {
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
        let inner = match base.split_whitespace().last() {
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
            Subject::PerThousandRuns { .. } | Subject::Count { .. } => return Err(format!("drift applies to latencies (`ttfe p95 drift`) and rates (`close_1011 rate drift`), not `{base}`")),
        };
        Ok(Threshold {
            expr: format!("{key} {} {rest}", op.as_str()),
            subject: inner.subject,
            op,
            limit,
            abort_on_fail: false,
            grace: std::time::Duration::ZERO,
            drift: Some(spec),
            default: false,
        })
    }
}

/// `METRIC STAT drift` (or `rest error rate drift`): a drift rule's key.
fn is_drift_key(key: &str) -> bool {
    let words: Vec<&str> = key.split_whitespace().collect();
    words.len() >= 3 && words.last() == Some(&"drift")
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
        "auth_failure" => names::TOKENS_REJECTED.into(),
        "thread_switch_timeout" => names::THREADS_SWITCH_TIMEOUT.into(),
        other => match other.strip_prefix("run_failed_") {
            Some(class) => names::run_failed(class),
            None => other.to_string(),
        },
    }
}

fn check_rate_name(name: &str) -> Result<(), String> {
    let close = |c: &str| c.parse::<u16>().is_ok();
    let ok = name.strip_prefix("close_").is_some_and(|c| {
        close(c)
            || c.split_once('_')
                .is_some_and(|(c, p)| close(c) && names::CLOSE_PHASES.contains(&p))
    }) || matches!(
        name,
        "run_ok"
            | "run_failed"
            | "connect_error"
            | "ready_timeout"
            | "violations"
            | "auth_failure"
            | "thread_switch_timeout"
            | "rest error"
    ) || name
        .strip_prefix("rest.")
        .and_then(|s| s.strip_suffix(" error"))
        .is_some_and(|s| !s.is_empty())
        || name
            .strip_prefix("run_failed_")
            .is_some_and(|c| !c.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown rate `{name}` (known: close_CODE, close_CODE_PHASE, run_ok, run_failed, run_failed_CLASS, connect_error, ready_timeout, violations, auth_failure, thread_switch_timeout, `rest error`, `rest.STEP error`)"
        ))
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

/// `[drift]`: which intervals drift rules compare.
pub(super) fn read_drift(o: &Obj<'_>) -> DriftSpec {
    let mut spec = DriftSpec::default();
    if let Some(t) = o.obj("drift") {
        if let Some(d) = t.duration("warmup") {
            spec.warmup = d;
        }
        if let Some(n) = t.get("window") {
            if let Some(w) = n.as_fraction() {
                if w > 0.0 && w <= 0.5 {
                    spec.window = w;
                } else {
                    n.error("must be above 0% and at most 50%");
                }
            }
        }
        t.finish();
    }
    spec
}

/// `[thresholds]`: the written rules, and whether the default SLOs join
/// them (`defaults = false` leaves them out; see `defaults.rs`).
pub(super) fn read_thresholds(
    o: &Obj<'_>,
    vocabulary: &crate::names::Vocabulary,
) -> Option<(Vec<Threshold>, bool)> {
    let drift = read_drift(o);
    let Some(tbl) = o.obj("thresholds") else {
        return Some((Vec::new(), true));
    };
    let defaults = tbl.bool("defaults").unwrap_or(true);
    let rules = read_rules(tbl, Some(drift), vocabulary)?;
    Some((rules, defaults))
}

/// A table of rules: `"ttfe p95" = "< 2s"` or `{ rule, abort_on_fail, grace }`;
/// `drift` is `None` where drift rules make no sense (capacity SLOs). A rule
/// on a name the scenario never records is refused (see
/// [`crate::names`]).
pub(super) fn read_rules(
    tbl: Obj<'_>,
    drift: Option<DriftSpec>,
    vocabulary: &crate::names::Vocabulary,
) -> Option<Vec<Threshold>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value, key_span) in tbl.entries() {
        // `[thresholds] defaults = false` is read by `read_thresholds`.
        if key == "defaults" && drift.is_some() {
            continue;
        }
        // `probe.*` rules are read by `probe_rules.rs`, on the probes' series.
        if key.starts_with("probe.") && drift.is_some() {
            continue;
        }
        // Either "< 2s" or { rule = "< 2s", abort_on_fail = true, grace = "30s" }.
        let (rule, abort, grace) = if let Some(v) = value.item_str() {
            (Some(v.to_string()), false, std::time::Duration::ZERO)
        } else if value.item.as_table_like_pub().is_some() {
            let t = value.as_obj().expect("checked to be a table");
            let rule = t
                .require("rule")
                .and_then(|r| r.as_str().map(str::to_string));
            let abort = t.bool("abort_on_fail").unwrap_or(false);
            let grace = t.duration("grace").unwrap_or(std::time::Duration::ZERO);
            t.finish();
            (rule, abort, grace)
        } else {
            value.error("expected a string such as \"< 2s\", or a table { rule = \"< 2s\", abort_on_fail = true, grace = \"30s\" }");
            ok = false;
            continue;
        };
        let Some(rule) = rule else {
            ok = false;
            continue;
        };
        let parsed = match drift {
            Some(spec) => Threshold::parse_with_drift(&key, &rule, spec),
            None if is_drift_key(&key) => Err(
                "a capacity step is judged on its own data: drift rules (start against end of a run) do not apply; remove `drift`".to_string(),
            ),
            None => Threshold::parse(&key, &rule),
        }
        .and_then(|t| t.check_names(vocabulary).map(|()| t));
        match parsed {
            Ok(mut t) => {
                if drift.is_none() && (abort || grace > std::time::Duration::ZERO) {
                    value.error(
                        "capacity SLOs are judged per step: abort_on_fail and grace do not apply",
                    );
                    ok = false;
                }
                t.abort_on_fail = abort;
                t.grace = grace;
                out.push(t)
            }
            Err(e) => {
                value
                    .ctx
                    .error(key_span.or(value.span.clone()), &value.path, e);
                ok = false;
            }
        }
    }
    tbl.finish();
    ok.then_some(out)
}

#[cfg(test)]
mod tests;
