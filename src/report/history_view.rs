//! The pages of `chatload trend`: a Markdown table, or an HTML page with one
//! chart per key figure across runs (p50/p95/p99 of the key metrics, the
//! 1011 and ok rates), each run on the x axis by its date and run id, and
//! the table of runs with their tags and verdicts.
//!
//! Imports `units` (below `report`), `history.rs` (the rows), `plot.rs` and
//! `ticks.rs`.

use std::fmt::Write as _;

use maud::{html, PreEscaped, DOCTYPE};

use super::history::{TrendRow, KEY_METRICS, PERCENTILES};
use plotters::chart::SeriesLabelPosition;

use super::plot::{line_chart, Chart, Line, COLORS};
use super::ticks::{Axis, Quantity};
use crate::units::{format_us, format_value};

const HEAD: [&str; 10] = [
    "started",
    "run",
    "verdict",
    "tags",
    "runs",
    "ttfe p50 / p95 / p99",
    "ttc p50 / p95 / p99",
    "ws_connect p95",
    "close_1011 rate",
    "ok rate",
];

fn cells(r: &TrendRow) -> [String; 10] {
    let us = |m: &str, p: &str| r.us(m, p).map_or("n/a".into(), |v| format_us(v as f64));
    let three = |m: &str| format!("{} / {} / {}", us(m, "p50"), us(m, "p95"), us(m, "p99"));
    let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format_value(v, "fraction"));
    [
        r.started_at.clone(),
        r.run_id.clone(),
        r.verdict.clone(),
        tags_text(r),
        r.runs_started.to_string(),
        three("ttfe"),
        three("ttc"),
        us("ws_connect", "p95"),
        pct(r.close_1011_rate),
        pct(r.ok_rate),
    ]
}

fn tags_text(r: &TrendRow) -> String {
    r.tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Markdown trend: one row per run, oldest first.
pub fn render_md(rows: &[TrendRow]) -> String {
    let mut o = String::from("# chatload trend\n\n");
    let _ = writeln!(o, "{} runs, oldest first.\n", rows.len());
    let _ = writeln!(o, "| {} |", HEAD.join(" | "));
    let _ = writeln!(o, "|{}", "---|".repeat(HEAD.len()));
    for r in rows {
        let _ = writeln!(o, "| {} |", cells(r).join(" | "));
    }
    o
}

/// A run's x-axis label: its date and time (UTC, to the minute) and its id.
pub fn run_label(r: &TrendRow) -> String {
    let when = r
        .started_at
        .get(..16)
        .map_or(r.started_at.clone(), |s| s.replace('T', " "));
    format!("{when} {}", r.run_id)
}

/// One chart across runs: x is the run's place in time order, labelled by
/// date and run id.
fn trend_chart(
    id: &str,
    title: &str,
    rows: &[TrendRow],
    lines: Vec<Line>,
    quantity: Quantity,
) -> String {
    let n = rows.len().max(1);
    // At most 8 labelled runs, evenly spread, the newest always labelled.
    let every = n.div_ceil(8).max(1);
    let mut ticks: Vec<f64> = (0..n).rev().step_by(every).map(|i| i as f64).collect();
    ticks.reverse();
    let x = Axis::fixed(-0.5, n as f64 - 0.5, ticks);
    let top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let y = Axis::linear(0.0, top, 4, quantity);
    let fx = |v: f64| {
        rows.get(v.round() as usize)
            .map(run_label)
            .unwrap_or_default()
    };
    let fy = |v: f64| y.label(v);
    line_chart(&Chart {
        id: id.to_string(),
        title: title.to_string(),
        x,
        y: y.clone(),
        x_label: &fx,
        y_label: &fy,
        x_desc: "",
        y_desc: "",
        lines,
        bands: Vec::new(),
        rules: Vec::new(),
        marks: Vec::new(),
        dots: true,
        x_rotated: true,
        legend: SeriesLabelPosition::UpperLeft,
    })
}

/// (run index, value) for the runs that have the value.
fn series(rows: &[TrendRow], f: impl Fn(&TrendRow) -> Option<f64>) -> Vec<(f64, f64)> {
    rows.iter()
        .enumerate()
        .filter_map(|(i, r)| f(r).map(|v| (i as f64, v)))
        .collect()
}

/// The charts: p50/p95/p99 of each key metric, then the two rates.
fn charts(rows: &[TrendRow]) -> String {
    let mut o = String::new();
    for m in KEY_METRICS {
        let lines: Vec<Line> = PERCENTILES
            .iter()
            .enumerate()
            .map(|(i, (p, _))| Line {
                name: p.to_string(),
                color: COLORS[i],
                points: series(rows, |r| r.us(m, p).map(|v| v as f64)),
            })
            .collect();
        if lines.iter().any(|l| !l.points.is_empty()) {
            o.push_str(&trend_chart(
                &format!("trend-{m}"),
                &format!("{m} p50 / p95 / p99 by run"),
                rows,
                lines,
                Quantity::Micros,
            ));
        }
    }
    for (id, title, color, f) in [
        (
            "trend-close-1011",
            "close_1011 rate by run",
            COLORS[2],
            (|r: &TrendRow| r.close_1011_rate) as fn(&TrendRow) -> Option<f64>,
        ),
        ("trend-ok-rate", "ok rate by run", COLORS[3], |r| r.ok_rate),
    ] {
        let line = Line {
            name: title.split(' ').next().unwrap_or(title).to_string(),
            color,
            points: series(rows, f),
        };
        o.push_str(&trend_chart(
            id,
            title,
            rows,
            vec![line],
            Quantity::Fraction,
        ));
    }
    o
}

/// A self-contained HTML page: the charts, then the table of runs.
pub fn render_html(rows: &[TrendRow]) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "chatload trend" }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "chatload trend" }
                p { (rows.len()) " runs, oldest first." }
                div.charts { (PreEscaped(charts(rows))) }
                h2 { "Runs" }
                table {
                    tr { @for h in HEAD { th { (h) } } }
                    @for r in rows { tr { @for c in cells(r) { td { (c) } } } }
                }
            }
        }
    };
    page.into_string() + "\n"
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330;background:#f5f6f8}table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}figure.chart{margin:0;background:#fff;border:1px solid #dfe2e8;border-radius:6px;padding:6px}figure.chart svg{width:100%;height:auto;display:block}";
