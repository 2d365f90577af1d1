//! What a real platform's server does beyond its dialect (`dialect.rs`), as
//! data the reference server applies ([`PlatformOptions`]), and the named
//! presets ([`preset`]) that make the reference server speak one protocol
//! generation: `chatload serve --profile NAME` and a scenario's
//! `[server] profile = "NAME"`. Each preset matches the built-in client
//! profile of the same name (`generations.rs`), so a scenario with
//! `base = "NAME"` passes against `serve --profile NAME` with nothing else.
//!
//! Pure data shared by `server/` (what it does) and `scenario/` (what a
//! `[server]` table asks for). Imports only its own folder (`dialect`).

use std::time::Duration;

use super::dialect::{Envelope, ReadyStyle};

/// The fields a run's events carry (PROTOCOL.md sections 4 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFields {
    /// `agent_thinking.reasoning`, `tool_completed.results`,
    /// `agent_completed.final_response` (the schema's names).
    #[default]
    Classic,
    /// The `agent_request` generation: `agent_thinking.status` (no
    /// `reasoning`), `tool_completed.result`, `agent_completed.status` and
    /// `content`.
    AgentRequest,
}

impl std::str::FromStr for EventFields {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(EventFields::Classic),
            "agent_request" => Ok(EventFields::AgentRequest),
            other => Err(format!(
                "unknown event fields `{other}` (expected classic or agent_request)"
            )),
        }
    }
}

/// Server behaviours seen on real platforms, each off by default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformOptions {
    /// Refuse a token that carries any `aud` claim (a JWT library given no
    /// audience to expect); by default `aud` is required instead.
    pub refuse_aud: bool,
    /// The largest `limit` the history and thread-list calls accept; a
    /// larger one is answered 422 (None: any limit, clamped to 1000).
    pub history_limit_max: Option<usize>,
    /// Every login issues a token for this one user (`POST /auth/dev/login`
    /// on the platform: every user is `dev-user-001`).
    pub login_identity: Option<String>,
    /// Every socket is this one user, whatever its token says (a server
    /// that ignores the token's identity: the auth defect chatload's
    /// `identity_mismatch` catches).
    pub socket_identity: Option<String>,
    /// Number each run's events `seq` = 1, 2, ... (a dropped event leaves a gap).
    pub seq: bool,
    /// The fields the events carry.
    pub fields: EventFields,
    /// The close code after an auth-failure frame (1008; the platform's 1011).
    pub auth_close: u16,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        PlatformOptions {
            refuse_aud: false,
            history_limit_max: None,
            login_identity: None,
            socket_identity: None,
            seq: false,
            fields: EventFields::Classic,
            auth_close: 1008,
        }
    }
}

/// One generation's server: envelope, ready frames, application heartbeat
/// and platform options.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub envelope: Envelope,
    pub ready: ReadyStyle,
    /// The server's own `ping` frames, every this often.
    pub heartbeat: Option<Duration>,
    pub options: PlatformOptions,
}

/// The preset names (the same as the built-in client profiles).
pub const PRESETS: [&str; 3] = ["netra", "netra-start-agent", "netra-agent-request"];

/// A named preset.
pub fn preset(name: &str) -> Option<Preset> {
    let default = Preset {
        envelope: Envelope::Data,
        ready: ReadyStyle::Established,
        heartbeat: None,
        options: PlatformOptions::default(),
    };
    match name {
        "netra" => Some(default),
        "netra-start-agent" => Some(Preset {
            envelope: Envelope::Payload,
            ..default
        }),
        "netra-agent-request" => Some(Preset {
            envelope: Envelope::Wrapped,
            ready: ReadyStyle::SystemMessage,
            heartbeat: Some(Duration::from_secs(25)),
            options: PlatformOptions {
                history_limit_max: Some(100),
                fields: EventFields::AgentRequest,
                auth_close: 1011,
                ..PlatformOptions::default()
            },
        }),
        _ => None,
    }
}

/// `unknown profile `x` (built in: ...)`.
pub fn unknown(name: &str) -> String {
    format!(
        "unknown profile `{name}` (built in: {})",
        PRESETS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists_and_netra_is_the_default_server() {
        for name in PRESETS {
            assert!(preset(name).is_some(), "{name}");
        }
        let n = preset("netra").unwrap();
        assert_eq!(
            (n.envelope, n.ready, n.heartbeat),
            (Envelope::Data, ReadyStyle::Established, None)
        );
        assert_eq!(n.options, PlatformOptions::default());
        assert!(preset("zen").is_none());
        assert!(unknown("zen").contains("netra-agent-request"));
    }
}
