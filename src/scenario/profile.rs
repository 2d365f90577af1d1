//! `[profile]`: the wire protocol chatload speaks, as overrides of a
//! built-in profile (`protocol::Profile`). Imports `protocol` and the `doc`
//! readers.

use std::time::Duration;

use crate::protocol::Profile;

use super::doc::{Node, Obj};
use super::fills::{check_template, refuse_placeholders, Fills, NO_COLUMNS, SESSION_VARIABLES};

/// `[profile]`: a built-in profile (`base`, netra by default) with the keys
/// written here replacing its own.
pub(super) fn read_profile(o: &Obj<'_>) -> Option<Profile> {
    let Some(tbl) = o.obj("profile") else {
        return Some(Profile::netra());
    };
    let mut ok = true;
    let mut p = Profile::netra();
    if let Some(n) = tbl.get("base") {
        if let Some(b) = n.as_str() {
            match Profile::builtin(b) {
                Some(base) => p = base,
                None => {
                    n.error(
                        crate::protocol::platform::unknown(b).replace("profile", "profile base"),
                    );
                    ok = false;
                }
            }
        }
    }
    read_names(&tbl, &mut p);
    ok &= read_answers(&tbl, &mut p);
    ok &= read_handshake(&tbl, &mut p);
    ok &= read_heartbeat(&tbl, &mut p);
    ok &= read_switch_thread(&tbl, &mut p);
    ok &= read_auth_failure(&tbl, &mut p);
    let sequence = tbl.get("sequence");
    let sequence_ok = read_sequence(sequence.as_ref(), &mut p);
    ok &= sequence_ok;
    ok &= read_required(&tbl, &mut p);
    ok &= read_pairing(&tbl, &mut p);
    if let Some(d) = tbl.duration("max_gap") {
        p.rules.max_gap = Some(d);
    }
    if let Some(n) = tbl.u64("max_frame_bytes") {
        p.rules.max_frame_bytes = n as usize;
    }
    ok &= super::profile_platform::read_platform_keys(&tbl, &mut p);
    ok &= check_terminals(&tbl, &p, sequence.as_ref(), sequence_ok);
    tbl.finish();
    ok.then_some(p)
}

/// The field names, aliases and event lists: each replaces the base's.
fn read_names(tbl: &Obj<'_>, p: &mut Profile) {
    if let Some(v) = tbl.str("type_field") {
        p.type_field = v;
    }
    if let Some(v) = tbl.str_list("wrapper_types") {
        p.wrapper_types = v;
    }
    if let Some(v) = tbl.str("wrapper_event_field") {
        p.wrapper_event_field = v;
    }
    if let Some(a) = tbl.obj("aliases") {
        for (k, v, _) in a.entries() {
            if let Some(t) = v.as_str() {
                p.aliases.insert(k, t.to_string());
            }
        }
        a.finish();
    }
    for (key, field) in [
        ("run_id_fields", &mut p.run_id_fields),
        ("thread_id_fields", &mut p.thread_id_fields),
        ("user_id_fields", &mut p.user_id_fields),
        ("ready", &mut p.ready),
        ("agent_events", &mut p.agent_events),
        ("terminal_ok", &mut p.terminal_ok),
        ("terminal_error", &mut p.terminal_error),
        ("ignore", &mut p.ignore),
        ("error_frames", &mut p.error_frames),
    ] {
        if let Some(v) = tbl.str_list(key) {
            *field = v;
        }
    }
}

/// `answers`: replies sent as written (no placeholders).
fn read_answers(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(a) = tbl.obj("answers") {
        for (k, v, _) in a.entries() {
            match v.to_json() {
                Some(j) if j.is_object() => {
                    ok &= refuse_placeholders(&v, "an answer");
                    p.answers.insert(k, j);
                }
                Some(_) => {
                    v.error("must be a table (the reply message)");
                    ok = false;
                }
                None => ok = false,
            }
        }
        a.finish();
    }
    ok
}

/// Templates sent outside a run: the user, its thread and iteration are filled.
fn session_fills(place: &str) -> Fills<'_> {
    Fills {
        place,
        builtins: &SESSION_VARIABLES,
        names: &[],
        columns: &NO_COLUMNS,
        columns_apply: false,
        env: false,
    }
}

