//! Journey steps: one reader per step kind (`read_steps`), `think`
//! distributions, `http` steps and their captures. Imports
//! `protocol::template` and the `doc` readers.

use std::time::Duration;

use serde_json::Value;

use crate::protocol::template;

use super::doc::{non_negative_f64, positive_u64, Node, Obj};
use super::fills::Columns;
use super::fills::{check_template, refuse_placeholders, Fills, SESSION_VARIABLES};
use super::model::{Step, StepKind, Think};

/// What step templates may use: the [data] columns and captured variables.
pub(super) struct StepFills<'a> {
    pub(super) columns: &'a Columns,
    pub(super) captures: &'a [String],
    /// The names of the run's tags (`[tags]`): a step tag may not reuse one
    /// (a series would carry the label twice, and Prometheus refuses it).
    pub(super) run_tags: &'a [String],
}

pub(super) fn read_think(st: &Obj<'_>) -> Option<Think> {
    let d = |key: &str| st.get(key).map(|n| n.as_duration());
    let given: Vec<&str> = ["duration", "uniform", "exponential", "lognormal"]
        .into_iter()
        .filter(|k| st.get(k).is_some())
        .collect();
    if given.len() != 1 {
        st.error("a think step has exactly one of: duration = \"2s\" (constant), uniform = [\"1s\", \"5s\"], exponential = \"2s\" (mean), lognormal = { median = \"2s\", sigma = 0.5 }");
        return None;
    }
    match given[0] {
        "duration" => d("duration")?.map(Think::Constant),
        "exponential" => d("exponential")?.map(Think::Exponential),
        "uniform" => {
            let n = st.get("uniform")?;
            let items = n.as_array()?;
            if items.len() != 2 {
                n.error("must be [min, max], e.g. [\"1s\", \"5s\"]");
                return None;
            }
            let (a, b) = (items[0].as_duration()?, items[1].as_duration()?);
            if a > b {
                n.error("min must not exceed max");
                return None;
            }
            Some(Think::Uniform(a, b))
        }
        _ => {
            let l = st.obj("lognormal")?;
            let median = l.require("median").and_then(|n| n.as_duration());
            let sigma = l.require("sigma").and_then(|n| non_negative_f64(&n));
            l.finish();
            Some(Think::LogNormal {
                median: median?,
                sigma: sigma?,
            })
        }
    }
}

/// Deepest nesting of `repeat` blocks.
pub(super) const MAX_REPEAT_DEPTH: usize = 3;

/// A list of steps (a journey's, or a repeat block's at `depth`); each
/// unnamed step takes its kind's name (`thread_switch` for `switch_thread`).
pub(super) fn read_steps(n: &Node<'_>, depth: usize, fills: &StepFills<'_>) -> Option<Vec<Step>> {
    let items = n.as_array()?;
    let mut steps = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(st) = item.as_obj() else {
            ok = false;
            continue;
        };
        let kind_name = st
            .require("step")
            .and_then(|n| n.as_str().map(str::to_string));
        let name = st.str("name");
        let tags = match st.get("tags") {
            Some(n) => super::tags::read_step_table(&n, fills.run_tags),
            None => Some(Default::default()),
        };
        let kind = read_step_kind(&st, kind_name.as_deref(), depth, fills);
        st.finish();
        match (kind, tags) {
            (Some(kind), Some(tags)) => {
                let default = match &kind {
                    StepKind::SwitchThread { .. } => "thread_switch".to_string(),
                    StepKind::Connect
                    | StepKind::Send { .. }
                    | StepKind::Await { .. }
                    | StepKind::Think { .. }
                    | StepKind::CreateThread { .. }
                    | StepKind::ListThreads
                    | StepKind::History
                    | StepKind::Disconnect
                    | StepKind::Reconnect
                    | StepKind::Http { .. }
                    | StepKind::Repeat { .. } => kind_name.clone().unwrap_or_default(),
                };
                let name = name.unwrap_or(default);
                steps.push(Step { name, kind, tags });
            }
            _ => ok = false,
        }
    }
    if ok && steps.is_empty() {
        n.error("needs at least one step");
        ok = false;
    }
    ok.then_some(steps)
}

