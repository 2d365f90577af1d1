//! The reference server's truth counters: counts of everything it did or
//! injected, by name, and their endpoint `GET /__chatload/truth`. The
//! counter names other code reads are the constants below.
//!
//! Imports nothing from the crate but its own `mod.rs` (the state the
//! endpoint reads).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;

use super::ServerState;

/// Counts of everything the server did or injected, by name.
#[derive(Default)]
pub struct Truth(Mutex<BTreeMap<String, u64>>);

impl Truth {
    pub fn add(&self, key: &str, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key.to_string()).or_insert(0) += n;
    }
    pub fn get(&self, key: &str) -> u64 {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).copied().unwrap_or(0)
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

// Truth counter names.
pub const CONNECTIONS_UPGRADED: &str = "connections.upgraded";
pub const CONNECTIONS_READY: &str = "connections.ready";
pub const AUTH_FAILED: &str = "connections.auth_failed";
pub const REJECTED_NO_SUBPROTOCOL: &str = "connections.rejected_403";
pub const RUNS_STARTED: &str = "runs.started";
pub const RUNS_COMPLETED: &str = "runs.completed";
pub const FAULT_CLOSE_1011: &str = "faults.close_1011";
/// Tokens refused before ready by the reject_token fault (`VALIDATION_FAILED`, then 1011).
pub const FAULT_REJECT_TOKEN: &str = "faults.reject_token";
/// Runs that waited for a free agent slot (capacity model).
pub const CAPACITY_QUEUED: &str = "capacity.queued";
/// Runs refused with a 1011 close because the queue was full.
pub const CAPACITY_REFUSED: &str = "capacity.refused_1011";
/// Runs that had at least one event held back by a stall window.
pub const STALL_RUNS: &str = "stall.runs_delayed";
/// Stall windows that held back at least one event.
pub const STALL_WINDOWS: &str = "stall.windows";
/// User messages stored in their thread / left out by the lose_message fault.
pub const MESSAGES_STORED: &str = "messages.stored";
pub const FAULT_LOSE_MESSAGE: &str = "faults.lose_message";
/// History reads that carried another user's message (leak_history fault).
pub const FAULT_LEAK_HISTORY: &str = "faults.leak_history";
/// Thread REST calls answered with an injected status (`.<status>`).
pub const FAULT_REST_ERROR: &str = "faults.rest_error";
/// Thread and history requests refused for isolation (403) or unknown ids (404).
pub const THREADS_FORBIDDEN: &str = "threads.forbidden_403";
pub const THREADS_NOT_FOUND: &str = "threads.not_found_404";
/// Socket closes the server forgot to subtract from its own connection
/// counts (leak_connections fault): after every socket closed,
/// `active_connections` in `/__chatload/stats` equals this.
pub const FAULT_LEAK_CONNECTIONS: &str = "faults.leak_connections";
/// Heap kept for good by the leak_memory fault, and the runs that kept it.
pub const FAULT_LEAK_MEMORY_BYTES: &str = "faults.leak_memory_bytes";
pub const FAULT_LEAK_MEMORY_RUNS: &str = "faults.leak_memory_runs";
/// Tokens issued by the login endpoint.
pub const LOGINS: &str = "auth.logins";
/// Connections the listener could not accept, by errno name
/// (`accept_errors.emfile`): the server ran out of fds (`listener.rs`).
pub const ACCEPT_ERRORS: &str = "accept_errors.";
pub fn events(name: &str) -> String {
    format!("events.{name}")
}

/// `GET /__chatload/truth`: every counter, by name.
pub(super) async fn truth_handler(
    State(st): State<Arc<ServerState>>,
) -> Json<BTreeMap<String, u64>> {
    Json(st.truth.snapshot())
}
