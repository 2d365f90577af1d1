//! The probes' series ([`ProbeSeries`]): every reading of the target's own
//! numbers (`[[probe]]`), with chatload's own figures at the same moment,
//! kept in the snapshot (and streamed to `probes.jsonl` as they come).
//!
//! Judging the probe rules on them is [`ProbeSeries::judge`], which gives
//! the same [`RuleResult`]s as every other threshold, so the verdict, the
//! reports and JUnit name a failed probe rule like any other.
//!
//! Imports `scenario::probe_rules` (the grammar), `threshold` (its result
//! type) and `units`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::threshold::RuleResult;
use crate::scenario::probe_rules::{OwnSeries, ProbeRule, ProbeRuleKind};

/// The file of every probe reading, one JSON line each, beside the interval files.
pub const PROBES_FILE: &str = "probes.jsonl";

impl ProbeSeries {
    /// Replaces the readings with those of a `probes.jsonl`, judging the
    /// bounds on each as it is read (lines that do not parse, such as a last
    /// line cut by a kill, are left out).
    pub fn read_jsonl(&mut self, path: &std::path::Path, rules: &[ProbeRule]) {
        self.samples.clear();
        self.breaches.clear();
        self.streaks.clear();
        self.kept.clear();
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        for line in text.lines() {
            if let Ok(x) = serde_json::from_str(line) {
                self.push(x, rules);
            }
        }
    }
}

/// The most samples kept in memory and in the snapshot; beyond it every
/// other one is dropped (halving the resolution). `probes.jsonl` keeps all.
pub const MAX_PROBE_SAMPLES: usize = 20_000;

/// chatload's own figures when a probe was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnFigures {
    pub sockets_open: u64,
    pub users_active: u64,
    pub runs_in_flight: u64,
}

impl OwnFigures {
    pub fn get(&self, s: OwnSeries) -> f64 {
        match s {
            OwnSeries::SocketsOpen => self.sockets_open as f64,
            OwnSeries::UsersActive => self.users_active as f64,
            OwnSeries::RunsInFlight => self.runs_in_flight as f64,
        }
    }
}

/// One reading of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSample {
    /// Seconds since the run started, when the answer came.
    pub t_s: f64,
    pub probe: String,
    /// The answer came and every value was found in it.
    pub ok: bool,
    pub latency_ms: f64,
    /// Why the reading failed (redacted), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The values found, by name.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    pub own: OwnFigures,
    /// The extra reading after the last socket closed (`after_close` rules).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_close: bool,
}

/// Every probe reading of a run, and the steady phase its drift and slope
/// rules look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSeries {
    /// The steady phase: after the ramp to the peak and `[drift] warmup`...
    pub steady_from_s: f64,
    /// ...to the end of the plan's peak.
    pub steady_to_s: f64,
    /// The share of the steady phase's time in each drift window (`[drift] window`).
    #[serde(default = "default_window")]
    pub window: f64,
    pub samples: Vec<ProbeSample>,
    /// The first failing streak of each bound rule, found as the readings
    /// came (before any thinning), by rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breaches: BTreeMap<String, Breach>,
    /// Readings in a row that broke each bound so far (while recording).
    #[serde(skip)]
    streaks: BTreeMap<String, u32>,
    /// Kept readings (during the run) per probe, while recording.
    #[serde(skip)]
    kept: BTreeMap<String, usize>,
}

fn default_window() -> f64 {
    0.1
}

/// The reading that completed a bound's first failing streak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub t_s: f64,
    pub value: f64,
    pub limit: f64,
    pub own: OwnFigures,
}

impl ProbeSeries {
    pub fn new(steady_from_s: f64, steady_to_s: f64, window: f64) -> ProbeSeries {
        ProbeSeries {
            steady_from_s,
            steady_to_s,
            window,
            ..ProbeSeries::default()
        }
    }

    /// Adds a sample, halving the kept resolution of its probe past
    /// [`MAX_PROBE_SAMPLES`] (every other of that probe's readings, so each
    /// probe keeps its whole time span). Bounds are judged on every reading
    /// first (`rules`), so thinning never hides a failing streak.
    pub fn push(&mut self, s: ProbeSample, rules: &[ProbeRule]) {
        if !s.after_close {
            self.observe(&s, rules);
        }
        let probe = s.probe.clone();
        let thinned = !s.after_close;
        self.samples.push(s);
        if !thinned {
            return;
        }
        let mine = self.kept.entry(probe.clone()).or_insert(0);
        *mine += 1;
        if *mine > MAX_PROBE_SAMPLES {
            let mut i: usize = 0;
            self.samples.retain(|x| {
                if x.probe != probe || x.after_close {
                    return true;
                }
                i += 1;
                i % 2 == 1
            });
            self.kept.insert(probe, i.div_ceil(2));
        }
    }

