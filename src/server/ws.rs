//! The reference server's WebSocket side, one named phase per function:
//! upgrade ([`ws_handler`]: upgrade faults, subprotocol, ticket or token),
//! authentication, connect faults, the ready handshake of the configured
//! generation ([`become_ready`]), then the connection loop, which multiplexes
//! shutdown, token expiry, heartbeats, the runs' outgoing events
//! ([`on_outgoing`]) and the client's messages ([`on_message`]). Each run
//! plays on its own task ([`serve_run`]).
//!
//! Imports only `auth` and its own folder (state, agent, faults, threads,
//! truth, settings).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::settings::{Phase, ReadyStyle};
use super::stats::{ActiveGuard, RunGuard, SocketGuard};
use super::{agent, faults, threads, truth, ServerState};
use crate::auth::TOKEN_SUBPROTOCOL_PREFIXES;

/// Where the token came from, and what to echo.
struct Presented {
    token: Option<String>,
    /// The offered subprotocol entry to echo.
    protocol: Option<String>,
}

/// The user and the token's `exp` (epoch seconds; None for a ticket), or
/// why authentication failed (`CODE: message`).
use super::ws_auth::Auth;

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

/// `GET /ws` (alias `/api/v1/websocket`): upgrade faults, then the upgrade.
pub(super) async fn ws_handler(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let (refuse, slow) = faults::upgrade_faults(&st);
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
    let auth = super::ws_auth::authenticate(&st, p.token.as_deref(), &query);
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

/// Stores a run's user message in the thread it names (creating the thread
/// for this user when new); returns the thread, where the answer goes too.
/// The lose_message fault leaves the message out.
fn persist_request(
    st: &ServerState,
    user: &str,
    payload: &Map<String, Value>,
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
    if faults::lose_message(st, user, run_id) {
        return Some(thread);
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

/// Serves one agent run: waits for a free slot when the server has a
/// capacity (or refuses the run with 1011 when the queue is full), then plays
/// the run's script into the connection task, holding events back while a
/// stall window is open. Ends early when the connection is gone; counts in
/// `runs_in_flight` until it ends.
async fn serve_run(
    st: Arc<ServerState>,
    script: Vec<agent::Outgoing>,
    out: mpsc::Sender<agent::Outgoing>,
    thread: Option<(String, String)>,
    _in_flight: RunGuard,
) {
    let Ok(_slot) = faults::take_slot(&st, &out).await else {
        return;
    };
    let mut delayed = false;
    let mut finished = false;
    for step in script {
        let delay = step.delay;
        let due = async {
            tokio::time::sleep(delay).await;
            faults::hold_for_stall(&st, &mut delayed).await;
        };
        tokio::select! {
            () = due => {}
            () = out.closed() => return,
        }
        let last = step.last;
        finished |= last;
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
    if !finished {
        // Cut short without a close (the stall fault): the run hangs, in
        // flight, until its socket ends.
        out.closed().await;
    }
}

fn is_run_start(t: &str) -> bool {
    matches!(
        t,
        "start_agent" | "user_message" | "chat_message" | "message" | "agent_request"
    )
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
        ReadyStyle::Handshake => handshake(socket, st, user, connection_id).await,
    }
}

/// The handshake generation: offer, wait for the acknowledgement (messages
/// before it are lost, as on the platform), complete.
async fn handshake(
    socket: &mut WebSocket,
    st: &ServerState,
    user: &str,
    connection_id: &str,
) -> bool {
    let offer = json!({
        "type": "handshake_response",
        "thread_id": format!("thread-{user}"),
        "run_id": format!("run-{connection_id}-0"),
        "session_token": format!("session-{connection_id}"),
    });
    if !send_json(socket, &named(st, offer)).await {
        return false;
    }
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

/// Whether the connection loop goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    End,
}

/// One ready connection's state, as the loop's handlers see it.
struct Conn {
    st: Arc<ServerState>,
    user: String,
    connection_id: String,
    /// The connection's generator (see `faults.rs`).
    rng: ChaCha8Rng,
    /// The mute_heartbeat fault: client pings go unanswered.
    muted: bool,
    run_seq: u64,
    out_tx: mpsc::Sender<agent::Outgoing>,
}

/// One socket: authentication, connect faults, the ready phase, then the loop.
async fn connection(mut socket: WebSocket, st: Arc<ServerState>, auth: Auth) {
    st.truth.add(truth::CONNECTIONS_UPGRADED, 1);
    let _open = SocketGuard::new(st.clone());
    let conn = st.conn_seq.fetch_add(1, Ordering::Relaxed);
    let (user, token_exp) = match auth {
        Ok(u) => u,
        Err(why) => {
            st.truth.add(truth::AUTH_FAILED, 1);
            let (code, message) = why.split_once(": ").unwrap_or(("AUTH_FAILED", &why));
            let frame = json!({"type": "error_message", "error_code": code, "message": message});
            send_json(&mut socket, &frame).await;
            let why = "authentication failed";
            close(&mut socket, st.config.platform.auth_close, why).await;
            return;
        }
    };
    let (mut rng, user_conn) = faults::connection_rng(&st, &user);
    if faults::reject_token(&st, &mut rng) || super::connect_limit::refused(&st) {
        let frame = json!({"type": "error_message", "error_code": "VALIDATION_FAILED", "message": "token validation failed"});
        send_json(&mut socket, &frame).await;
        close(&mut socket, 1011, "SSOT Auth failed").await;
        return;
    }
    if faults::close_1011(&st.config.faults, Phase::Connect, &mut rng) {
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
    let _active = ActiveGuard::new(st.clone(), conn, &user, user_conn);
    let (out_tx, out_rx) = mpsc::channel::<agent::Outgoing>(64);
    let muted = faults::draw(&mut rng, st.config.faults.mute_heartbeat);
    if muted {
        st.truth.add("faults.mute_heartbeat", 1);
    }
    let c = Conn {
        st,
        user,
        connection_id,
        rng,
        muted,
        run_seq: 0,
        out_tx,
    };
    run_loop(socket, c, out_rx, token_exp).await;
}

/// The ready connection until it ends.
async fn run_loop(
    mut socket: WebSocket,
    mut c: Conn,
    mut out_rx: mpsc::Receiver<agent::Outgoing>,
    token_exp: Option<u64>,
) {
    let st = c.st.clone();
    let mut shutdown = st.shutdown.clone();
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
    loop {
        let flow = tokio::select! {
            _ = shutdown.changed() => {
                close(&mut socket, 1001, "server shutting down").await;
                Flow::End
            }
            _ = tokio::time::sleep_until(expires.unwrap_or_else(tokio::time::Instant::now)), if expires.is_some() => {
                st.truth.add("connections.closed_token_expired", 1);
                let frame = json!({"type": "error_message", "error_code": "TOKEN_EXPIRED", "message": "token expired"});
                send_json(&mut socket, &frame).await;
                close(&mut socket, 1008, "token expired").await;
                Flow::End
            }
            _ = heartbeat.tick(), if st.config.heartbeat.is_some() => {
                st.truth.add("heartbeats.sent", 1);
                let ping = named(&st, json!({"type": "ping", "data": {"timestamp": agent::epoch_float()}}));
                if send_json(&mut socket, &ping).await { Flow::Continue } else { Flow::End }
            }
            // `out_tx` lives in `c`, so the channel never closes here.
            out = out_rx.recv() => match out {
                Some(out) => on_outgoing(&mut socket, &st, out).await,
                None => Flow::End,
            },
            msg = socket.recv() => match msg {
                Some(Ok(msg)) => on_message(&mut socket, &mut c, msg).await,
                _ => Flow::End,
            },
        };
        match flow {
            Flow::Continue => {}
            Flow::End => return,
        }
    }
}

/// Carries out one step of a run's script and counts what it injected.
async fn on_outgoing(socket: &mut WebSocket, st: &ServerState, out: agent::Outgoing) -> Flow {
    let count_faults = |faults: &[String]| {
        for f in faults {
            st.truth.add(f, 1);
        }
    };
    let sent = match out.action {
        agent::Action::Event { name, frame } => {
            let ok = send_json(socket, &frame).await;
            if ok {
                st.truth.add(&truth::events(&name), 1);
            }
            ok
        }
        agent::Action::Text(t) => socket.send(Message::Text(t.into())).await.is_ok(),
        agent::Action::Binary(b) => socket.send(Message::Binary(b.into())).await.is_ok(),
        agent::Action::Mark => true,
        agent::Action::Close(code) => {
            count_faults(&out.faults);
            close(socket, code, "internal error").await;
            return Flow::End;
        }
        agent::Action::Drop => {
            count_faults(&out.faults);
            // Dropping the socket ends TCP without a close frame.
            return Flow::End;
        }
    };
    if !sent {
        return Flow::End;
    }
    count_faults(&out.faults);
    if out.last {
        st.truth.add(truth::RUNS_COMPLETED, 1);
        super::stats::retain_run_memory(st);
    }
    Flow::Continue
}

/// One client message: heartbeats, thread switches, run starts; anything
/// else is acknowledged.
async fn on_message(socket: &mut WebSocket, c: &mut Conn, msg: Message) -> Flow {
    let st = c.st.clone();
    let text = match msg {
        Message::Text(t) => t.to_string(),
        Message::Close(_) => return Flow::End,
        _ => return Flow::Continue,
    };
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) else {
        let err = named(
            &st,
            json!({"type": "error", "error": {"code": "INVALID_JSON"}}),
        );
        send_json(socket, &err).await;
        return Flow::Continue;
    };
    let t = m
        .get(&st.config.naming.type_field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if (t == "ping" || t == "heartbeat") && c.muted {
        st.truth.add("heartbeats.ignored", 1);
    } else if t == "ping" {
        let pong = json!({"type": "pong", "timestamp": agent::epoch_float()});
        send_json(socket, &named(&st, pong)).await;
    } else if t == "heartbeat" {
        let ack = json!({"type": "heartbeat_ack", "timestamp": agent::epoch_float()});
        send_json(socket, &named(&st, ack)).await;
    } else if t == "pong" || t == "heartbeat_ack" {
        st.truth.add("heartbeats.answered", 1);
    } else if t == "switch_thread" {
        switch_thread(socket, &st, &c.user, &m).await;
    } else if is_run_start(&t) {
        return start_run(socket, c, &m).await;
    } else {
        let ack = json!({"type": "ack", "received_type": t});
        send_json(socket, &named(&st, ack)).await;
    }
    Flow::Continue
}

/// `switch_thread`: the thread's messages, or why it cannot be read.
async fn switch_thread(
    socket: &mut WebSocket,
    st: &ServerState,
    user: &str,
    m: &Map<String, Value>,
) {
    let payload = m.get("payload").and_then(Value::as_object).unwrap_or(m);
    let thread = payload
        .get("thread_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reply = match st.threads.messages(user, thread, 1000, 0) {
        Ok((msgs, _)) => {
            st.truth.add("threads.switched", 1);
            let msgs: Vec<Value> = msgs.iter().map(threads::StoredMessage::to_json).collect();
            json!({"type": "thread_data", "data": {"thread_id": thread, "messages": msgs}})
        }
        Err(d) => {
            let (counter, code) = match d {
                threads::Denied::NotFound => (truth::THREADS_NOT_FOUND, "THREAD_NOT_FOUND"),
                threads::Denied::Forbidden => (truth::THREADS_FORBIDDEN, "THREAD_ACCESS_DENIED"),
            };
            st.truth.add(counter, 1);
            json!({"type": "error", "error": {"code": code, "thread_id": thread}})
        }
    };
    send_json(socket, &named(st, reply)).await;
}

/// A run start: the first-exchange fault, then the run's ids, its drawn plan
/// and script, the user message stored, and the run played on its own task.
async fn start_run(socket: &mut WebSocket, c: &mut Conn, m: &Map<String, Value>) -> Flow {
    let st = c.st.clone();
    if c.run_seq == 0 && faults::close_1011(&st.config.faults, Phase::FirstExchange, &mut c.rng) {
        st.truth.add(truth::FAULT_CLOSE_1011, 1);
        st.truth.add("faults.close_1011.first_exchange", 1);
        close(socket, 1011, "internal error").await;
        return Flow::End;
    }
    let payload = m
        .get("payload")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(|| m.clone());
    c.run_seq += 1;
    let ids = agent::RunIds::from_request(&payload, &c.user, &c.connection_id, c.run_seq);
    st.truth.add(truth::RUNS_STARTED, 1);
    let in_flight = RunGuard::new(st.clone());
    let mut run_rng = faults::run_rng(&st, &c.user, &ids.run_id);
    let plan = faults::run_plan(&st, &mut run_rng);
    let other = faults::leak_victim(&st, &c.user, &mut run_rng);
    let script = agent::script(&st.config, &ids, &plan, &mut run_rng, other.as_deref());
    let thread = persist_request(&st, &c.user, &payload, &ids.run_id);
    let thread = thread.map(|t| (c.user.clone(), t));
    let out = c.out_tx.clone();
    tokio::spawn(serve_run(st.clone(), script, out, thread, in_flight));
    Flow::Continue
}
