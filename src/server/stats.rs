//! The server's own numbers, as a real platform's health endpoint shows
//! them: `GET /__chatload/stats` (JSON) and `GET /__chatload/metrics`
//! (Prometheus text 0.0.4), the same values in both. A load tester's probes
//! read them beside its own figures.
//!
//! - `open_sockets`: WebSocket connections open right now (the truth);
//! - `active_connections`: ready connections the server *believes* are open
//!   (the `leak_connections` fault forgets to decrement some closes, so after
//!   every socket closed it equals the truth counter `faults.leak_connections`);
//! - `manager.connections`: a connection manager's own count, kept beside
//!   `active_connections` and leaking with it (nested, as platforms nest it);
//! - `runs_in_flight`: agent runs started and not yet finished;
//! - `rss_bytes`: the process's resident memory (`VmRSS`; 0 off Linux).
//!
//! Also here: the heap the `leak_memory` fault keeps for good. The counts
//! move through guards ([`SocketGuard`], [`ActiveGuard`], [`RunGuard`]), so a
//! connection or run ends in the counts however it ends.
//! Imports only its own folder (state, faults, truth).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::{faults, truth, ServerState};

/// The live counts behind the two endpoints.
#[derive(Default)]
pub struct Live {
    open_sockets: AtomicI64,
    active_connections: AtomicI64,
    manager_connections: AtomicI64,
    runs_in_flight: AtomicI64,
    /// What `leak_memory` retained: one block per completed run, never freed.
    retained: Mutex<Vec<Vec<u8>>>,
}

/// One reading of the server's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub open_sockets: i64,
    pub active_connections: i64,
    pub manager_connections: i64,
    pub runs_in_flight: i64,
    pub rss_bytes: i64,
}

impl Live {
    pub fn read(&self) -> Stats {
        let get = |a: &AtomicI64| a.load(Ordering::SeqCst);
        Stats {
            open_sockets: get(&self.open_sockets),
            active_connections: get(&self.active_connections),
            manager_connections: get(&self.manager_connections),
            runs_in_flight: get(&self.runs_in_flight),
            rss_bytes: rss_bytes(),
        }
    }
}

/// The process's resident set size from `/proc/self/status` (`VmRSS`, in
/// kB); 0 where there is no such file.
pub fn rss_bytes() -> i64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Counts one open socket (upgraded, ready or not) until dropped.
pub(super) struct SocketGuard(Arc<ServerState>);

