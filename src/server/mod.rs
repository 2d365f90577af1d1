//! The reference server: a real WebSocket + HTTP server (axum) that speaks the
//! protocol family of PROTOCOL.md, injects faults from a seeded plan and keeps
//! truth counters of everything it did, readable at `GET /__chatload/truth`.
//!
//! It shares only [`crate::protocol`] and [`crate::auth`] with the client side.
//! Tests mount it with [`spawn`] on `127.0.0.1:0`; `chatload serve` runs it
//! standalone; `chatload run` starts it in-process when no target is given.

pub mod agent;
pub mod settings;
pub mod threads;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::auth::{VerifyPolicy, TOKEN_SUBPROTOCOL_PREFIXES};
pub use settings::{Capacity, Envelope, FaultPlan, Naming, Phase, ReadyStyle, Settings, Stall};

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

/// Truth counter names.
pub mod truth {
    pub const CONNECTIONS_UPGRADED: &str = "connections.upgraded";
    pub const CONNECTIONS_READY: &str = "connections.ready";
    pub const AUTH_FAILED: &str = "connections.auth_failed";
    pub const REJECTED_NO_SUBPROTOCOL: &str = "connections.rejected_403";
    pub const RUNS_STARTED: &str = "runs.started";
    pub const RUNS_COMPLETED: &str = "runs.completed";
    pub const FAULT_CLOSE_1011: &str = "faults.close_1011";
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
    /// Thread and history requests refused for isolation (403) or unknown ids (404).
    pub const THREADS_FORBIDDEN: &str = "threads.forbidden_403";
    pub const THREADS_NOT_FOUND: &str = "threads.not_found_404";
    /// Tokens issued by the login endpoint.
    pub const LOGINS: &str = "auth.logins";
    pub fn events(name: &str) -> String {
        format!("events.{name}")
    }
}

/// Shared state of one server instance.
pub struct ServerState {
    pub config: Settings,
    policy: VerifyPolicy,
    pub truth: Truth,
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
}

/// How long a ticket stays valid.
pub const TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The router, for mounting in tests or in `serve`.
pub fn app(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/api/v1/websocket", get(ws_handler))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/health/ready",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
        .route("/__chatload/truth", get(truth_handler))
        .route("/api/websocket/ticket", axum::routing::post(ticket_handler))
        .route("/api/threads", get(list_threads).post(create_thread))
        .route(
            "/api/threads/{id}",
            get(get_thread).put(update_thread).delete(delete_thread),
        )
        .route(
            "/api/threads/{id}/messages",
            get(thread_messages).post(post_message),
        )
        .route("/auth/dev/login", axum::routing::post(login_handler))
        .route("/auth/create-token", axum::routing::post(login_handler))
        .with_state(state)
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
        policy: VerifyPolicy::netra(&config.secret),
        truth: Truth::default(),
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
        config,
    });
    let router = app(state.clone());
    let mut rx = shutdown;
    // Nagle off, as on the client: otherwise events a few milliseconds apart
    // wait for the previous one's ACK (about 40 ms on loopback).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
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

/// `POST /api/websocket/ticket` (Bearer JWT): a single-use ticket for `/ws?ticket=`.
async fn ticket_handler(State(st): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "Not authenticated"})),
        )
            .into_response();
    };
    let user = match st.policy.verify(token, SystemTime::now()) {
        Ok(c) => c.sub,
        Err(e) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": e.to_string()})),
            )
                .into_response()
        }
    };
    let n = st.conn_seq.load(Ordering::Relaxed);
    let id = {
        let mut tickets = st.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        tickets.retain(|_, (_, exp)| *exp > now);
        let id = format!("tkt-{n}-{}", tickets.len() + rand::random::<u32>() as usize);
        tickets.insert(id.clone(), (user, now + TICKET_TTL));
        id
    };
    st.truth.add("tickets.issued", 1);
    let expires = chrono::Utc::now() + chrono::Duration::seconds(TICKET_TTL.as_secs() as i64);
    Json(json!({
        "ticket_id": id,
        "expires_at": expires.to_rfc3339(),
        "ttl_seconds": TICKET_TTL.as_secs(),
        "single_use": true,
        "websocket_url": format!("/ws?ticket={id}"),
    }))
    .into_response()
}