/// `handshake`: `{ on, reply }` or `"none"`.
fn read_handshake(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("handshake") {
        if n.item_str() == Some("none") {
            p.handshake = None;
        } else if n.item.as_table_like_pub().is_some() {
            let h = n.as_obj().expect("checked to be a table");
            let on = h.require("on").and_then(|x| x.as_str().map(str::to_string));
            let reply = h.require("reply").and_then(|x| {
                if x.item.as_table_like_pub().is_none() {
                    x.error("must be a table (the JSON object to send)");
                    return None;
                }
                let good = check_template(&x, &session_fills("the handshake reply"));
                x.to_json().filter(|_| good)
            });
            h.finish();
            match (on, reply) {
                (Some(on), Some(reply)) => {
                    p.handshake = Some(crate::protocol::Handshake { on, reply })
                }
                _ => ok = false,
            }
        } else {
            n.error("expected a table { on, reply } or \"none\"");
            ok = false;
        }
    }
    ok
}

/// `heartbeat`: `{ every, message, reply, timeout }` (over the base's) or `"none"`.
fn read_heartbeat(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("heartbeat") {
        if n.item_str() == Some("none") {
            p.heartbeat = None;
        } else if n.item.as_table_like_pub().is_some() {
            let h = n.as_obj().expect("checked to be a table");
            let mut hb = p.heartbeat.clone().unwrap_or(crate::protocol::Heartbeat {
                every: Duration::from_secs(15),
                message: serde_json::json!({"type": "ping"}),
                reply: "pong".into(),
                timeout: Duration::from_secs(45),
            });
            let every = h.get("every");
            let timeout = h.get("timeout");
            let mut times_ok = true;
            if let Some(e) = &every {
                match e.as_duration() {
                    Some(d) if d < Duration::from_millis(100) => {
                        e.error("must be at least 100ms");
                        times_ok = false;
                    }
                    Some(d) => hb.every = d,
                    None => times_ok = false,
                }
            }
            if let Some(t) = &timeout {
                match t.as_duration() {
                    Some(d) => hb.timeout = d,
                    None => times_ok = false,
                }
            }
            ok &= times_ok;
            if let Some(m) = h.get("message") {
                if m.item.as_table_like_pub().is_some() {
                    ok &= check_template(&m, &session_fills("a heartbeat message"));
                    match m.to_json() {
                        Some(v) => hb.message = v,
                        None => ok = false,
                    }
                } else {
                    m.error("must be a table (the JSON object to send)");
                    ok = false;
                }
            }
            if let Some(r) = h.str("reply") {
                hb.reply = r;
            }
            if times_ok && hb.timeout < hb.every {
                let why = format!(
                    "`timeout` ({}) must be at least `every` ({}): a ping needs time to be answered",
                    humantime::format_duration(hb.timeout),
                    humantime::format_duration(hb.every)
                );
                match timeout.as_ref().or(every.as_ref()) {
                    Some(n) => n.error(why),
                    None => h.error(why),
                }
                ok = false;
            }
            h.finish();
            p.heartbeat = Some(hb);
        } else {
            n.error("expected a table { every, message, reply, timeout } or \"none\"");
            ok = false;
        }
    }
    ok
}

/// `[profile.switch_thread]`: the message that switches a socket's thread.
fn read_switch_thread(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(sw) = tbl.obj("switch_thread") {
        if let Some(m) = sw.get("message") {
            if m.item.as_table_like_pub().is_some() {
                ok &= check_template(&m, &session_fills("the switch_thread message"));
                match m.to_json() {
                    Some(v) => p.switch_thread.message = v,
                    None => ok = false,
                }
            } else {
                m.error("must be a table (the JSON object to send)");
                ok = false;
            }
        }
        if let Some(r) = sw.get("reply") {
            match r.as_str() {
                Some("none") => p.switch_thread.reply = None,
                Some(t) => p.switch_thread.reply = Some(t.to_string()),
                None => ok = false,
            }
        }
        if let Some(path) = sw.str("messages") {
            p.switch_thread.messages_path = path;
        }
        sw.finish();
    }
    ok
}

