//! The inline SVG charts of `report.html`: line charts over time (latency
//! percentiles, run and close rates, with a drift rule's windows shaded) and
//! bar charts of latency distributions. No script, no network.
//!
//! Imports `units` (below `report`) and the view model's [`OverTime`].

use std::fmt::Write as _;

use html_escape::encode_text as esc;

use super::OverTime;
use crate::units::format_us;

const COLORS: [&str; 6] = [
    "#2563eb", "#f59e0b", "#dc2626", "#059669", "#7c3aed", "#0891b2",
];

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A line chart's geometry: the plot area inside the margins, and the axes' ranges.
struct Plot {
    w: f64,
    h: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
    x_max: f64,
    y_max: f64,
}

impl Plot {
    fn px(&self, x: f64) -> f64 {
        self.l + x / self.x_max * (self.w - self.l - self.r)
    }
    fn py(&self, y: f64) -> f64 {
        self.h - self.b - y / self.y_max * (self.h - self.t - self.b)
    }
}

/// A line chart as inline SVG: axes with ticks, one polyline per series, a legend.
fn line_chart(
    title: &str,
    series: &[Series<'_>],
    fmt_y: &dyn Fn(f64) -> String,
    bands: Option<[(f64, f64); 2]>,
) -> String {
    let (w, h, l, r, t, b) = (540.0, 250.0, 64.0, 12.0, 28.0, 44.0);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_max = xs.fold(0.0f64, f64::max).max(1.0);
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let p = Plot {
        w,
        h,
        l,
        r,
        t,
        b,
        x_max,
        y_max,
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<div class="chart"><svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{}">"#,
        esc(title)
    );
    let _ = write!(
        o,
        r#"<text x="{l}" y="16" style="font-weight:600;font-size:13px">{}</text>"#,
        esc(title)
    );
    drift_bands(&mut o, &p, bands);
    axes(&mut o, &p, fmt_y);
    lines_and_legend(&mut o, &p, series);
    o.push_str("</svg></div>");
    o
}

/// The windows a drift rule compares, shaded behind the lines.
fn drift_bands(o: &mut String, p: &Plot, bands: Option<[(f64, f64); 2]>) {
    let (h, t, b) = (p.h, p.t, p.b);
    for ((from, to), label) in bands
        .into_iter()
        .flatten()
        .zip(["first window", "last window"])
    {
        let (xa, xb) = (p.px(from), p.px(to.min(p.x_max)));
        let _ = write!(
            o,
            r##"<rect x="{xa:.1}" y="{t}" width="{:.1}" height="{}" fill="#a78bfa" fill-opacity="0.18"/><text x="{:.1}" y="{}" text-anchor="middle" style="fill:#6d28d9">{label}</text>"##,
            (xb - xa).max(1.0),
            h - t - b,
            (xa + xb) / 2.0,
            t + 12.0
        );
    }
}

/// Horizontal grid lines with y labels, x ticks in seconds, and the two axes.
fn axes(o: &mut String, p: &Plot, fmt_y: &dyn Fn(f64) -> String) {
    let (w, h, l, r, t, b) = (p.w, p.h, p.l, p.r, p.t, p.b);
    for i in 0..=4 {
        let y = p.y_max * i as f64 / 4.0;
        let _ = write!(
            o,
            r##"<line x1="{l}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            p.py(y) + 4.0,
            esc(&fmt_y(y)),
            py = p.py(y)
        );
    }
    for i in 0..=5 {
        let x = p.x_max * i as f64 / 5.0;
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}s</text>"#,
            p.px(x),
            h - b + 16.0,
            x
        );
    }
    let _ = write!(
        o,
        r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{}" stroke="#9ca3af"/><line x1="{l}" x2="{}" y1="{}" y2="{}" stroke="#9ca3af"/>"##,
        h - b,
        w - r,
        h - b,
        h - b
    );
}

