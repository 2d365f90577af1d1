//! Wire shapes of the chat-agent protocol family: profiles, envelope
//! normalisation and message templates. No I/O here.
//!
//! A [`Profile`] says where an event's name and correlation ids live and which
//! frames mean "ready", "answer me" or "ignore me". The built-in `netra` profile
//! accepts the four envelope shapes of PROTOCOL.md section 4 at once: nested
//! `payload`, nested `data`, flat, and wrapped (`system_message` /
//! `agent_progress` / `agent_response_complete` with the name in `data.event`).
//!
//! A leaf shared by the client side and the reference server: imports only
//! `units` (durations in `faults.rs`), never another chatload module. Files:
//! this one (profiles, envelope normalisation), `template.rs`, `sequence.rs`
//! (sequence automaton), `validate.rs` (whole-run validation), `dialect.rs`
//! (what a server speaks), `faults.rs` (the server's fault vocabulary) and
//! `auth_failure.rs` (which early frames and closes mean a refused token),
//! `generations.rs` (the built-in profiles besides `netra`), `history.rs`
//! (REST history paging), `seq.rs` (event numbering), `platform.rs` (the
//! reference server's presets of the same names).
//!
//! A new server fault class touches `faults.rs` here (its field and syntax),
//! then `server/faults.rs` (its draw) and the server file that applies it.

pub mod auth_failure;
pub mod connect_limit;
pub mod dialect;
pub mod faults;
mod generations;
pub mod history;
pub mod platform;
pub mod seq;
pub mod sequence;
pub mod template;
pub mod validate;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use auth_failure::AuthFailure;

/// How frames of one protocol generation are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub base: String,
    /// Root field holding the frame type.
    pub type_field: String,
    /// Frame types whose real event name is at `wrapper_event_field` inside `data`.
    pub wrapper_types: Vec<String>,
    pub wrapper_event_field: String,
    /// Renames applied after the wrapper lookup (`agent_response_complete` -> `agent_completed`).
    pub aliases: BTreeMap<String, String>,
    /// Correlation ids: the first of these fields present in the merged view.
    pub run_id_fields: Vec<String>,
    pub thread_id_fields: Vec<String>,
    pub user_id_fields: Vec<String>,
    /// Frame names that mean the socket is ready for messages.
    pub ready: Vec<String>,
    /// Names of agent events: frames that belong to a run.
    pub agent_events: Vec<String>,
    /// Events that end a run successfully.
    pub terminal_ok: Vec<String>,
    /// Events that end a run as a failure.
    pub terminal_error: Vec<String>,
    /// Server frames the client must answer: frame name -> reply message.
    pub answers: BTreeMap<String, Value>,
    /// Frame names that are noise.
    pub ignore: Vec<String>,
    /// Frames that report a server-side error outside a run (e.g. `AUTH_FAILED`).
    pub error_frames: Vec<String>,
    /// Which early frames and closes mean the server refused the token.
    pub auth_failure: AuthFailure,
    /// The newest generation's ready handshake, if the server speaks it.
    pub handshake: Option<Handshake>,
    /// What a whole run must look like.
    pub rules: validate::Rules,
    /// How the client switches threads over the socket, and what confirms it.
    pub switch_thread: SwitchThread,
    /// Client heartbeats while the user is idle (None: the client never pings).
    pub heartbeat: Option<Heartbeat>,
    /// How the token is presented unless `auth.present` says otherwise
    /// (names as in `auth.present`: `subprotocol:browser`, `header`, ...).
    pub present: Vec<String>,
    /// The login path unless `[auth.login] url` says otherwise.
    pub login_path: String,
    /// The REST history calls: paths, page size, paging.
    pub history: history::History,
    /// Events numbered within a run (None: not checked).
    pub seq: Option<seq::SeqRule>,
}

/// Client heartbeats: while a user is idle (a `think` step) its socket sends
/// `message` every `every` and expects a `reply` frame; the round trip is the
/// `ws_ping` metric. A socket with a ping unanswered for `timeout` is closed
/// and counted (`heartbeats.missed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub every: std::time::Duration,
    pub message: Value,
    pub reply: String,
    pub timeout: std::time::Duration,
}

