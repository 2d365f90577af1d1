//! The simulated agent: draws a run's shape from the seeded generator and
//! builds its script, the events in the configured envelope and dialect with
//! the run's drawn faults applied. Pure: no sockets, no shared state (the
//! connection task plays the script, `ws.rs`).
//!
//! Imports only its own folder (settings, faults).

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::draw::{self as faults, draw};
use super::settings::{Envelope, FaultPlan, Phase, Settings};

/// What the connection task does next for a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An agent event frame.
    Event {
        name: String,
        frame: Value,
    },
    /// Raw text (malformed JSON, oversized frames).
    Text(String),
    Binary(Vec<u8>),
    /// Close the socket with this code.
    Close(u16),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Nothing to send; carries a fault count (an event left out at the end).
    Mark,
}

/// One step of a run's script: wait, act, and count the fault it injects.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub delay: Duration,
    pub action: Action,
    /// Truth counters to add when the action is carried out.
    pub faults: Vec<String>,
    /// The run's terminal event.
    pub last: bool,
}

/// Correlation ids of a run.
#[derive(Debug, Clone)]
pub struct RunIds {
    pub run_id: String,
    pub thread_id: String,
    pub user_id: String,
}

impl RunIds {
    /// Takes the client's `run_id` (or `turn_id`) and `thread_id` when given.
    pub fn from_request(payload: &Map<String, Value>, user: &str, conn: &str, seq: u64) -> RunIds {
        let text = |k: &str| {
            payload
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        RunIds {
            run_id: text("run_id")
                .or_else(|| text("turn_id"))
                .unwrap_or_else(|| format!("run-{conn}-{seq}")),
            thread_id: text("thread_id").unwrap_or_else(|| format!("thread-{user}")),
            user_id: user.to_string(),
        }
    }
}

/// The shape of one run, drawn up front so a seed replays it.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub thinking: u32,
    pub tools: u32,
    /// One delay per event, in order.
    pub delays: Vec<Duration>,
}

impl RunPlan {
    pub fn draw(c: &Settings, rng: &mut ChaCha8Rng) -> RunPlan {
        let thinking = rng.random_range(c.thinking.0..=c.thinking.1);
        let tools = rng.random_range(c.tools.0..=c.tools.1);
        let n = 2 + thinking + 2 * tools;
        let (lo, hi) = (
            c.event_delay.0.as_micros() as u64,
            c.event_delay.1.as_micros() as u64,
        );
        let delays = (0..n)
            .map(|_| Duration::from_micros(rng.random_range(lo..=hi)))
            .collect();
        RunPlan {
            thinking,
            tools,
            delays,
        }
    }

    /// Event names in order, with their fields.
    pub fn events(&self, ids: &RunIds) -> Vec<(String, Map<String, Value>)> {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        let mut out = vec![(
            "agent_started".to_string(),
            obj(
                json!({"agent_name": "chatload-reference-agent", "user_id": ids.user_id, "thread_id": ids.thread_id}),
            ),
        )];
        for i in 0..self.thinking {
            out.push((
                "agent_thinking".into(),
                obj(json!({"reasoning": format!("step {} of the plan", i + 1)})),
            ));
        }
        for i in 0..self.tools {
            let tool = format!("tool_{}", i + 1);
            out.push((
                "tool_executing".into(),
                obj(json!({"tool_name": tool, "parameters": {"query": "spend"}})),
            ));
            out.push((
                "tool_completed".into(),
                obj(json!({"tool_name": tool, "results": {"rows": 3}, "duration": 12.5})),
            ));
        }
        out.push((
            "agent_completed".into(),
            obj(json!({"status": "success", "final_response": "Here is the summary you asked for."})),
        ));
        out
    }
}