/// The user a REST request's `Authorization: Bearer` token names, or the
/// platform's answer to a missing (403) or bad (401) token.
fn rest_user(st: &ServerState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"detail": "Not authenticated"})),
            )
                .into_response(),
        ));
    };
    st.policy
        .verify(token, SystemTime::now())
        .map(|c| c.sub)
        .map_err(|e| {
            Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"detail": e.to_string()})),
                )
                    .into_response(),
            )
        })
}

fn denied(st: &ServerState, d: threads::Denied) -> Response {
    match d {
        threads::Denied::NotFound => {
            st.truth.add(truth::THREADS_NOT_FOUND, 1);
            (
                StatusCode::NOT_FOUND,
                Json(json!({"detail": "Thread not found"})),
            )
                .into_response()
        }
        threads::Denied::Forbidden => {
            st.truth.add(truth::THREADS_FORBIDDEN, 1);
            (
                StatusCode::FORBIDDEN,
                Json(json!({"detail": "Access denied to this thread"})),
            )
                .into_response()
        }
    }
}

fn paging(q: &HashMap<String, String>) -> (usize, usize) {
    let n = |k: &str, d: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    (n("limit", 50).min(1000), n("offset", 0))
}

/// `GET /api/threads?limit&offset`
async fn list_threads(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (limit, offset) = paging(&q);
    Json(st.threads.list(&user, limit, offset)).into_response()
}

/// `POST /api/threads {title?, metadata?}`
async fn create_thread(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let title = body.get("title").and_then(Value::as_str);
    let metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    st.truth.add("threads.created", 1);
    Json(st.threads.create(&user, None, title, metadata)).into_response()
}

/// `GET /api/threads/{id}`
async fn get_thread(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match st.threads.get(&user, &id) {
        Ok(t) => Json(t).into_response(),
        Err(d) => denied(&st, d),
    }
}

/// `PUT /api/threads/{id} {title?, metadata?}`
async fn update_thread(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let title = body.get("title").and_then(Value::as_str);
    match st
        .threads
        .update(&user, &id, title, body.get("metadata").cloned())
    {
        Ok(t) => Json(t).into_response(),
        Err(d) => denied(&st, d),
    }
}

/// `DELETE /api/threads/{id}` -> `{"deleted": true, "id"}`
async fn delete_thread(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match st.threads.delete(&user, &id) {
        Ok(()) => {
            st.truth.add("threads.deleted", 1);
            Json(json!({"deleted": true, "id": id})).into_response()
        }
        Err(d) => denied(&st, d),
    }
}

/// `GET /api/threads/{id}/messages?limit&offset` -> `{messages, total}`
async fn thread_messages(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (limit, offset) = paging(&q);
    let (msgs, total) = match st.threads.messages(&user, &id, limit, offset) {
        Ok(m) => m,
        Err(d) => return denied(&st, d),
    };
    let mut messages: Vec<Value> = msgs.iter().map(threads::StoredMessage::to_json).collect();
    let rate = st.config.faults.leak_history;
    if rate > 0.0 {
        let (hit, pick) = {
            let mut rng = st.rest_rng.lock().unwrap_or_else(|e| e.into_inner());
            (rng.random::<f64>() < rate, rng.random::<u64>())
        };
        if hit {
            if let Some(m) = st.threads.foreign_message(&user, pick) {
                st.truth.add(truth::FAULT_LEAK_HISTORY, 1);
                messages.push(m.to_json());
            }
        }
    }
    Json(json!({"messages": messages, "total": total})).into_response()
}

