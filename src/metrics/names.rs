//! Names of metrics and counters every report uses (DESIGN.md "Metrics").

/// TCP + TLS + HTTP upgrade, until the 101 response.
pub const WS_CONNECT: &str = "ws_connect";
/// Upgrade done until the profile's ready frame.
pub const WS_READY: &str = "ws_ready";
/// Run start to the first agent event of the run.
pub const TTFE: &str = "ttfe";
/// Run start to the terminal event.
pub const TTC: &str = "ttc";
/// Largest gap between consecutive events of a run.
pub const EVENT_GAP_MAX: &str = "event_gap_max";
/// Intended start to actual send.
pub const SEND_LAG: &str = "send_lag";

/// Open model: arrivals the rate plan called for.
pub const STARTS_INTENDED: &str = "starts.intended";
/// Open model: arrivals that found every session busy and were not started.
pub const STARTS_DROPPED: &str = "starts.dropped";
/// Open model: arrivals that waited for a free session (`when_full = "queue"`).
pub const STARTS_LATE: &str = "starts.late";

/// Histogram of the first event of one name, from the run's start.
pub fn event_metric(name: &str) -> String {
    format!("event_{name}")
}

pub const CONN_ATTEMPTED: &str = "connections.attempted";
pub const CONN_UPGRADED: &str = "connections.upgraded";
pub const CONN_READY: &str = "connections.ready";
pub const CONN_READY_TIMEOUT: &str = "connections.ready_timeout";
/// A ready socket that ended, for whatever reason (open = ready - closed).
pub const CONN_CLOSED: &str = "connections.closed";
pub const RECONNECTS: &str = "reconnects";
pub const RUNS_STARTED: &str = "runs.started";
pub const RUNS_OK: &str = "runs.ok";
pub const RUNS_FAILED: &str = "runs.failed";

/// HTTP status that refused an upgrade.
pub fn conn_rejected(status: u16) -> String {
    format!("connections.rejected.{status}")
}

/// A connection attempt that failed below HTTP (refused, timeout, TLS).
pub fn conn_failed(kind: &str) -> String {
    format!("connections.failed.{kind}")
}

/// A close seen by the client, by code (1006 when the socket dropped without one).
pub fn close_code(code: u16) -> String {
    format!("closes.{code}")
}

/// A close by the phase it happened in and its code.
pub fn close_phase(phase: &str, code: u16) -> String {
    format!("closes_by_phase.{phase}.{code}")
}

/// A failed run by class (`timeout`, `no_response`, `closed`, `agent_error`, ...).
pub fn run_failed(class: &str) -> String {
    format!("runs.failed.{class}")
}

pub fn events(name: &str) -> String {
    format!("events.{name}")
}