/// One step's kind, read by its `step` name (`None`: not written or not a
/// string, already reported).
fn read_step_kind(
    st: &Obj<'_>,
    kind_name: Option<&str>,
    depth: usize,
    fills: &StepFills<'_>,
) -> Option<StepKind> {
    match kind_name {
        Some("connect") => Some(StepKind::Connect),
        Some("send") => st.require("message").and_then(|m| read_send(&m, fills)),
        Some("await") => positive_duration(
            st,
            "timeout",
            Duration::from_secs(30),
            "every await needs a deadline",
        )
        .map(|timeout| StepKind::Await { timeout }),
        Some("think") => read_think(st).map(|think| StepKind::Think { think }),
        Some("create_thread") => read_create_thread(st),
        Some("list_threads") => Some(StepKind::ListThreads),
        Some("history") => Some(StepKind::History),
        Some("switch_thread") => positive_duration(
            st,
            "timeout",
            Duration::from_secs(10),
            "the switch needs a deadline",
        )
        .map(|timeout| StepKind::SwitchThread { timeout }),
        Some("http") => read_http(st, fills),
        Some("disconnect") => Some(StepKind::Disconnect),
        Some("reconnect") => Some(StepKind::Reconnect),
        Some("repeat") => read_repeat(st, depth, fills),
        Some(other) => {
            if let Some(n) = st.get("step") {
                n.error(format!(
                    "unknown step `{other}` (known: connect, send, await, think, create_thread, list_threads, history, switch_thread, disconnect, reconnect, repeat, http)"
                ));
            }
            st.skip_rest();
            None
        }
        None => None,
    }
}

/// A `send` step's `message`: a table whose placeholders are filled per run.
fn read_send(m: &Node<'_>, fills: &StepFills<'_>) -> Option<StepKind> {
    if m.item.as_table_like_pub().is_none() {
        m.error("must be a table (the JSON object to send)");
        return None;
    }
    let send = Fills {
        place: "a `send` message",
        builtins: &template::VARIABLES,
        names: fills.captures,
        columns: fills.columns,
        columns_apply: true,
        env: false,
    };
    let good = check_template(m, &send);
    let v = m.to_json()?;
    good.then_some(StepKind::Send { message: v })
}

/// A `create_thread` step: its `title` is sent as written.
fn read_create_thread(st: &Obj<'_>) -> Option<StepKind> {
    let title = st.get("title");
    let good = title
        .as_ref()
        .is_none_or(|t| refuse_placeholders(t, "a thread title"));
    let title = title.and_then(|t| t.as_str().map(str::to_string));
    good.then_some(StepKind::CreateThread { title })
}

/// A `repeat` block: `times` or `for`, and its own `steps` (nested at most
/// [`MAX_REPEAT_DEPTH`] deep).
fn read_repeat(st: &Obj<'_>, depth: usize, fills: &StepFills<'_>) -> Option<StepKind> {
    let times_node = st.get("times");
    let for_node = st.get("for");
    let times = times_node.as_ref().and_then(positive_u64);
    let for_ = for_node.as_ref().and_then(|n| {
        let d = n.as_duration()?;
        if d.is_zero() {
            n.error("must be longer than zero");
            return None;
        }
        Some(d)
    });
    let mut good = times.is_some() || for_.is_some();
    match (&times_node, &for_node) {
        (Some(_), Some(f)) => {
            f.error("a repeat step has exactly one of `times = N` or `for = \"30s\"`, not both");
            good = false;
        }
        (None, None) => {
            st.ctx().error(
                st.node.span.clone(),
                &st.child_path("times"),
                "a repeat step needs `times = N` or `for = \"30s\"`",
            );
        }
        _ => {}
    }
    // Reported once, at the first block too deep; the steps
    // inside are still checked.
    if depth == MAX_REPEAT_DEPTH {
        st.error(format!(
            "repeat blocks nest at most {MAX_REPEAT_DEPTH} deep"
        ));
    }
    let inner = st
        .require("steps")
        .and_then(|i| read_steps(&i, depth + 1, fills));
    match inner {
        Some(steps) if good && depth < MAX_REPEAT_DEPTH => {
            Some(StepKind::Repeat { times, for_, steps })
        }
        _ => None,
    }
}

/// A deadline `key` of a step, `default` when not written; zero is refused.
pub(super) fn positive_duration(
    st: &Obj<'_>,
    key: &str,
    default: Duration,
    why: &str,
) -> Option<Duration> {
    let Some(n) = st.get(key) else {
        return Some(default);
    };
    let d = n.as_duration()?;
    if d.is_zero() {
        n.error(format!("must be above zero: {why}"));
        return None;
    }
    Some(d)
}

