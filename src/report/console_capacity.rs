//! A capacity search on the console: the step table's two sides, as
//! report.md gives them (`markdown.rs` `capacity_runs`/`capacity_connects`),
//! in columns sized to their widest cell. Imports only its `report`
//! siblings (the [`CapacityView`]).

use std::io::{self, Write};

use super::CapacityView;

/// The search: the SLOs, the agent-run side, the connect/auth side, the
/// summary (which names each side's capacity).
pub(super) fn capacity(c: &CapacityView, w: &mut impl Write) -> io::Result<()> {
    writeln!(w)?;
    writeln!(
        w,
        "  capacity search (a step holds when: {})",
        c.slo.join("; ")
    )?;
    writeln!(
        w,
        "    agent-run side (runs started in the measured window):"
    )?;
    table(w, &runs_header(c), &runs_rows(c))?;
    writeln!(
        w,
        "    connect/auth side (the whole step, warm-up included):"
    )?;
    table(w, &CONNECT_HEADER, &connect_rows(c))?;
    if let Some(o) = &c.outside {
        writeln!(w, "    {o}")?;
    }
    writeln!(w, "    {}", c.summary)
}

/// Whether the open model's "not on time" column is shown.
fn open(c: &CapacityView) -> bool {
    c.rows.iter().any(|r| r.not_on_time.is_some())
}

fn runs_header(c: &CapacityView) -> Vec<&'static str> {
    let mut h = vec![
        "step",
        "load",
        "reached",
        "runs",
        "runs/s",
        "ttfe p95",
        "ttc p50",
        "ttc p95",
        "ttc p99",
        "run_ok",
        "1011 rate",
    ];
    if open(c) {
        h.push("not on time");
    }
    h.push("result");
    h
}

fn runs_rows(c: &CapacityView) -> Vec<Vec<String>> {
    let open = open(c);
    c.rows
        .iter()
        .map(|r| {
            let result = if !r.held {
                format!("BROKE {}", r.broke)
            } else if c.knee_index == Some(r.index) {
                "held  <- knee".to_string()
            } else {
                "held".to_string()
            };
            let mut row = vec![
                r.index.to_string(),
                r.load.clone(),
                r.reached.clone(),
                r.runs.to_string(),
                r.runs_per_s.clone(),
                r.ttfe_p95.clone(),
                r.ttc_p50.clone(),
                r.ttc_p95.clone(),
                r.ttc_p99.clone(),
                r.run_ok.clone(),
                r.close_1011.clone(),
            ];
            if open {
                row.push(r.not_on_time.clone().unwrap_or_else(|| "-".into()));
            }
            row.push(result);
            row
        })
        .collect()
}

const CONNECT_HEADER: [&str; 9] = [
    "step",
    "at once",
    "opened/s",
    "ws_connect p95",
    "ws_ready p95",
    "ws_ready p99",
    "auth failures",
    "1011 before ready / during runs / idle",
    "reconnects",
];

fn connect_rows(c: &CapacityView) -> Vec<Vec<String>> {
    c.rows
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.at_once.clone(),
                r.opened_per_s.clone(),
                r.ws_connect_p95.clone(),
                r.ws_ready_p95.clone(),
                r.ws_ready_p99.clone(),
                r.auth_failures.clone(),
                r.close_1011_phases.clone(),
                r.reconnects.to_string(),
            ]
        })
        .collect()
}

/// Columns right-aligned to their widest cell, two spaces apart; the last
/// column (free text) is left as is.
fn table(w: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == last {
                    s.to_string()
                } else {
                    format!("{s:>width$}", width = widths[i])
                }
            })
            .collect();
        format!("      {}", padded.join("  ").trim_end())
    };
    writeln!(w, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(w, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
