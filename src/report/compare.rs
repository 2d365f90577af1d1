//! Baselines: per-metric deltas between two snapshots and a regression
//! verdict against tolerances (`chatload compare`, `run --baseline`).
//!
//! Tolerance grammar (the scenario's `[baseline]` table, or `--tolerance`):
//!
//! | key | value | regression when |
//! |---|---|---|
//! | `METRIC pNN` | `+10%` | new > base x 1.10 |
//! | `METRIC pNN` | `+50ms` | new > base + 50 ms |
//! | `RATE rate` | `+0.05pp` | new - base > 0.05 percentage points |
//! | `RATE rate` | `-0.5pp` | base - new > 0.5 percentage points |

use serde::{Deserialize, Serialize};

use crate::metrics::snapshot::Snapshot;
use crate::metrics::threshold::rate;
use crate::units::{format_us, format_value};
use crate::metrics::Recorder;

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Latency { metric: String, percentile: f64 },
    Rate { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowed {
    /// Relative increase, as a fraction.
    Relative(f64),
    /// Absolute increase in microseconds.
    AbsoluteUs(f64),
    /// Increase of a rate, as a fraction (0.0005 = 0.05 pp).
    PointsUp(f64),
    /// Decrease of a rate, as a fraction.
    PointsDown(f64),
}

/// How much one statistic may worsen.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    pub key: String,
    pub value: String,
    pub subject: Subject,
    pub allowed: Allowed,
}

impl Tolerance {
    pub fn parse(key: &str, value: &str) -> Result<Tolerance, String> {
        let mut w = key.split_whitespace();
        let (Some(metric), Some(stat), None) = (w.next(), w.next(), w.next()) else {
            return Err(format!(
                "tolerance key `{key}` must be `METRIC pNN` or `RATE rate`, e.g. \"ttfe p95\""
            ));
        };
        let v = value.trim();
        let subject = if stat == "rate" {
            Subject::Rate {
                name: metric.to_string(),
            }
        } else {
            let q: f64 = stat
                .strip_prefix('p')
                .and_then(|q| q.parse().ok())
                .filter(|q| (0.0..=100.0).contains(q))
                .ok_or_else(|| format!("`{stat}` is not a percentile such as p95 (or `rate`)"))?;
            Subject::Latency {
                metric: metric.to_string(),
                percentile: q,
            }
        };
        let bad = || format!("tolerance `{value}` must look like +10%, +50ms, +0.05pp or -0.5pp");
        let allowed = match &subject {
            Subject::Latency { .. } => {
                let rest = v.strip_prefix('+').ok_or_else(bad)?;
                if let Some(p) = rest.strip_suffix('%') {
                    Allowed::Relative(p.trim().parse::<f64>().map_err(|_| bad())? / 100.0)
                } else {
                    Allowed::AbsoluteUs(
                        crate::units::parse_duration(rest)
                            .map_err(|_| bad())?
                            .as_micros() as f64,
                    )
                }
            }
            Subject::Rate { .. } => {
                let pts = |s: &str| {
                    s.strip_suffix("pp")
                        .and_then(|p| p.trim().parse::<f64>().ok())
                        .map(|p| p / 100.0)
                };
                if let Some(r) = v.strip_prefix('+') {
                    Allowed::PointsUp(pts(r).ok_or_else(bad)?)
                } else if let Some(r) = v.strip_prefix('-') {
                    Allowed::PointsDown(pts(r).ok_or_else(bad)?)
                } else {
                    return Err(bad());
                }
            }
        };
        Ok(Tolerance {
            key: key.to_string(),
            value: v.to_string(),
            subject,
            allowed,
        })
    }

    /// The tolerances used when a scenario names none.
    pub fn defaults() -> Vec<Tolerance> {
        [
            ("ttfe p95", "+10%"),
            ("ttfe p99", "+20%"),
            ("ttc p95", "+10%"),
            ("ttc p99", "+20%"),
            ("close_1011 rate", "+0.05pp"),
            ("run_ok rate", "-0.5pp"),
        ]
        .iter()
        .map(|(k, v)| Tolerance::parse(k, v).expect("built-in tolerance"))
        .collect()
    }
}

/// One compared statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaRow {
    pub name: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    pub base_text: String,
    pub new_text: String,
    pub delta_text: String,
    /// The tolerance that applies, as written (`+10%`).
    pub tolerance: Option<String>,
    pub regressed: bool,
}