    /// Follows each bound rule's streak on one reading.
    fn observe(&mut self, s: &ProbeSample, rules: &[ProbeRule]) {
        for r in rules {
            let ProbeRuleKind::Bound { rhs, consecutive } = &r.kind else {
                continue;
            };
            let Some(v) = s.values.get(&r.value) else {
                continue;
            };
            let limit = rhs.eval(|o| s.own.get(o));
            let streak = self.streaks.entry(r.expr.clone()).or_insert(0);
            if r.op.holds(*v, limit) {
                *streak = 0;
                continue;
            }
            *streak += 1;
            if *streak >= *consecutive && !self.breaches.contains_key(&r.expr) {
                let b = Breach {
                    t_s: s.t_s,
                    value: *v,
                    limit,
                    own: s.own,
                };
                self.breaches.insert(r.expr.clone(), b);
            }
        }
    }

    /// `(t, value, own figures)` of a value, in time order (the readings
    /// during the run; `after_close` readings apart).
    pub fn points(&self, value: &str, after_close: bool) -> Vec<(f64, f64, OwnFigures)> {
        let mut v: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.after_close == after_close)
            .filter_map(|s| s.values.get(value).map(|x| (s.t_s, *x, s.own)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    /// Judges every probe rule.
    pub fn judge(&self, rules: &[ProbeRule]) -> Vec<RuleResult> {
        rules.iter().map(|r| self.judge_one(r)).collect()
    }

    fn judge_one(&self, r: &ProbeRule) -> RuleResult {
        let (observed, observed_text, limit, limit_text, unit, passed) = match &r.kind {
            ProbeRuleKind::Bound { rhs, consecutive } => {
                let pts = self.points(&r.value, false);
                let judged = bound(r, &pts, |o| rhs.eval(|s| o.get(s)), *consecutive);
                match self.breaches.get(&r.expr) {
                    // Found on every reading as they came: it stands even if
                    // the kept readings were thinned since.
                    Some(b) if judged.5 => breach_result(b, *consecutive),
                    _ => judged,
                }
            }
            ProbeRuleKind::AfterClose { rhs, .. } => {
                let pts = self.points(&r.value, true);
                let last = pts.last().map(|p| vec![*p]).unwrap_or_default();
                bound(r, &last, |o| rhs.eval(|s| o.get(s)), 1)
            }
            ProbeRuleKind::Drift { limit } => {
                let d = self.drift(&r.value);
                let passed = d.is_some_and(|(v, _, _)| r.op.holds(v, *limit));
                let text = d.map_or_else(
                    || "no data (fewer than 2 readings in the steady phase)".to_string(),
                    |(v, f, l)| format!("{:+.1}% ({} -> {})", v * 100.0, num(f), num(l)),
                );
                let limit_text = format!("{:+.1}%", limit * 100.0);
                (d.map(|x| x.0), text, *limit, limit_text, "fraction", passed)
            }
            ProbeRuleKind::Slope { per_hour } => {
                let s = self.slope(&r.value);
                let passed = s.is_some_and(|(v, _)| r.op.holds(v, *per_hour));
                let text = s.map_or_else(
                    || "no data (fewer than 3 readings in the steady phase)".to_string(),
                    |(v, n)| format!("{}/h over {n} readings", num(v)),
                );
                (
                    s.map(|x| x.0),
                    text,
                    *per_hour,
                    format!("{}/h", num(*per_hour)),
                    "per_hour",
                    passed,
                )
            }
        };
        RuleResult {
            threshold: r.expr.clone(),
            passed,
            observed,
            limit,
            observed_text,
            limit_text,
            unit: unit.to_string(),
            default: false,
        }
    }

    /// The steady phase's readings of a value.
    fn steady(&self, value: &str) -> Vec<(f64, f64)> {
        self.points(value, false)
            .into_iter()
            .filter(|(t, _, _)| *t >= self.steady_from_s && *t <= self.steady_to_s)
            .map(|(t, v, _)| (t, v))
            .collect()
    }

    /// Relative change of the mean from the first `window` of the steady
    /// phase's time to the last (at least one reading each):
    /// `(change, first mean, last mean)`.
    fn drift(&self, value: &str) -> Option<(f64, f64, f64)> {
        let pts = self.steady(value);
        if pts.len() < 2 {
            return None;
        }
        // Windows by time: the first and last `window` of the steady span
        // the readings cover (at least one reading each).
        let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
        let span = (t1 - t0) * self.window;
        let first: Vec<f64> = pts
            .iter()
            .take_while(|p| p.0 <= t0 + span)
            .map(|p| p.1)
            .collect();
        let last: Vec<f64> = pts
            .iter()
            .rev()
            .take_while(|p| p.0 >= t1 - span)
            .map(|p| p.1)
            .collect();
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let (f, l) = (mean(&first), mean(&last));
        let change = if f == 0.0 {
            if l == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (l - f) / f.abs()
        };
        Some((change, f, l))
    }

    /// Least-squares slope over the steady phase, per hour, and the readings used.
    fn slope(&self, value: &str) -> Option<(f64, usize)> {
        let pts = self.steady(value);
        if pts.len() < 3 {
            return None;
        }
        let n = pts.len() as f64;
        let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
        (sxx > 0.0).then(|| (sxy / sxx * 3600.0, pts.len()))
    }
}

type Judged = (Option<f64>, String, f64, String, &'static str, bool);

fn breach_result(b: &Breach, k: u32) -> Judged {
    let text = format!(
        "{} at {:.1}s (chatload: sockets_open {}, users_active {}, runs_in_flight {}), {k} readings in a row over the bound",
        num(b.value),
        b.t_s,
        b.own.sockets_open,
        b.own.users_active,
        b.own.runs_in_flight
    );
    (Some(b.value), text, b.limit, num(b.limit), "count", false)
}

/// A value against a bound at every reading: fails once `k` readings in a
/// row break it. Observed: the reading that completed the first failing
/// streak (or the one closest to breaking it).
fn bound(
    r: &ProbeRule,
    pts: &[(f64, f64, OwnFigures)],
    limit_at: impl Fn(&OwnFigures) -> f64,
    k: u32,
) -> Judged {
    if pts.is_empty() {
        return (
            None,
            "no data (no reading had this value)".into(),
            0.0,
            "-".into(),
            "count",
            false,
        );
    }
    if pts.len() < k as usize {
        let text = format!(
            "insufficient data ({} readings; the bound fails after {k} in a row, so it needs at least {k})",
            pts.len()
        );
        return (None, text, 0.0, "-".into(), "count", false);
    }
    let mut streak = 0u32;
    let mut failed_at: Option<usize> = None;
    // Closest to breaking: the largest value minus limit for < and <=, ...
    let mut worst = 0usize;
    let mut worst_margin = f64::NEG_INFINITY;
    for (i, (_, v, own)) in pts.iter().enumerate() {
        let lim = limit_at(own);
        let margin = match r.op {
            crate::scenario::thresholds::Op::Lt | crate::scenario::thresholds::Op::Le => v - lim,
            crate::scenario::thresholds::Op::Gt | crate::scenario::thresholds::Op::Ge => lim - v,
            crate::scenario::thresholds::Op::Eq => (v - lim).abs(),
        };
        if margin > worst_margin {
            worst_margin = margin;
            worst = i;
        }
        if r.op.holds(*v, lim) {
            streak = 0;
        } else {
            streak += 1;
            if streak >= k && failed_at.is_none() {
                failed_at = Some(i);
            }
        }
    }
    let at = failed_at.unwrap_or(worst);
    let (t, v, own) = pts[at];
    let lim = limit_at(&own);
    let text = format!(
        "{} at {:.1}s (chatload: sockets_open {}, users_active {}, runs_in_flight {}){}",
        num(v),
        t,
        own.sockets_open,
        own.users_active,
        own.runs_in_flight,
        if failed_at.is_some() && k > 1 {
            format!(", {k} readings in a row over the bound")
        } else {
            String::new()
        }
    );
    (Some(v), text, lim, num(lim), "count", failed_at.is_none())
}

/// A number for people: whole numbers plainly, others with 3 decimals at most.
fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        format!("{}", v.round() as i64)
    } else {
        crate::units::trim_float(v, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::probe_rules::parse_rule;
    use std::time::Duration;

    fn series(vals: &[(f64, f64, u64)]) -> ProbeSeries {
        let mut s = ProbeSeries::new(0.0, 1e9, 0.1);
        for (t, v, sockets) in vals {
            s.push(
                ProbeSample {
                    t_s: *t,
                    probe: "p".into(),
                    ok: true,
                    latency_ms: 1.0,
                    error: None,
                    values: [("x".to_string(), *v)].into(),
                    own: OwnFigures {
                        sockets_open: *sockets,
                        users_active: *sockets,
                        runs_in_flight: 0,
                    },
                    after_close: false,
                },
                &[],
            );
        }
        s
    }

    fn rule(key: &str, r: &str) -> ProbeRule {
        parse_rule(key, r, 3, Duration::from_secs(1), &["x"]).unwrap()
    }

    #[test]
    fn a_bound_fails_only_after_k_readings_in_a_row() {
        let b = rule("probe.x", "<= sockets_open + 2");
        // Two readings over, then back: a lag, not a leak.
        let s = series(&[
            (1.0, 10.0, 10),
            (2.0, 13.0, 10),
            (3.0, 13.0, 10),
            (4.0, 10.0, 10),
        ]);
        assert!(s.judge(std::slice::from_ref(&b))[0].passed);
        let s = series(&[(1.0, 13.0, 10), (2.0, 13.0, 10), (3.0, 14.0, 10)]);
        let r = &s.judge(&[b])[0];
        assert!(!r.passed);
        assert!(
            r.observed_text.contains("sockets_open 10"),
            "{}",
            r.observed_text
        );
        assert_eq!(r.observed, Some(14.0));
        assert_eq!(r.limit, 12.0);
    }

    #[test]
    fn fewer_readings_than_the_streak_are_insufficient_data() {
        let b = rule("probe.x", "< 0");
        let r = &series(&[(1.0, 4.0, 1), (2.0, 4.0, 1)]).judge(&[b])[0];
        assert!(!r.passed);
        assert_eq!(r.observed, None);
        assert!(
            r.observed_text.starts_with("insufficient data (2 readings"),
            "{}",
            r.observed_text
        );
    }

    #[test]
    fn thinning_keeps_each_probes_span_and_never_hides_a_streak() {
        let b = rule("probe.x", "<= sockets_open");
        let mut s = ProbeSeries::new(0.0, 1e9, 0.1);
        let sample = |probe: &str, t: f64, v: f64| ProbeSample {
            t_s: t,
            probe: probe.into(),
            ok: true,
            latency_ms: 1.0,
            error: None,
            values: [("x".to_string(), v), ("y".to_string(), 1.0)].into(),
            own: OwnFigures {
                sockets_open: 10,
                users_active: 10,
                runs_in_flight: 0,
            },
            after_close: false,
        };
        // Two probes read together; "a" breaks the bound 3 times in a row
        // early on, which thinning would leave as a streak of 1 or 2.
        let n = MAX_PROBE_SAMPLES + 10;
        for i in 0..n {
            let t = i as f64;
            let v = if (5..8).contains(&i) { 11.0 } else { 10.0 };
            s.push(sample("a", t, v), std::slice::from_ref(&b));
            let mut other = sample("b", t, 1.0);
            other.values.remove("x");
            s.push(other, std::slice::from_ref(&b));
        }
        let count = |p: &str| s.samples.iter().filter(|x| x.probe == p).count();
        assert!(count("a") <= MAX_PROBE_SAMPLES && count("a") > MAX_PROBE_SAMPLES / 3);
        assert_eq!(count("a"), count("b"));
        let first_b = s
            .samples
            .iter()
            .filter(|x| x.probe == "b")
            .map(|x| x.t_s)
            .fold(f64::MAX, f64::min);
        assert_eq!(first_b, 0.0, "probe b keeps its start");
        let r = &s.judge(&[b])[0];
        assert!(!r.passed, "{}", r.observed_text);
        assert_eq!(r.observed, Some(11.0));
        assert!(r.observed_text.contains("at 7.0s"), "{}", r.observed_text);
    }

    #[test]
    fn slope_and_drift() {
        // 1 unit per second: 3600 per hour.
        let pts: Vec<(f64, f64, u64)> = (0..20).map(|i| (i as f64, 100.0 + i as f64, 1)).collect();
        let s = series(&pts);
        let r = s.judge(&[
            rule("probe.x slope", "< 3000/h"),
            rule("probe.x drift", "< 10%"),
        ]);
        assert_eq!(r[0].observed.map(|v| v.round()), Some(3600.0));
        assert!(!r[0].passed);
        // First 2 readings (mean 100.5) against the last 2 (mean 118.5): +17.9%.
        assert!((r[1].observed.unwrap() - 18.0 / 100.5).abs() < 1e-9);
        assert!(!r[1].passed);
        let flat = series(&[(0.0, 5.0, 1), (1.0, 5.0, 1), (2.0, 5.0, 1)]);
        assert!(flat.judge(&[rule("probe.x slope", "< 1/h")])[0].passed);
        // No readings: no data, which does not pass.
        assert!(!ProbeSeries::default().judge(&[rule("probe.x slope", "< 1/h")])[0].passed);
    }
}
