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

/// The readings of a `probes.jsonl` (lines that do not parse, such as a
/// last line cut by a kill, are left out).
pub fn read_jsonl(path: &std::path::Path) -> Vec<ProbeSample> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut s = ProbeSeries::default();
    for line in text.lines() {
        if let Ok(x) = serde_json::from_str(line) {
            s.push(x);
        }
    }
    s.samples
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
    pub samples: Vec<ProbeSample>,
}

impl ProbeSeries {
    /// Adds a sample, halving the kept resolution past [`MAX_PROBE_SAMPLES`].
    pub fn push(&mut self, s: ProbeSample) {
        self.samples.push(s);
        if self.samples.len() > MAX_PROBE_SAMPLES {
            let mut i = 0;
            self.samples.retain(|s| {
                i += 1;
                i % 2 == 1 || s.after_close
            });
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
                bound(r, &pts, |o| rhs.eval(|s| o.get(s)), *consecutive)
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

    /// Relative change of the mean from the first tenth of the steady
    /// phase's readings to the last tenth (at least one reading each):
    /// `(change, first mean, last mean)`.
    fn drift(&self, value: &str) -> Option<(f64, f64, f64)> {
        let pts = self.steady(value);
        if pts.len() < 2 {
            return None;
        }
        let w = (pts.len() / 10).max(1);
        let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
        let (f, l) = (mean(&pts[..w]), mean(&pts[pts.len() - w..]));
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
        let mut s = ProbeSeries {
            steady_from_s: 0.0,
            steady_to_s: 1e9,
            samples: vec![],
        };
        for (t, v, sockets) in vals {
            s.push(ProbeSample {
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
            });
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
