//! `report.md`: verdict, key numbers and tables, short enough for a pull
//! request comment. One function per section, in page order.
//!
//! Imports the view model (`report/mod.rs`), `outcome` and the metrics'
//! comparison type.

use std::io::{self, Write};

use super::{CapacityView, ReportData};
use crate::metrics::compare::{CompareVerdict, Comparison, RowStatus};

fn esc(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The report, top to bottom: title and run line, notes, thresholds,
/// capacity, baseline, key numbers, latency, count tables, shards.
pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    header(d, w)?;
    validity(d, w)?;
    thresholds(d, w)?;
    if let Some(c) = &d.capacity {
        capacity(c, w)?;
    }
    if let Some(c) = &d.baseline {
        baseline(c, w)?;
    }
    writeln!(w, "## Key numbers")?;
    writeln!(w)?;
    writeln!(w, "| | |")?;
    writeln!(w, "|---|---|")?;
    for (k, v) in &d.key_numbers {
        writeln!(w, "| {} | {} |", esc(k), esc(v))?;
    }
    writeln!(w)?;
    offered(d, w)?;
    probes(d, w)?;
    latency(d, w)?;
    table(w, "Runs", &d.runs)?;
    if !d.violations.is_empty() {
        violations(d, w)?;
    }
    table(w, "Connections", &d.connections)?;
    table(
        w,
        "Connect and handshake failures (first distinct reasons)",
        &d.failures,
    )?;
    table(w, "Tokens", &d.tokens)?;
    table(w, "Threads and history", &d.threads)?;
    table(w, "Closes", &d.closes)?;
    table(
        w,
        "Protocol errors (socket ended, by class)",
        &d.protocol_errors,
    )?;
    table(w, "Events", &d.events)?;
    table(w, "Frames and bytes", &d.frames)?;
    table(w, "Reference server truth", &d.server_truth)?;
    shards(d, w)
}

/// The target's own numbers (`[[probe]]`), one row per value.
fn probes(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.probes.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Target probes")?;
    writeln!(w)?;
    let h = super::probe_view::HEADER;
    writeln!(w, "| {} |", h.join(" | "))?;
    writeln!(w, "|{}", "---|".repeat(h.len()))?;
    for p in &d.probes {
        let row: Vec<String> = p.row().iter().map(|c| esc(c)).collect();
        writeln!(w, "| {} |", row.join(" | "))?;
    }
    writeln!(w)
}

/// The title with the verdict, the run line and the notes.
fn header(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let mark = if d.verdict == crate::outcome::Verdict::Pass {
        "✅"
    } else {
        "❌"
    };
    writeln!(w, "# chatload: {} — {mark} {}", esc(&d.title), d.verdict)?;
    writeln!(w)?;
    writeln!(
        w,
        "Run `{}` started {} for {} against {} with {} ({}).",
        d.run_id,
        d.started_at,
        d.duration,
        esc(&d.target),
        d.load_text(),
        d.tool_version
    )?;
    writeln!(w)?;
    if !d.tags.is_empty() {
        let tags: Vec<String> = d
            .tags
            .iter()
            .map(|(k, v)| format!("`{k}={}`", esc(v)))
            .collect();
        writeln!(w, "Tags: {}.", tags.join(", "))?;
        writeln!(w)?;
    }
    for n in &d.notes {
        writeln!(w, "> **{}**", esc(n))?;
        writeln!(w)?;
    }
    Ok(())
}

/// Why the run is INVALID, when it is.
fn validity(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.validity.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Validity: INVALID")?;
    writeln!(w)?;
    writeln!(w, "**{}.**", super::validity_view::INVALID_MEANING)?;
    writeln!(w)?;
    for c in &d.validity {
        writeln!(w, "- {}", esc(c))?;
    }
    writeln!(w)
}