/// One polyline per series (a dot when it has one point), and the legend.
fn lines_and_legend(o: &mut String, p: &Plot, series: &[Series<'_>]) {
    let h = p.h;
    let mut lx = p.l;
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", p.px(*x), p.py(*y)))
            .collect();
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                p.px(x),
                p.py(y),
                s.color
            );
        }
        let _ = write!(
            o,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            h - 14.0,
            s.color,
            lx + 14.0,
            h - 5.0,
            esc(s.name)
        );
        lx += 14.0 + 8.0 * s.name.len() as f64 + 16.0;
    }
}

/// A bar chart of a latency distribution (log-spaced buckets).
pub(super) fn histogram_chart(metric: &str, buckets: &[(u64, u64)]) -> String {
    let (w, h, l, r, t, b) = (540.0, 220.0, 56.0, 12.0, 28.0, 52.0);
    let n = buckets.len().max(1) as f64;
    let y_max = nice_max(buckets.iter().map(|b| b.1).max().unwrap_or(1) as f64);
    let bw = (w - l - r) / n;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<div class="chart"><svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{} distribution">"#,
        esc(metric)
    );
    let _ = write!(
        o,
        r#"<text x="{l}" y="16" style="font-weight:600;font-size:13px">{} distribution (count per bucket)</text>"#,
        esc(metric)
    );
    for i in 0..=4 {
        let y = y_max * i as f64 / 4.0;
        let py = h - b - y / y_max * (h - t - b);
        let _ = write!(
            o,
            r##"<line x1="{l}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"##,
            w - r,
            l - 6.0,
            py + 4.0,
            y
        );
    }
    let step = buckets.len().div_ceil(6).max(1);
    for (i, (upper, count)) in buckets.iter().enumerate() {
        let bh = *count as f64 / y_max * (h - t - b);
        let x = l + i as f64 * bw;
        let _ = write!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#2563eb"><title>≤ {}: {}</title></rect>"##,
            x + 1.0,
            h - b - bh,
            (bw - 2.0).max(1.0),
            bh,
            esc(&format_us(*upper as f64)),
            count
        );
        if i % step == 0 {
            let _ = write!(
                o,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">≤{}</text>"#,
                x + bw / 2.0,
                h - b + 14.0,
                esc(&format_us(*upper as f64))
            );
        }
    }
    o.push_str("</svg></div>");
    o
}

pub(super) fn charts(ot: &OverTime) -> String {
    let mut o = String::new();
    let us = |v: f64| format_us(v);
    let per_s = |v: f64| format!("{v:.1}/s");
    let lat = |name: &str, data: &[(f64, f64, f64, f64)]| {
        line_chart(
            &format!("{name} over time (per interval)"),
            &[
                Series {
                    name: "p50",
                    color: COLORS[0],
                    points: data.iter().map(|p| (p.0, p.1)).collect(),
                },
                Series {
                    name: "p95",
                    color: COLORS[1],
                    points: data.iter().map(|p| (p.0, p.2)).collect(),
                },
                Series {
                    name: "p99",
                    color: COLORS[2],
                    points: data.iter().map(|p| (p.0, p.3)).collect(),
                },
            ],
            &us,
            ot.drift_spans,
        )
    };
    if !ot.ttfe.is_empty() {
        o.push_str(&lat("ttfe", &ot.ttfe));
    }
    if !ot.ttc.is_empty() {
        o.push_str(&lat("ttc", &ot.ttc));
    }
    if !ot.runs.is_empty() {
        o.push_str(&line_chart(
            "runs per second",
            &[
                Series {
                    name: "ok",
                    color: COLORS[3],
                    points: ot.runs.iter().map(|p| (p.0, p.1)).collect(),
                },
                Series {
                    name: "failed",
                    color: COLORS[2],
                    points: ot.runs.iter().map(|p| (p.0, p.2)).collect(),
                },
            ],
            &per_s,
            None,
        ));
    }
    if !ot.closes.is_empty() {
        let series: Vec<Series<'_>> = ot
            .closes
            .iter()
            .enumerate()
            .map(|(i, (code, pts))| Series {
                name: code,
                color: COLORS[(i + 2) % COLORS.len()],
                points: pts.clone(),
            })
            .collect();
        o.push_str(&line_chart(
            "closes per second, by code",
            &series,
            &per_s,
            None,
        ));
    }
    o
}
