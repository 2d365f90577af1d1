//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! network) that opens with the verdict and shows the run over time. One
//! function per section, in page order; the charts are `svg.rs`.
//!
//! Imports the view model (`report/mod.rs`), `outcome` and the metrics'
//! comparison type.

use std::fmt::Write as _;
use std::io::{self, Write};

use html_escape::encode_text as esc;

use super::svg::{charts, histogram_chart};
use super::{CapacityView, ReportData};
use crate::metrics::compare::{Comparison, RowStatus};
use crate::outcome::Verdict;

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

/// The page, top to bottom: banner, cards, thresholds, capacity, baseline,
/// charts, latency, violations, count tables, shards, notes, settings.
pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let mut o = String::with_capacity(64 * 1024);
    head_and_banner(&mut o, d);
    cards(&mut o, d);
    validity(&mut o, d);
    thresholds(&mut o, d);
    if let Some(c) = &d.capacity {
        capacity(&mut o, c);
    }
    if let Some(c) = &d.baseline {
        baseline(&mut o, c);
    }
    offered(&mut o, d);
    over_time(&mut o, d);
    latency(&mut o, d);
    table(&mut o, "Violations", &d.violations);
    samples(&mut o, d);
    table(&mut o, "Runs", &d.runs);
    table(&mut o, "Connections", &d.connections);
    table(
        &mut o,
        "Connect and handshake failures (first distinct reasons)",
        &d.failures,
    );
    table(&mut o, "Tokens", &d.tokens);
    table(&mut o, "Threads and history", &d.threads);
    table(&mut o, "Closes", &d.closes);
    table(
        &mut o,
        "Protocol errors (socket ended, by class)",
        &d.protocol_errors,
    );
    table(&mut o, "Events", &d.events);
    table(&mut o, "Frames and bytes", &d.frames);
    table(&mut o, "Reference server truth", &d.server_truth);
    shards(&mut o, d);
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

/// Why the run is INVALID, when it is.
fn validity(o: &mut String, d: &ReportData) {
    if d.validity.is_empty() {
        return;
    }
    let _ = write!(
        o,
        r#"<h2>Validity: INVALID</h2><p class="bad">{}.</p><ul>"#,
        esc(super::validity_view::INVALID_MEANING)
    );
    for c in &d.validity {
        let _ = write!(o, "<li>{}</li>", code_spans(c));
    }
    o.push_str("</ul>");
}

/// Offered vs achieved, one row per phase of the plan.
fn offered(o: &mut String, d: &ReportData) {
    if d.offered.is_empty() {
        return;
    }
    o.push_str("<h2>Offered vs achieved</h2><table><tr>");
    for h in super::validity_view::OFFERED_HEADER {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>");
    for r in &d.offered {
        let _ = write!(o, "<tr><td>{}</td><td>{}</td>", esc(&r[0]), esc(&r[1]));
        for c in &r[2..] {
            let _ = write!(o, r#"<td class="n">{}</td>"#, esc(c));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

/// Why the run has its verdict, in one line under the banner.
fn verdict_reason(d: &ReportData) -> String {
    let failed = d.failed_thresholds();
    if d.verdict == Verdict::Invalid && !d.validity.is_empty() {
        d.validity.join("; ")
    } else if !failed.is_empty() {
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
    } else if !d.judged() {
        super::NOT_JUDGED.to_string()
    } else {
        format!("{} thresholds passed", d.thresholds.len())
    }
}

/// `<head>`, the verdict banner and the run line.
fn head_and_banner(o: &mut String, d: &ReportData) {
    let class = match d.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Invalid | Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => "aborted",
    };
    let _ = write!(o, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>chatload: {} — {}</title><style>{CSS}</style></head><body>", esc(&d.title), d.verdict.title());
    let why = verdict_reason(d);
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
    if !d.tags.is_empty() {
        let tags: Vec<String> = d
            .tags
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
            .collect();
        let _ = write!(o, r#"<p class="muted">Tags: {}</p>"#, tags.join(" "));
    }
}

/// The key numbers, one card each.
fn cards(o: &mut String, d: &ReportData) {
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
}

fn thresholds(o: &mut String, d: &ReportData) {
    if !d.judged() {
        let _ = write!(o, "<p><b>{}</b></p>", code_spans(super::NOT_JUDGED));
    }
    if d.thresholds.is_empty() {
        return;
    }
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
            r#"<tr><td class="{c}">{t}</td><td><code>{}</code>{}</td><td>{}</td></tr>"#,
            esc(&v.threshold),
            super::default_mark(v),
            esc(&v.observed_text)
        );
    }
    o.push_str("</table>");
}

/// A capacity search: summary, the SLO and one row per step.
fn capacity(o: &mut String, c: &CapacityView) {
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

fn baseline(o: &mut String, c: &Comparison) {
    let _ = write!(o, "<h2>Against baseline <code>{}</code>: {}</h2><table><tr><th>statistic</th><th>baseline</th><th>this run</th><th>change</th><th>95% interval</th><th>tolerance</th><th>status</th></tr>", esc(&c.base_run), c.verdict().label());
    for r in &c.rows {
        let status = r.status();
        let class = match status {
            RowStatus::Regressed => "bad",
            RowStatus::Inconclusive | RowStatus::InsufficientData | RowStatus::Ok => "",
        };
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td><span class="{class}" title="{}">{}</span></td></tr>"#,
            esc(&r.name),
            esc(&r.base_text),
            esc(&r.new_text),
            esc(&r.delta_text),
            esc(&r.interval_text),
            esc(r.tolerance.as_deref().unwrap_or("")),
            esc(&r.detail),
            status.label()
        );
    }
    o.push_str("</table>");
}

fn over_time(o: &mut String, d: &ReportData) {
    o.push_str("<h2>Over time</h2>");
    let ch = charts(&d.over_time);
    if ch.is_empty() {
        o.push_str(r#"<p class="muted">No interval data in this snapshot.</p>"#);
    } else {
        let _ = write!(o, r#"<div class="charts">{ch}</div>"#);
    }
}

/// The latency table and one distribution chart per metric.
fn latency(o: &mut String, d: &ReportData) {
    if d.latencies.is_empty() {
        return;
    }
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

fn samples(o: &mut String, d: &ReportData) {
    if d.samples.is_empty() {
        return;
    }
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

fn shards(o: &mut String, d: &ReportData) {
    if d.shards.is_empty() {
        return;
    }
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
