//! A span-aware reader over a parsed TOML document.
//!
//! The scenario loader walks the document with [`Obj`] and [`Node`], taking each
//! key it knows and recording every problem it meets into one shared
//! [`Diagnostics`] list, so a file with five mistakes reports all five at once
//! (k6's `Validate() []error`). Unknown keys are errors, reported at the key.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::units::{parse_duration, parse_percent};

/// One problem in a scenario file, located by line, column and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key path, e.g. `workload.ramp[1].over`.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        writeln!(
            f,
            "{}: {} problem{} found",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.items {
            if d.path.is_empty() {
                writeln!(f, "  {}:{}:{}: {}", self.file, d.line, d.column, d.message)?;
            } else {
                writeln!(
                    f,
                    "  {}:{}:{}: `{}`: {}",
                    self.file, d.line, d.column, d.path, d.message
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The text of the file, for turning byte offsets into line and column.
pub struct Source {
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(text: String) -> Self {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Source { text, line_starts }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based (line, column) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }
}

/// Shared sink for diagnostics while a document is walked.
#[derive(Clone)]
pub struct Ctx {
    src: Rc<Source>,
    items: Rc<RefCell<Vec<Diagnostic>>>,
}

impl Ctx {
    pub fn new(src: Rc<Source>) -> Self {
        Ctx {
            src,
            items: Rc::new(RefCell::new(Vec::new())),
        }
    }

    pub fn error(&self, span: Option<Range<usize>>, path: &str, message: impl Into<String>) {
        let (line, column) = self.src.line_col(span.map(|s| s.start).unwrap_or(0));
        self.items.borrow_mut().push(Diagnostic {
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.items.borrow().is_empty()
    }

    pub fn take(&self) -> Vec<Diagnostic> {
        let mut v = std::mem::take(&mut *self.items.borrow_mut());
        v.sort_by_key(|d| (d.line, d.column));
        v
    }
}

/// A value in the document with its path and position.
#[derive(Clone)]
pub struct Node<'a> {
    pub ctx: Ctx,
    pub path: String,
    pub item: Elem<'a>,
    pub span: Option<Range<usize>>,
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
        Item::Value(v) => value_type_name(v),
    }
}

impl<'a> Node<'a> {
    pub fn error(&self, message: impl Into<String>) {
        self.ctx.error(self.span.clone(), &self.path, message);
    }

    fn wrong_type(&self, expected: &str) {
        self.error(format!(
            "expected {expected}, found {}",
            self.item.type_name()
        ));
    }

    /// Parses a string value into `slot`; false (with the error recorded) when it does not parse.
    pub fn parse_into<T: std::str::FromStr<Err = String>>(&self, slot: &mut T) -> bool {
        let Some(text) = self.as_str() else {
            return false;
        };
        match text.parse() {
            Ok(v) => {
                *slot = v;
                true
            }
            Err(e) => {
                self.error(e);
                false
            }
        }
    }

    /// The string value, if this is a string (no error otherwise).
    pub fn item_str(&self) -> Option<&'a str> {
        self.item.as_str()
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self.item.as_str() {
            Some(s) => Some(s),
            None => {
                self.wrong_type("a string");
                None
            }
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self.item.as_integer() {
            Some(i) if i >= 0 => Some(i as u64),
            Some(_) => {
                self.error("must not be negative");
                None
            }
            None => {
                self.wrong_type("an integer");
                None
            }
        }
    }

    /// A finite number. `inf` and `nan` were already reported at their own
    /// position by [`refuse_non_finite`] when the document was opened, so they
    /// give `None` here without a second error.
    pub fn as_f64(&self) -> Option<f64> {
        if let Some(i) = self.item.as_integer() {
            return Some(i as f64);
        }
        match self.item.as_float() {
            Some(f) if f.is_finite() => Some(f),
            Some(_) => None,
            None => {
                self.wrong_type("a number");
                None
            }
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type("true or false");
                None
            }
        }
    }

    /// A duration written as a string such as `"30s"`, `"2m"`, `"500ms"`, `"1h 30m"`.
    pub fn as_duration(&self) -> Option<Duration> {
        let s = self.as_str()?;
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(e);
                None
            }
        }
    }

    /// A percentage written as `"0.5%"` or a fraction written as a number in 0..=1.
    pub fn as_fraction(&self) -> Option<f64> {
        let v = if let Some(s) = self.item.as_str() {
            match parse_percent(s) {
                Ok(v) => v,
                Err(e) => {
                    self.error(e);
                    return None;
                }
            }
        } else {
            self.as_f64()?
        };
        if !(0.0..=1.0).contains(&v) {
            self.error("must be between 0% and 100% (or 0.0 and 1.0)");
            return None;
        }
        Some(v)
    }

    pub fn as_obj(&self) -> Option<Obj<'a>> {
        match self.item.as_table_like() {
            Some(t) => Some(Obj {
                node: self.clone(),
                table: t,
                used: RefCell::new(BTreeSet::new()),
            }),
            None => {
                self.wrong_type("a table");
                None
            }
        }
    }

    /// Elements of an array or an array of tables.
    pub fn as_array(&self) -> Option<Vec<Node<'a>>> {
        let array = match self.item {
            Elem::Item(Item::ArrayOfTables(a)) => {
                return Some(
                    a.iter()
                        .enumerate()
                        .map(|(i, t)| Node {
                            ctx: self.ctx.clone(),
                            path: format!("{}[{}]", self.path, i),
                            item: Elem::Table(t),
                            span: t.span(),
                        })
                        .collect(),
                )
            }
            other => other.value().and_then(Value::as_array),
        };
        match array {
            None => {
                self.wrong_type("an array");
                None
            }
            Some(a) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Node {
                        ctx: self.ctx.clone(),
                        path: format!("{}[{}]", self.path, i),
                        item: Elem::Value(v),
                        span: v.span(),
                    })
                    .collect(),
            ),
        }
    }

    /// Converts this value to JSON (for message templates).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        self.item.to_json().or_else(|| {
            self.error("cannot be represented as JSON (datetimes are not allowed here)");
            None
        })
    }

    /// The value as JSON for the scenario echo: never fails and records
    /// nothing (a datetime becomes its text, `inf`/`nan` null). Only a file
    /// without errors is echoed, and such a file holds neither.
    pub fn to_json_lossy(&self) -> serde_json::Value {
        self.item.to_json_lossy()
    }
}

