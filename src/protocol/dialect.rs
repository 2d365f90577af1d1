//! The dialect a server speaks: its agent-event envelope (PROTOCOL.md
//! section 4), its ready handshake (section 2) and renamed fields and events.
//! Pure data and parsing, shared by the reference server (what it sends) and
//! the scenario's `[server]` table (what it asks for), which is why it lives
//! in this leaf rather than in `server/`. Imports nothing from the crate.

use std::collections::BTreeMap;

/// The agent-event envelope the server speaks (PROTOCOL.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `{"type","run_id",...,"payload":{...}}`
    Payload,
    /// `{"type","run_id","user_id",...,"data":{...}}` (the default)
    Data,
    /// everything at the root
    Flat,
    /// `{"type":"system_message"|"agent_progress"|"agent_response_complete","data":{"event":...}}`
    Wrapped,
}

impl std::str::FromStr for Envelope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "payload" => Ok(Envelope::Payload),
            "data" => Ok(Envelope::Data),
            "flat" => Ok(Envelope::Flat),
            "wrapped" => Ok(Envelope::Wrapped),
            other => Err(format!(
                "unknown envelope `{other}` (expected payload, data, flat or wrapped)"
            )),
        }
    }
}

/// How the server says "ready" (PROTOCOL.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStyle {
    /// `{"type":"connection_established","data":{...}}`
    Established,
    /// `{"type":"system_message","data":{"event":"connection_established",...}}`
    SystemMessage,
    /// `handshake_response` -> client `handshake_acknowledged` -> `handshake_complete`
    Handshake,
}

impl std::str::FromStr for ReadyStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "connection_established" => Ok(ReadyStyle::Established),
            "system_message" => Ok(ReadyStyle::SystemMessage),
            "handshake" => Ok(ReadyStyle::Handshake),
            other => Err(format!("unknown ready style `{other}` (expected connection_established, system_message or handshake)")),
        }
    }
}

/// Field and event names, for a server that speaks a renamed dialect (to test
/// custom profiles written only in TOML).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Naming {
    /// Root field holding the frame type.
    pub type_field: String,
    /// Field holding the run id.
    pub run_id_field: String,
    /// Event renames, e.g. `agent_completed` -> `done`.
    pub events: BTreeMap<String, String>,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            type_field: "type".into(),
            run_id_field: "run_id".into(),
            events: BTreeMap::new(),
        }
    }
}