/// `auth_failure`: `{ frames, codes, close_before_ready }` (each over the
/// base's) or `"none"`: which early frames and closes mean a refused token.
fn read_auth_failure(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let Some(n) = tbl.get("auth_failure") else {
        return true;
    };
    if n.item_str() == Some("none") {
        p.auth_failure = crate::protocol::AuthFailure::none();
        return true;
    }
    let Some(a) = n.as_obj() else {
        n.error("expected a table { frames, codes, close_before_ready } or \"none\"");
        return false;
    };
    let mut ok = true;
    if let Some(v) = a.str_list("frames") {
        p.auth_failure.frames = v;
    }
    if let Some(v) = a.str_list("codes") {
        if let Some(bad) = v
            .iter()
            .find(|c| c.is_empty() || c.trim_end_matches('*').contains('*'))
        {
            a.error(format!(
                "auth_failure code `{bad}`: write a code (`NO_TOKEN`) or a prefix ending in `*` (`AUTH_*`)"
            ));
            ok = false;
        }
        p.auth_failure.codes = v;
    }
    if let Some(c) = a.get("close_before_ready") {
        let mut codes = Vec::new();
        let Some(items) = c.as_array() else {
            return false;
        };
        for item in items {
            match item.as_u64() {
                Some(code @ 1000..=4999) => codes.push(code as u16),
                Some(_) => {
                    item.error("a close code is between 1000 and 4999");
                    ok = false;
                }
                None => ok = false,
            }
        }
        p.auth_failure.close_before_ready = codes;
    }
    a.finish();
    ok
}

/// `sequence`: the event grammar, compiled; false when it does not compile.
fn read_sequence(sequence: Option<&Node<'_>>, p: &mut Profile) -> bool {
    let mut sequence_ok = true;
    if let Some(n) = sequence {
        match n.as_str() {
            Some(text) => match crate::protocol::sequence::Sequence::compile(text) {
                Ok(seq) => p.rules.sequence = seq,
                Err(e) => {
                    n.error(format!("sequence: {e}"));
                    sequence_ok = false;
                }
            },
            None => sequence_ok = false,
        }
    }
    sequence_ok
}

/// `[profile.required]`: the fields each event must carry.
fn read_required(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(r) = tbl.obj("required") {
        // A table given here replaces the base's required fields entirely.
        p.rules.required.clear();
        for (event, v, _) in r.entries() {
            let mut rules = Vec::new();
            for item in v.as_array().unwrap_or_default() {
                if let Some(text) = item.as_str() {
                    match crate::protocol::validate::FieldRule::parse(text) {
                        Ok(rule) => rules.push(rule),
                        Err(e) => {
                            item.error(e);
                            ok = false;
                        }
                    }
                }
            }
            p.rules.required.insert(event, rules);
        }
        r.finish();
    }
    ok
}

/// `pairing`: `{ start, end, keys }` or `"none"`.
fn read_pairing(tbl: &Obj<'_>, p: &mut Profile) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("pairing") {
        if n.item_str() == Some("none") {
            p.rules.pairing = None;
        } else if let Some(pt) = n.as_obj() {
            let start = pt
                .require("start")
                .and_then(|x| x.as_str().map(str::to_string));
            let end = pt
                .require("end")
                .and_then(|x| x.as_str().map(str::to_string));
            let keys = pt.str_list("keys").unwrap_or_else(|| {
                vec!["tool_call_id".into(), "tool_id".into(), "tool_name".into()]
            });
            pt.finish();
            match (start, end) {
                (Some(start), Some(end)) => {
                    p.rules.pairing = Some(crate::protocol::validate::Pairing { start, end, keys })
                }
                _ => ok = false,
            }
        } else {
            ok = false;
        }
    }
    ok
}

/// Terminal events must be reachable: each must appear in the sequence
/// (for a sequence that did not compile, in its text as written: the base's
/// sequence, still in place, is not the one meant).
fn check_terminals(
    tbl: &Obj<'_>,
    p: &Profile,
    sequence: Option<&Node<'_>>,
    sequence_ok: bool,
) -> bool {
    let mut ok = true;
    let written = sequence.and_then(|n| n.item_str()).filter(|_| !sequence_ok);
    for t in &p.terminal_ok {
        let mentioned = match written {
            Some(text) => text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == t),
            None => p.rules.sequence.mentions(t),
        };
        if !mentioned {
            let why = format!(
                "terminal event `{t}` does not appear in the sequence `{}`",
                written.unwrap_or(p.rules.sequence.source())
            );
            match tbl.get("terminal_ok").or_else(|| sequence.cloned()) {
                Some(n) => n.error(why),
                None => tbl.error(why),
            }
            ok = false;
        }
    }
    ok
}
