//! Baselines: per-metric deltas between two snapshots and a regression
//! verdict against the scenario's tolerances (`scenario/baseline.rs`).
//! Used by `chatload compare` and `run --baseline`.

use serde::{Deserialize, Serialize};

use crate::metrics::recorder::Recorder;
use crate::metrics::threshold::rate;
use crate::scenario::baseline::{Allowed, Subject, Tolerance};
use crate::units::{format_us, format_value};

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

/// Compares the recorded data of `new` against `base` (run ids as named).
/// The snapshot-level entry point is `judge::compare`.
pub fn compare_recorders(
    (base_run, b): (&str, &Recorder),
    (new_run, n): (&str, &Recorder),
    tolerances: &[Tolerance],
) -> Comparison {
    let mut rows = latency_rows(b, n, tolerances);
    rows.extend(rate_rows(b, n, tolerances));
    let regressed = rows.iter().any(|r| r.regressed);
    Comparison {
        base_run: base_run.to_string(),
        new_run: new_run.to_string(),
        rows,
        regressed,
    }
}

/// p50, p95 and p99 of every latency metric both runs recorded (ttfe and ttc first).
fn latency_rows(b: &Recorder, n: &Recorder, tolerances: &[Tolerance]) -> Vec<DeltaRow> {
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
            let (bv, nv) = (latency(b, m, q), latency(n, m, q));
            let regressed = match (tol, bv, nv) {
                (Some(t), Some(bv), Some(nv)) => match t.allowed {
                    Allowed::Relative(f) => nv > bv * (1.0 + f),
                    Allowed::AbsoluteUs(us) => nv > bv + us,
                    Allowed::PointsUp(_) | Allowed::PointsDown(_) => false,
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
    rows
}

/// The watched rates ([`RATES`]).
fn rate_rows(b: &Recorder, n: &Recorder, tolerances: &[Tolerance]) -> Vec<DeltaRow> {
    let mut rows = Vec::new();
    for r in RATES {
        let (bv, nv) = (rate(b, r), rate(n, r));
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
                Allowed::Relative(_) | Allowed::AbsoluteUs(_) => false,
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
    rows
}
