//! Opening an authenticated WebSocket: token presentation, buffer sizes, and
//! classification of every way a connect can fail.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::stamp::{Stamped, WireClock};
use super::tls::{self, WsTls};
use crate::auth::{Presentation, Secret};

/// A socket: TLS (for `wss://`) over a TCP stream that keeps the kernel's
/// receive times (`stamp.rs`).
pub type Ws = WebSocketStream<MaybeTlsStream<Stamped>>;

/// An upgraded socket, the clock of its kernel receive times (`None`:
/// stamps are off or the kernel refused them) and the time to the 101.
pub struct Opened {
    pub ws: Ws,
    pub rx: Option<std::sync::Arc<WireClock>>,
    pub took: Duration,
}

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
    /// The server answered the upgrade with this HTTP status (and the start
    /// of its body, when it sent one).
    Rejected(u16, String),
    /// Below HTTP: `refused`, `timeout`, `tls`, `protocol`, `io`. A `tls`
    /// failure's detail starts with its named kind (`tls_unknown_issuer: `,
    /// see [`tls::kind`]).
    Failed(&'static str, String),
    /// This machine ran out of something (the errno's name, see
    /// [`local_errno`]): counted as `connections.failed.local` and
    /// `connections.local_error.<name>`.
    Local(&'static str, String),
    /// The upgrade answer broke the protocol (`bad_accept_key`,
    /// `subprotocol_refused`, ...): counted as `connections.failed.protocol`
    /// and `connections.protocol_error.<class>`.
    Protocol(super::wire::WireError),
}

impl ConnectFailure {
    /// Status recorded into goose for this failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectFailure::Rejected(s, _) => Some(*s),
            ConnectFailure::Failed(..)
            | ConnectFailure::Local(..)
            | ConnectFailure::Protocol(..) => None,
        }
    }

    /// The reason in one line, as chatload's reports show it: `HTTP 403:
    /// <body excerpt>`, `protocol: Server sent no subprotocol`, `refused:
    /// Connection refused (os error 111)`.
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::Rejected(st, body) if body.is_empty() => format!("HTTP {st}"),
            ConnectFailure::Rejected(st, body) => format!("HTTP {st}: {body}"),
            ConnectFailure::Failed(kind, detail) => format!("{kind}: {detail}"),
            ConnectFailure::Protocol(w) => format!("protocol: {}", w.describe()),
            ConnectFailure::Local(errno, detail) => {
                format!("local {}: {detail}", errno.to_uppercase())
            }
        }
    }
}

/// Longest part of a refusal's body kept in its reason.
pub const BODY_EXCERPT_CHARS: usize = 120;

/// The first [`BODY_EXCERPT_CHARS`] characters of a body, on one line.
fn excerpt(body: Option<&[u8]>) -> String {
    let text = String::from_utf8_lossy(body.unwrap_or_default());
    // Redacted whole before the cut, so no secret is left half-matched.
    let text = crate::auth::redact::redact(&text);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A connect error that says this machine, not the target, ran out of
/// something: the errno's name as counted in
/// `connections.local_error.<name>` (`emfile`: this process's fd limit,
/// `enfile`: the system's, `eaddrnotavail`: no free local port (or address)
/// to connect from, `eaddrinuse`: the local port range is used up). Such a
/// failure makes the run INVALID: the target was offered less than the plan.
pub fn local_errno(e: &std::io::Error) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let errno = Errno::from_io_error(e)?;
        [
            (Errno::MFILE, "emfile"),
            (Errno::NFILE, "enfile"),
            (Errno::ADDRNOTAVAIL, "eaddrnotavail"),
            (Errno::ADDRINUSE, "eaddrinuse"),
        ]
        .into_iter()
        .find(|(n, _)| *n == errno)
        .map(|(_, name)| name)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        None
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
        WsError::Http(resp) => {
            ConnectFailure::Rejected(resp.status().as_u16(), excerpt(resp.body().as_deref()))
        }
        WsError::Io(io) => {
            if let Some(errno) = local_errno(&io) {
                return ConnectFailure::Local(errno, io.to_string());
            }
            let kind = if io.kind() == std::io::ErrorKind::ConnectionRefused {
                "refused"
            } else {
                "io"
            };
            ConnectFailure::Failed(kind, io.to_string())
        }
        WsError::Tls(t) => ConnectFailure::Failed("tls", tls::reason(&t.to_string())),
        other => ConnectFailure::Protocol(super::wire::classify(&other)),
    }
}

