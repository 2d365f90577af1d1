//! `[data]`: the rows of a data file (`.csv` or `.jsonl`), and the columns
//! its templates may use. Imports `protocol::template` and the `doc` readers.

use std::path::Path;

use serde_json::Value;

use crate::protocol::template;

use super::doc::Obj;
use super::fills::Columns;
use super::model::{DataRow, DataSelect, DataSet};

/// Most rows a data file may hold (the rows stay in memory).
pub const MAX_DATA_ROWS: usize = 1_000_000;

/// Reads a `.csv` (a header row names the columns) or `.jsonl` (one object of
/// scalars per line) file into rows.
pub fn load_data(path: &Path, max_bytes: u64) -> Result<(Vec<String>, Vec<DataRow>), String> {
    let text = super::input::read_input(path, "data file", max_bytes, false)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let (columns, rows) = match ext {
        "csv" => read_csv(path, &text)?,
        "jsonl" | "ndjson" => read_jsonl(path, &text)?,
        _ => {
            return Err(format!(
                "{}: a data file ends in .csv or .jsonl",
                path.display()
            ))
        }
    };
    if rows.is_empty() {
        return Err(format!("{} has no rows", path.display()));
    }
    if let Some(bad) = columns
        .iter()
        .find(|c| c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    {
        return Err(format!(
            "{}: column `{bad}` cannot be a placeholder (letters, digits and _ only)",
            path.display()
        ));
    }
    if let Some(c) = columns
        .iter()
        .find(|c| template::VARIABLES.contains(&c.as_str()) && c.as_str() != "prompt")
    {
        return Err(format!(
            "{}: column `{c}` would hide the built-in {{{{{c}}}}}; rename it",
            path.display()
        ));
    }
    Ok((columns, rows))
}

/// A `.csv` file: the header row names the columns, each named once.
fn read_csv(path: &Path, text: &str) -> Result<(Vec<String>, Vec<DataRow>), String> {
    let mut rows = Vec::new();
    let mut r = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = r
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if let Some(c) = columns
        .iter()
        .enumerate()
        .find_map(|(i, c)| columns[..i].contains(c).then_some(c))
    {
        return Err(format!(
            "{}: column `{c}` appears twice in the header row",
            path.display()
        ));
    }
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: row {}: {e}", path.display(), i + 2))?;
        rows.push(
            columns
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect(),
        );
        if rows.len() > MAX_DATA_ROWS {
            return Err(format!(
                "{}: more than {MAX_DATA_ROWS} rows",
                path.display()
            ));
        }
    }
    Ok((columns, rows))
}

/// A `.jsonl` file: one object of scalars per line; every row has every column.
fn read_jsonl(path: &Path, text: &str) -> Result<(Vec<String>, Vec<DataRow>), String> {
    let mut rows = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let JsonRow(m) = serde_json::from_str(line)
            .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
        let mut row = std::collections::BTreeMap::new();
        for (k, v) in m {
            if row.contains_key(&k) {
                return Err(format!(
                    "{}: line {}: `{k}` appears twice",
                    path.display(),
                    i + 1
                ));
            }
            let text = match v {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                other => {
                    return Err(format!(
                        "{}: line {}: `{k}` is {other}, not a string, number or boolean",
                        path.display(),
                        i + 1
                    ))
                }
            };
            if !columns.contains(&k) {
                columns.push(k.clone());
            }
            row.insert(k, text);
        }
        rows.push(row);
        if rows.len() > MAX_DATA_ROWS {
            return Err(format!(
                "{}: more than {MAX_DATA_ROWS} rows",
                path.display()
            ));
        }
    }
    // Every row needs every column a template may use.
    for (i, row) in rows.iter().enumerate() {
        if let Some(c) = columns.iter().find(|c| !row.contains_key(*c)) {
            return Err(format!("{}: row {} has no `{c}`", path.display(), i + 1));
        }
    }
    Ok((columns, rows))
}

/// One JSON-lines object with its keys in order, duplicates kept (a JSON map
/// would keep only the last of two equal keys).
pub(super) struct JsonRow(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for JsonRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonRow;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<JsonRow, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(JsonRow(v))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// `[data]`: the rows, and the columns templates may use (unknown when the
/// file did not load, so its placeholders add no follow-on errors).
pub(super) fn read_data(
    o: &Obj<'_>,
    base: &Path,
    max_bytes: u64,
) -> (Option<Option<DataSet>>, Columns) {
    let Some(n) = o.get("data") else {
        return (Some(None), Columns::Known(Vec::new()));
    };
    let Some(t) = n.as_obj() else {
        return (None, Columns::Unknown);
    };
    let mut ok = true;
    let select = match t.get("select") {
        None => DataSelect::PerUser,
        Some(n) => match n.as_str() {
            Some("per_user") => DataSelect::PerUser,
            Some("round_robin") => DataSelect::RoundRobin,
            Some(other) => {
                n.error(format!(
                    "unknown select `{other}` (expected per_user or round_robin)"
                ));
                ok = false;
                DataSelect::PerUser
            }
            None => {
                ok = false;
                DataSelect::PerUser
            }
        },
    };
    let file = t.require("file");
    let loaded = file.as_ref().and_then(|n| {
        let f = n.as_str()?;
        match load_data(&base.join(f), max_bytes) {
            Ok(x) => Some(x),
            Err(e) => {
                n.error(e);
                None
            }
        }
    });
    t.finish();
    let Some((columns, rows)) = loaded else {
        return (None, Columns::Unknown);
    };
    let known = Columns::Known(columns.clone());
    let set = ok.then_some(Some(DataSet {
        rows,
        columns,
        select,
    }));
    (set, known)
}