/// Joins a key to a dotted path, quoting keys that are not bare words:
/// `thresholds."ttfe p95"`.
pub fn join_path(parent: &str, key: &str) -> String {
    let key = if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{key}\"")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// Calls `f` with every string inside `n` (tables and arrays walked), each as
/// a node of its own, so a problem in one names its key path and position.
pub fn for_each_string<'a>(n: &Node<'a>, f: &mut dyn FnMut(&Node<'a>, &'a str)) {
    let child = |path: String, item: Elem<'a>, span: Option<Range<usize>>| Node {
        ctx: n.ctx.clone(),
        path,
        item,
        span,
    };
    match n.item {
        Elem::Item(Item::Value(v)) | Elem::Value(v) => match v {
            Value::String(s) => f(n, s.value()),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    for_each_string(
                        &child(format!("{}[{i}]", n.path), Elem::Value(x), x.span()),
                        f,
                    );
                }
            }
            Value::InlineTable(t) => {
                for (k, x) in t.iter() {
                    for_each_string(&child(join_path(&n.path, k), Elem::Value(x), x.span()), f);
                }
            }
            _ => {}
        },
        Elem::Item(Item::Table(t)) | Elem::Table(t) => {
            for (k, x) in t.iter() {
                let span = x.span().or_else(|| t.key(k).and_then(|key| key.span()));
                for_each_string(&child(join_path(&n.path, k), Elem::Item(x), span), f);
            }
        }
        Elem::Item(Item::ArrayOfTables(a)) => {
            for (i, t) in a.iter().enumerate() {
                for_each_string(
                    &child(format!("{}[{i}]", n.path), Elem::Table(t), t.span()),
                    f,
                );
            }
        }
        Elem::Item(Item::None) => {}
    }
}

