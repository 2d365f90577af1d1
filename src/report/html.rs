//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! network) that opens with the verdict and shows the run over time. The
//! page is a `maud` template (escaped by construction); one function per
//! section, in page order. The charts are `svg.rs`; the capacity search's
//! section is `html_capacity.rs`.
//!
//! Imports the view model (`report/mod.rs`), `outcome` and the metrics'
//! comparison type.

use std::io::{self, Write};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::html_text::code_spans;
use super::svg::{charts, histogram_chart, knee_chart, spectrum_chart};
use super::ReportData;
use crate::metrics::compare::{Comparison, RowStatus};
use crate::outcome::Verdict;

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
figure.chart{margin:0}.charts.wide{grid-template-columns:1fr}.charts.wide figure{max-width:820px}figure.chart svg{width:100%;height:auto;display:block}
.tag{background:#e0e7ff;border-radius:4px;padding:1px 6px;font-size:12px}
pre{background:#fff;border:1px solid #dfe2e8;padding:10px;overflow:auto;font-size:12px}
code{font-size:12px}.muted{color:#6b7280}
"#;

/// A table of counts, when it has rows.
fn table(title: &str, rows: &[(String, u64)]) -> Markup {
    html! {
        @if !rows.is_empty() {
            h2 { (title) }
            table {
                tr { th {} th { "count" } }
                @for (k, v) in rows {
                    tr { td { (k) } td.n { (v) } }
                }
            }
        }
    }
}

/// The page, top to bottom: banner, cards, thresholds, capacity, baseline,
/// charts, latency, violations, count tables, shards, notes, settings.
pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { "chatload: " (d.title) " — " (d.verdict.title()) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (banner(d))
                main {
                    (run_line(d))
                    (cards(d))
                    (validity(d))
                    (thresholds(d))
                    @if let Some(c) = &d.capacity {
                        (super::html_capacity::capacity_section(c, d.knee.as_ref().map(knee_chart)))
                    }
                    @if let Some(c) = &d.baseline { (baseline(c)) }
                    (offered(d))
                    (over_time(d))
                    (probes(d))
                    (latency(d))
                    (count_tables(d))
                    (shards(d))
                    @for n in &d.notes { p.bad { "Note: " (n) } }
                    h2 { "Settings" }
                    pre { (d.settings_json) }
                }
            }
        }
    };
    w.write_all(page.into_string().as_bytes())?;
    w.write_all(b"\n")
}

/// Violations, samples and every count table, in page order.
fn count_tables(d: &ReportData) -> Markup {
    html! {
        (table("Violations", &d.violations))
        (samples(d))
        (table("Runs", &d.runs))
        (table("Connections", &d.connections))
        (table("Connect and handshake failures (first distinct reasons)", &d.failures))
        (table("Tokens", &d.tokens))
        (table("Threads and history", &d.threads))
        (table("Closes", &d.closes))
        (table("Protocol errors (socket ended, by class)", &d.protocol_errors))
        (table("Events", &d.events))
        (table("Frames and bytes", &d.frames))
        (table("Reference server truth", &d.server_truth))
    }
}

/// Why the run is INVALID, when it is.
fn validity(d: &ReportData) -> Markup {
    html! {
        @if !d.validity.is_empty() {
            h2 { "Validity: INVALID" }
            p.bad { (super::validity_view::INVALID_MEANING) "." }
            ul { @for c in &d.validity { li { (PreEscaped(code_spans(c))) } } }
        }
    }
}

/// Offered vs achieved, one row per phase of the plan.
fn offered(d: &ReportData) -> Markup {
    html! {
        @if !d.offered.is_empty() {
            h2 { "Offered vs achieved" }
            table {
                tr { @for h in super::validity_view::OFFERED_HEADER { th { (h) } } }
                @for r in &d.offered {
                    tr {
                        td { (r[0]) } td { (r[1]) }
                        @for c in &r[2..] { td.n { (c) } }
                    }
                }
            }
        }
    }
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

/// The verdict banner.
fn banner(d: &ReportData) -> Markup {
    let class = match d.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Invalid | Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => "aborted",
    };
    html! {
        div class={ "banner " (class) } {
            (d.verdict.title()) " — " (d.title)
            small { (PreEscaped(code_spans(&verdict_reason(d)))) }
        }
    }
}

/// The run line under the banner, and its tags.
fn run_line(d: &ReportData) -> Markup {
    html! {
        p.muted {
            "Run " code { (d.run_id) } " started " (d.started_at) " for " (d.duration)
            " against " (d.target) " with " (d.load_text()) " (" (d.tool_version) ")."
        }
        @if !d.tags.is_empty() {
            p.tags { @for (k, v) in &d.tags { span.tag { (k) "=" (v) } " " } }
        }
    }
}