/// `switch_thread`: the message that switches the socket to another thread
/// (`{{thread}}` is the thread switched to), the frame type that confirms it,
/// and where that frame carries the thread's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchThread {
    pub message: Value,
    /// Frame type of the confirmation (`thread_data`); `None`: the server
    /// does not confirm, the switch is done once sent.
    pub reply: Option<String>,
    /// Path of the messages array in the reply (`data.messages`).
    pub messages_path: String,
}

/// `handshake_response` -> client sends `reply` -> server sends a ready frame
/// (`handshake_complete`). Messages sent before that are lost, so the socket is
/// only ready after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// Frame name that asks for the reply.
    pub on: String,
    /// Message template to answer with (`{{thread}}` etc. allowed).
    pub reply: Value,
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Profile {
    /// The default profile: every variant seen on the real platform.
    pub fn netra() -> Self {
        let mut aliases = BTreeMap::new();
        aliases.insert("agent_response_complete".into(), "agent_completed".into());
        let mut answers = BTreeMap::new();
        answers.insert("ping".into(), serde_json::json!({"type": "pong"}));
        answers.insert(
            "heartbeat".into(),
            serde_json::json!({"type": "heartbeat_ack"}),
        );
        Profile {
            base: "netra".into(),
            type_field: "type".into(),
            wrapper_types: strings(&[
                "system_message",
                "agent_progress",
                "agent_response_complete",
            ]),
            wrapper_event_field: "event".into(),
            aliases,
            run_id_fields: strings(&["run_id", "turn_id"]),
            thread_id_fields: strings(&["thread_id"]),
            user_id_fields: strings(&["user_id"]),
            ready: strings(&["connection_established", "handshake_complete"]),
            agent_events: strings(&[
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_completed",
                "agent_error",
                "partial_result",
                "stream_chunk",
                "agent_response_chunk",
                "progress_update",
                "agent_timeout_warning",
                "agent_fallback",
                "tool_error",
                "final_report",
            ]),
            terminal_ok: strings(&["agent_completed"]),
            terminal_error: strings(&["agent_error"]),
            answers,
            ignore: strings(&["ack", "pong", "heartbeat_ack", "connection_recovery"]),
            error_frames: strings(&["error_message", "error"]),
            auth_failure: AuthFailure::netra(),
            handshake: Some(Handshake {
                on: "handshake_response".into(),
                reply: serde_json::json!({"type": "handshake_acknowledged", "thread_id": "{{thread}}"}),
            }),
            rules: validate::Rules::netra(),
            heartbeat: Some(Heartbeat {
                every: std::time::Duration::from_secs(15),
                message: serde_json::json!({"type": "ping"}),
                reply: "pong".into(),
                timeout: std::time::Duration::from_secs(45),
            }),
            switch_thread: SwitchThread {
                message: serde_json::json!({"type": "switch_thread", "payload": {"thread_id": "{{thread}}"}}),
                reply: Some("thread_data".into()),
                messages_path: "data.messages".into(),
            },
            present: strings(&["subprotocol:jwt"]),
            login_path: "/auth/dev/login".into(),
            history: history::History::netra(1000),
            seq: None,
        }
    }

    /// The built-in profile names, the default first.
    pub const BUILTIN: [&'static str; 3] = platform::PRESETS;

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "netra" => Some(Profile::netra()),
            "netra-start-agent" => Some(Profile::netra_start_agent()),
            "netra-agent-request" => Some(Profile::netra_agent_request()),
            _ => None,
        }
    }

    fn first_str(&self, view: &Map<String, Value>, fields: &[String]) -> Option<String> {
        fields.iter().find_map(|f| match view.get(f) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    }

    /// Classifies one text frame.
    pub fn decode(&self, text: &str) -> Frame {
        let root: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return Frame::Unparseable,
        };
        let Value::Object(root) = root else {
            return Frame::Unparseable;
        };
        let Some(raw_type) = root.get(&self.type_field).and_then(Value::as_str) else {
            return Frame::Unparseable;
        };
        let data = root.get("data").and_then(Value::as_object);
        let mut name = raw_type.to_string();
        if self.wrapper_types.iter().any(|w| w == raw_type) {
            match data
                .and_then(|d| d.get(&self.wrapper_event_field))
                .and_then(Value::as_str)
            {
                Some(ev) => name = ev.to_string(),
                None if self.aliases.contains_key(raw_type) => {}
                // A wrapper without an event name carries nothing to act on.
                None => return Frame::Ignored(name),
            }
        }
        if let Some(a) = self.aliases.get(&name) {
            name = a.clone();
        }
        let view = merged_view(root);
        if self.ready.contains(&name) {
            return Frame::Ready;
        }
        if let Some(h) = &self.handshake {
            if h.on == name {
                return Frame::Handshake;
            }
        }
        if let Some(reply) = self.answers.get(&name) {
            return Frame::Answer(reply.clone());
        }
        if self.agent_events.contains(&name)
            || self.terminal_ok.contains(&name)
            || self.terminal_error.contains(&name)
        {
            return Frame::Agent(Event {
                run_id: self.first_str(&view, &self.run_id_fields),
                thread_id: self.first_str(&view, &self.thread_id_fields),
                user_id: self.first_str(&view, &self.user_id_fields),
                name,
                view,
            });
        }
        if self.error_frames.contains(&name) || self.auth_failure.frames.contains(&name) {
            let code = ["error_code", "code"]
                .iter()
                .find_map(|k| view.get(*k).map(value_text));
            let message = ["message", "error", "detail"]
                .iter()
                .find_map(|k| view.get(*k).map(value_text));
            let auth = self.auth_failure.is_auth_frame(&name, code.as_deref());
            return Frame::ServerError {
                code,
                message,
                auth,
            };
        }
        if self.ignore.contains(&name) {
            return Frame::Ignored(name);
        }
        Frame::Unknown(name)
    }

    /// The user id a ready frame names (the server's own id for the user,
    /// at the profile's `user_id_fields`), if any.
    pub fn ready_user_id(&self, text: &str) -> Option<String> {
        let Value::Object(root) = serde_json::from_str(text).ok()? else {
            return None;
        };
        self.first_str(&merged_view(root), &self.user_id_fields)
    }

    /// Terminal outcome of an event name, if it ends a run.
    pub fn terminal(&self, name: &str) -> Option<bool> {
        if self.terminal_ok.iter().any(|t| t == name) {
            Some(true)
        } else if self.terminal_error.iter().any(|t| t == name) {
            Some(false)
        } else {
            None
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("code"))
            .map(value_text)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// One view of a frame: root fields, overlaid by `data`, `data.payload` and
/// `payload` (later wins), so required fields can be looked up in one place
/// whatever the envelope. It takes the parsed frame apart rather than
/// copying it: every key and value moves into the view once.
pub fn merged_view(root: Map<String, Value>) -> Map<String, Value> {
    let mut view = Map::new();
    let (mut data, mut payload) = (None, None);
    for (k, v) in root {
        match k.as_str() {
            "data" => data = Some(v),
            "payload" => payload = Some(v),
            _ => {
                view.insert(k, v);
            }
        }
    }
    if let Some(Value::Object(d)) = data {
        let mut inner = None;
        for (k, v) in d {
            if k == "payload" {
                inner = Some(v);
            } else {
                view.insert(k, v);
            }
        }
        if let Some(Value::Object(p)) = inner {
            view.extend(p);
        }
    }
    if let Some(Value::Object(p)) = payload {
        view.extend(p);
    }
    view
}

/// A classified server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The socket is ready for messages.
    Ready,
    /// An agent event.
    Agent(Event),
    /// The client must send this reply.
    Answer(Value),
    /// The server started the ready handshake; the client must answer it.
    Handshake,
    /// A server error outside a run, such as `AUTH_FAILED`.
    ServerError {
        code: Option<String>,
        message: Option<String>,
        /// The profile's `auth_failure` says this frame refuses the token.
        auth: bool,
    },
    /// Known noise.
    Ignored(String),
    /// A JSON frame of a type the profile does not know.
    Unknown(String),
    /// Not a JSON object with a type.
    Unparseable,
}

