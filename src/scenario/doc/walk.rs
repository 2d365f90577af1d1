//! Walks over a document element: every string under a node
//! ([`for_each_string`]) and every number ([`refuse_non_finite`]), each
//! reported at its own key path and position.

use std::ops::Range;

use toml_edit::{Item, Value};

use super::diag::Ctx;
use super::elem::Elem;
use super::{join_path, Node};

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
