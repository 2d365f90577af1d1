//! Bounded reads of HTTP answers (login, REST steps, WebSocket tickets) and
//! the excerpt of a refusing answer quoted in a failure reason: a hostile or
//! broken server cannot grow chatload's memory with a huge body, and an
//! echoed secret is redacted before the excerpt is cut (a cut first could
//! leave the start of a password that no longer matches as a whole).
//!
//! May import: `auth` (redaction).

/// The most of a login or ticket answer read (a token answer is a few KiB).
pub(super) const SMALL_BODY_MAX: usize = 1 << 20;
/// The most of a REST step's answer read (a history page, a thread list).
pub(super) const REST_BODY_MAX: usize = 16 << 20;
/// Longest part of a refusing answer quoted in its failure reason.
pub(super) const EXCERPT_BYTES: usize = 200;

/// The answer's body, at most `max` bytes; `true` when there was more (the
/// rest is not read: the connection is dropped with the response).
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

/// `: <the answer's first bytes>` on one line, every known secret redacted
/// in the whole text before it is cut, or nothing for an empty answer.
pub(super) fn excerpt(text: &str) -> String {
    // Redact first, on the text as sent (collapsing whitespace first would
    // break a secret that holds a tab or two spaces).
    let redacted = crate::auth::redact::redact(text);
    let one_line = redacted.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return String::new();
    }
    let mut cut = one_line.len().min(EXCERPT_BYTES);
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < one_line.len() { "..." } else { "" };
    format!(": {}{more}", &one_line[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_across_the_cut_is_redacted_whole() {
        let secret = "Hunter2PasswordAcrossTheCut";
        crate::auth::redact::learn(secret);
        for pad in [150, 155, 160, 170, 180, 190, 199] {
            let text = format!("{}{secret} and more", "x".repeat(pad));
            let e = excerpt(&text);
            assert!(!e.contains("Hunt"), "pad {pad}: {e}");
            assert!(e.len() <= EXCERPT_BYTES + 5, "pad {pad}: {e}");
        }
        // A secret holding a tab is still matched.
        let tabbed = "pass\tword\twith-tabs-42";
        crate::auth::redact::learn(tabbed);
        assert!(!excerpt(&format!("{{\"p\":\"{tabbed}\"}}")).contains("with-tabs"));
    }
}
