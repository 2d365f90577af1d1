//! The nightly trend: each finished run can be appended to a SQLite history
//! (`run --history FILE`), and `chatload trend FILE` renders the key figures
//! of every recorded run (ttfe and ttc p95, 1011 rate, ok rate), oldest first.
//! Imports `metrics`, `names` and `units` (below `report`).

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::{params, Connection};

use crate::metrics::snapshot::Snapshot;
use crate::metrics::threshold::rate;
use crate::names;
use crate::units::{format_us, format_value};

/// One run in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendRow {
    pub run_id: String,
    pub scenario: String,
    pub started_at: String,
    pub verdict: String,
    pub users: u64,
    pub runs_started: u64,
    pub ok_rate: Option<f64>,
    pub close_1011_rate: Option<f64>,
    pub ttfe_p95_us: Option<u64>,
    pub ttc_p95_us: Option<u64>,
}

fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path)
        .map_err(|e| format!("cannot open the history {}: {e}", path.display()))?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS runs (
            run_id TEXT PRIMARY KEY,
            scenario TEXT NOT NULL,
            started_at TEXT NOT NULL,
            verdict TEXT NOT NULL,
            users INTEGER NOT NULL,
            runs_started INTEGER NOT NULL,
            ok_rate REAL,
            close_1011_rate REAL,
            ttfe_p95_us INTEGER,
            ttc_p95_us INTEGER
        )",
    )
    .map_err(|e| format!("the history {} is not usable: {e}", path.display()))?;
    Ok(c)
}

/// Appends (or replaces, by run id) one run's key figures.
pub fn append(path: &Path, s: &Snapshot) -> Result<(), String> {
    let rec = s.recorder().map_err(|e| e.to_string())?;
    let p95 = |m: &str| {
        rec.histograms
            .get(m)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.95) as i64)
    };
    open(path)?
        .execute(
            "INSERT OR REPLACE INTO runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                s.run_id,
                s.scenario_name,
                s.started_at,
                s.verdict.as_str(),
                s.users as i64,
                rec.counter(names::RUNS_STARTED) as i64,
                rate(&rec, "run_ok"),
                rate(&rec, "close_1011"),
                p95(names::TTFE),
                p95(names::TTC),
            ],
        )
        .map_err(|e| format!("cannot write to the history {}: {e}", path.display()))?;
    Ok(())
}

/// Every recorded run (of one scenario, when given), oldest first.
pub fn load(path: &Path, scenario: Option<&str>) -> Result<Vec<TrendRow>, String> {
    if !path.exists() {
        return Err(format!("no history at {}", path.display()));
    }
    let c = open(path)?;
    let mut stmt = c
        .prepare(
            "SELECT run_id, scenario, started_at, verdict, users, runs_started, ok_rate, close_1011_rate, ttfe_p95_us, ttc_p95_us
             FROM runs WHERE ?1 IS NULL OR scenario = ?1 ORDER BY started_at, run_id",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map(params![scenario], |r| {
            Ok(TrendRow {
                run_id: r.get(0)?,
                scenario: r.get(1)?,
                started_at: r.get(2)?,
                verdict: r.get(3)?,
                users: r.get::<_, i64>(4)? as u64,
                runs_started: r.get::<_, i64>(5)? as u64,
                ok_rate: r.get(6)?,
                close_1011_rate: r.get(7)?,
                ttfe_p95_us: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                ttc_p95_us: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn cells(r: &TrendRow) -> [String; 8] {
    let us = |v: Option<u64>| v.map_or("n/a".into(), |v| format_us(v as f64));
    let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format_value(v, "fraction"));
    [
        r.started_at.clone(),
        r.run_id.clone(),
        r.verdict.clone(),
        r.runs_started.to_string(),
        us(r.ttfe_p95_us),
        us(r.ttc_p95_us),
        pct(r.close_1011_rate),
        pct(r.ok_rate),
    ]
}

const HEAD: [&str; 8] = [
    "started",
    "run",
    "verdict",
    "runs",
    "ttfe p95",
    "ttc p95",
    "close_1011 rate",
    "ok rate",
];

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

/// A self-contained HTML page: the table and one line per figure across runs.
pub fn render_html(rows: &[TrendRow]) -> String {
    use html_escape::encode_text as esc;
    let mut o = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>chatload trend</title><style>body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}svg text{font:11px sans-serif}</style></head><body><h1>chatload trend</h1>");
    let chart = |title: &str, vals: Vec<Option<f64>>, fmt: &dyn Fn(f64) -> String| {
        let (w, h, l, b) = (640.0, 200.0, 70.0, 30.0);
        let max = vals
            .iter()
            .flatten()
            .fold(0.0f64, |a, v| a.max(*v))
            .max(1e-9)
            * 1.1;
        let n = vals.len().max(2) as f64 - 1.0;
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| {
                    format!(
                        "{:.1},{:.1}",
                        l + i as f64 / n * (w - l - 10.0),
                        h - b - v / max * (h - b - 20.0)
                    )
                })
            })
            .collect();
        format!(
            r##"<h2>{}</h2><svg viewBox="0 0 {w} {h}" width="{w}"><line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="#999"/><text x="4" y="24">{}</text><text x="4" y="{}">0</text><polyline fill="none" stroke="#2563eb" stroke-width="2" points="{}"/></svg>"##,
            esc(title),
            h - b,
            w - 10.0,
            h - b,
            esc(&fmt(max)),
            h - b,
            pts.join(" ")
        )
    };
    let us = |v: f64| format_us(v);
    let pct = |v: f64| format_value(v, "fraction");
    o.push_str(&chart(
        "ttfe p95",
        rows.iter()
            .map(|r| r.ttfe_p95_us.map(|v| v as f64))
            .collect(),
        &us,
    ));
    o.push_str(&chart(
        "ttc p95",
        rows.iter()
            .map(|r| r.ttc_p95_us.map(|v| v as f64))
            .collect(),
        &us,
    ));
    o.push_str(&chart(
        "close_1011 rate",
        rows.iter().map(|r| r.close_1011_rate).collect(),
        &pct,
    ));
    o.push_str(&chart(
        "ok rate",
        rows.iter().map(|r| r.ok_rate).collect(),
        &pct,
    ));
    o.push_str("<h2>Runs</h2><table><tr>");
    for h in HEAD {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr>");
    for r in rows {
        o.push_str("<tr>");
        for c in cells(r) {
            let _ = write!(o, "<td>{}</td>", esc(&c));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table></body></html>\n");
    o
}
