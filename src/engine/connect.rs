//! Opening an authenticated WebSocket: token presentation, buffer sizes, and
//! classification of every way a connect can fail.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::auth::{Presentation, Secret};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Socket buffer sizes for thousands of sockets per process: tungstenite's
/// defaults (128 KiB read buffer, 128 KiB write buffer) would dominate memory.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(16 * 1024 * 1024))
}

/// Why a connect did not produce an upgraded socket.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectFailure {
    /// The server answered the upgrade with this HTTP status.
    Rejected(u16),
    /// Below HTTP: `refused`, `timeout`, `tls`, `protocol`, `io`.
    Failed(&'static str, String),
}

impl ConnectFailure {
    /// Status recorded into goose for this failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectFailure::Rejected(s) => Some(*s),
            ConnectFailure::Failed(..) => None,
        }
    }
}

/// Builds the upgrade request with the token presented the configured ways.
pub fn request(
    url: &str,
    token: &Secret,
    present: &[Presentation],
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, WsError> {
    let mut url = url::Url::parse(url).map_err(|e| {
        WsError::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnableToConnect(e.to_string()),
        )
    })?;
    if present.contains(&Presentation::Query) {
        url.query_pairs_mut().append_pair("token", token.expose());
    }
    let mut req = url.as_str().into_client_request()?;
    let bad = |_| {
        WsError::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnableToConnect(
                "token is not a valid header value".into(),
            ),
        )
    };
    if present.contains(&Presentation::Header) {
        let v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(bad)?;
        req.headers_mut().insert("Authorization", v);
    }
    if let Some(proto) = present.iter().find_map(|p| p.subprotocol(token.expose())) {
        let v = HeaderValue::from_str(&proto).map_err(bad)?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", v);
    }
    Ok(req)
}

fn classify(e: WsError) -> ConnectFailure {
    match e {
        WsError::Http(resp) => ConnectFailure::Rejected(resp.status().as_u16()),
        WsError::Io(io) => {
            let kind = if io.kind() == std::io::ErrorKind::ConnectionRefused {
                "refused"
            } else {
                "io"
            };
            ConnectFailure::Failed(kind, io.to_string())
        }
        WsError::Tls(t) => ConnectFailure::Failed("tls", t.to_string()),
        other => ConnectFailure::Failed("protocol", other.to_string()),
    }
}

/// Exchanges a token for a single-use ticket (`POST /api/websocket/ticket`) and
/// returns the WebSocket URL carrying it.
pub async fn ticket_url(
    http: &reqwest::Client,
    ws_url: &str,
    token: &Secret,
    timeout: Duration,
) -> Result<String, ConnectFailure> {
    let mut u =
        url::Url::parse(ws_url).map_err(|e| ConnectFailure::Failed("protocol", e.to_string()))?;
    let scheme = if u.scheme() == "wss" { "https" } else { "http" };
    let mut api = u.clone();
    api.set_scheme(scheme)
        .map_err(|_| ConnectFailure::Failed("protocol", "cannot derive the HTTP URL".into()))?;
    api.set_path("/api/websocket/ticket");
    api.set_query(None);
    let resp = http
        .post(api.as_str())
        .bearer_auth(token.expose())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            ConnectFailure::Failed(
                if e.is_timeout() { "timeout" } else { "io" },
                e.without_url().to_string(),
            )
        })?;
    if !resp.status().is_success() {
        return Err(ConnectFailure::Rejected(resp.status().as_u16()));
    }
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ConnectFailure::Failed("protocol", e.without_url().to_string()))?;
    let id = body
        .get("ticket_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            ConnectFailure::Failed("protocol", "the ticket answer has no ticket_id".into())
        })?;
    u.query_pairs_mut().append_pair("ticket", id);
    Ok(u.to_string())
}

/// Connects and upgrades within `timeout`; returns the socket and the time to the 101.
pub async fn open(
    url: &str,
    token: &Secret,
    present: &[Presentation],
    timeout: Duration,
) -> Result<(Ws, Duration), ConnectFailure> {
    let req = request(url, token, present).map_err(classify)?;
    let t0 = Instant::now();
    match tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true),
    )
    .await
    {
        Err(_) => Err(ConnectFailure::Failed(
            "timeout",
            format!("no upgrade within {timeout:?}"),
        )),
        Ok(Err(e)) => Err(classify(e)),
        Ok(Ok((ws, _resp))) => Ok((ws, t0.elapsed())),
    }
}