/// Exchanges a token for a single-use ticket (`POST /api/websocket/ticket`) and
/// returns the WebSocket URL carrying it.
pub async fn ticket_url(
    http: &reqwest::Client,
    tls: &WsTls,
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
        .post(tls.present(api.as_str()))
        .bearer_auth(token.expose())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| match tls::http_failure(&e) {
            Some(why) => ConnectFailure::Failed("tls", why),
            None => ConnectFailure::Failed(
                if e.is_timeout() { "timeout" } else { "io" },
                e.without_url().to_string(),
            ),
        })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let (body, _) = super::body::read_capped(resp, super::body::SMALL_BODY_MAX)
            .await
            .unwrap_or_default();
        return Err(ConnectFailure::Rejected(status, excerpt(Some(&body))));
    }
    let (bytes, more) = super::body::read_capped(resp, super::body::SMALL_BODY_MAX)
        .await
        .map_err(|e| ConnectFailure::Failed("protocol", e.without_url().to_string()))?;
    if more {
        return Err(ConnectFailure::Failed(
            "protocol",
            "the ticket answer is larger than 1 MiB".into(),
        ));
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ConnectFailure::Failed("protocol", format!("the ticket answer: {e}")))?;
    let id = body
        .get("ticket_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            ConnectFailure::Failed("protocol", "the ticket answer has no ticket_id".into())
        })?;
    u.query_pairs_mut().append_pair("ticket", id);
    Ok(u.to_string())
}

/// Connects and upgrades within `timeout`. A `wss://` URL is verified the
/// scenario's way (`tls`); with `kernel_stamps` the socket's reads carry
/// the kernel's receive times.
pub async fn open(
    url: &str,
    tls: &WsTls,
    token: &Secret,
    present: &[Presentation],
    timeout: Duration,
    kernel_stamps: bool,
) -> Result<Opened, ConnectFailure> {
    let req = request(&tls.present(url), token, present).map_err(classify)?;
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, connect(url, tls, req, kernel_stamps)).await {
        Err(_) => Err(ConnectFailure::Failed(
            "timeout",
            format!("no upgrade within {timeout:?}"),
        )),
        Ok(Err(e)) => Err(classify(e)),
        Ok(Ok((ws, rx))) => Ok(Opened {
            ws,
            rx,
            took: t0.elapsed(),
        }),
    }
}

/// The TCP connection goes to `url`'s address; `req` (whose host is the
/// presented name) gives the TLS server name and the `Host` header.
async fn connect(
    url: &str,
    tls: &WsTls,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    kernel_stamps: bool,
) -> Result<(Ws, Option<std::sync::Arc<WireClock>>), WsError> {
    let u = url::Url::parse(url).map_err(|e| {
        WsError::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnableToConnect(e.to_string()),
        )
    })?;
    let host = u.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = u
        .port_or_known_default()
        .unwrap_or(if u.scheme() == "wss" { 443 } else { 80 });
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let stream = Stamped::new(stream, kernel_stamps);
    let rx = stream.clock();
    let connector = tls.connector.clone();
    let (ws, _resp) =
        tokio_tungstenite::client_async_tls_with_config(req, stream, Some(ws_config()), connector)
            .await?;
    Ok((ws, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_errnos_are_named_and_the_targets_errors_are_not() {
        let os = std::io::Error::from_raw_os_error;
        // Linux numbers: EMFILE 24, ENFILE 23, EADDRINUSE 98, EADDRNOTAVAIL 99.
        let cases = [
            (24, Some("emfile")),
            (23, Some("enfile")),
            (99, Some("eaddrnotavail")),
            (98, Some("eaddrinuse")),
            (111, None), // ECONNREFUSED: the target's answer
            (110, None), // ETIMEDOUT
            (104, None), // ECONNRESET
        ];
        for (raw, want) in cases {
            assert_eq!(local_errno(&os(raw)), want, "errno {raw}");
        }
        assert_eq!(local_errno(&std::io::Error::other("no errno")), None);
        let local = classify(WsError::Io(os(24)));
        assert!(
            matches!(local, ConnectFailure::Local("emfile", _)),
            "{local:?}"
        );
        assert!(
            local.reason().starts_with("local EMFILE: "),
            "{}",
            local.reason()
        );
        let refused = classify(WsError::Io(os(111)));
        assert!(matches!(refused, ConnectFailure::Failed("refused", _)));
    }

    #[test]
    fn a_refusal_carries_its_status_and_the_start_of_its_body() {
        let long = format!("  no\n{}", "x".repeat(500));
        let resp = tokio_tungstenite::tungstenite::http::Response::builder()
            .status(403)
            .body(Some(long.into_bytes()))
            .unwrap();
        let f = classify(WsError::Http(Box::new(resp)));
        let ConnectFailure::Rejected(403, body) = &f else {
            panic!("{f:?}")
        };
        assert!(body.starts_with("no xxx"), "{body}");
        assert_eq!(body.chars().count(), BODY_EXCERPT_CHARS + 1, "{body}");
        let sub = classify(WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(
                tokio_tungstenite::tungstenite::error::SubProtocolError::NoSubProtocol,
            ),
        ));
        let why = sub.reason();
        assert!(
            why.starts_with("protocol: ") && why.ends_with("Server sent no subprotocol"),
            "{why}"
        );
    }
}
