//! Which early frames and closes mean "the server refused the token": a
//! profile's data, not the engine's guess. PROTOCOL.md section 8: the real
//! platform answers a missing or bad token with an `error_message` frame
//! (`error_code` `NO_TOKEN` or `VALIDATION_FAILED`) and then closes 1011
//! "SSOT Auth failed" before the ready frame, so a 1011 alone does not tell
//! an overloaded server from a refused token; the frame before it does.
//!
//! The engine counts a recognised auth failure as `tokens.rejected` (and
//! `tokens.rejected.<phase>`), and leaves its close out of the close rates.

/// What an auth failure looks like on the wire (`[profile.auth_failure]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthFailure {
    /// Frame types (after the wrapper and alias lookup) that can report an
    /// auth failure; one of them is an auth frame when its code matches `codes`.
    pub frames: Vec<String>,
    /// `error_code` (or `code`) values that mean auth; a trailing `*`
    /// matches a prefix (`AUTH_*`).
    pub codes: Vec<String>,
    /// Close codes that mean an auth failure on their own when they come
    /// before the ready frame (1008, "policy violation").
    pub close_before_ready: Vec<u16>,
}

impl AuthFailure {
    /// The platform's: `error_message`/`error` frames with `VALIDATION_FAILED`,
    /// `NO_TOKEN` or `AUTH_*`, and 1008 before ready.
    pub fn netra() -> AuthFailure {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        AuthFailure {
            frames: s(&["error_message", "error"]),
            codes: s(&["VALIDATION_FAILED", "NO_TOKEN", "AUTH_*"]),
            close_before_ready: vec![1008],
        }
    }

    /// Nothing is recognised (`auth_failure = "none"`).
    pub fn none() -> AuthFailure {
        AuthFailure::default()
    }

    /// Whether a frame of type `name` carrying `code` reports an auth failure.
    pub fn is_auth_frame(&self, name: &str, code: Option<&str>) -> bool {
        let Some(code) = code else {
            return false;
        };
        self.frames.iter().any(|f| f == name) && self.codes.iter().any(|c| code_matches(c, code))
    }

    /// Whether a close before ready is an auth failure: its code says so on
    /// its own, or an auth frame came before it on the socket (then any code:
    /// the server said why it closed).
    pub fn close_before_ready(&self, code: u16, after_auth_frame: bool) -> bool {
        after_auth_frame || self.close_before_ready.contains(&code)
    }
}

/// `pattern` is a code, or a prefix ending in `*`.
fn code_matches(pattern: &str, code: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => code.starts_with(prefix),
        None => pattern == code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netra_recognises_the_platforms_auth_frames_and_closes() {
        let a = AuthFailure::netra();
        let cases = [
            ("error_message", Some("VALIDATION_FAILED"), true),
            ("error_message", Some("NO_TOKEN"), true),
            ("error_message", Some("AUTH_FAILED"), true),
            ("error", Some("AUTH_EXPIRED"), true),
            ("error_message", Some("TOKEN_EXPIRED"), false),
            ("error_message", Some("RATE_LIMITED"), false),
            ("error_message", Some("VALIDATION_FAILED_X"), false),
            ("error_message", None, false),
            ("agent_error", Some("AUTH_FAILED"), false),
        ];
        for (name, code, want) in cases {
            assert_eq!(a.is_auth_frame(name, code), want, "{name} {code:?}");
        }
        assert!(a.close_before_ready(1008, false));
        assert!(!a.close_before_ready(1011, false));
        assert!(a.close_before_ready(1011, true));
        assert!(a.close_before_ready(1006, true));
        let none = AuthFailure::none();
        assert!(!none.is_auth_frame("error_message", Some("AUTH_FAILED")));
        assert!(!none.close_before_ready(1008, false));
    }
}
