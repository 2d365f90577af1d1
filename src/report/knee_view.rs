//! The knee chart's data ([`KneeView`]): a capacity search's steps as load
//! against ttc p50/p95/p99, the ttc SLO limits, the knee and the failing
//! step. Built from the per-step results of `metrics::capacity` as they are
//! (the step table is `capacity_view.rs`).
//!
//! Imports `metrics` and `names` (below `report`).

use crate::metrics::capacity::CapacityResult;
use crate::names;

/// What the knee chart plots.
#[derive(Debug, Clone, PartialEq)]
pub struct KneeView {
    /// `users` or `arrivals/s`: the x axis.
    pub unit: String,
    /// One per measured step: (load, ttc p50, p95, p99 in µs).
    pub points: Vec<(f64, f64, f64, f64)>,
    /// The ttc SLO rules with a latency limit: (limit in µs, rule as written).
    pub slo: Vec<(f64, String)>,
    /// The knee: (load, ttc p95 there, label).
    pub knee: Option<(f64, f64, String)>,
    /// The first failing step: (load, ttc p95 there, label naming the step).
    pub failing: Option<(f64, f64, String)>,
}

/// The knee chart's data, when any step measured ttc.
pub(super) fn knee_view(c: &CapacityResult) -> Option<KneeView> {
    let points: Vec<(f64, f64, f64, f64)> = c
        .steps
        .iter()
        .filter_map(|s| {
            let h = s.histograms.get(names::TTC)?;
            Some((s.load, h.p50_us as f64, h.p95_us as f64, h.p99_us as f64))
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let p95_at = |load: f64| points.iter().find(|p| p.0 == load).map_or(0.0, |p| p.2);
    let mut slo: Vec<(f64, String)> = Vec::new();
    for r in c.steps.iter().flat_map(|s| &s.slo) {
        let is_ttc = r.threshold.split_whitespace().next() == Some(names::TTC);
        if is_ttc && r.unit == "us" && !slo.iter().any(|(_, t)| *t == r.threshold) {
            slo.push((r.limit, r.threshold.clone()));
        }
    }
    let knee = c.knee.filter(|_| c.generator_limit.is_none()).map(|k| {
        let text = c.knee_text.clone().unwrap_or_else(|| k.to_string());
        (k, p95_at(k), format!("knee {text}"))
    });
    let failing = c.first_failing.as_ref().map(|f| {
        let broke = f
            .failed
            .iter()
            .map(|v| v.threshold.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        (
            f.load,
            p95_at(f.load),
            format!("step {} broke {broke}", f.index),
        )
    });
    Some(KneeView {
        unit: if c.unit == "users" {
            "users".to_string()
        } else {
            "arrivals/s".to_string()
        },
        points,
        slo,
        knee,
        failing,
    })
}
