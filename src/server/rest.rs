//! The reference server's REST routes: login, WebSocket tickets and the
//! thread/history API (PROTOCOL.md section 6), with the leak_history fault.
//!
//! Authentication is an axum extractor, as in axum's `examples/jwt`:
//! [`AuthUser`] verifies the `Authorization: Bearer` token and yields its
//! user; a missing token is the platform's 403, a bad one its 401
//! ([`AuthRejection`]). Handlers take it as an argument.
//!
//! Imports only `auth` and its own folder (state, threads, truth, faults).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{faults, threads, truth, ServerState, TICKET_TTL};

/// The user a verified `Authorization: Bearer` token names (its `sub`).
pub struct AuthUser(pub String);

/// Why a REST request is not authenticated: the platform's answers.
#[derive(Debug)]
pub enum AuthRejection {
    /// No bearer token: 403 `Not authenticated`.
    Missing,
    /// A token that does not verify: 401 with the reason.
    Invalid(String),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Missing => (
                StatusCode::FORBIDDEN,
                Json(json!({"detail": "Not authenticated"})),
            )
                .into_response(),
            AuthRejection::Invalid(why) => {
                (StatusCode::UNAUTHORIZED, Json(json!({"detail": why}))).into_response()
            }
        }
    }
}

impl FromRequestParts<Arc<ServerState>> for AuthUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<ServerState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return Err(AuthRejection::Missing);
        };
        st.policy
            .verify(token, SystemTime::now())
            .map(|c| AuthUser(c.sub))
            .map_err(|e| AuthRejection::Invalid(e.to_string()))
    }
}

// Argument order matters: axum runs extractors left to right and the body
// last, and the server has always answered a bad path, query or body before
// a bad token. So `AuthUser` comes after `Path` and `Query`, and handlers
// with a body take `Result<AuthUser, AuthRejection>` and reject in the body.

/// `POST /api/websocket/ticket` (Bearer JWT): a single-use ticket for `/ws?ticket=`.
pub(super) async fn ticket_handler(
    State(st): State<Arc<ServerState>>,
    AuthUser(user): AuthUser,
) -> Response {
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

/// The rest_error fault, in front of every thread route: a drawn request
/// is answered with the fault's status (counted `faults.rest_error.<status>`)
/// and never reaches its handler.
pub(super) async fn rest_fault(
    State(st): State<Arc<ServerState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(status) = faults::rest_error(&st) else {
        return next.run(req).await;
    };
    st.truth
        .add(&format!("{}.{status}", truth::FAULT_REST_ERROR), 1);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(json!({"detail": "injected fault (rest_error)"}))).into_response()
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

/// `GET /api/threads?limit&offset`
pub(super) async fn list_threads(
    State(st): State<Arc<ServerState>>,
    Query(q): Query<HashMap<String, String>>,
    AuthUser(user): AuthUser,
) -> Response {
    let (limit, offset) = match super::platform::paging(&st.config.platform, &q) {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    Json(st.threads.list(&user, limit, offset)).into_response()
}

/// `POST /api/threads {title?, metadata?}`
pub(super) async fn create_thread(
    State(st): State<Arc<ServerState>>,
    auth: Result<AuthUser, AuthRejection>,
    body: Option<Json<Value>>,
) -> Result<Response, AuthRejection> {
    let AuthUser(user) = auth?;
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let title = body.get("title").and_then(Value::as_str);
    let metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    st.truth.add("threads.created", 1);
    Ok(Json(st.threads.create(&user, None, title, metadata)).into_response())
}

/// `GET /api/threads/{id}`
pub(super) async fn get_thread(
    State(st): State<Arc<ServerState>>,
    Path(id): Path<String>,
    AuthUser(user): AuthUser,
) -> Response {
    match st.threads.get(&user, &id) {
        Ok(t) => Json(t).into_response(),
        Err(d) => denied(&st, d),
    }
}

/// `PUT /api/threads/{id} {title?, metadata?}`
pub(super) async fn update_thread(
    State(st): State<Arc<ServerState>>,
    Path(id): Path<String>,
    auth: Result<AuthUser, AuthRejection>,
    body: Option<Json<Value>>,
) -> Result<Response, AuthRejection> {
    let AuthUser(user) = auth?;
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let title = body.get("title").and_then(Value::as_str);
    Ok(
        match st
            .threads
            .update(&user, &id, title, body.get("metadata").cloned())
        {
            Ok(t) => Json(t).into_response(),
            Err(d) => denied(&st, d),
        },
    )
}

/// `DELETE /api/threads/{id}` -> `{"deleted": true, "id"}`
pub(super) async fn delete_thread(
    State(st): State<Arc<ServerState>>,
    Path(id): Path<String>,
    AuthUser(user): AuthUser,
) -> Response {
    match st.threads.delete(&user, &id) {
        Ok(()) => {
            st.truth.add("threads.deleted", 1);
            Json(json!({"deleted": true, "id": id})).into_response()
        }
        Err(d) => denied(&st, d),
    }
}

/// `GET /api/threads/{id}/messages?limit&offset` -> `{messages, total}`;
/// the leak_history fault adds another user's message.
pub(super) async fn thread_messages(
    State(st): State<Arc<ServerState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    AuthUser(user): AuthUser,
) -> Response {
    let (limit, offset) = match super::platform::paging(&st.config.platform, &q) {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let (msgs, total) = match st.threads.messages(&user, &id, limit, offset) {
        Ok(m) => m,
        Err(d) => return denied(&st, d),
    };
    let mut messages: Vec<Value> = msgs.iter().map(threads::StoredMessage::to_json).collect();
    if let Some(pick) = faults::leak_history(&st) {
        if let Some(m) = st.threads.foreign_message(&user, pick) {
            st.truth.add(truth::FAULT_LEAK_HISTORY, 1);
            messages.push(m.to_json());
        }
    }
    Json(json!({"messages": messages, "total": total})).into_response()
}

/// `POST /api/threads/{id}/messages {message}`
pub(super) async fn post_message(
    State(st): State<Arc<ServerState>>,
    Path(id): Path<String>,
    auth: Result<AuthUser, AuthRejection>,
    Json(body): Json<Value>,
) -> Result<Response, AuthRejection> {
    let AuthUser(user) = auth?;
    let text = body
        .get("message")
        .or_else(|| body.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Err(d) = st.threads.get(&user, &id) {
        // Posting never creates a thread: unknown is 404, another user's 403.
        return Ok(denied(&st, d));
    }
    Ok(match st.threads.append(&user, &id, "user", text) {
        Ok(m) => Json(m).into_response(),
        Err(d) => denied(&st, d),
    })
}

/// `POST /auth/dev/login` (alias `/auth/create-token`) `{user_id?, email?}`:
/// a token for that user, valid for the configured login lifetime, in the
/// auth service's shape (`access_token`, `token_type`, `expires_in`).
pub(super) async fn login_handler(
    State(st): State<Arc<ServerState>>,
    body: Option<Json<Value>>,
) -> Response {
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
    let user = super::platform::login_user(&st.config.platform, user);
    let lifetime = st.config.login_lifetime;
    let mut claims = crate::auth::netra_claims();
    if st.config.platform.refuse_aud {
        claims.remove("aud");
    }
    let minter = crate::auth::Minter::new(&st.config.secret, claims, lifetime);
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
