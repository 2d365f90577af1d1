//! The end-of-run console summary (plain text, fixed-width tables), one
//! function per section. Imports only the view model (`report/mod.rs`).

use std::io::{self, Write};

use super::{CapacityView, ReportData};

/// The summary, top to bottom: title, key numbers, latency, count tables,
/// thresholds, capacity, notes.
pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "chatload: {} — {}  [{}]", d.title, d.verdict, d.run_id)?;
    writeln!(
        w,
        "  target {}  |  {} users  |  {}",
        d.target, d.users, d.duration
    )?;
    writeln!(w)?;
    for (k, v) in &d.key_numbers {
        writeln!(w, "  {:<22} {}", k, v)?;
    }
    latency(d, w)?;
    table(w, "runs", &d.runs)?;
    table(w, "violations", &d.violations)?;
    if !d.samples.is_empty() {
        writeln!(w, "    first offending frames (all in violations.jsonl):")?;
        for smp in d.samples.iter().take(5) {
            writeln!(
                w,
                "      {}: {} (user {}, run {})",
                smp.class, smp.message, smp.user_id, smp.run_id
            )?;
        }
    }
    table(w, "connections", &d.connections)?;
    table(w, "tokens", &d.tokens)?;
    table(w, "threads and history", &d.threads)?;
    table(w, "closes (code, and phase)", &d.closes)?;
    table(w, "events", &d.events)?;
    table(w, "frames and bytes", &d.frames)?;
    thresholds(d, w)?;
    if let Some(c) = &d.capacity {
        capacity(c, w)?;
    }
    for n in &d.notes {
        writeln!(w)?;
        writeln!(w, "  note: {n}")?;
    }
    writeln!(w)?;
    Ok(())
}

fn latency(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.latencies.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(
        w,
        "  {:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "p50", "p90", "p95", "p99", "max"
    )?;
    for r in &d.latencies {
        writeln!(
            w,
            "  {:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.metric, r.count, r.p50, r.p90, r.p95, r.p99, r.max
        )?;
    }
    Ok(())
}

/// A titled list of counts; nothing when empty.
fn table(w: &mut dyn Write, title: &str, rows: &[(String, u64)]) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(w, "  {title}")?;
    for (k, v) in rows {
        writeln!(w, "    {:<36} {:>9}", k, v)?;
    }
    Ok(())
}

fn thresholds(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if !d.judged() {
        writeln!(w)?;
        writeln!(w, "  {}", super::NOT_JUDGED)?;
    }
    if d.thresholds.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(w, "  thresholds")?;
    for v in &d.thresholds {
        writeln!(
            w,
            "    {} {:<40} measured {}",
            if v.passed { "PASS" } else { "FAIL" },
            super::rule_label(v),
            v.observed_text
        )?;
    }
    Ok(())
}

/// A capacity search: one row per step, then the summary.
fn capacity(c: &CapacityView, w: &mut impl Write) -> io::Result<()> {
    writeln!(w)?;
    writeln!(
        w,
        "  capacity search (a step holds when: {})",
        c.slo.join("; ")
    )?;
    writeln!(
        w,
        "    {:>4}  {:>12}  {:>7}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}  result",
        "step", "load", "runs", "ttc p50", "ttc p95", "ttc p99", "errors", "1011/run"
    )?;
    for r in &c.rows {
        writeln!(
            w,
            "    {:>4}  {:>12}  {:>7}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}  {}",
            r.index,
            r.load,
            r.runs,
            r.ttc_p50,
            r.ttc_p95,
            r.ttc_p99,
            r.error_rate,
            r.close_1011,
            if r.held {
                if c.knee_index == Some(r.index) {
                    "held  <- knee".to_string()
                } else {
                    "held".to_string()
                }
            } else {
                format!("BROKE {}", r.broke)
            }
        )?;
    }
    writeln!(w, "    {}", c.summary)
}
