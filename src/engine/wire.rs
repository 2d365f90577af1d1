//! Protocol and handshake errors, named: the one classification of every way
//! a WebSocket breaks below chatload's protocol (a frame above tungstenite's
//! limits, invalid UTF-8, reserved bits, a bad opcode, a wrong accept key,
//! a refused subprotocol, an HTTP status, TLS, I/O) and of a flood
//! (`flood.rs`). Each class is counted as `connections.protocol_error.<class>`
//! and its reason goes to the report's failures; a run in flight fails as
//! `runs.failed.protocol_error` (see `engine/socket.rs`). The connect side
//! (`connect.rs`) files its protocol failures by the same classes.
//!
//! The class names are listed in `names::PROTOCOL_ERRORS`.
//!
//! May import: nothing of chatload's; tungstenite's error types.

use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::Error as WsError;

/// A named protocol or handshake error and its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub class: WireClass,
    /// tungstenite's words (or chatload's), one line.
    pub reason: String,
}

/// The classes of [`WireError`] (`connections.protocol_error.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireClass {
    /// A frame or message above tungstenite's limits (`ws_config`: 16 MiB),
    /// including a header claiming 2^62 bytes.
    FrameTooLarge,
    /// A text frame (or close reason) that is not UTF-8.
    InvalidUtf8,
    /// RSV1/RSV2/RSV3 set: chatload negotiates no extension, so RSV1 is an
    /// unrequested compressed frame (tungstenite does not say which bit).
    ReservedBits,
    /// An unknown or reserved opcode, a continuation with nothing to continue.
    BadOpcode,
    /// A fragmented or oversized control frame, a masked frame from the
    /// server, data after its close, a bad close sequence.
    BadFrame,
    /// The socket ended without a closing handshake (a drop, counted as
    /// `closes.1006` as before, not as a protocol error).
    Reset,
    /// The upgrade's `Sec-WebSocket-Accept` does not match the key.
    BadAcceptKey,
    /// The server sent no subprotocol, another one, or one none was asked.
    SubprotocolRefused,
    /// Any other malformed upgrade answer (missing headers, bad HTTP).
    BadHandshake,
    /// Frames faster than the per-socket flood limit (`flood.rs`).
    Flood,
    /// The upgrade answered with this HTTP status.
    HttpStatus(u16),
    /// TLS failed.
    Tls,
    /// An I/O error of this kind (`connection_reset`, `broken_pipe`, ...).
    Io(std::io::ErrorKind),
    /// Anything tungstenite reports that fits none of the above.
    Other,
}

impl WireClass {
    /// The class as counted: `frame_too_large`, `http_status_502`,
    /// `io_connection_reset`, ...
    pub fn name(&self) -> String {
        match self {
            WireClass::FrameTooLarge => "frame_too_large".into(),
            WireClass::InvalidUtf8 => "invalid_utf8".into(),
            WireClass::ReservedBits => "reserved_bits".into(),
            WireClass::BadOpcode => "bad_opcode".into(),
            WireClass::BadFrame => "bad_frame".into(),
            WireClass::Reset => "reset".into(),
            WireClass::BadAcceptKey => "bad_accept_key".into(),
            WireClass::SubprotocolRefused => "subprotocol_refused".into(),
            WireClass::BadHandshake => "bad_handshake".into(),
            WireClass::Flood => "flood".into(),
            WireClass::HttpStatus(code) => format!("http_status_{code}"),
            WireClass::Tls => "tls_handshake".into(),
            WireClass::Io(kind) => format!("io_{}", snake(&format!("{kind:?}"))),
            WireClass::Other => "other".into(),
        }
    }
}

/// `ConnectionReset` -> `connection_reset`.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl WireError {
    pub fn new(class: WireClass, reason: impl Into<String>) -> WireError {
        WireError {
            class,
            reason: reason.into(),
        }
    }

    /// `frame_too_large: Space limit exceeded: Message too long: ...`
    pub fn describe(&self) -> String {
        format!("{}: {}", self.class.name(), self.reason)
    }

    /// Whether this is an ordinary drop (no close frame), filed as
    /// `closes.1006` rather than as a protocol error.
    pub fn is_drop(&self) -> bool {
        matches!(self.class, WireClass::Reset | WireClass::Io(_))
    }
}

/// Classifies a tungstenite error, on read or on connect.
pub fn classify(e: &WsError) -> WireError {
    let class = match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => WireClass::FrameTooLarge,
        WsError::Capacity(CapacityError::TooManyHeaders) => WireClass::BadHandshake,
        WsError::Utf8(_) => WireClass::InvalidUtf8,
        WsError::Protocol(p) => protocol_class(p),
        WsError::Io(io) => WireClass::Io(io.kind()),
        WsError::Tls(_) => WireClass::Tls,
        WsError::Http(resp) => WireClass::HttpStatus(resp.status().as_u16()),
        WsError::HttpFormat(_) | WsError::Url(_) => WireClass::BadHandshake,
        WsError::ConnectionClosed | WsError::AlreadyClosed => WireClass::Reset,
        WsError::AttackAttempt | WsError::WriteBufferFull(_) => WireClass::Other,
    };
    let mut reason = e.to_string();
    if class == WireClass::ReservedBits {
        reason.push_str(" (RSV1 is a compressed frame: chatload never negotiates compression)");
    }
    WireError::new(class, reason)
}

fn protocol_class(p: &ProtocolError) -> WireClass {
    use ProtocolError as P;
    match p {
        P::NonZeroReservedBits => WireClass::ReservedBits,
        P::UnknownControlFrameType(_)
        | P::UnknownDataFrameType(_)
        | P::InvalidOpcode(_)
        | P::UnexpectedContinueFrame
        | P::ExpectedFragment(_) => WireClass::BadOpcode,
        P::FragmentedControlFrame
        | P::ControlFrameTooBig
        | P::MaskedFrameFromServer
        | P::UnmaskedFrameFromClient
        | P::ReceivedAfterClosing
        | P::InvalidCloseSequence => WireClass::BadFrame,
        P::ResetWithoutClosingHandshake => WireClass::Reset,
        P::SecWebSocketAcceptKeyMismatch => WireClass::BadAcceptKey,
        P::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol
            | SubProtocolError::InvalidSubProtocol
            | SubProtocolError::ServerSentSubProtocolNoneRequested,
        ) => WireClass::SubprotocolRefused,
        _ => WireClass::BadHandshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tungstenite_errors_get_their_names() {
        let cases: Vec<(WsError, &str)> = vec![
            (
                WsError::Capacity(CapacityError::MessageTooLong {
                    size: 1 << 26,
                    max_size: 1 << 24,
                }),
                "frame_too_large",
            ),
            (WsError::Utf8("bad".into()), "invalid_utf8"),
            (
                WsError::Protocol(ProtocolError::NonZeroReservedBits),
                "reserved_bits",
            ),
            (
                WsError::Protocol(ProtocolError::InvalidOpcode(3)),
                "bad_opcode",
            ),
            (
                WsError::Protocol(ProtocolError::SecWebSocketAcceptKeyMismatch),
                "bad_accept_key",
            ),
            (
                WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                    SubProtocolError::NoSubProtocol,
                )),
                "subprotocol_refused",
            ),
            (
                WsError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                "io_connection_reset",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e).class.name(), want, "{e}");
        }
        let rsv = classify(&WsError::Protocol(ProtocolError::NonZeroReservedBits));
        assert!(rsv.describe().contains("compress"), "{}", rsv.describe());
    }
}
