//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! network) that opens with the verdict and shows the run over time.

use std::fmt::Write as _;
use std::io::{self, Write};

use html_escape::encode_text as esc;

/// Escapes text written for Markdown, turning its `code` spans into
/// `<code>` (verdict summaries are shared by every format).
fn code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&esc(part));
            out.push_str("</code>");
        } else {
            out.push_str(&esc(part));
        }
    }
    // An odd number of backticks: the last one had no partner; keep it.
    if text.matches('`').count() % 2 == 1 {
        if let Some(at) = out.rfind("<code>") {
            out.replace_range(at..at + "<code>".len(), "`");
            if out.ends_with("</code>") {
                out.truncate(out.len() - "</code>".len());
            }
        }
    }
    out
}

use super::{OverTime, ReportData};
use crate::outcome::Verdict;
use crate::units::format_us;

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
.banner{padding:18px 24px;color:#fff;font-size:22px;font-weight:600}
.banner.pass{background:#1f8a4c}.banner.fail{background:#c0392b}.banner.aborted{background:#8e5b00}
.banner small{display:block;font-size:14px;font-weight:400;opacity:.92;margin-top:4px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d9dce3;padding-bottom:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dfe2e8;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:12px;color:#5b6272;font-weight:500}.card span{font-size:17px;font-weight:600}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1f8a4c;font-weight:600}.bad{color:#c0392b;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.chart{background:#fff;border:1px solid #dfe2e8;border-radius:6px;padding:6px}
svg text{font:11px system-ui,sans-serif;fill:#3a4150}
pre{background:#fff;border:1px solid #dfe2e8;padding:10px;overflow:auto;font-size:12px}
code{font-size:12px}.muted{color:#6b7280}
"#;

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
    let px = |x: f64| l + x / x_max * (w - l - r);
    let py = |y: f64| h - b - y / y_max * (h - t - b);
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
    // The windows a drift rule compares, shaded behind the lines.
    for ((from, to), label) in bands
        .into_iter()
        .flatten()
        .zip(["first window", "last window"])
    {
        let (xa, xb) = (px(from), px(to.min(x_max)));
        let _ = write!(
            o,
            r##"<rect x="{xa:.1}" y="{t}" width="{:.1}" height="{}" fill="#a78bfa" fill-opacity="0.18"/><text x="{:.1}" y="{}" text-anchor="middle" style="fill:#6d28d9">{label}</text>"##,
            (xb - xa).max(1.0),
            h - t - b,
            (xa + xb) / 2.0,
            t + 12.0
        );
    }
    for i in 0..=4 {
        let y = y_max * i as f64 / 4.0;
        let _ = write!(
            o,
            r##"<line x1="{l}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            py(y) + 4.0,
            esc(&fmt_y(y)),
            py = py(y)
        );
    }
    for i in 0..=5 {
        let x = x_max * i as f64 / 5.0;
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}s</text>"#,
            px(x),
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
    let mut lx = l;
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
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
                px(x),
                py(y),
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
    o.push_str("</svg></div>");
    o
}

/// A bar chart of a latency distribution (log-spaced buckets).
fn histogram_chart(metric: &str, buckets: &[(u64, u64)]) -> String {
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

fn charts(ot: &OverTime) -> String {
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

fn table(o: &mut String, title: &str, rows: &[(String, u64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<h2>{}</h2><table><tr><th></th><th>count</th></tr>",
        esc(title)
    );
    for (k, v) in rows {
        let _ = write!(o, r#"<tr><td>{}</td><td class="n">{v}</td></tr>"#, esc(k));
    }
    o.push_str("</table>");
}

pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let mut o = String::with_capacity(64 * 1024);
    let class = match d.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Invalid | Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => "aborted",
    };
    let _ = write!(o, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>chatload: {} — {}</title><style>{CSS}</style></head><body>", esc(&d.title), d.verdict.title());
    let failed = d.failed_thresholds();
    let why = if !failed.is_empty() {
        failed
            .iter()
            .map(|v| format!("{} (measured {})", v.threshold, v.observed_text))
            .collect::<Vec<_>>()
            .join("; ")
    } else if d.baseline.as_ref().is_some_and(|c| c.regressed) {
        "regression against the baseline".to_string()
    } else if matches!(d.verdict, Verdict::Aborted | Verdict::Partial) {
        d.notes.join("; ")
    } else if let Some(c) = &d.capacity {
        // A capacity search is judged by its knee, not by thresholds.
        c.summary.clone()
    } else {
        format!("{} thresholds passed", d.thresholds.len())
    };
    let _ = write!(
        o,
        r#"<div class="banner {class}">{} — {}<small>{}</small></div><main>"#,
        d.verdict.title(),
        esc(&d.title),
        code_spans(&why)
    );
    let _ = write!(
        o,
        r#"<p class="muted">Run <code>{}</code> started {} for {} against {} with {} users ({}).</p>"#,
        esc(&d.run_id),
        esc(&d.started_at),
        esc(&d.duration),
        esc(&d.target),
        d.users,
        esc(&d.tool_version)
    );
    o.push_str(r#"<div class="cards">"#);
    for (k, v) in &d.key_numbers {
        let _ = write!(
            o,
            r#"<div class="card"><b>{}</b><span>{}</span></div>"#,
            esc(k),
            esc(v)
        );
    }
    o.push_str("</div>");
    if !d.thresholds.is_empty() {
        o.push_str(
            "<h2>Thresholds</h2><table><tr><th>result</th><th>threshold</th><th>measured</th></tr>",
        );
        for v in &d.thresholds {
            let (c, t) = if v.passed {
                ("ok", "pass")
            } else {
                ("bad", "FAIL")
            };
            let _ = write!(
                o,
                r#"<tr><td class="{c}">{t}</td><td><code>{}</code></td><td>{}</td></tr>"#,
                esc(&v.threshold),
                esc(&v.observed_text)
            );
        }
        o.push_str("</table>");
    }
    if let Some(c) = &d.capacity {
        let _ = write!(
            o,
            r#"<h2>Capacity search</h2><p class="{}"><b>{}</b></p><p>A step holds when: {}.</p><table><tr><th>step</th><th>load</th><th>runs</th><th>ttc p50</th><th>ttc p95</th><th>ttc p99</th><th>errors</th><th>1011 per run</th>{}<th>result</th></tr>"#,
            if c.passed { "ok" } else { "bad" },
            code_spans(&c.summary),
            c.slo
                .iter()
                .map(|r| format!("<code>{}</code>", esc(r)))
                .collect::<Vec<_>>()
                .join(", "),
            if c.rows.iter().any(|r| r.not_on_time.is_some()) {
                "<th>not on time</th>"
            } else {
                ""
            }
        );
        for r in &c.rows {
            let result = if !r.held {
                format!(r#"<td class="bad">broke: {}</td>"#, code_spans(&r.broke))
            } else if c.knee_index == Some(r.index) {
                r#"<td class="ok"><b>held: knee</b></td>"#.to_string()
            } else {
                r#"<td class="ok">held</td>"#.to_string()
            };
            let late = r
                .not_on_time
                .as_ref()
                .map(|t| format!("<td>{}</td>", esc(t)))
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{late}{result}</tr>",
                r.index, esc(&r.load), r.runs, esc(&r.ttc_p50), esc(&r.ttc_p95), esc(&r.ttc_p99), esc(&r.error_rate), esc(&r.close_1011)
            );
        }
        o.push_str("</table>");
    }
    if let Some(c) = &d.baseline {
        let _ = write!(o, "<h2>Against baseline <code>{}</code></h2><table><tr><th>statistic</th><th>baseline</th><th>this run</th><th>change</th><th>tolerance</th><th></th></tr>", esc(&c.base_run));
        for r in &c.rows {
            let verdict = if r.regressed {
                r#"<span class="bad">regressed</span>"#
            } else {
                ""
            };
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td>{verdict}</td></tr>"#,
                esc(&r.name),
                esc(&r.base_text),
                esc(&r.new_text),
                esc(&r.delta_text),
                esc(r.tolerance.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Over time</h2>");
    let ch = charts(&d.over_time);
    if ch.is_empty() {
        o.push_str(r#"<p class="muted">No interval data in this snapshot.</p>"#);
    } else {
        let _ = write!(o, r#"<div class="charts">{ch}</div>"#);
    }
    if !d.latencies.is_empty() {
        o.push_str("<h2>Latency</h2><table><tr><th>metric</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th></tr>");
        for r in &d.latencies {
            let _ = write!(
                o,
                r#"<tr><td><code>{}</code></td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(&r.metric),
                r.count,
                esc(&r.p50),
                esc(&r.p90),
                esc(&r.p95),
                esc(&r.p99),
                esc(&r.max)
            );
        }
        o.push_str("</table>");
        o.push_str(r#"<div class="charts">"#);
        for (m, buckets) in &d.distributions {
            o.push_str(&histogram_chart(m, buckets));
        }
        o.push_str("</div>");
    }
    table(&mut o, "Violations", &d.violations);
    if !d.samples.is_empty() {
        o.push_str("<h2>Sample offending frames</h2><table><tr><th>class</th><th>user</th><th>run</th><th>what</th><th>frame</th></tr>");
        for s in &d.samples {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&s.class),
                esc(&s.user_id),
                esc(&s.run_id),
                esc(&s.message),
                esc(&s.frame.chars().take(400).collect::<String>())
            );
        }
        o.push_str("</table>");
    }
    table(&mut o, "Runs", &d.runs);
    table(&mut o, "Connections", &d.connections);
    table(&mut o, "Tokens", &d.tokens);
    table(&mut o, "Threads and history", &d.threads);
    table(&mut o, "Closes", &d.closes);
    table(&mut o, "Events", &d.events);
    table(&mut o, "Frames and bytes", &d.frames);
    table(&mut o, "Reference server truth", &d.server_truth);
    if !d.shards.is_empty() {
        o.push_str("<h2>Shards</h2><table><tr><th>shard</th><th>run</th><th>users</th><th>runs started</th><th>runs ok</th><th>generator CPU</th><th>send lag p99</th><th>verdict</th></tr>");
        for r in d.shard_rows() {
            o.push_str("<tr>");
            for c in r {
                let _ = write!(o, "<td>{}</td>", esc(&c));
            }
            o.push_str("</tr>");
        }
        o.push_str("</table>");
    }
    for n in &d.notes {
        let _ = write!(o, r#"<p class="bad">Note: {}</p>"#, esc(n));
    }
    let _ = writeln!(
        o,
        "<h2>Settings</h2><pre>{}</pre></main></body></html>",
        esc(&d.settings_json)
    );
    w.write_all(o.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_become_code_elements_and_the_rest_is_escaped() {
        assert_eq!(
            code_spans("broke `ttc p95 < 2s` (measured <3s>)"),
            "broke <code>ttc p95 &lt; 2s</code> (measured &lt;3s&gt;)"
        );
        assert_eq!(code_spans("no spans"), "no spans");
        assert_eq!(code_spans("one ` alone"), "one ` alone");
    }
}
