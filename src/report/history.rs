//! The run history: each finished run can be appended to a SQLite file
//! (`run --history FILE`) and `chatload trend FILE` reads it back (the
//! pages are `history_view.rs`).
//!
//! The file carries its schema version in SQLite's `user_version`; opening
//! it applies the [`MIGRATIONS`] it lacks, in order, in one transaction.
//! Version 0 is the table chatload wrote before versions existed (ttfe and
//! ttc p95 only); version 1 adds p50/p95/p99 of the key metrics
//! (`ws_connect`, `ttfe`, `ttc`) and the run's tags. A file written by a
//! newer chatload (a higher version) is refused, never rewritten.
//!
//! Imports `metrics` and `names` (below `report`).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection};

use crate::metrics::snapshot::Snapshot;
use crate::metrics::threshold::rate;
use crate::names;

/// The metrics whose p50/p95/p99 the history keeps.
pub const KEY_METRICS: [&str; 3] = [names::WS_CONNECT, names::TTFE, names::TTC];
/// The percentiles kept, as column suffixes and quantiles.
pub const PERCENTILES: [(&str, f64); 3] = [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)];

/// The table as version 0 had it (what `CREATE TABLE` makes in a new file
/// before the migrations run).
const SCHEMA_V0: &str = "CREATE TABLE IF NOT EXISTS runs (
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
)";

/// Migration `i` takes a file from version `i` to `i + 1`.
pub const MIGRATIONS: [&str; 1] = ["ALTER TABLE runs ADD COLUMN ws_connect_p50_us INTEGER;
     ALTER TABLE runs ADD COLUMN ws_connect_p95_us INTEGER;
     ALTER TABLE runs ADD COLUMN ws_connect_p99_us INTEGER;
     ALTER TABLE runs ADD COLUMN ttfe_p50_us INTEGER;
     ALTER TABLE runs ADD COLUMN ttfe_p99_us INTEGER;
     ALTER TABLE runs ADD COLUMN ttc_p50_us INTEGER;
     ALTER TABLE runs ADD COLUMN ttc_p99_us INTEGER;
     ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';"];

/// The schema version this chatload writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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
    /// `(metric, percentile)` -> µs, for [`KEY_METRICS`] x [`PERCENTILES`]
    /// (absent: no data, or a run recorded before version 1 kept it).
    pub latency: BTreeMap<(String, String), u64>,
    pub tags: BTreeMap<String, String>,
}

impl TrendRow {
    /// One key figure, e.g. `("ttc", "p95")`.
    pub fn us(&self, metric: &str, p: &str) -> Option<u64> {
        self.latency
            .get(&(metric.to_string(), p.to_string()))
            .copied()
    }
}

fn column(metric: &str, p: &str) -> String {
    format!("{metric}_{p}_us")
}

/// Opens (creating when absent) and migrates the history to [`SCHEMA_VERSION`].
pub fn open(path: &Path) -> Result<Connection, String> {
    let unusable =
        |e: rusqlite::Error| format!("the history {} is not usable: {e}", path.display());
    let mut c = Connection::open(path)
        .map_err(|e| format!("cannot open the history {}: {e}", path.display()))?;
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unusable)?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the history {} has schema version {version}, written by a newer chatload (this one reads up to {SCHEMA_VERSION})",
            path.display()
        ));
    }
    let tx = c.transaction().map_err(unusable)?;
    tx.execute_batch(SCHEMA_V0).map_err(unusable)?;
    for m in &MIGRATIONS[version as usize..] {
        tx.execute_batch(m).map_err(unusable)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(unusable)?;
    tx.commit().map_err(unusable)?;
    Ok(c)
}

/// Appends (or replaces, by run id) one run's key figures.
pub fn append(path: &Path, s: &Snapshot) -> Result<(), String> {
    let rec = s.recorder().map_err(|e| e.to_string())?;
    let at = |m: &str, q: f64| {
        rec.histograms
            .get(m)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as i64)
    };
    let mut cols = vec![
        "run_id",
        "scenario",
        "started_at",
        "verdict",
        "users",
        "runs_started",
        "ok_rate",
        "close_1011_rate",
        "tags",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    let tags = serde_json::to_string(&s.tags).expect("a map of strings serialises");
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
        Box::new(s.run_id.clone()),
        Box::new(s.scenario_name.clone()),
        Box::new(s.started_at.clone()),
        Box::new(s.verdict.as_str()),
        Box::new(s.users as i64),
        Box::new(rec.counter(names::RUNS_STARTED) as i64),
        Box::new(rate(&rec, "run_ok")),
        Box::new(rate(&rec, "close_1011")),
        Box::new(tags),
    ];
    for m in KEY_METRICS {
        for (p, q) in PERCENTILES {
            cols.push(column(m, p));
            values.push(Box::new(at(m, q)));
        }
    }
    let marks = (1..=cols.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>();
    let sql = format!(
        "INSERT OR REPLACE INTO runs ({}) VALUES ({})",
        cols.join(", "),
        marks.join(", ")
    );
    open(path)?
        .execute(&sql, rusqlite::params_from_iter(values.iter()))
        .map_err(|e| format!("cannot write to the history {}: {e}", path.display()))?;
    Ok(())
}

/// `key=value` pairs a run must carry to be listed.
pub type TagFilter = [(String, String)];

/// Every recorded run (of one scenario, when given; carrying every tag of
/// `tags`), oldest first.
pub fn load(
    path: &Path,
    scenario: Option<&str>,
    tags: &TagFilter,
) -> Result<Vec<TrendRow>, String> {
    if !path.exists() {
        return Err(format!("no history at {}", path.display()));
    }
    let c = open(path)?;
    let lat_cols: Vec<(String, String)> = KEY_METRICS
        .iter()
        .flat_map(|m| {
            PERCENTILES
                .iter()
                .map(|(p, _)| (m.to_string(), p.to_string()))
        })
        .collect();
    let sql = format!(
        "SELECT run_id, scenario, started_at, verdict, users, runs_started, ok_rate, close_1011_rate, tags, {}
         FROM runs WHERE ?1 IS NULL OR scenario = ?1 ORDER BY started_at, run_id",
        lat_cols
            .iter()
            .map(|(m, p)| column(m, p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = c.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map(params![scenario], |r| {
            let mut latency = BTreeMap::new();
            for (i, key) in lat_cols.iter().enumerate() {
                if let Some(v) = r.get::<_, Option<i64>>(9 + i)? {
                    latency.insert(key.clone(), v as u64);
                }
            }
            let tags: String = r.get(8)?;
            Ok(TrendRow {
                run_id: r.get(0)?,
                scenario: r.get(1)?,
                started_at: r.get(2)?,
                verdict: r.get(3)?,
                users: r.get::<_, i64>(4)? as u64,
                runs_started: r.get::<_, i64>(5)? as u64,
                ok_rate: r.get(6)?,
                close_1011_rate: r.get(7)?,
                latency,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
            })
        })
        .map_err(|e| e.to_string())?;
    let rows = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .filter(|r| tags.iter().all(|(k, v)| r.tags.get(k) == Some(v)))
        .collect())
}

/// Parses `k=v` (a `trend --tag` value).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not a tag; write key=value")),
    }
}
