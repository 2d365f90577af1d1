//! A span-aware reader over a parsed TOML document.
//!
//! The scenario loader walks the document with [`Obj`] and [`Node`], taking each
//! key it knows and recording every problem it meets into one shared
//! [`Diagnostics`] list, so a file with five mistakes reports all five at once
//! (k6's `Validate() []error`). Unknown keys are errors, reported at the key.

//!
//! Files: `diag.rs` (the diagnostics and their positions), `elem.rs` (the
//! document's elements, their JSON forms and walks over them), this file
//! (the [`Node`] and [`Obj`] readers and the small checks every table
//! reader shares). Imports only `units`.

mod diag;
mod elem;
mod walk;

pub use diag::{Ctx, Diagnostic, Diagnostics, Source};
pub use elem::Elem;
pub use walk::{for_each_string, refuse_non_finite};

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::units::{parse_duration, parse_percent};

/// A value in the document with its path and position.
#[derive(Clone)]
pub struct Node<'a> {
    pub ctx: Ctx,
    pub path: String,
    pub item: Elem<'a>,
    pub span: Option<Range<usize>>,
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

/// A number that must satisfy `valid`; otherwise `why` is reported at the key.
pub fn f64_where(n: &Node<'_>, valid: impl Fn(f64) -> bool, why: &str) -> Option<f64> {
    let v = n.as_f64()?;
    if !valid(v) {
        n.error(why.to_string());
        return None;
    }
    Some(v)
}

/// A whole number of at least 1.
pub fn positive_u64(n: &Node<'_>) -> Option<u64> {
    let u = n.as_u64()?;
    if u == 0 {
        n.error("must be at least 1");
        return None;
    }
    Some(u)
}

/// A finite number of at least 0.
pub fn non_negative_f64(n: &Node<'_>) -> Option<f64> {
    let v = n.as_f64()?;
    if !(v >= 0.0 && v.is_finite()) {
        n.error("must be a number of at least 0");
        return None;
    }
    Some(v)
}