/// Reports every `inf` and `nan` in the document, each at its own position
/// with its key path: no key of a scenario takes a non-finite number, and JSON
/// (the snapshot's echo, message templates) cannot carry one.
pub fn refuse_non_finite(ctx: &Ctx, path: &str, item: Elem<'_>, span: Option<Range<usize>>) {
    match item {
        Elem::Item(Item::Value(v)) | Elem::Value(v) => match v {
            Value::Float(f) if !f.value().is_finite() => ctx.error(
                v.span().or(span),
                path,
                format!(
                    "`{}` is not a finite number (inf and nan are not allowed)",
                    f.value()
                ),
            ),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    refuse_non_finite(ctx, &format!("{path}[{i}]"), Elem::Value(x), x.span());
                }
            }
            Value::InlineTable(t) => {
                for (k, x) in t.iter() {
                    refuse_non_finite(ctx, &join_path(path, k), Elem::Value(x), x.span());
                }
            }
            _ => {}
        },
        Elem::Item(Item::Table(t)) | Elem::Table(t) => {
            for (k, x) in t.iter() {
                refuse_non_finite(ctx, &join_path(path, k), Elem::Item(x), x.span());
            }
        }
        Elem::Item(Item::ArrayOfTables(a)) => {
            for (i, t) in a.iter().enumerate() {
                refuse_non_finite(ctx, &format!("{path}[{i}]"), Elem::Table(t), t.span());
            }
        }
        Elem::Item(Item::None) => {}
    }
}

/// A borrowed element of the document: toml_edit keeps array elements as
/// `Value`s and the tables of an array of tables as `Table`s, not as `Item`s.
#[derive(Clone, Copy)]
pub enum Elem<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Elem<'a> {
    fn value(self) -> Option<&'a Value> {
        match self {
            Elem::Item(Item::Value(v)) => Some(v),
            Elem::Value(v) => Some(v),
            _ => None,
        }
    }
    pub(crate) fn as_str(self) -> Option<&'a str> {
        self.value()?.as_str()
    }
    pub fn as_integer(self) -> Option<i64> {
        self.value()?.as_integer()
    }
    /// This element as JSON, without recording an error.
    pub fn to_json_quiet(self) -> Option<serde_json::Value> {
        self.to_json()
    }
    fn as_float(self) -> Option<f64> {
        self.value()?.as_float()
    }
    fn as_bool(self) -> Option<bool> {
        self.value()?.as_bool()
    }
    /// Whether this is a table (inline or not), without recording an error.
    pub fn as_table_like_pub(self) -> Option<&'a dyn TableLike> {
        self.as_table_like()
    }

    fn as_table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Elem::Item(i) => i.as_table_like(),
            Elem::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
            Elem::Table(t) => Some(t as &dyn TableLike),
        }
    }
    /// Whether this is an array (of values or of tables).
    pub fn value_is_array(self) -> bool {
        matches!(self, Elem::Item(Item::ArrayOfTables(_)))
            || self.value().is_some_and(Value::is_array)
    }
    /// The kind of value, for messages ("string", "integer", ...).
    pub fn type_name_pub(self) -> &'static str {
        self.type_name()
    }
    fn type_name(self) -> &'static str {
        match self {
            Elem::Item(i) => type_name(i),
            Elem::Value(v) => value_type_name(v),
            Elem::Table(_) => "table",
        }
    }
    fn to_json(self) -> Option<serde_json::Value> {
        match self {
            Elem::Item(i) => item_to_json(i),
            Elem::Value(v) => value_to_json(v),
            Elem::Table(t) => table_to_json(t),
        }
    }
    fn to_json_lossy(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Elem::Item(Item::None) => J::Null,
            Elem::Item(Item::Value(v)) | Elem::Value(v) => match v {
                Value::Float(f) => {
                    serde_json::Number::from_f64(*f.value()).map_or(J::Null, J::Number)
                }
                Value::Datetime(d) => J::String(d.value().to_string()),
                Value::Array(a) => {
                    J::Array(a.iter().map(|x| Elem::Value(x).to_json_lossy()).collect())
                }
                Value::InlineTable(t) => J::Object(
                    t.iter()
                        .map(|(k, x)| (k.to_string(), Elem::Value(x).to_json_lossy()))
                        .collect(),
                ),
                other => value_to_json(other).unwrap_or(J::Null),
            },
            Elem::Item(Item::Table(t)) | Elem::Table(t) => J::Object(
                t.iter()
                    .map(|(k, x)| (k.to_string(), Elem::Item(x).to_json_lossy()))
                    .collect(),
            ),
            Elem::Item(Item::ArrayOfTables(a)) => {
                J::Array(a.iter().map(|t| Elem::Table(t).to_json_lossy()).collect())
            }
        }
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::InlineTable(_) => "inline table",
    }
}