/// HTTP methods an `http` step may use.
pub(super) const HTTP_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// A generic `http` step.
pub(super) fn read_http(st: &Obj<'_>, fills: &StepFills<'_>) -> Option<StepKind> {
    let mut ok = true;
    let method = read_method(st);
    // Filled in an http step: the session's variables, the [data] row the
    // user's last run took (or its own row), and captured ones (not the
    // run's own id).
    let http = Fills {
        place: "an `http` step",
        builtins: &SESSION_VARIABLES,
        names: fills.captures,
        columns: fills.columns,
        columns_apply: true,
        env: false,
    };
    let path = st.require("path").and_then(|n| {
        let p = n.as_str()?.to_string();
        if !p.starts_with('/') {
            n.error("a path on the target's host, starting with /");
            return None;
        }
        check_template(&n, &http).then_some(p)
    });
    let body = match st.get("body") {
        None => Some(None),
        Some(b) => {
            let good = check_template(&b, &http);
            b.to_json().filter(|_| good).map(Some)
        }
    };
    let expect = st
        .get("expect")
        .map_or(Some(vec![200, 201, 204]), |n| read_expect(&n));
    let capture = read_capture(st, &mut ok);
    let persist = read_persist(st, body.as_ref(), &mut ok);
    match (method, path, body, expect) {
        (Some(method), Some(path), Some(body), Some(expect)) if ok => Some(StepKind::Http {
            method,
            path,
            body,
            expect,
            capture,
            persist,
        }),
        _ => None,
    }
}

/// `persist`: the dotted path of a string field of the body, the message
/// text the call stores in the current thread (`{{thread}}`); the next
/// `history` step must find it (`persistence_miss` otherwise).
fn read_persist(st: &Obj<'_>, body: Option<&Option<Value>>, ok: &mut bool) -> Option<String> {
    let n = st.get("persist")?;
    let path = n.as_str()?.to_string();
    let field = body
        .and_then(|b| b.as_ref())
        .and_then(|b| path.split('.').try_fold(b, |v, k| v.get(k)));
    match (body, field) {
        // The body itself did not load: already reported.
        (None, _) => None,
        (Some(_), Some(Value::String(_))) => Some(path),
        (Some(_), _) => {
            n.error(format!(
                "`{path}` must name a string field of the body (the message text the call stores)"
            ));
            *ok = false;
            None
        }
    }
}

/// `method`: one of [`HTTP_METHODS`] (any case), `GET` unless written.
fn read_method(st: &Obj<'_>) -> Option<String> {
    match st.get("method") {
        None => Some("GET".to_string()),
        Some(n) => n.as_str().and_then(|m| {
            let m = m.to_ascii_uppercase();
            if HTTP_METHODS.contains(&m.as_str()) {
                Some(m)
            } else {
                n.error(format!(
                    "unknown method `{m}` ({})",
                    HTTP_METHODS.join(", ")
                ));
                None
            }
        }),
    }
}

/// `expect`: an HTTP status or a list of them.
fn read_expect(n: &Node<'_>) -> Option<Vec<u16>> {
    if n.item.as_integer().is_some() {
        return http_status(n).map(|c| vec![c]);
    }
    match n.item.value_is_array() {
        true => {
            let items = n.as_array().unwrap_or_default();
            if items.is_empty() {
                n.error("needs at least one HTTP status, e.g. [200, 201]");
                None
            } else {
                let codes: Vec<Option<u16>> = items.iter().map(http_status).collect();
                codes.into_iter().collect()
            }
        }
        false => {
            n.error("expected an HTTP status or a list of them, e.g. 200 or [200, 201]");
            None
        }
    }
}

/// `[capture]`: variables taken from the JSON answer (`name = "dotted.path"`).
fn read_capture(st: &Obj<'_>, ok: &mut bool) -> Vec<(String, String)> {
    let mut capture = Vec::new();
    if let Some(c) = st.obj("capture") {
        for (var, v, _) in c.entries() {
            if let Some(p) = v.as_str() {
                if !is_capture_name(&var) {
                    v.error(format!(
                        "`{var}` cannot be a variable name (letters, digits and _; not a built-in)"
                    ));
                    *ok = false;
                } else {
                    capture.push((var, p.to_string()));
                }
            } else {
                *ok = false;
            }
        }
        c.finish();
    }
    capture
}

/// A name an `http` step may capture into: letters, digits and _, not a built-in.
pub(super) fn is_capture_name(var: &str) -> bool {
    !var.is_empty()
        && var
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !template::VARIABLES.contains(&var)
}

/// One HTTP status (100 to 599), checked before it is narrowed to 16 bits.
pub(super) fn http_status(n: &Node<'_>) -> Option<u16> {
    match n.item.as_integer() {
        Some(c) if (100..=599).contains(&c) => Some(c as u16),
        Some(c) => {
            n.error(format!("`{c}` is not an HTTP status (100 to 599)"));
            None
        }
        None => {
            n.error(format!(
                "expected an HTTP status (an integer), found {}",
                n.item.type_name_pub()
            ));
            None
        }
    }
}

/// Every key of every `capture` table in a journey (as JSON), recursively.
pub(super) fn capture_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| capture_names(x, out)),
        Value::Object(m) => {
            if let Some(Value::Object(c)) = m.get("capture") {
                // Only names a capture may take (the others are refused there).
                for k in c.keys() {
                    if is_capture_name(k) && !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
            m.values().for_each(|x| capture_names(x, out));
        }
        _ => {}
    }
}