/// Offered vs achieved, one row per phase of the plan.
fn offered(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.offered.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Offered vs achieved")?;
    writeln!(w)?;
    writeln!(
        w,
        "| {} |",
        super::validity_view::OFFERED_HEADER.join(" | ")
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for r in &d.offered {
        let cells: Vec<String> = r.iter().map(|c| esc(c)).collect();
        writeln!(w, "| {} |", cells.join(" | "))?;
    }
    writeln!(w)
}

fn thresholds(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if !d.judged() {
        writeln!(w, "**{}**", esc(super::NOT_JUDGED))?;
        writeln!(w)?;
    }
    if d.thresholds.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Thresholds")?;
    writeln!(w)?;
    writeln!(w, "| result | threshold | measured |")?;
    writeln!(w, "|---|---|---|")?;
    for v in &d.thresholds {
        writeln!(
            w,
            "| {} | `{}`{} | {} |",
            if v.passed { "pass" } else { "**FAIL**" },
            esc(&v.threshold),
            super::default_mark(v),
            esc(&v.observed_text)
        )?;
    }
    writeln!(w)
}

/// A capacity search: summary, the SLO and one row per step.
fn capacity(c: &CapacityView, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "## Capacity search")?;
    writeln!(w)?;
    writeln!(w, "**{}**", esc(&c.summary))?;
    writeln!(w)?;
    writeln!(
        w,
        "A step holds when: {}.",
        c.slo
            .iter()
            .map(|r| format!("`{}`", esc(r)))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(w)?;
    writeln!(w, "A step's runs are those that started in its measured window, however late they ended; the window (`+`: the wait after it for those runs) closes when they have all ended or timed out. Its connects are every socket opened in the step, warm-up included.")?;
    writeln!(w)?;
    capacity_runs(c, w)?;
    capacity_connects(c, w)?;
    if let Some(o) = &c.outside {
        writeln!(w, "{}", esc(o))?;
        writeln!(w)?;
    }
    Ok(())
}

/// The agent-run side of each step, with its result.
fn capacity_runs(c: &CapacityView, w: &mut impl Write) -> io::Result<()> {
    // The open model's steps also say which arrivals did not start on time.
    let open = c.rows.iter().any(|r| r.not_on_time.is_some());
    let (col, rule) = if open {
        (" not on time |", "---:|")
    } else {
        ("", "")
    };
    writeln!(
        w,
        "### Agent-run side (runs started in the measured window)"
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "| step | load | reached | window | runs | runs/s | ttfe p50 | ttfe p95 | ttfe p99 | ttc p50 | ttc p95 | ttc p99 | run_ok | failures | 1011 rate |{col} result |"
    )?;
    writeln!(
        w,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|{rule}---|"
    )?;
    for r in &c.rows {
        let result = if !r.held {
            format!("**broke**: {}", esc(&r.broke))
        } else if c.knee_index == Some(r.index) {
            "held (**knee**)".to_string()
        } else {
            "held".to_string()
        };
        let late = match (&r.not_on_time, open) {
            (Some(t), _) => format!(" {t} |"),
            (None, true) => " |".to_string(),
            (None, false) => String::new(),
        };
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{late} {result} |",
            r.index,
            esc(&r.load),
            esc(&r.reached),
            r.window,
            r.runs,
            r.runs_per_s,
            r.ttfe_p50,
            r.ttfe_p95,
            r.ttfe_p99,
            r.ttc_p50,
            r.ttc_p95,
            r.ttc_p99,
            r.run_ok,
            esc(&r.failures),
            r.close_1011,
        )?;
    }
    writeln!(w)
}

/// The connect/auth side of each step (the whole step, warm-up included).
fn capacity_connects(c: &CapacityView, w: &mut impl Write) -> io::Result<()> {
    writeln!(
        w,
        "### Connect/auth side (the whole step, warm-up included)"
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "| step | load | at once | opened/s | ws_connect p95 | ws_ready p50 | ws_ready p95 | ws_ready p99 | auth failures | 1011 before ready / during runs / idle | reconnects |"
    )?;
    writeln!(
        w,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for r in &c.rows {
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.index,
            esc(&r.load),
            r.at_once,
            r.opened_per_s,
            r.ws_connect_p95,
            r.ws_ready_p50,
            r.ws_ready_p95,
            r.ws_ready_p99,
            r.auth_failures,
            r.close_1011_phases,
            r.reconnects,
        )?;
    }
    writeln!(w)
}

