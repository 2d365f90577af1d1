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
        @if let Some(o) = &c.outside {
            p { (o) }
        }
    }
}

/// The two sides of each step: the agent-run table (runs started in the
/// measured window) and the connect/auth table (the whole step, warm-up
/// included), the same figures as `report.md`'s.
fn step_table(c: &CapacityView) -> Markup {
    let late = c.rows.iter().any(|r| r.not_on_time.is_some());
    html! {
        p { "A step's runs are those that started in its measured window, however late they ended; "
            "the window (" code { "+" } ": the wait after it for those runs) closes when they have all ended or timed out. "
            "Its connects are every socket opened in the step, warm-up included." }
        h3 { "Agent-run side (runs started in the measured window)" }
        table {
            tr {
                th { "step" } th { "load" } th { "reached" } th { "window" } th { "runs" } th { "runs/s" }
                th { "ttfe p50" } th { "ttfe p95" } th { "ttfe p99" }
                th { "ttc p50" } th { "ttc p95" } th { "ttc p99" }
                th { "run_ok" } th { "failures" } th { "1011 rate" }
                @if late { th { "not on time" } }
                th { "result" }
            }
            @for r in &c.rows {
                tr {
                    td { (r.index) } td { (r.load) } td { (r.reached) } td { (r.window) } td { (r.runs) }
                    td { (r.runs_per_s) } td { (r.ttfe_p50) } td { (r.ttfe_p95) } td { (r.ttfe_p99) }
                    td { (r.ttc_p50) } td { (r.ttc_p95) } td { (r.ttc_p99) }
                    td { (r.run_ok) } td { (r.failures) } td { (r.close_1011) }
                    @if late { td { (r.not_on_time.as_deref().unwrap_or("")) } }
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
        h3 { "Connect/auth side (the whole step, warm-up included)" }
        table {
            tr {
                th { "step" } th { "load" } th { "at once" } th { "opened/s" } th { "ws_connect p95" }
                th { "ws_ready p50" } th { "ws_ready p95" } th { "ws_ready p99" } th { "auth failures" }
                th { "1011 before ready / during runs / idle" } th { "reconnects" }
            }
            @for r in &c.rows {
                tr {
                    td { (r.index) } td { (r.load) } td { (r.at_once) } td { (r.opened_per_s) }
                    td { (r.ws_connect_p95) } td { (r.ws_ready_p50) } td { (r.ws_ready_p95) }
                    td { (r.ws_ready_p99) } td { (r.auth_failures) } td { (r.close_1011_phases) }
                    td { (r.reconnects) }
                }
            }
        }
    }
}
