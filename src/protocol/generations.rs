//! The built-in profiles besides the default `netra` (which accepts every
//! shape at once): one per protocol generation of the platform, each strict
//! about its own frames, with its token presentation, login path, history
//! page size and auth-failure values. A scenario picks one with
//! `[profile] base = "..."` and overrides only what differs; the reference
//! server speaks each with the preset of the same name (`platform.rs`).
//! Imports only its own folder.

use std::collections::BTreeMap;

use serde_json::json;

use super::validate::FieldRule;
use super::{strings, AuthFailure, Profile};

fn rules(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<FieldRule>> {
    pairs
        .iter()
        .map(|(event, fields)| {
            let r = fields
                .iter()
                .map(|f| FieldRule::parse(f).expect("built-in rule"))
                .collect();
            (event.to_string(), r)
        })
        .collect()
}

impl Profile {
    /// The `start_agent` generation: events in the nested-`payload` envelope
    /// carrying `run_id` (and `thread_id`, `user_id` in the payload), ready
    /// on `connection_established`; tokens as `jwt.<token>`.
    pub fn netra_start_agent() -> Self {
        let mut p = Profile::netra();
        p.base = "netra-start-agent".into();
        p.wrapper_types = Vec::new();
        p.aliases = BTreeMap::new();
        p.run_id_fields = strings(&["run_id"]);
        p.ready = strings(&["connection_established"]);
        p.handshake = None;
        p
    }

    /// The `agent_request` generation (PROTOCOL.md section 8): the wrapped
    /// envelope (`system_message` / `agent_progress` /
    /// `agent_response_complete` with the name in `data.event`), runs
    /// correlated by the client's `turn_id` (no `run_id`, no `thread_id`),
    /// `agent_thinking.status`, `tool_completed.result`,
    /// `agent_completed.status` and `content`; the server's `ping` frames
    /// answered with a JSON `pong`; tokens as `jwt-auth, jwt.<base64url>`;
    /// login at `/auth/create-token`; history pages of 100 (the platform
    /// answers 422 above); auth failures as `error_message` with
    /// `NO_TOKEN`/`VALIDATION_FAILED` then close 1011.
    pub fn netra_agent_request() -> Self {
        let mut p = Profile::netra();
        p.base = "netra-agent-request".into();
        p.wrapper_types = strings(&[
            "system_message",
            "agent_progress",
            "agent_response_complete",
        ]);
        p.run_id_fields = strings(&["turn_id"]);
        p.thread_id_fields = Vec::new();
        p.ready = strings(&["connection_established"]);
        p.handshake = None;
        p.answers = BTreeMap::from([("ping".to_string(), json!({"type": "pong"}))]);
        p.ignore = strings(&[
            "ack",
            "pong",
            "heartbeat",
            "heartbeat_ack",
            "connection_recovery",
        ]);
        p.rules.required = rules(&[
            ("agent_started", &["user_id"]),
            ("agent_thinking", &["status"]),
            ("tool_executing", &["tool_name"]),
            ("tool_completed", &["tool_name", "result"]),
            ("agent_completed", &["status", "content"]),
        ]);
        p.auth_failure = AuthFailure {
            frames: strings(&["error_message", "error"]),
            codes: strings(&["NO_TOKEN", "VALIDATION_FAILED", "AUTH_*"]),
            close_before_ready: vec![1008],
        };
        p.present = strings(&["subprotocol:browser"]);
        p.login_path = "/auth/create-token".into();
        p.history = super::history::History::netra(100);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::super::Frame;
    use super::*;

    #[test]
    fn agent_request_reads_the_wrapped_turn_events_and_answers_pings() {
        let p = Profile::netra_agent_request();
        let f = p.decode(r#"{"type":"agent_progress","data":{"event":"agent_thinking","turn_id":"t1","user_id":"u","status":"thinking"}}"#);
        let Frame::Agent(e) = f else { panic!("{f:?}") };
        assert_eq!(
            (e.name.as_str(), e.run_id.as_deref(), e.thread_id),
            ("agent_thinking", Some("t1"), None)
        );
        assert_eq!(
            p.decode(r#"{"type":"ping","data":{"timestamp":1.5}}"#),
            Frame::Answer(json!({"type": "pong"}))
        );
        assert_eq!(
            p.decode(r#"{"type":"system_message","data":{"event":"connection_established","user_id":"u"}}"#),
            Frame::Ready
        );
        assert_eq!(p.present, ["subprotocol:browser"]);
        assert_eq!(p.history.page_size, 100);
    }

    #[test]
    fn start_agent_reads_the_nested_payload_and_the_default_is_unchanged() {
        let p = Profile::netra_start_agent();
        let f = p.decode(
            r#"{"type":"agent_started","run_id":"r1","payload":{"user_id":"u","thread_id":"th"}}"#,
        );
        let Frame::Agent(e) = f else { panic!("{f:?}") };
        assert_eq!(
            (e.run_id.as_deref(), e.thread_id.as_deref()),
            (Some("r1"), Some("th"))
        );
        assert_eq!(Profile::builtin("netra"), Some(Profile::netra()));
        for name in Profile::BUILTIN {
            assert_eq!(
                Profile::builtin(name).map(|p| p.base),
                Some(name.to_string())
            );
        }
    }
}