/// An agent event, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub run_id: Option<String>,
    pub thread_id: Option<String>,
    pub user_id: Option<String>,
    pub view: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(f: Frame) -> Event {
        match f {
            Frame::Agent(e) => e,
            other => panic!("expected an agent event, got {other:?}"),
        }
    }

    #[test]
    fn netra_reads_all_four_envelopes() {
        let p = Profile::netra();
        // 1. nested payload
        let e = agent(p.decode(r#"{"type":"tool_completed","run_id":"r1","agent_name":"a","timestamp":"2025-01-01T00:00:00Z","payload":{"tool_name":"t","results":{},"duration":1.5}}"#));
        assert_eq!(
            (e.name.as_str(), e.run_id.as_deref()),
            ("tool_completed", Some("r1"))
        );
        assert_eq!(e.view["tool_name"], "t");
        // 2. nested data
        let e = agent(p.decode(
            r#"{"type":"agent_started","run_id":"r2","user_id":"u","data":{"thread_id":"th"}}"#,
        ));
        assert_eq!(e.thread_id.as_deref(), Some("th"));
        assert_eq!(e.user_id.as_deref(), Some("u"));
        // 3. flat
        let e = agent(p.decode(r#"{"type":"agent_thinking","critical":true,"thread_id":"t","run_id":"r3","reasoning":"x"}"#));
        assert_eq!(e.view["reasoning"], "x");
        // 4. wrapped, terminal alias, turn_id as run id
        let e = agent(p.decode(r#"{"type":"agent_response_complete","data":{"event":"agent_completed","turn_id":"t9","status":"ok"}}"#));
        assert_eq!(
            (e.name.as_str(), e.run_id.as_deref()),
            ("agent_completed", Some("t9"))
        );
        let e = agent(p.decode(
            r#"{"type":"agent_progress","data":{"event":"tool_executing","tool_name":"search"}}"#,
        ));
        assert_eq!(e.name, "tool_executing");
    }

    /// The overlay order: root, then `data`, then `data.payload`, then
    /// `payload`, later winning; `data` and `payload` themselves (and ones
    /// that are not objects) are not fields of the view.
    #[test]
    fn the_view_overlays_data_then_its_payload_then_payload() {
        let root = serde_json::json!({
            "a": "root", "b": "root", "c": "root", "d": "root", "only_root": 1,
            "data": {"b": "data", "c": "data", "d": "data", "payload": {"c": "data.payload", "d": "data.payload"}},
            "payload": {"d": "payload"}
        });
        let Value::Object(root) = root else {
            unreachable!()
        };
        let view = merged_view(root);
        assert_eq!(
            serde_json::Value::Object(view),
            serde_json::json!({"a": "root", "b": "data", "c": "data.payload", "d": "payload", "only_root": 1})
        );
        let Value::Object(odd) = serde_json::json!({"x": 1, "data": "text", "payload": [1]}) else {
            unreachable!()
        };
        assert_eq!(Value::Object(merged_view(odd)), serde_json::json!({"x": 1}));
    }

    #[test]
    fn ready_answers_errors_and_noise() {
        let p = Profile::netra();
        assert_eq!(
            p.decode(r#"{"type":"connection_established","data":{}}"#),
            Frame::Ready
        );
        assert_eq!(
            p.decode(r#"{"type":"system_message","data":{"event":"connection_established"}}"#),
            Frame::Ready
        );
        assert_eq!(
            p.decode(r#"{"type":"ping","data":{"timestamp":1}}"#),
            Frame::Answer(serde_json::json!({"type":"pong"}))
        );
        assert_eq!(
            p.decode(r#"{"type":"error_message","error_code":"AUTH_FAILED","message":"bad"}"#),
            Frame::ServerError {
                code: Some("AUTH_FAILED".into()),
                message: Some("bad".into()),
                auth: true,
            }
        );
        assert_eq!(
            p.decode(r#"{"type":"error_message","error_code":"RATE_LIMITED","message":"slow"}"#),
            Frame::ServerError {
                code: Some("RATE_LIMITED".into()),
                message: Some("slow".into()),
                auth: false,
            }
        );
        assert_eq!(
            p.decode(r#"{"type":"system_message","data":{}}"#),
            Frame::Ignored("system_message".into())
        );
        assert_eq!(p.decode(r#"{"type":"ack"}"#), Frame::Ignored("ack".into()));
        assert_eq!(
            p.decode(r#"{"type":"surprise"}"#),
            Frame::Unknown("surprise".into())
        );
        assert_eq!(p.decode("not json"), Frame::Unparseable);
        assert_eq!(p.decode("[1,2]"), Frame::Unparseable);
        assert_eq!(p.decode(r#"{"no_type":1}"#), Frame::Unparseable);
    }
}
