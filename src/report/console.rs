//! The end-of-run console summary (plain text, fixed-width tables), one
//! function per section, and the sentence on refused tokens ([`auth_note`])
//! the run adds to its notes. Imports the view model (`report/mod.rs`) and
//! `names`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::ReportData;
use crate::names;

/// What the recognised auth failures (`tokens.rejected`) say, for a run's
/// notes: no token ever accepted points at the signing key or the token
/// source; some accepted means the target's auth path refused tokens under
/// load (PROTOCOL.md section 8). `None` without a refused token.
pub fn auth_note(counters: &BTreeMap<String, u64>) -> Option<String> {
    let c = |k: &str| counters.get(k).copied().unwrap_or(0);
    let rejected = c(names::TOKENS_REJECTED);
    if rejected == 0 {
        return None;
    }
    let (attempted, ready) = (c(names::CONN_ATTEMPTED), c(names::CONN_READY));
    let phases: Vec<String> = names::CLOSE_PHASES
        .iter()
        .filter(|p| c(&names::tokens_rejected(p)) > 0)
        .map(|p| format!("{} {}", c(&names::tokens_rejected(p)), p.replace('_', " ")))
        .collect();
    let by_phase = if phases.is_empty() {
        String::new()
    } else {
        format!(": {}", phases.join(", "))
    };
    Some(if ready == 0 {
        let what = if rejected >= attempted {
            "every connect was rejected for auth"
        } else {
            "no token was accepted"
        };
        format!(
            "{what} ({rejected} of {attempted} connects refused for auth{by_phase}): check the signing key / token source (auth.secret_env and the claims, the tokens file or the login endpoint)"
        )
    } else {
        format!(
            "the target's auth path refused {rejected} tokens under load ({ready} connects were accepted{by_phase}); counted as tokens.rejected, not in close_1011 rate"
        )
    })
}

/// The summary, top to bottom: title, key numbers, latency, count tables,
/// thresholds, capacity, notes.
pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "chatload: {} — {}  [{}]", d.title, d.verdict, d.run_id)?;
    writeln!(
        w,
        "  target {}  |  {}  |  {}",
        d.target,
        d.load_text(),
        d.duration
    )?;
    if !d.tags.is_empty() {
        let tags: Vec<String> = d.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(w, "  tags {}", tags.join(" "))?;
    }
    validity(d, w)?;
    writeln!(w)?;
    for (k, v) in &d.key_numbers {
        writeln!(w, "  {:<22} {}", k, v)?;
    }
    offered(d, w)?;
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
    table(w, "connect and handshake failures", &d.failures)?;
    table(w, "tokens", &d.tokens)?;
    table(w, "threads and history", &d.threads)?;
    table(w, "closes (code, and phase)", &d.closes)?;
    table(
        w,
        "protocol errors (socket ended, by class)",
        &d.protocol_errors,
    )?;
    table(w, "events", &d.events)?;
    table(w, "frames and bytes", &d.frames)?;
    thresholds(d, w)?;
    baseline(d, w)?;
    if let Some(c) = &d.capacity {
        super::console_capacity::capacity(c, w)?;
    }
    for n in &d.notes {
        writeln!(w)?;
        writeln!(w, "  note: {n}")?;
    }
    writeln!(w)?;
    Ok(())
}

/// The INVALID banner and its causes.
fn validity(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.validity.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(w, "  {}", super::validity_view::INVALID_MEANING)?;
    for c in &d.validity {
        writeln!(w, "    - {c}")?;
    }
    Ok(())
}

/// Offered vs achieved, one row per phase.
fn offered(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    if d.offered.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    writeln!(w, "  offered vs achieved")?;
    let h = super::validity_view::OFFERED_HEADER;
    let line = |c: &[String]| {
        format!(
            "    {:<12} {:>11} {:>13} {:>13} {:>10} {:>10} {:>8} {:>9}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let header: Vec<String> = [
        h[0],
        h[1],
        "planned",
        "actual",
        "arr plan",
        "arr start",
        h[6],
        h[7],
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    writeln!(w, "{}", line(&header))?;
    for r in &d.offered {
        writeln!(w, "{}", line(r))?;
    }
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

/// The baseline comparison's verdict and every gated row that is not ok.
fn baseline(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let Some(c) = &d.baseline else {
        return Ok(());
    };
    writeln!(w)?;
    writeln!(
        w,
        "  against baseline {}: {}",
        c.base_run,
        c.verdict().label()
    )?;
    for r in c.rows.iter().filter(|r| r.tolerance.is_some()) {
        writeln!(
            w,
            "    {:<18} {:<20} {:>8} {:<22} tolerance {}",
            r.status().label(),
            r.name,
            r.delta_text,
            r.interval_text,
            r.tolerance.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