pub fn epoch_float() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds one event frame in an envelope (PROTOCOL.md section 4).
pub fn frame(envelope: Envelope, name: &str, ids: &RunIds, fields: &Map<String, Value>) -> Value {
    let mut root = Map::new();
    match envelope {
        Envelope::Payload => {
            root.insert("type".into(), name.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("agent_name".into(), "chatload-reference-agent".into());
            root.insert("timestamp".into(), iso_now().into());
            let mut p = fields.clone();
            p.insert("user_id".into(), ids.user_id.clone().into());
            p.insert("thread_id".into(), ids.thread_id.clone().into());
            root.insert("payload".into(), Value::Object(p));
        }
        Envelope::Data => {
            root.insert("type".into(), name.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("user_id".into(), ids.user_id.clone().into());
            root.insert("agent_name".into(), "chatload-reference-agent".into());
            root.insert("timestamp".into(), iso_now().into());
            for k in ["tool_name", "results"] {
                if let Some(v) = fields.get(k) {
                    root.insert(k.into(), v.clone());
                }
            }
            let mut d = fields.clone();
            d.insert("thread_id".into(), ids.thread_id.clone().into());
            d.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("data".into(), Value::Object(d));
        }
        Envelope::Flat => {
            root.insert("type".into(), name.into());
            root.insert("critical".into(), true.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("thread_id".into(), ids.thread_id.clone().into());
            root.insert("user_id".into(), ids.user_id.clone().into());
            root.insert("timestamp".into(), iso_now().into());
            root.extend(fields.clone());
        }
        Envelope::Wrapped => {
            let t = match name {
                "agent_started" => "system_message",
                "agent_completed" => "agent_response_complete",
                _ => "agent_progress",
            };
            root.insert("type".into(), t.into());
            let mut d = fields.clone();
            d.insert("event".into(), name.into());
            d.insert("turn_id".into(), ids.run_id.clone().into());
            d.insert("user_id".into(), ids.user_id.clone().into());
            // The wrapped generation carried no thread_id and no run_id.
            d.remove("thread_id");
            if name == "agent_completed" {
                if let Some(v) = d.remove("final_response") {
                    d.insert("content".into(), v);
                }
            }
            root.insert("data".into(), Value::Object(d));
            root.insert("timestamp".into(), epoch_float().into());
        }
    }
    Value::Object(root)
}

/// Renames fields and events for a server configured to speak another dialect.
pub fn apply_naming(v: &mut Value, naming: &super::settings::Naming) {
    let Value::Object(root) = v else { return };
    if naming.type_field != "type" {
        if let Some(t) = root.remove("type") {
            root.insert(naming.type_field.clone(), t);
        }
    }
    let key = naming.type_field.clone();
    if let Some(Value::String(name)) = root.get_mut(&key) {
        if let Some(new) = naming.events.get(name.as_str()) {
            *name = new.clone();
        }
    }
    let rename_run = |m: &mut Map<String, Value>| {
        if naming.run_id_field != "run_id" {
            if let Some(r) = m.remove("run_id") {
                m.insert(naming.run_id_field.clone(), r);
            }
        }
    };
    rename_run(root);
    for inner in ["data", "payload"] {
        if let Some(Value::Object(m)) = root.get_mut(inner) {
            rename_run(m);
            if let Some(Value::String(ev)) = m.get_mut("event") {
                if let Some(new) = naming.events.get(ev.as_str()) {
                    *ev = new.clone();
                }
            }
        }
    }
}

fn remove_field(frame: &mut Value, field: &str) -> bool {
    let mut removed = false;
    if let Value::Object(root) = frame {
        removed |= root.remove(field).is_some();
        for inner in ["data", "payload"] {
            if let Some(Value::Object(m)) = root.get_mut(inner) {
                removed |= m.remove(field).is_some();
                if let Some(Value::Object(p)) = m.get_mut("payload") {
                    removed |= p.remove(field).is_some();
                }
            }
        }
    }
    removed
}

/// The event name of a script step (None for raw frames, closes and marks).
fn name_at(o: &Outgoing) -> Option<String> {
    match &o.action {
        Action::Event { name, .. } => Some(name.clone()),
        Action::Text(_) | Action::Binary(_) | Action::Close(_) | Action::Drop | Action::Mark => {
            None
        }
    }
}

/// Builds a run's whole script: its events in the configured envelope, with
/// the faults drawn for this run applied. `other_user` names a connected user
/// a leaked event pretends to come from. The draws happen in this order (a
/// seed must replay the same faults): stall, close_1011 mid-run, close_1006,
/// reorder, drop_event, duplicate_event, omit_field, leak, malformed,
/// binary, oversized, close_1011 idle.
pub fn script(
    c: &Settings,
    ids: &RunIds,
    plan: &RunPlan,
    rng: &mut ChaCha8Rng,
    other_user: Option<&str>,
) -> Vec<Outgoing> {
    let f = &c.faults;
    let mut out = plain_script(c, ids, plan);
    // Faults that cut the run short come first: later ones would never show.
    if cut_short(&mut out, f, rng) {
        return out;
    }
    if out.len() >= 2 && draw(rng, f.reorder) {
        out.swap(0, 1);
        let d = out[0].delay;
        out[0].delay = out[1].delay;
        out[1].delay = d;
        out[1].faults.push("faults.reorder".into());
    }
    drop_events(&mut out, f, rng);
    duplicate_events(&mut out, f, rng);
    omit_fields(&mut out, f, rng);
    insert_strays(&mut out, c, ids, rng, other_user);
    if faults::close_1011(f, Phase::Idle, rng) {
        out.push(Outgoing {
            delay: Duration::from_millis(20),
            action: Action::Close(1011),
            faults: vec!["faults.close_1011".into(), "faults.close_1011.idle".into()],
            last: false,
        });
    }
    out
}

/// The run's events in the configured envelope and dialect, no faults.
fn plain_script(c: &Settings, ids: &RunIds, plan: &RunPlan) -> Vec<Outgoing> {
    let events = plan.events(ids);
    events
        .iter()
        .enumerate()
        .map(|(i, (name, fields))| {
            let mut fields = fields.clone();
            super::platform::shape(&c.platform, name, i, &mut fields);
            let mut frame = frame(c.envelope, name, ids, &fields);
            apply_naming(&mut frame, &c.naming);
            Outgoing {
                delay: plan.delays.get(i).copied().unwrap_or_default(),
                action: Action::Event {
                    name: name.clone(),
                    frame,
                },
                faults: Vec::new(),
                last: i + 1 == events.len(),
            }
        })
        .collect()
}

/// The faults that end a run after its first event: stall, a 1011 close
/// mid-run, a dropped connection (1006). True when one was drawn.
fn cut_short(out: &mut Vec<Outgoing>, f: &FaultPlan, rng: &mut ChaCha8Rng) -> bool {
    if draw(rng, f.stall) {
        out.truncate(1);
        out[0].last = false;
        out[0].faults.push("faults.stall".into());
        return true;
    }
    let (action, faults) = if faults::close_1011(f, Phase::MidRun, rng) {
        (
            Action::Close(1011),
            vec![
                "faults.close_1011".into(),
                "faults.close_1011.mid_run".into(),
            ],
        )
    } else if draw(rng, f.close_1006) {
        (Action::Drop, vec!["faults.close_1006".into()])
    } else {
        return false;
    };
    out.truncate(1);
    out[0].last = false;
    out.push(Outgoing {
        delay: Duration::from_millis(1),
        action,
        faults,
        last: false,
    });
    true
}

/// drop_event: the first event of each drawn name is left out; the next
/// step (or a mark at the end) carries the count.
fn drop_events(out: &mut Vec<Outgoing>, f: &FaultPlan, rng: &mut ChaCha8Rng) {
    for (name, rate) in &f.drop_event {
        if !draw(rng, *rate) {
            continue;
        }
        if let Some(i) = out
            .iter()
            .position(|o| name_at(o).as_deref() == Some(name.as_str()))
        {
            let gone = out.remove(i);
            let key = format!("faults.drop_event.{name}");
            match out.get_mut(i) {
                Some(next) => next.faults.push(key),
                None => out.push(Outgoing {
                    delay: gone.delay,
                    action: Action::Mark,
                    faults: vec![key],
                    last: false,
                }),
            }
        }
    }
}

/// duplicate_event: the first event of each drawn name is sent twice.
fn duplicate_events(out: &mut Vec<Outgoing>, f: &FaultPlan, rng: &mut ChaCha8Rng) {
    for (name, rate) in &f.duplicate_event {
        if !draw(rng, *rate) {
            continue;
        }
        if let Some(i) = out
            .iter()
            .position(|o| name_at(o).as_deref() == Some(name.as_str()))
        {
            let mut dup = out[i].clone();
            dup.delay = Duration::ZERO;
            dup.faults = vec![format!("faults.duplicate_event.{name}")];
            out[i].last = false;
            out.insert(i + 1, dup);
        }
    }
}

/// omit_field: `event.field` is removed from the first such event.
fn omit_fields(out: &mut [Outgoing], f: &FaultPlan, rng: &mut ChaCha8Rng) {
    for (target, rate) in &f.omit_field {
        if !draw(rng, *rate) {
            continue;
        }
        let (ev, field) = target.split_once('.').unwrap_or((target, ""));
        if let Some(o) = out
            .iter_mut()
            .find(|o| matches!(&o.action, Action::Event { name, .. } if name == ev))
        {
            if let Action::Event { frame, .. } = &mut o.action {
                if remove_field(frame, field) {
                    o.faults.push(format!("faults.omit_field.{target}"));
                }
            }
        }
    }
}

fn insert_after_first(out: &mut Vec<Outgoing>, action: Action, fault: &str) {
    let at = 1.min(out.len());
    out.insert(
        at,
        Outgoing {
            delay: Duration::ZERO,
            action,
            faults: vec![fault.to_string()],
            last: false,
        },
    );
}

/// Frames that do not belong to the run, after its first event: another
/// user's event (leak), malformed JSON, a binary frame, an oversized frame.
fn insert_strays(
    out: &mut Vec<Outgoing>,
    c: &Settings,
    ids: &RunIds,
    rng: &mut ChaCha8Rng,
    other_user: Option<&str>,
) {
    let f = &c.faults;
    if draw(rng, f.leak) {
        let other = other_user.unwrap_or("ghost-user-without-a-socket");
        let foreign = RunIds {
            run_id: format!("run-of-{other}"),
            thread_id: format!("thread-{other}"),
            user_id: other.to_string(),
        };
        let fields = serde_json::json!({"reasoning": "meant for someone else"});
        let mut leaked = frame(
            c.envelope,
            "agent_thinking",
            &foreign,
            fields.as_object().expect("object"),
        );
        apply_naming(&mut leaked, &c.naming);
        insert_after_first(
            out,
            Action::Event {
                name: "agent_thinking".into(),
                frame: leaked,
            },
            "faults.leak",
        );
    }
    if draw(rng, f.malformed) {
        insert_after_first(
            out,
            Action::Text(r#"{"type":"agent_thinking","reasoning":"#.into()),
            "faults.malformed",
        );
    }
    if draw(rng, f.binary) {
        insert_after_first(
            out,
            Action::Binary(vec![0x00, 0x9f, 0x92, 0x96]),
            "faults.binary",
        );
    }
    if draw(rng, f.oversized) {
        let pad = "x".repeat(f.oversized_bytes);
        let fields = serde_json::json!({"content": pad});
        let mut big = frame(
            c.envelope,
            "partial_result",
            ids,
            fields.as_object().expect("object"),
        );
        apply_naming(&mut big, &c.naming);
        insert_after_first(out, Action::Text(big.to_string()), "faults.oversized");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, Profile};
    use rand::SeedableRng;

    #[test]
    fn every_envelope_decodes_under_netra_with_its_ids() {
        let ids = RunIds {
            run_id: "r1".into(),
            thread_id: "t1".into(),
            user_id: "u1".into(),
        };
        let plan = RunPlan {
            thinking: 1,
            tools: 1,
            delays: vec![],
        };
        let p = Profile::netra();
        for env in [
            Envelope::Payload,
            Envelope::Data,
            Envelope::Flat,
            Envelope::Wrapped,
        ] {
            let names: Vec<String> = plan
                .events(&ids)
                .iter()
                .map(
                    |(n, f)| match p.decode(&frame(env, n, &ids, f).to_string()) {
                        Frame::Agent(e) => {
                            assert_eq!(e.run_id.as_deref(), Some("r1"), "{env:?} {n}");
                            assert_eq!(e.user_id.as_deref(), Some("u1"), "{env:?} {n}");
                            e.name
                        }
                        other => panic!("{env:?} {n}: {other:?}"),
                    },
                )
                .collect();
            assert_eq!(
                names,
                [
                    "agent_started",
                    "agent_thinking",
                    "tool_executing",
                    "tool_completed",
                    "agent_completed"
                ],
                "{env:?}"
            );
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_runs() {
        let c = Settings::new(crate::auth::Secret::new("k"));
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let (x, y) = (RunPlan::draw(&c, &mut a), RunPlan::draw(&c, &mut b));
            assert_eq!(
                (x.thinking, x.tools, x.delays),
                (y.thinking, y.tools, y.delays)
            );
        }
    }
}