/// A baseline comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base_run: String,
    pub new_run: String,
    pub rows: Vec<DeltaRow>,
    pub regressed: bool,
}

const RATES: [&str; 4] = ["run_ok", "close_1011", "connect_error", "run_failed"];

fn latency(rec: &Recorder, metric: &str, q: f64) -> Option<f64> {
    rec.histograms
        .get(metric)
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q / 100.0) as f64)
}

/// Compares `new` against `base`.
pub fn compare(
    base: &Snapshot,
    new: &Snapshot,
    tolerances: &[Tolerance],
) -> Result<Comparison, crate::metrics::snapshot::SnapshotError> {
    let (b, n) = (base.recorder()?, new.recorder()?);
    let mut rows = Vec::new();
    let mut metrics: Vec<&String> = b
        .histograms
        .keys()
        .filter(|m| n.histograms.contains_key(*m))
        .collect();
    metrics.sort_by_key(|m| (!matches!(m.as_str(), "ttfe" | "ttc"), m.to_string()));
    for m in metrics {
        for q in [50.0, 95.0, 99.0] {
            let name = format!("{m} p{q}");
            let tol = tolerances.iter().find(|t| {
                t.subject
                    == Subject::Latency {
                        metric: m.clone(),
                        percentile: q,
                    }
            });
            let (bv, nv) = (latency(&b, m, q), latency(&n, m, q));
            let regressed = match (tol, bv, nv) {
                (Some(t), Some(bv), Some(nv)) => match t.allowed {
                    Allowed::Relative(f) => nv > bv * (1.0 + f),
                    Allowed::AbsoluteUs(us) => nv > bv + us,
                    _ => false,
                },
                // A statistic the gate watches that vanished is a regression.
                (Some(_), Some(_), None) => true,
                _ => false,
            };
            let delta_text = match (bv, nv) {
                (Some(bv), Some(nv)) if bv > 0.0 => format!("{:+.1}%", (nv - bv) / bv * 100.0),
                _ => "n/a".into(),
            };
            rows.push(DeltaRow {
                name,
                base: bv,
                new: nv,
                base_text: bv.map_or("n/a".into(), format_us),
                new_text: nv.map_or("n/a".into(), format_us),
                delta_text,
                tolerance: tol.map(|t| t.value.clone()),
                regressed,
            });
        }
    }
    for r in RATES {
        let (bv, nv) = (rate(&b, r), rate(&n, r));
        let tol = tolerances.iter().find(|t| {
            t.subject
                == Subject::Rate {
                    name: r.to_string(),
                }
        });
        let regressed = match (tol, bv, nv) {
            (Some(t), Some(bv), Some(nv)) => match t.allowed {
                Allowed::PointsUp(p) => nv - bv > p + 1e-12,
                Allowed::PointsDown(p) => bv - nv > p + 1e-12,
                _ => false,
            },
            _ => false,
        };
        rows.push(DeltaRow {
            name: format!("{r} rate"),
            base: bv,
            new: nv,
            base_text: bv.map_or("n/a".into(), |v| format_value(v, "fraction")),
            new_text: nv.map_or("n/a".into(), |v| format_value(v, "fraction")),
            delta_text: match (bv, nv) {
                (Some(bv), Some(nv)) => format!("{:+.3}pp", (nv - bv) * 100.0),
                _ => "n/a".into(),
            },
            tolerance: tol.map(|t| t.value.clone()),
            regressed,
        });
    }
    let regressed = rows.iter().any(|r| r.regressed);
    Ok(Comparison {
        base_run: base.run_id.clone(),
        new_run: new.run_id.clone(),
        rows,
        regressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_parse() {
        assert_eq!(
            Tolerance::parse("ttfe p95", "+10%").unwrap().allowed,
            Allowed::Relative(0.1)
        );
        assert_eq!(
            Tolerance::parse("ttc p99", "+50ms").unwrap().allowed,
            Allowed::AbsoluteUs(50_000.0)
        );
        assert_eq!(
            Tolerance::parse("run_ok rate", "-0.5pp").unwrap().allowed,
            Allowed::PointsDown(0.005)
        );
        for (k, v) in [
            ("ttfe", "+10%"),
            ("ttfe p95", "10%"),
            ("ttfe median", "+1%"),
            ("close_1011 rate", "+5%"),
        ] {
            assert!(Tolerance::parse(k, v).is_err(), "{k} = {v}");
        }
        assert_eq!(Tolerance::defaults().len(), 6);
    }
}
