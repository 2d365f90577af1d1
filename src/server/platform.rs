//! The reference server's platform options (`protocol::platform`): the
//! event fields of the `agent_request` generation, `seq` numbering, the
//! `limit` cap answered 422, and the identity-collapsing login. The callers
//! (`agent.rs`, `rest.rs`) hand their data here and stay as they were.
//!
//! Imports only `protocol` (the options) and its own folder.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::protocol::platform::{EventFields, PlatformOptions};

/// Reshapes one event's fields for the configured generation and numbers it
/// (`seq` is the event's 1-based place in its run, given before any fault:
/// a dropped event leaves a gap).
pub fn shape(o: &PlatformOptions, name: &str, place: usize, fields: &mut Map<String, Value>) {
    match o.fields {
        EventFields::Classic => {}
        EventFields::AgentRequest => match name {
            "agent_thinking" => {
                fields.remove("reasoning");
                fields.insert("status".into(), "thinking".into());
            }
            "tool_completed" => {
                if let Some(v) = fields.remove("results") {
                    fields.insert("result".into(), v);
                }
                fields.remove("duration");
            }
            "agent_completed" => {
                if let Some(v) = fields.remove("final_response") {
                    fields.insert("content".into(), v);
                }
            }
            _ => {}
        },
    }
    if o.seq {
        fields.insert("seq".into(), (place as u64 + 1).into());
    }
}

/// `limit` and `offset` of a history or thread-list call: a `limit` above
/// the cap is the platform's 422 (counted `rest.limit_refused`); without a
/// cap it is clamped to 1000.
pub fn paging(
    o: &PlatformOptions,
    q: &HashMap<String, String>,
) -> Result<(usize, usize), Response> {
    let n = |k: &str, d: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (limit, offset) = (n("limit", 50), n("offset", 0));
    match o.history_limit_max {
        Some(max) if limit > max => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{
                "type": "less_than_equal",
                "loc": ["query", "limit"],
                "msg": format!("Input should be less than or equal to {max}"),
            }]})),
        )
            .into_response()),
        Some(_) => Ok((limit, offset)),
        None => Ok((limit.min(1000), offset)),
    }
}

/// The user a login issues a token for: the identity-collapsing login's one
/// user, or the one asked for.
pub fn login_user(o: &PlatformOptions, asked: String) -> String {
    o.login_identity.clone().unwrap_or(asked)
}

/// The user a socket is taken for: the identity-ignoring server's one user,
/// or the token's.
pub fn socket_user(o: &PlatformOptions, sub: String) -> String {
    o.socket_identity.clone().unwrap_or(sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_request_fields_and_seq() {
        let o = PlatformOptions {
            fields: EventFields::AgentRequest,
            seq: true,
            ..PlatformOptions::default()
        };
        let mut f = json!({"reasoning": "x"}).as_object().cloned().unwrap();
        shape(&o, "agent_thinking", 1, &mut f);
        assert_eq!(Value::Object(f), json!({"status": "thinking", "seq": 2}));
        let mut f = json!({"tool_name": "t", "results": 1, "duration": 2})
            .as_object()
            .cloned()
            .unwrap();
        shape(&o, "tool_completed", 0, &mut f);
        assert_eq!(
            Value::Object(f),
            json!({"tool_name": "t", "result": 1, "seq": 1})
        );
        let classic = PlatformOptions::default();
        let mut f = json!({"reasoning": "x"}).as_object().cloned().unwrap();
        shape(&classic, "agent_thinking", 0, &mut f);
        assert_eq!(Value::Object(f), json!({"reasoning": "x"}));
    }

    #[test]
    fn a_limit_above_the_cap_is_422_and_no_cap_clamps() {
        let q = |l: &str| HashMap::from([("limit".to_string(), l.to_string())]);
        let capped = PlatformOptions {
            history_limit_max: Some(100),
            ..PlatformOptions::default()
        };
        assert_eq!(paging(&capped, &q("100")).ok(), Some((100, 0)));
        let r = paging(&capped, &q("1000")).expect_err("refused");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            paging(&PlatformOptions::default(), &q("5000")).ok(),
            Some((1000, 0))
        );
    }
}