impl SocketGuard {
    pub(super) fn new(st: Arc<ServerState>) -> Self {
        st.stats.open_sockets.fetch_add(1, Ordering::SeqCst);
        SocketGuard(st)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.stats.open_sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A ready connection: in the active set (for the `leak` fault's victims)
/// and in the believed counts until dropped, when the `leak_connections`
/// draw may forget the decrement.
pub(super) struct ActiveGuard {
    st: Arc<ServerState>,
    conn: u64,
    user: String,
    user_conn: u64,
}

impl ActiveGuard {
    /// `user_conn`: how many sockets this user opened, this one included
    /// (it seeds the leak draw, see `faults.rs`).
    pub(super) fn new(st: Arc<ServerState>, conn: u64, user: &str, user_conn: u64) -> Self {
        st.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn, user.to_string());
        st.stats.active_connections.fetch_add(1, Ordering::SeqCst);
        st.stats.manager_connections.fetch_add(1, Ordering::SeqCst);
        ActiveGuard {
            st,
            conn,
            user: user.to_string(),
            user_conn,
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let st = &self.st;
        st.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.conn);
        if !faults::leak_connection(st, &self.user, self.user_conn) {
            st.stats.active_connections.fetch_sub(1, Ordering::SeqCst);
            st.stats.manager_connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Counts one agent run in flight until dropped (played out, refused or
/// cut short with its socket).
pub(super) struct RunGuard(Arc<ServerState>);

impl RunGuard {
    pub(super) fn new(st: Arc<ServerState>) -> Self {
        st.stats.runs_in_flight.fetch_add(1, Ordering::SeqCst);
        RunGuard(st)
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.stats.runs_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `leak_memory` fault for one completed run: allocates the plan's
/// bytes, writes every one of them (so every page is resident and the RSS
/// really grows) and keeps them for the server's lifetime. Counts the bytes
/// and the run.
pub(super) fn retain_run_memory(st: &ServerState) {
    let bytes = st.config.faults.leak_memory;
    if bytes == 0 {
        return;
    }
    let block = std::hint::black_box(vec![0x5a_u8; bytes as usize]);
    st.stats
        .retained
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(block);
    st.truth.add(truth::FAULT_LEAK_MEMORY_BYTES, bytes);
    st.truth.add(truth::FAULT_LEAK_MEMORY_RUNS, 1);
}

impl Stats {
    /// The JSON form (`/__chatload/stats`).
    pub fn to_json(self) -> Value {
        json!({
            "active_connections": self.active_connections,
            "open_sockets": self.open_sockets,
            "runs_in_flight": self.runs_in_flight,
            "rss_bytes": self.rss_bytes,
            "manager": {"connections": self.manager_connections},
        })
    }

    /// The Prometheus text form (`/__chatload/metrics`): one gauge per
    /// number, help text on each, and `chatload_server_connections` by
    /// `state` (`active`, `open`).
    pub fn to_prometheus(self) -> String {
        let mut reg = Registry::default();
        let gauges = [
            ("chatload_server_active_connections", "Ready connections the server believes are open (leak_connections forgets some closes)", self.active_connections),
            ("chatload_server_open_sockets", "WebSocket connections open right now", self.open_sockets),
            ("chatload_server_manager_connections", "The connection manager's own count (leaks with active_connections)", self.manager_connections),
            ("chatload_server_runs_in_flight", "Agent runs started and not yet finished", self.runs_in_flight),
            ("chatload_server_rss_bytes", "Resident memory of the server process in bytes (VmRSS; 0 off Linux)", self.rss_bytes),
        ];
        for (name, help, v) in gauges {
            let g = Gauge::<i64>::default();
            g.set(v);
            reg.register(name, help, g);
        }
        let by_state = Family::<Vec<(String, String)>, Gauge>::default();
        for (state, v) in [
            ("active", self.active_connections),
            ("open", self.open_sockets),
        ] {
            by_state
                .get_or_create(&vec![("state".to_string(), state.to_string())])
                .set(v);
        }
        reg.register(
            "chatload_server_connections",
            "Connections by state: active (believed by the server), open (sockets)",
            by_state,
        );
        let mut out = String::new();
        encode(&mut out, &reg).expect("encoding into a String cannot fail");
        // OpenMetrics' end marker is not part of text 0.0.4; gauges are
        // written the same in both otherwise.
        out.lines()
            .filter(|l| *l != "# EOF")
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

/// `GET /__chatload/stats` (and the platform-style alias `/ws/health`).
pub(super) async fn stats_handler(State(st): State<Arc<ServerState>>) -> Json<Value> {
    Json(st.stats.read().to_json())
}

/// `GET /__chatload/metrics`: the same numbers as Prometheus text.
pub(super) async fn metrics_handler(State(st): State<Arc<ServerState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.stats.read().to_prometheus(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_carry_the_same_numbers() {
        let s = Stats {
            open_sockets: 3,
            active_connections: 5,
            manager_connections: 5,
            runs_in_flight: 2,
            rss_bytes: 12_345_678,
        };
        let j = s.to_json();
        assert_eq!(j["manager"]["connections"], 5);
        assert_eq!(j["open_sockets"], 3);
        let text = s.to_prometheus();
        for line in [
            "chatload_server_active_connections 5",
            "chatload_server_open_sockets 3",
            "chatload_server_manager_connections 5",
            "chatload_server_runs_in_flight 2",
            "chatload_server_rss_bytes 12345678",
            "chatload_server_connections{state=\"active\"} 5",
            "chatload_server_connections{state=\"open\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!((helps, types), (6, 6), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 1024 * 1024, "{}", rss_bytes());
        }
    }
}