/// `POST /api/threads/{id}/messages {message}`
async fn post_message(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let user = match rest_user(&st, &headers) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let text = body
        .get("message")
        .or_else(|| body.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if st.threads.get(&user, &id).is_err() {
        // Posting never creates a thread: unknown is 404, another user's 403.
        return denied(&st, st.threads.get(&user, &id).unwrap_err());
    }
    match st.threads.append(&user, &id, "user", text) {
        Ok(m) => Json(m).into_response(),
        Err(d) => denied(&st, d),
    }
}

/// `POST /auth/dev/login` (alias `/auth/create-token`) `{user_id?, email?}`:
/// a token for that user, valid for the configured login lifetime, in the
/// auth service's shape (`access_token`, `token_type`, `expires_in`).
async fn login_handler(State(st): State<Arc<ServerState>>, body: Option<Json<Value>>) -> Response {
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let user = body
        .get("user_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            body.get("email")
                .and_then(Value::as_str)
                .and_then(|e| e.split('@').next())
                .map(str::to_string)
        });
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": "user_id or email is required"})),
        )
            .into_response();
    };
    let lifetime = st.config.login_lifetime;
    let minter = crate::auth::Minter::new(&st.config.secret, crate::auth::netra_claims(), lifetime);
    let n = st.conn_seq.load(Ordering::Relaxed);
    let jti = format!("login-{user}-{n}-{:08x}", rand::random::<u32>());
    match minter.mint(&user, SystemTime::now(), &jti) {
        Ok(token) => {
            st.truth.add(truth::LOGINS, 1);
            Json(json!({
                "access_token": token.expose(),
                "refresh_token": format!("refresh-{jti}"),
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": e.to_string()})),
        )
            .into_response(),
    }
}

async fn truth_handler(State(st): State<Arc<ServerState>>) -> Json<BTreeMap<String, u64>> {
    Json(st.truth.snapshot())
}

/// Where the token came from, and what to echo.
struct Presented {
    token: Option<String>,
    /// The offered subprotocol entry to echo.
    protocol: Option<String>,
}

fn decode_token_text(t: &str) -> String {
    // A raw JWT has two dots; otherwise it may be base64url of one.
    if t.matches('.').count() == 2 {
        return t.to_string();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| t.to_string())
}

fn presented(headers: &HeaderMap, query: &HashMap<String, String>) -> Result<Presented, ()> {
    let mut out = Presented {
        token: None,
        protocol: None,
    };
    if let Some(v) = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
    {
        let offered: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for entry in &offered {
            if let Some(p) = TOKEN_SUBPROTOCOL_PREFIXES
                .iter()
                .find(|p| entry.starts_with(**p))
            {
                out.token = Some(decode_token_text(&entry[p.len()..]));
                // The browser client offers `jwt-auth` beside `jwt.<b64>`; the server selects `jwt-auth`.
                out.protocol = Some(if offered.contains(&"jwt-auth") {
                    "jwt-auth".to_string()
                } else {
                    entry.to_string()
                });
                break;
            }
        }
        if out.protocol.is_none() {
            // Subprotocols offered but none we support: refuse before accepting.
            return Err(());
        }
    }
    if out.token.is_none() {
        out.token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
    }
    if out.token.is_none() {
        out.token = query.get("token").cloned();
    }
    Ok(out)
}

async fn ws_handler(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let (refuse, slow) = {
        let mut rng = st.upgrade_rng.lock().unwrap_or_else(|e| e.into_inner());
        let refuse = st
            .config
            .faults
            .refuse_upgrade
            .iter()
            .find(|(_, r)| rng.random::<f64>() < **r)
            .map(|(s, _)| *s);
        let slow = st
            .config
            .faults
            .slow_accept
            .filter(|(_, r)| rng.random::<f64>() < *r)
            .map(|(d, _)| d);
        (refuse, slow)
    };
    if let Some(status) = refuse {
        st.truth.add(&format!("faults.refuse_upgrade.{status}"), 1);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (code, "refused by the fault plan").into_response();
    }
    if let Some(d) = slow {
        st.truth.add("faults.slow_accept", 1);
        tokio::time::sleep(d).await;
    }
    let Ok(p) = presented(&headers, &query) else {
        st.truth.add(truth::REJECTED_NO_SUBPROTOCOL, 1);
        return (StatusCode::FORBIDDEN, "no supported subprotocol").into_response();
    };
    let ticket_user = query.get("ticket").map(|t| {
        let mut tickets = st.tickets.lock().unwrap_or_else(|e| e.into_inner());
        match tickets.remove(t) {
            Some((user, exp)) if exp > std::time::Instant::now() => Ok((user, None)),
            Some(_) => Err("AUTH_FAILED: ticket expired".to_string()),
            None => Err("AUTH_FAILED: unknown or used ticket".to_string()),
        }
    });
    let auth = match (&p.token, ticket_user) {
        (_, Some(t)) => t,
        (None, None) => Err("NO_TOKEN: no token presented".to_string()),
        (Some(t), None) => st
            .policy
            .verify(t, SystemTime::now())
            .map(|c| (c.sub, Some(c.exp)))
            .map_err(|e| format!("AUTH_FAILED: {e}")),
    };
    let ws = ws.read_buffer_size(4096).write_buffer_size(4096);
    let ws = match p.protocol {
        Some(proto) => ws.protocols([proto]),
        None => ws,
    };
    ws.on_upgrade(move |socket| connection(socket, st, auth))
}

/// A server frame in the configured dialect (renamed type field and events).
fn named(st: &ServerState, mut v: Value) -> Value {
    agent::apply_naming(&mut v, &st.config.naming);
    v
}

async fn send_json(socket: &mut WebSocket, v: &Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Serves one agent run: waits for a free slot when the server has a
/// capacity (or refuses the run with 1011 when the queue is full), then plays
/// the run's script into the connection task, holding events back while a
/// stall window is open. Ends early when the connection is gone.
/// Stores a run's user message in the thread it names (creating the thread
/// for this user when new); returns the thread, where the answer goes too.
/// The lose_message fault leaves the message out (drawn from the user and
/// run id, so the same seed loses the same messages).
fn persist_request(
    st: &ServerState,
    user: &str,
    payload: &serde_json::Map<String, Value>,
    run_id: &str,
) -> Option<String> {
    let thread = payload
        .get("thread_id")
        .and_then(Value::as_str)?
        .to_string();
    let content = ["user_request", "content", "text", "message"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    let rate = st.config.faults.lose_message;
    if rate > 0.0 {
        let mut rng = ChaCha8Rng::seed_from_u64(stable_seed(
            st.config.seed,
            &[user.as_bytes(), run_id.as_bytes(), b"persist"],
        ));
        if rng.random::<f64>() < rate {
            st.truth.add(truth::FAULT_LOSE_MESSAGE, 1);
            return Some(thread);
        }
    }
    match st.threads.append(user, &thread, "user", content) {
        Ok(_) => {
            st.truth.add(truth::MESSAGES_STORED, 1);
            Some(thread)
        }
        Err(_) => {
            st.truth.add(truth::THREADS_FORBIDDEN, 1);
            None
        }
    }
}

async fn serve_run(
    st: Arc<ServerState>,
    script: Vec<agent::Outgoing>,
    out: mpsc::Sender<agent::Outgoing>,
    thread: Option<(String, String)>,
) {
    let _slot = match (&st.slots, st.config.capacity) {
        (Some((sem, waiting)), Some(cap)) => match sem.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                if waiting.fetch_add(1, Ordering::SeqCst) >= cap.queue as u64 {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    let _ = out
                        .send(agent::Outgoing {
                            delay: std::time::Duration::ZERO,
                            action: agent::Action::Close(1011),
                            faults: vec![truth::CAPACITY_REFUSED.into()],
                            last: false,
                        })
                        .await;
                    return;
                }
                st.truth.add(truth::CAPACITY_QUEUED, 1);
                let slot = sem.clone().acquire_owned().await;
                waiting.fetch_sub(1, Ordering::SeqCst);
                slot.ok()
            }
        },
        _ => None,
    };
    let mut delayed = false;
    for step in script {
        tokio::time::sleep(step.delay).await;
        if let Some(stall) = st.config.stall {
            if let Some((window, left)) = stall.inside(st.started.elapsed()) {
                if !delayed {
                    delayed = true;
                    st.truth.add(truth::STALL_RUNS, 1);
                }
                if st.stall_window.fetch_max(window, Ordering::SeqCst) < window {
                    st.truth.add(truth::STALL_WINDOWS, 1);
                }
                tokio::time::sleep(left).await;
            }
        }
        let last = step.last;
        if out.send(step).await.is_err() {
            return;
        }
        if last {
            if let Some((user, thread)) = &thread {
                let _ = st
                    .threads
                    .append(user, thread, "assistant", "Here is what I found.");
            }
        }
    }
}

fn is_run_start(t: &str) -> bool {
    matches!(
        t,
        "start_agent" | "user_message" | "chat_message" | "message" | "agent_request"
    )
}

/// Removes a connection from the active set when it ends, however it ends.
struct ActiveGuard {
    st: Arc<ServerState>,
    conn: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.st
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.conn);
    }
}

