//! The capacity search's section of `report.html`: the summary, the SLO, the
//! knee chart (drawn by `svg.rs`) and the step table, kept apart from the
//! rest of the page so the step table can change on its own.
//!
//! Imports the view model's [`CapacityView`] and `html_text.rs`.

use maud::{html, Markup, PreEscaped};

use super::html_text::code_spans;
use super::CapacityView;

/// Summary, SLO, knee chart (when drawn) and step table.
pub(super) fn capacity_section(c: &CapacityView, knee_svg: Option<String>) -> Markup {
    html! {
        h2 { "Capacity search" }
        p class=(if c.passed { "ok" } else { "bad" }) { b { (PreEscaped(code_spans(&c.summary))) } }
        p {
            "A step holds when: "
            @for (i, r) in c.slo.iter().enumerate() {
                @if i > 0 { ", " }
                code { (r) }
            }
            "."
        }
        @if let Some(svg) = knee_svg {
            div.charts.wide { (PreEscaped(svg)) }
        }
        (step_table(c))
    }
}

/// One row per step: load, runs, ttc percentiles, error and 1011 rates,
/// (open model) arrivals not on time, and whether it held.
fn step_table(c: &CapacityView) -> Markup {
    let late = c.rows.iter().any(|r| r.not_on_time.is_some());
    html! {
        table {
            tr {
                th { "step" } th { "load" } th { "runs" } th { "ttc p50" } th { "ttc p95" }
                th { "ttc p99" } th { "errors" } th { "1011 per run" }
                @if late { th { "not on time" } }
                th { "result" }
            }
            @for r in &c.rows {
                tr {
                    td { (r.index) } td { (r.load) } td { (r.runs) } td { (r.ttc_p50) }
                    td { (r.ttc_p95) } td { (r.ttc_p99) } td { (r.error_rate) } td { (r.close_1011) }
                    @if let Some(t) = &r.not_on_time { td { (t) } }
                    @if !r.held {
                        td.bad { "broke: " (PreEscaped(code_spans(&r.broke))) }
                    } @else if c.knee_index == Some(r.index) {
                        td.ok { b { "held: knee" } }
                    } @else {
                        td.ok { "held" }
                    }
                }
            }
        }
    }
}