/// The key numbers, one card each.
fn cards(d: &ReportData) -> Markup {
    html! {
        div.cards {
            @for (k, v) in &d.key_numbers { div.card { b { (k) } span { (v) } } }
        }
    }
}

fn thresholds(d: &ReportData) -> Markup {
    html! {
        @if !d.judged() { p { b { (PreEscaped(code_spans(super::NOT_JUDGED))) } } }
        @if !d.thresholds.is_empty() {
            h2 { "Thresholds" }
            table {
                tr { th { "result" } th { "threshold" } th { "measured" } }
                @for v in &d.thresholds {
                    tr {
                        @if v.passed { td.ok { "pass" } } @else { td.bad { "FAIL" } }
                        td { code { (v.threshold) } (super::default_mark(v)) }
                        td { (v.observed_text) }
                    }
                }
            }
        }
    }
}

/// The baseline table, regressions first, then by significance
/// (`Comparison::sort_rows`).
fn baseline(c: &Comparison) -> Markup {
    html! {
        h2 { "Against baseline " code { (c.base_run) } ": " (c.verdict().label()) }
        table {
            tr {
                th { "statistic" } th { "baseline" } th { "this run" } th { "change" }
                th { "95% interval" } th { "p-value" } th { "tolerance" } th { "status" }
            }
            @for r in &c.rows {
                @let status = r.status();
                @let class = match status {
                    RowStatus::Regressed => "bad",
                    RowStatus::Inconclusive | RowStatus::InsufficientData | RowStatus::Ok => "",
                };
                tr {
                    td { (r.name) }
                    td.n { (r.base_text) }
                    td.n { (r.new_text) }
                    td.n { (r.delta_text) }
                    td.n { (r.interval_text) }
                    td.n { (r.p_value.map_or(String::new(), |p| format!("{p:.3}"))) }
                    td { (r.tolerance.as_deref().unwrap_or("")) }
                    td { span class=(class) title=(r.detail) { (status.label()) } }
                }
            }
        }
    }
}

fn over_time(d: &ReportData) -> Markup {
    let ch = charts(&d.over_time);
    html! {
        h2 { "Over time" }
        @if ch.is_empty() {
            p.muted { "No interval data in this snapshot." }
        } @else {
            div.charts { (PreEscaped(ch)) }
        }
    }
}

/// The target's own numbers: a table, and each value charted beside
/// chatload's open sockets.
fn probes(d: &ReportData) -> Markup {
    let h = super::probe_view::HEADER;
    html! {
        @if !d.probes.is_empty() {
            h2 { "Target probes" }
            table {
                tr { @for c in h { th { (c) } } }
                @for p in &d.probes {
                    tr { @for c in p.row() { td { (c) } } }
                }
            }
            div.charts { (PreEscaped(super::probe_view::charts(&d.probes))) }
        }
    }
}

/// The latency table, the percentile spectra and the distributions.
fn latency(d: &ReportData) -> Markup {
    html! {
        @if !d.latencies.is_empty() {
            h2 { "Latency" }
            table {
                tr {
                    th { "metric" } th { "count" } th { "p50" } th { "p90" } th { "p95" }
                    th { "p99" } th { "max" }
                }
                @for r in &d.latencies {
                    tr {
                        td { code { (r.metric) } }
                        td.n { (r.count) } td.n { (r.p50) } td.n { (r.p90) }
                        td.n { (r.p95) } td.n { (r.p99) } td.n { (r.max) }
                    }
                }
            }
            @if !d.spectra.is_empty() {
                h2 { "Percentile spectrum" }
                div.charts {
                    @for (m, pts) in &d.spectra { (PreEscaped(spectrum_chart(m, pts))) }
                }
            }
            h2 { "Distributions" }
            div.charts {
                @for (m, buckets) in &d.distributions { (PreEscaped(histogram_chart(m, buckets))) }
            }
        }
    }
}

fn samples(d: &ReportData) -> Markup {
    html! {
        @if !d.samples.is_empty() {
            h2 { "Sample offending frames" }
            table {
                tr { th { "class" } th { "user" } th { "run" } th { "what" } th { "frame" } }
                @for s in &d.samples {
                    tr {
                        td { (s.class) } td { (s.user_id) } td { (s.run_id) } td { (s.message) }
                        td { code { (s.frame.chars().take(400).collect::<String>()) } }
                    }
                }
            }
        }
    }
}

fn shards(d: &ReportData) -> Markup {
    html! {
        @if !d.shards.is_empty() {
            h2 { "Shards" }
            table {
                tr {
                    th { "shard" } th { "run" } th { "users" } th { "runs started" } th { "runs ok" }
                    th { "generator CPU" } th { "send lag p99" } th { "verdict" }
                }
                @for r in d.shard_rows() { tr { @for c in r { td { (c) } } } }
            }
        }
    }
}
