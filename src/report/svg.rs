//! The charts of `report.html`, as inline SVG drawn by `plot.rs`: lines over
//! time (latency percentiles, run and close rates, with a drift rule's
//! windows shaded), the knee chart of a capacity search, a percentile
//! spectrum per key metric and bar charts of latency distributions. No
//! script, no network.
//!
//! Imports `units` (below `report`), the view model's [`OverTime`] and
//! [`KneeView`], `plot.rs` and `ticks.rs`.

use super::knee_view::KneeView;
use plotters::chart::SeriesLabelPosition;

use super::plot::{bar_chart, line_chart, Bars, Chart, Line, Mark, COLORS};
use super::ticks::{nines, nines_label, time_axis, time_label, Axis, Quantity};
use super::OverTime;
use crate::units::format_us;

/// The top of a set of values (0 when empty).
fn top(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// p50, p95 and p99 lines from (x, p50, p95, p99) points.
fn percentile_lines(data: &[(f64, f64, f64, f64)]) -> Vec<Line> {
    [("p50", 0), ("p95", 1), ("p99", 2)]
        .into_iter()
        .map(|(name, i)| Line {
            name: name.to_string(),
            color: COLORS[i],
            points: data.iter().map(|p| (p.0, [p.1, p.2, p.3][i])).collect(),
        })
        .collect()
}

/// A chart over the run's time, its x axis adapted to the run's length.
pub(super) fn over_time_chart(
    id: &str,
    title: &str,
    lines: Vec<Line>,
    quantity: Quantity,
    bands: Option<[(f64, f64); 2]>,
    end_s: f64,
) -> String {
    let x = time_axis(end_s, 6);
    let y = Axis::linear(
        0.0,
        top(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1))),
        4,
        quantity,
    );
    let step = x.step();
    let fx = move |v: f64| time_label(v, step);
    let fy = |v: f64| y.label(v);
    let y_desc = match quantity {
        Quantity::Micros => "latency",
        Quantity::PerSecond => "per second",
        Quantity::Count | Quantity::Fraction | Quantity::Plain => "",
    };
    let dots = lines.iter().all(|l| l.points.len() <= 12);
    line_chart(&Chart {
        id: id.to_string(),
        title: title.to_string(),
        x: x.clone(),
        y: y.clone(),
        x_label: &fx,
        y_label: &fy,
        x_desc: "time since start",
        y_desc,
        lines,
        bands: bands
            .into_iter()
            .flatten()
            .zip(["first window", "last window"])
            .map(|((a, b), l)| (a, b, l))
            .collect(),
        rules: Vec::new(),
        marks: Vec::new(),
        dots,
        x_rotated: false,
        legend: SeriesLabelPosition::UpperLeft,
    })
}

/// The over-time charts: ttfe and ttc percentiles, runs and closes per second.
pub(super) fn charts(ot: &OverTime) -> String {
    let end = top(ot
        .ttfe
        .iter()
        .chain(&ot.ttc)
        .map(|p| p.0)
        .chain(ot.runs.iter().map(|p| p.0)));
    let mut o = String::new();
    for (name, data) in [("ttfe", &ot.ttfe), ("ttc", &ot.ttc)] {
        if !data.is_empty() {
            o.push_str(&over_time_chart(
                &format!("{name}-over-time"),
                &format!("{name} over time (per interval)"),
                percentile_lines(data),
                Quantity::Micros,
                ot.drift_spans,
                end,
            ));
        }
    }
    if !ot.runs.is_empty() {
        let lines = vec![
            Line {
                name: "ok".into(),
                color: COLORS[3],
                points: ot.runs.iter().map(|p| (p.0, p.1)).collect(),
            },
            Line {
                name: "failed".into(),
                color: COLORS[2],
                points: ot.runs.iter().map(|p| (p.0, p.2)).collect(),
            },
        ];
        o.push_str(&over_time_chart(
            "runs-per-second",
            "runs per second",
            lines,
            Quantity::PerSecond,
            None,
            end,
        ));
    }
    if !ot.closes.is_empty() {
        let lines = ot
            .closes
            .iter()
            .enumerate()
            .map(|(i, (code, pts))| Line {
                name: code.clone(),
                color: COLORS[(i + 2) % COLORS.len()],
                points: pts.clone(),
            })
            .collect();
        o.push_str(&over_time_chart(
            "closes-per-second",
            "closes per second, by code",
            lines,
            Quantity::PerSecond,
            None,
            end,
        ));
    }
    o
}