/// A seed from the plan's seed and some bytes (FNV-1a: stable across builds).
pub fn stable_seed(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn other_user(st: &ServerState, me: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let active = st.active.lock().unwrap_or_else(|e| e.into_inner());
    let mut others: Vec<&String> = active.values().filter(|u| u.as_str() != me).collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        return None;
    }
    Some(others[rng.random_range(0..others.len())].clone())
}

/// Sends the ready frame(s) of the configured generation. Returns false when
/// the connection ended first.
async fn become_ready(
    socket: &mut WebSocket,
    st: &ServerState,
    user: &str,
    connection_id: &str,
) -> bool {
    match st.config.ready {
        ReadyStyle::Established => {
            let hello = json!({
                "type": "connection_established",
                "data": {"user_id": user, "connection_id": connection_id},
                "timestamp": agent::epoch_float(),
            });
            send_json(socket, &named(st, hello)).await
        }
        ReadyStyle::SystemMessage => {
            let hello = json!({
                "type": "system_message",
                "data": {"event": "connection_established", "connection_id": connection_id, "user_id": user,
                          "config": {"heartbeat_interval": 25, "max_message_size": 8192}},
                "timestamp": agent::epoch_float(),
                "server_id": null,
                "correlation_id": null,
            });
            send_json(socket, &named(st, hello)).await
        }
        ReadyStyle::Handshake => {
            let offer = json!({
                "type": "handshake_response",
                "thread_id": format!("thread-{user}"),
                "run_id": format!("run-{connection_id}-0"),
                "session_token": format!("session-{connection_id}"),
            });
            if !send_json(socket, &named(st, offer)).await {
                return false;
            }
            // Messages before the acknowledgement are lost, as on the platform.
            loop {
                let Some(Ok(msg)) = socket.recv().await else {
                    return false;
                };
                let Message::Text(t) = msg else { continue };
                let ty = serde_json::from_str::<Value>(&t).ok().and_then(|v| {
                    v.get(&st.config.naming.type_field)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                if ty.as_deref() == Some("handshake_acknowledged") {
                    break;
                }
                st.truth.add("messages.lost_before_handshake", 1);
            }
            send_json(
                socket,
                &json!({"type": "handshake_complete", "timestamp": agent::epoch_float()}),
            )
            .await
        }
    }
}

/// One socket: `auth` is the user and the token's `exp` (epoch seconds; None
/// for a ticket), or why authentication failed.
async fn connection(
    mut socket: WebSocket,
    st: Arc<ServerState>,
    auth: Result<(String, Option<u64>), String>,
) {
    st.truth.add(truth::CONNECTIONS_UPGRADED, 1);
    let conn = st.conn_seq.fetch_add(1, Ordering::Relaxed);
    let (user, token_exp) = match auth {
        Ok(u) => u,
        Err(why) => {
            st.truth.add(truth::AUTH_FAILED, 1);
            let (code, message) = why.split_once(": ").unwrap_or(("AUTH_FAILED", &why));
            let frame = json!({"type": "error_message", "error_code": code, "message": message});
            send_json(&mut socket, &frame).await;
            close(&mut socket, 1008, "authentication failed").await;
            return;
        }
    };
    // Draws depend on who connects and how often, never on accept order, so the
    // same seed replays the same behaviour however connections interleave.
    let user_conn = {
        let mut m = st.user_conns.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let mut rng = ChaCha8Rng::seed_from_u64(stable_seed(
        st.config.seed,
        &[user.as_bytes(), &user_conn.to_le_bytes()],
    ));
    let faults = &st.config.faults;
    let rate = |p: Phase| faults.close_1011.get(&p).copied().unwrap_or(0.0);
    if rate(Phase::Connect) > 0.0 && rng.random::<f64>() < rate(Phase::Connect) {
        st.truth.add(truth::FAULT_CLOSE_1011, 1);
        st.truth.add("faults.close_1011.connect", 1);
        close(&mut socket, 1011, "internal error: service not ready").await;
        return;
    }
    let connection_id = format!("conn-{conn}");
    if !become_ready(&mut socket, &st, &user, &connection_id).await {
        return;
    }
    st.truth.add(truth::CONNECTIONS_READY, 1);
    st.active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(conn, user.clone());
    let _active = ActiveGuard {
        st: st.clone(),
        conn,
    };
    let (out_tx, mut out_rx) = mpsc::channel::<agent::Outgoing>(64);
    let mut shutdown = st.shutdown.clone();
    let mut run_seq = 0u64;
    // The token's expiry, when the server closes sockets that outlive it.
    let expires = token_exp.filter(|_| st.config.enforce_expiry).map(|exp| {
        let left = exp.saturating_sub(crate::auth::epoch_secs(SystemTime::now()));
        tokio::time::Instant::now() + std::time::Duration::from_secs(left)
    });
    let every = st
        .config
        .heartbeat
        .unwrap_or(std::time::Duration::from_secs(3600));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let muted = faults.mute_heartbeat > 0.0 && rng.random::<f64>() < faults.mute_heartbeat;
    if muted {
        st.truth.add("faults.mute_heartbeat", 1);
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                close(&mut socket, 1001, "server shutting down").await;
                return;
            }
            _ = tokio::time::sleep_until(expires.unwrap_or_else(tokio::time::Instant::now)), if expires.is_some() => {
                st.truth.add("connections.closed_token_expired", 1);
                let frame = json!({"type": "error_message", "error_code": "TOKEN_EXPIRED", "message": "token expired"});
                send_json(&mut socket, &frame).await;
                close(&mut socket, 1008, "token expired").await;
                return;
            }
            _ = heartbeat.tick(), if st.config.heartbeat.is_some() => {
                st.truth.add("heartbeats.sent", 1);
                if !send_json(&mut socket, &named(&st, json!({"type": "ping", "data": {"timestamp": agent::epoch_float()}}))).await {
                    return;
                }
            }
            out = out_rx.recv() => {
                // `out_tx` lives in this loop, so the channel never closes here.
                let Some(out) = out else { return };
                let sent = match out.action {
                    agent::Action::Event { name, frame } => {
                        let ok = send_json(&mut socket, &frame).await;
                        if ok {
                            st.truth.add(&truth::events(&name), 1);
                        }
                        ok
                    }
                    agent::Action::Text(t) => socket.send(Message::Text(t.into())).await.is_ok(),
                    agent::Action::Binary(b) => socket.send(Message::Binary(b.into())).await.is_ok(),
                    agent::Action::Mark => true,
                    agent::Action::Close(code) => {
                        for f in &out.faults {
                            st.truth.add(f, 1);
                        }
                        close(&mut socket, code, "internal error").await;
                        return;
                    }
                    agent::Action::Drop => {
                        for f in &out.faults {
                            st.truth.add(f, 1);
                        }
                        // Dropping the socket ends TCP without a close frame.
                        return;
                    }
                };
                if !sent {
                    return;
                }
                for f in &out.faults {
                    st.truth.add(f, 1);
                }
                if out.last {
                    st.truth.add(truth::RUNS_COMPLETED, 1);
                }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { return };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => return,
                    _ => continue,
                };
                let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) else {
                    send_json(&mut socket, &named(&st, json!({"type": "error", "error": {"code": "INVALID_JSON"}}))).await;
                    continue;
                };
                let t = m.get(&st.config.naming.type_field).and_then(Value::as_str).unwrap_or("").to_string();
                if (t == "ping" || t == "heartbeat") && muted {
                    st.truth.add("heartbeats.ignored", 1);
                } else if t == "ping" {
                    send_json(&mut socket, &named(&st, json!({"type": "pong", "timestamp": agent::epoch_float()}))).await;
                } else if t == "heartbeat" {
                    send_json(&mut socket, &named(&st, json!({"type": "heartbeat_ack", "timestamp": agent::epoch_float()}))).await;
                } else if t == "pong" || t == "heartbeat_ack" {
                    st.truth.add("heartbeats.answered", 1);
                } else if t == "switch_thread" {
                    let payload = m.get("payload").and_then(Value::as_object).unwrap_or(&m);
                    let thread = payload.get("thread_id").and_then(Value::as_str).unwrap_or("");
                    let reply = match st.threads.messages(&user, thread, 1000, 0) {
                        Ok((msgs, _)) => {
                            st.truth.add("threads.switched", 1);
                            json!({"type": "thread_data", "data": {"thread_id": thread, "messages": msgs.iter().map(threads::StoredMessage::to_json).collect::<Vec<_>>()}})
                        }
                        Err(d) => {
                            st.truth.add(match d { threads::Denied::NotFound => truth::THREADS_NOT_FOUND, threads::Denied::Forbidden => truth::THREADS_FORBIDDEN }, 1);
                            json!({"type": "error", "error": {"code": if d == threads::Denied::NotFound { "THREAD_NOT_FOUND" } else { "THREAD_ACCESS_DENIED" }, "thread_id": thread}})
                        }
                    };
                    send_json(&mut socket, &named(&st, reply)).await;
                } else if is_run_start(&t) {
                    if run_seq == 0 && rate(Phase::FirstExchange) > 0.0 && rng.random::<f64>() < rate(Phase::FirstExchange) {
                        st.truth.add(truth::FAULT_CLOSE_1011, 1);
                        st.truth.add("faults.close_1011.first_exchange", 1);
                        close(&mut socket, 1011, "internal error").await;
                        return;
                    }
                    let payload = m.get("payload").and_then(Value::as_object).cloned().unwrap_or_else(|| m.clone());
                    run_seq += 1;
                    let ids = agent::RunIds::from_request(&payload, &user, &connection_id, run_seq);
                    st.truth.add(truth::RUNS_STARTED, 1);
                    // A run's shape and faults follow from the seed, the user and the run id alone.
                    let mut run_rng = ChaCha8Rng::seed_from_u64(stable_seed(st.config.seed, &[user.as_bytes(), ids.run_id.as_bytes()]));
                    let mut plan = agent::RunPlan::draw(&st.config, &mut run_rng);
                    if st.config.slowdown_per_minute > 0.0 {
                        let factor = 1.0 + st.config.slowdown_per_minute * st.started.elapsed().as_secs_f64() / 60.0;
                        plan.delays.iter_mut().for_each(|d| *d = d.mul_f64(factor));
                    }
                    let other = if faults.leak > 0.0 { other_user(&st, &user, &mut run_rng) } else { None };
                    let script = agent::script(&st.config, &ids, &plan, &mut run_rng, other.as_deref());
                    let thread = persist_request(&st, &user, &payload, &ids.run_id);
                    tokio::spawn(serve_run(st.clone(), script, out_tx.clone(), thread.map(|t| (user.clone(), t))));
                } else {
                    send_json(&mut socket, &named(&st, json!({"type": "ack", "received_type": t}))).await;
                }
            }
        }
    }
}
