//! The `[profile]` keys that describe a platform around its frames: how the
//! token is presented by default (`present`), where the login is
//! (`login_path`), how history pages (`[profile.history]`) and how events
//! are numbered (`seq`). Each replaces the base's. Imports `protocol`,
//! `auth::Presentation` and the `doc` readers.

use crate::auth::Presentation;
use crate::protocol::history::Paging;
use crate::protocol::seq::SeqRule;
use crate::protocol::Profile;

use super::doc::{positive_u64, Obj};

/// Reads `present`, `login_path`, `history` and `seq` over the base's.
pub(super) fn read_platform_keys(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("present") {
        if let Some(items) = n.as_array() {
            let mut v = Vec::new();
            for item in &items {
                match item.as_str().map(str::parse::<Presentation>) {
                    Some(Ok(_)) => v.push(item.as_str().unwrap_or_default().to_string()),
                    Some(Err(e)) => {
                        item.error(e);
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            if items.is_empty() {
                n.error("needs at least one presentation");
                ok = false;
            }
            p.present = v;
        } else {
            ok = false;
        }
    }
    if let Some(n) = tbl.get("login_path") {
        match n.as_str() {
            Some(u) if u.starts_with('/') => p.login_path = u.to_string(),
            Some(_) => {
                n.error("a path on the target's host, e.g. \"/auth/create-token\"");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok &= read_history(tbl, p);
    ok &= read_seq(tbl, p);
    ok
}

/// `[profile.history]`: `messages`, `threads`, `page_size`, `limit`,
/// `offset` or `cursor` + `next`, `items`, `total`.
fn read_history(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let Some(h) = tbl.obj("history") else {
        return true;
    };
    let mut ok = true;
    let mut path = |key: &str, slot: &mut String| {
        if let Some(n) = h.get(key) {
            match n.as_str() {
                Some(v) if v.starts_with('/') => *slot = v.to_string(),
                Some(_) => {
                    n.error("a path on the target's host, starting with /");
                    ok = false;
                }
                None => ok = false,
            }
        }
    };
    path("messages", &mut p.history.messages_path);
    path("threads", &mut p.history.threads_path);
    if !p.history.messages_path.contains("{{thread}}") {
        if let Some(n) = h.get("messages") {
            n.error("must name the thread with {{thread}}");
        }
        ok = false;
    }
    if let Some(n) = h.get("page_size") {
        match positive_u64(&n) {
            Some(v) => p.history.page_size = v as usize,
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("limit", &mut p.history.limit_param),
        ("items", &mut p.history.items_field),
        ("total", &mut p.history.total_field),
    ] {
        if let Some(v) = h.str(key) {
            *slot = v;
        }
    }
    let offset = h.str("offset");
    let cursor = h.str("cursor");
    let next = h.get("next");
    match (offset, cursor) {
        (Some(_), Some(_)) => {
            h.error("page by `offset` or by `cursor` (with `next`), not both");
            ok = false;
        }
        (Some(param), None) => p.history.paging = Paging::Offset { param },
        (None, Some(param)) => match next.as_ref().and_then(|n| n.as_str()) {
            Some(next_field) => {
                p.history.paging = Paging::Cursor {
                    param,
                    next_field: next_field.to_string(),
                }
            }
            None => {
                h.error("`cursor` needs `next`: the answer's field holding the next cursor");
                ok = false;
            }
        },
        (None, None) => {
            if let Some(n) = &next {
                n.error("`next` is read only with `cursor`");
                ok = false;
            }
        }
    }
    h.finish();
    ok
}

/// `seq = "none"` or `{ field, first }`: events numbered within each run.
fn read_seq(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let Some(n) = tbl.get("seq") else {
        return true;
    };
    if n.item_str() == Some("none") {
        p.seq = None;
        return true;
    }
    let Some(s) = n.as_obj() else {
        n.error("expected a table { field, first } or \"none\"");
        return false;
    };
    let mut rule = SeqRule {
        field: "seq".into(),
        first: Some(1),
    };
    if let Some(f) = s.str("field") {
        rule.field = f;
    }
    let mut ok = true;
    if let Some(f) = s.get("first") {
        if f.item_str() == Some("any") {
            rule.first = None;
        } else {
            match f.as_u64() {
                Some(v) => rule.first = Some(v),
                None => ok = false,
            }
        }
    }
    s.finish();
    p.seq = Some(rule);
    ok
}