/// A bar chart of a latency distribution (log-spaced buckets).
pub(super) fn histogram_chart(metric: &str, buckets: &[(u64, u64)]) -> String {
    let y = Axis::linear(
        0.0,
        top(buckets.iter().map(|b| b.1 as f64)),
        4,
        Quantity::Count,
    );
    let fy = |v: f64| y.label(v);
    bar_chart(&Bars {
        id: format!("{metric}-distribution"),
        title: format!("{metric} distribution (count per bucket)"),
        labels: buckets
            .iter()
            .map(|b| format!("≤{}", format_us(b.0 as f64)))
            .collect(),
        values: buckets.iter().map(|b| b.1 as f64).collect(),
        y: y.clone(),
        y_label: &fy,
        x_desc: "latency bucket (upper bound)",
        y_desc: "count",
    })
}

/// A percentile spectrum: latency by percentile on the log "nines" axis.
pub(super) fn spectrum_chart(metric: &str, points: &[(f64, f64)]) -> String {
    let last = points.last().map_or(1.0, |p| p.0);
    // Whole nines only: 0%, 90%, 99%, 99.9%...
    let x = Axis::linear(0.0, last.ceil().max(1.0), 6, Quantity::Count);
    let y = Axis::linear(0.0, top(points.iter().map(|p| p.1)), 4, Quantity::Micros);
    let fx = |v: f64| nines_label(v);
    let fy = |v: f64| y.label(v);
    line_chart(&Chart {
        id: format!("{metric}-spectrum"),
        title: format!("{metric} by percentile (whole run)"),
        x: x.clone(),
        y: y.clone(),
        x_label: &fx,
        y_label: &fy,
        x_desc: "percentile",
        y_desc: "latency",
        lines: vec![Line {
            name: metric.to_string(),
            color: COLORS[0],
            points: points.to_vec(),
        }],
        bands: Vec::new(),
        rules: Vec::new(),
        marks: [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")]
            .into_iter()
            .filter(|(q, _)| nines(*q) <= last)
            .filter_map(|(q, name)| {
                let at = points.iter().find(|p| p.0 >= nines(q) - 1e-9)?;
                Some(Mark {
                    at: *at,
                    text: format!("{name} {}", format_us(at.1)),
                    color: COLORS[2],
                    below: false,
                })
            })
            .collect(),
        dots: false,
        x_rotated: false,
        legend: SeriesLabelPosition::LowerRight,
    })
}

/// Load against ttc p50/p95/p99, the SLO limits, the knee and the failing step.
pub(super) fn knee_chart(k: &KneeView) -> String {
    let x = Axis::linear(0.0, top(k.points.iter().map(|p| p.0)), 6, Quantity::Plain);
    let y_top = top(k
        .points
        .iter()
        .map(|p| p.3)
        .chain(k.slo.iter().map(|s| s.0)));
    let y = Axis::linear(0.0, y_top, 4, Quantity::Micros);
    let fx = |v: f64| x.label(v);
    let fy = |v: f64| y.label(v);
    let mut marks = Vec::new();
    if let Some((load, p95, text)) = &k.knee {
        marks.push(Mark {
            at: (*load, *p95),
            text: text.clone(),
            color: COLORS[3],
            below: true,
        });
    }
    if let Some((load, p95, text)) = &k.failing {
        marks.push(Mark {
            at: (*load, *p95),
            text: text.clone(),
            color: COLORS[2],
            below: false,
        });
    }
    line_chart(&Chart {
        id: "knee".to_string(),
        title: "capacity: load against ttc".to_string(),
        x: x.clone(),
        y: y.clone(),
        x_label: &fx,
        y_label: &fy,
        x_desc: &k.unit,
        y_desc: "ttc",
        lines: percentile_lines(&k.points),
        bands: Vec::new(),
        rules: k
            .slo
            .iter()
            .map(|(limit, text)| (*limit, format!("SLO {text}"), COLORS[4]))
            .collect(),
        marks,
        dots: true,
        x_rotated: false,
        legend: SeriesLabelPosition::LowerRight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_of_little_or_flat_data_still_draw() {
        assert_eq!(charts(&OverTime::default()), "");
        let one = OverTime {
            ttc: vec![(0.4, 0.0, 0.0, 0.0)],
            runs: vec![(0.4, 0.0, 0.0)],
            ..OverTime::default()
        };
        let svg = charts(&one);
        assert_eq!(svg.matches("<svg").count(), 2);
        // A flat zero series: a µs axis from 0, no "NaN" anywhere.
        assert!(svg.contains("0µs") && !svg.contains("NaN"), "{svg}");
        for svg in [
            histogram_chart("ttc", &[(1000, 0)]),
            spectrum_chart("ttc", &[(0.0, 5.0), (0.5, 5.0)]),
            knee_chart(&KneeView {
                unit: "users".into(),
                points: vec![(4.0, 1e3, 2e3, 3e3)],
                slo: vec![],
                knee: None,
                failing: Some((4.0, 2e3, "step 1 broke ttc p95 < 1ms".into())),
            }),
        ] {
            assert!(svg.contains("<svg") && !svg.contains("NaN"), "{svg}");
        }
    }
}
