//! The reference server: a real WebSocket + HTTP server (axum) that speaks the
//! protocol family of PROTOCOL.md, injects faults from a seeded plan and keeps
//! truth counters of everything it did, readable at `GET /__chatload/truth`.
//!
//! It shares only [`crate::protocol`], [`crate::auth`] and [`crate::units`]
//! with the client side: `server/` imports nothing else from the crate (check
//! with `grep -rn 'crate::' src/server`). Tests mount it with [`spawn`] on
//! `127.0.0.1:0`; `chatload serve` runs it standalone; `chatload run` starts
//! it in-process when no target is given.
//!
//! This file owns the shared [`ServerState`], the router ([`app`]), [`spawn`]
//! and [`RunningServer`]. The rooms beside it:
//! - `settings.rs`: the one [`Settings`] type (serve flags; run/ overlays a
//!   scenario's `[server]` table);
//! - `faults.rs`: every seeded fault decision (which generator, which draw,
//!   in which order), the capacity queue and the stall windows;
//! - `truth.rs`: the truth counters and `GET /__chatload/truth`;
//! - `stats.rs`: the server's own numbers as a platform shows them
//!   (`GET /__chatload/stats`, `GET /__chatload/metrics`) and the heap the
//!   leak_memory fault keeps;
//! - `listener.rs`: accepts, counting the server's own accept errors;
//! - `rest.rs`: login, tickets and the thread REST routes (auth is the
//!   [`rest::AuthUser`] extractor);
//! - `ws.rs`: the upgrade, the ready handshake and the connection loop;
//! - `agent.rs`: a run's script (events in the configured envelope, with the
//!   run's drawn faults applied);
//! - `threads.rs`: every user's threads and messages;
//! - `platform.rs`: the platform options (generation fields, `seq`, the
//!   `limit` cap, the identity-collapsing login).
//!
//! A new server fault class touches: `protocol/faults.rs` (the vocabulary in
//! `FaultPlan`), `server/faults.rs` (its draw) and the file that applies it
//! (`server/agent.rs` for a fault inside a run's script, `server/ws.rs` for a
//! fault of the socket, `server/rest.rs` for a REST fault).

pub mod agent;
pub mod connect_limit;
pub mod draw;
pub mod faults;
mod listener;
pub mod platform;
pub mod rest;
pub mod settings;
pub mod stats;
pub mod threads;
pub mod truth;
pub mod ws;
mod ws_auth;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::{Json, Router};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tokio::sync::watch;

use crate::auth::VerifyPolicy;
pub use draw::stable_seed;
pub use settings::{Capacity, Envelope, FaultPlan, Naming, Phase, ReadyStyle, Settings, Stall};
pub use truth::Truth;

/// Shared state of one server instance.
pub struct ServerState {
    pub config: Settings,
    policy: VerifyPolicy,
    pub truth: Truth,
    /// The server's own numbers (`stats.rs`).
    pub stats: stats::Live,
    conn_seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Per-attempt faults (refused and slow upgrades) draw from this generator.
    upgrade_rng: Mutex<ChaCha8Rng>,
    /// Users with an open socket, by connection number (for leaks).
    active: Mutex<BTreeMap<u64, String>>,
    /// When the server started (for the gradual slowdown).
    started: std::time::Instant,
    /// Connections opened so far, per user (seeds each connection's generator).
    user_conns: Mutex<HashMap<String, u64>>,
    /// Unused tickets: id -> (user, expiry).
    tickets: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Free agent slots and the number of runs waiting for one (capacity model).
    slots: Option<(Arc<tokio::sync::Semaphore>, AtomicU64)>,
    /// The highest stall window that delayed an event (counts windows once).
    stall_window: AtomicU64,
    /// Every user's threads and messages.
    pub threads: threads::Store,
    /// Draws for REST faults (history leaks), seeded.
    rest_rng: Mutex<ChaCha8Rng>,
    /// Sockets admitted in the last second (the connect limit).
    admitted: connect_limit::Admitted,
}

/// How long a ticket stays valid.
pub const TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The router, for mounting in tests or in `serve`.
pub fn app(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/ws", get(ws::ws_handler))
        .route("/api/v1/websocket", get(ws::ws_handler))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/health/ready",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
        .route("/__chatload/truth", get(truth::truth_handler))
        .route("/__chatload/stats", get(stats::stats_handler))
        .route("/ws/health", get(stats::stats_handler))
        .route("/__chatload/metrics", get(stats::metrics_handler))
        .route("/api/websocket/ticket", post(rest::ticket_handler))
        .merge(thread_routes(state.clone()))
        .route("/auth/dev/login", post(rest::login_handler))
        .route("/auth/create-token", post(rest::login_handler))
        .with_state(state)
}

/// The thread REST routes, behind the rest_error fault.
fn thread_routes(state: Arc<ServerState>) -> Router<Arc<ServerState>> {
    Router::new()
        .route(
            "/api/threads",
            get(rest::list_threads).post(rest::create_thread),
        )
        .route(
            "/api/threads/{id}",
            get(rest::get_thread)
                .put(rest::update_thread)
                .delete(rest::delete_thread),
        )
        .route(
            "/api/threads/{id}/messages",
            get(rest::thread_messages).post(rest::post_message),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            rest::rest_fault,
        ))
}

/// A server running on a background task.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The WebSocket URL of this server.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn truth(&self) -> BTreeMap<String, u64> {
        self.state.truth.snapshot()
    }
    /// Closes every socket (1001 going away) and stops accepting.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// Binds `addr` (use `127.0.0.1:0` in tests) and serves until [`RunningServer::shutdown`].
pub async fn spawn(config: Settings, addr: SocketAddr) -> std::io::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let config_seed = config.seed;
    let state = Arc::new(ServerState {
        policy: VerifyPolicy::netra(&config.secret).refusing_aud(config.platform.refuse_aud),
        truth: Truth::default(),
        stats: stats::Live::default(),
        conn_seq: AtomicU64::new(0),
        shutdown: shutdown.clone(),
        upgrade_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config_seed ^ 0x005E_ED0F_u64)),
        active: Mutex::new(BTreeMap::new()),
        tickets: Mutex::new(HashMap::new()),
        user_conns: Mutex::new(HashMap::new()),
        started: std::time::Instant::now(),
        slots: config.capacity.map(|c| {
            (
                Arc::new(tokio::sync::Semaphore::new(c.runs)),
                AtomicU64::new(0),
            )
        }),
        stall_window: AtomicU64::new(0),
        threads: threads::Store::default(),
        rest_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config_seed ^ 0x0457_0000_0001)),
        admitted: connect_limit::Admitted::default(),
        config,
    });
    let router = app(state.clone());
    let mut rx = shutdown;
    // Nagle off (as on the client), accept errors counted in the truth.
    let listener = listener::CountingListener {
        inner: listener,
        state: state.clone(),
    };
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(RunningServer {
        addr,
        state,
        stop,
        handle,
    })
}