/// The comparison with a baseline: latency rows and rows with a tolerance.
fn baseline(c: &Comparison, w: &mut impl Write) -> io::Result<()> {
    let verdict = c.verdict();
    writeln!(
        w,
        "## Against baseline `{}`: {}",
        c.base_run,
        match verdict {
            CompareVerdict::Regressed => "**REGRESSED**",
            CompareVerdict::Inconclusive => "inconclusive (not failed)",
            CompareVerdict::NoRegression => "no regression",
        }
    )?;
    writeln!(w)?;
    comparison_table(c, false, w)
}

/// `chatload compare`'s output: the comparison's own verdict first, then
/// what was compared, how, and every row.
pub fn comparison(c: &Comparison, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "# chatload compare: {}", c.verdict().label())?;
    writeln!(w)?;
    writeln!(w, "base `{}`, new `{}`", c.base_run, c.new_run)?;
    writeln!(w)?;
    for warning in &c.warnings {
        writeln!(w, "- warning: {}", esc(warning))?;
    }
    if !c.method.is_empty() {
        writeln!(w, "- method: {}", esc(&c.method))?;
    }
    writeln!(w)?;
    comparison_table(c, true, w)
}

/// The rows (regressions first), with each change's interval and status;
/// `all` shows rows without a tolerance beyond ttfe and ttc too.
fn comparison_table(c: &Comparison, all: bool, w: &mut impl Write) -> io::Result<()> {
    writeln!(
        w,
        "| statistic | baseline | this run | change | 95% interval | tolerance | status |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---|---|")?;
    let shown = c.rows.iter().filter(|r| {
        all || r.tolerance.is_some() || r.name.starts_with("ttfe") || r.name.starts_with("ttc")
    });
    for r in shown.clone() {
        let status = r.status();
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.base_text,
            r.new_text,
            r.delta_text,
            r.interval_text,
            r.tolerance.as_deref().unwrap_or(""),
            match status {
                RowStatus::Regressed => "**regressed**",
                other => other.label(),
            }
        )?;
    }
    writeln!(w)?;
    for r in shown.filter(|r| r.tolerance.is_some() && !r.detail.is_empty()) {
        writeln!(w, "- {}: {}", r.name, esc(&r.detail))?;
    }
    writeln!(w)
}

fn latency(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.latencies.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Latency")?;
    writeln!(w)?;
    writeln!(w, "| metric | count | p50 | p90 | p95 | p99 | max |")?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|")?;
    for r in &d.latencies {
        writeln!(
            w,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            r.metric, r.count, r.p50, r.p90, r.p95, r.p99, r.max
        )?;
    }
    writeln!(w)
}

/// A `| name | count |` table under a heading; nothing when empty.
fn table(w: &mut dyn Write, title: &str, rows: &[(String, u64)]) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(w, "## {title}")?;
    writeln!(w)?;
    writeln!(w, "| | count |")?;
    writeln!(w, "|---|---:|")?;
    for (k, v) in rows {
        writeln!(w, "| {} | {} |", esc(k), v)?;
    }
    writeln!(w)?;
    Ok(())
}

/// Violations by class and detail, and the sample offending frames.
fn violations(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    table(w, "Violations", &d.violations)?;
    table(w, "Violations by detail", &d.violation_details)?;
    writeln!(w, "### Sample offending frames")?;
    writeln!(w)?;
    writeln!(w, "| class | user | run | what | frame |")?;
    writeln!(w, "|---|---|---|---|---|")?;
    for smp in &d.samples {
        let mut frame: String = smp.frame.chars().take(160).collect();
        if frame.len() < smp.frame.len() {
            frame.push('…');
        }
        writeln!(
            w,
            "| {} | {} | {} | {} | `{}` |",
            smp.class,
            esc(&smp.user_id),
            esc(&smp.run_id),
            esc(&smp.message),
            esc(&frame).replace('`', "'")
        )?;
    }
    writeln!(w)
}

fn shards(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.shards.is_empty() {
        return Ok(());
    }
    writeln!(w, "## Shards")?;
    writeln!(w)?;
    writeln!(
        w,
        "| shard | run | users | runs started | runs ok | generator CPU | send lag p99 | verdict |"
    )?;
    writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---|")?;
    for r in d.shard_rows() {
        writeln!(
            w,
            "| {} |",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        )?;
    }
    writeln!(w)
}
