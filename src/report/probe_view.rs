//! The target's own numbers (`[[probe]]`) in the reports: a table of each
//! probe value (first, last, min, max, readings, failed reads) and, in the
//! HTML report, each value charted beside chatload's own open sockets and
//! the plan's users on one time axis, so a count that drifts away from
//! chatload's shows (a value of another size, such as bytes, alone).
//!
//! Imports `metrics` (the series), `svg.rs` (the over-time chart) and `plot.rs`.

use std::collections::BTreeMap;

use crate::metrics::probes::ProbeSeries;
use crate::metrics::snapshot::Snapshot;

/// One probe value over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeView {
    pub probe: String,
    pub value: String,
    /// (seconds since start, value) of every reading during the run.
    pub points: Vec<(f64, f64)>,
    /// chatload's ready sockets at the same readings.
    pub sockets_open: Vec<(f64, f64)>,
    /// The users the plan wanted at the same readings.
    pub users_active: Vec<(f64, f64)>,
    /// The reading after the last socket closed, if one was taken.
    pub after_close: Option<f64>,
    /// Reads of this value's probe, and how many failed.
    pub reads: u64,
    pub failed: u64,
}

/// Every probe value of a snapshot, in probe then value order.
pub fn probe_views(s: &Snapshot) -> Vec<ProbeView> {
    let Some(series) = &s.probes else {
        return Vec::new();
    };
    let mut by: BTreeMap<(String, String), ProbeView> = BTreeMap::new();
    let mut reads: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for smp in &series.samples {
        let r = reads.entry(smp.probe.as_str()).or_default();
        r.0 += 1;
        r.1 += u64::from(!smp.ok);
    }
    for smp in sorted(series) {
        for (name, v) in &smp.values {
            let e = by
                .entry((smp.probe.clone(), name.clone()))
                .or_insert_with(|| ProbeView {
                    probe: smp.probe.clone(),
                    value: name.clone(),
                    points: Vec::new(),
                    sockets_open: Vec::new(),
                    users_active: Vec::new(),
                    after_close: None,
                    reads: 0,
                    failed: 0,
                });
            if smp.after_close {
                e.after_close = Some(*v);
            } else {
                e.points.push((smp.t_s, *v));
                e.sockets_open.push((smp.t_s, smp.own.sockets_open as f64));
                e.users_active.push((smp.t_s, smp.own.users_active as f64));
            }
        }
    }
    by.into_values()
        .map(|mut v| {
            let (n, f) = reads.get(v.probe.as_str()).copied().unwrap_or_default();
            v.reads = n;
            v.failed = f;
            v
        })
        .collect()
}

fn sorted(s: &ProbeSeries) -> Vec<&crate::metrics::probes::ProbeSample> {
    let mut v: Vec<_> = s.samples.iter().collect();
    v.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    v
}

fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        format!("{}", v.round() as i64)
    } else {
        crate::units::trim_float(v, 3)
    }
}

impl ProbeView {
    /// The table row: probe, value, first, last, min, max, after close, reads, failed.
    pub fn row(&self) -> [String; 9] {
        let first = self.points.first().map(|p| p.1);
        let last = self.points.last().map(|p| p.1);
        let min = self.points.iter().map(|p| p.1).reduce(f64::min);
        let max = self.points.iter().map(|p| p.1).reduce(f64::max);
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), num);
        [
            self.probe.clone(),
            format!("probe.{}", self.value),
            show(first),
            show(last),
            show(min),
            show(max),
            show(self.after_close),
            self.reads.to_string(),
            self.failed.to_string(),
        ]
    }
}

/// The header of [`ProbeView::row`].
pub const HEADER: [&str; 9] = [
    "probe",
    "series",
    "first",
    "last",
    "min",
    "max",
    "after close",
    "reads",
    "failed",
];

/// The charts: each value beside chatload's open sockets and the plan's users.
pub fn charts(views: &[ProbeView]) -> String {
    use super::plot::{Line, COLORS};
    let end = views
        .iter()
        .flat_map(|v| v.points.last().map(|p| p.0))
        .fold(0.0, f64::max);
    views
        .iter()
        .filter(|v| !v.points.is_empty())
        .map(|v| {
            let mut lines = vec![Line {
                name: format!("probe.{}", v.value),
                color: COLORS[4],
                points: v.points.clone(),
            }];
            // On one axis only when the two are of one size (a count of
            // connections, not bytes of memory).
            let top = |p: &[(f64, f64)]| p.iter().map(|x| x.1).fold(0.0, f64::max);
            let (mine, theirs) = (top(&v.sockets_open), top(&v.points));
            if mine > 0.0 && theirs <= mine * 10.0 {
                lines.push(Line {
                    name: "chatload sockets_open".into(),
                    color: COLORS[0],
                    points: v.sockets_open.clone(),
                });
                lines.push(Line {
                    name: "users_active (plan)".into(),
                    color: COLORS[3],
                    points: v.users_active.clone(),
                });
            }
            super::svg::over_time_chart(
                &format!("probe-{}", v.value),
                &format!(
                    "probe.{} ({}) beside chatload's sockets and users",
                    v.value, v.probe
                ),
                lines,
                super::ticks::Quantity::Count,
                None,
                end,
            )
        })
        .collect()
}