fn table_to_json(t: &toml_edit::Table) -> Option<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in t.iter() {
        m.insert(k.to_string(), item_to_json(v)?);
    }
    Some(serde_json::Value::Object(m))
}

fn item_to_json(item: &Item) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match item {
        Item::None => J::Null,
        Item::Value(v) => value_to_json(v)?,
        Item::Table(t) => table_to_json(t)?,
        Item::ArrayOfTables(a) => {
            J::Array(a.iter().map(table_to_json).collect::<Option<Vec<_>>>()?)
        }
    })
}

fn value_to_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        // inf and nan were reported by `refuse_non_finite`; null keeps them
        // from adding a second, vaguer error here.
        Value::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(J::Null, J::Number),
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(_) => return None,
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect::<Option<Vec<_>>>()?),
        Value::InlineTable(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_string(), value_to_json(v)?);
            }
            J::Object(m)
        }
    })
}

/// A table being read: every key taken is remembered, and [`Obj::finish`] reports
/// the rest as unknown.
pub struct Obj<'a> {
    pub node: Node<'a>,
    table: &'a dyn TableLike,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Obj<'a> {
    pub fn ctx(&self) -> &Ctx {
        &self.node.ctx
    }

    pub fn error(&self, message: impl Into<String>) {
        self.node.error(message)
    }

    pub fn child_path(&self, key: &str) -> String {
        join_path(&self.node.path, key)
    }

    /// The value at `key`, if present.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        self.used.borrow_mut().insert(key.to_string());
        let (k, item) = self.table.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let span = item.span().or_else(|| k.span());
        Some(Node {
            ctx: self.node.ctx.clone(),
            path: self.child_path(key),
            item: Elem::Item(item),
            span,
        })
    }

    /// The value at `key`, or an error naming it as required.
    pub fn require(&self, key: &str) -> Option<Node<'a>> {
        let n = self.get(key);
        if n.is_none() {
            self.node.ctx.error(
                self.node.span.clone(),
                &self.child_path(key),
                "required key is missing",
            );
        }
        n
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.get(key)?.as_str().map(str::to_string)
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.get(key)?.as_duration()
    }

    pub fn obj(&self, key: &str) -> Option<Obj<'a>> {
        self.get(key)?.as_obj()
    }

    pub fn str_list(&self, key: &str) -> Option<Vec<String>> {
        let items = self.get(key)?.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// All entries, in file order (for free-form tables such as thresholds).
    pub fn entries(&self) -> Vec<(String, Node<'a>, Option<Range<usize>>)> {
        let mut out = Vec::new();
        for (k, item) in self.table.iter() {
            self.used.borrow_mut().insert(k.to_string());
            let key_span = self.table.get_key_value(k).and_then(|(key, _)| key.span());
            out.push((
                k.to_string(),
                Node {
                    ctx: self.node.ctx.clone(),
                    path: self.child_path(k),
                    item: Elem::Item(item),
                    span: item.span().or(key_span.clone()),
                },
                key_span,
            ));
        }
        out
    }

    /// Marks every key as taken (after an error that makes the rest meaningless).
    pub fn skip_rest(&self) {
        for (k, _) in self.table.iter() {
            self.used.borrow_mut().insert(k.to_string());
        }
    }

    /// Reports every key that was present but never taken.
    pub fn finish(self) {
        let used = self.used.borrow();
        let mut known: Vec<&str> = used.iter().map(String::as_str).collect();
        known.sort_unstable();
        for (k, _) in self.table.iter() {
            if !used.contains(k) {
                let span = self.table.get_key_value(k).and_then(|(key, _)| key.span());
                self.node.ctx.error(
                    span,
                    &self.child_path(k),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = Source::new("ab\ncd\n\nxyz".into());
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(1), (1, 2));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(6), (3, 1));
        assert_eq!(s.line_col(9), (4, 3));
    }
}
