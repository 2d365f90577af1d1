//! The one redaction pass: every secret of the run, in every form chatload
//! sends or a server can echo back, replaced before text leaves the process.
//!
//! Two rules, applied together by [`redact`]:
//!
//! - **Shape**: anything shaped like a JWT (`eyJ…` with three base64url parts,
//!   dots also as `%2E`) becomes `<redacted-jwt>`; so does its base64 form
//!   (`ZXlK…`, base64url or standard, with or without padding, also with
//!   `%2B`/`%2F`/`%3D` or a JSON-escaped `\/`) when it decodes to a JWT start.
//!   This covers every token, even one chatload never saw.
//! - **Known secrets**: every value the run holds as a secret is learned when
//!   it is made ([`learn`]: `Secret::new` does it for the signing key, tokens
//!   read from a file and tokens from a login; the run adds the values of the
//!   login body's `{{env.NAME}}` and of `Authorization` headers), and each of
//!   its [`forms`] becomes `<redacted>`. The set is process-wide and bounded
//!   ([`MAX_SECRETS`]); values shorter than [`MIN_SECRET_BYTES`] are not
//!   learned (they would blank ordinary words), and JWT-shaped ones need no
//!   entry (the shape rule covers them).
//!
//! Where: the samples kept of offending frames (when kept, not per frame
//! read), every snapshot write (checkpoints too), every report and
//! `violations.jsonl` and history row (rendered from a redacted snapshot),
//! the interval counters file, and chatload's console lines.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use base64::Engine as _;
use serde_json::Value;

/// What replaces a known secret.
pub const REDACTED_SECRET: &str = "<redacted>";
/// What replaces a JWT-shaped string or its base64 form.
pub const REDACTED_JWT: &str = "<redacted-jwt>";
/// How many secrets the process remembers; more are counted in [`dropped`].
pub const MAX_SECRETS: usize = 4096;
/// Shorter values are not learned.
pub const MIN_SECRET_BYTES: usize = 6;

/// The known secrets, their forms indexed by their first 4 bytes.
#[derive(Default)]
pub struct Redactor {
    known: RwLock<Known>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Known {
    secrets: HashSet<String>,
    /// Needles by their first 4 bytes, longest first.
    by_prefix: HashMap<[u8; 4], Vec<String>>,
    /// One bit per first 2 bytes of any needle: most positions are passed
    /// over with one bit test, not a hash lookup.
    first2: Vec<u64>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers `secret` (and all its forms), unless too short, JWT-shaped,
    /// known already, or the set is full.
    pub fn learn(&self, secret: &str) {
        if secret.len() < MIN_SECRET_BYTES || is_jwt_shaped(secret) {
            return;
        }
        if self.read().secrets.contains(secret) {
            return;
        }
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        if k.secrets.contains(secret) {
            return;
        }
        if k.secrets.len() >= MAX_SECRETS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        k.secrets.insert(secret.to_string());
        if k.first2.is_empty() {
            k.first2 = vec![0; 1024];
        }
        for f in forms(secret) {
            let b2 = u16::from_le_bytes([f.as_bytes()[0], f.as_bytes()[1]]) as usize;
            k.first2[b2 / 64] |= 1 << (b2 % 64);
            let key: [u8; 4] = f.as_bytes()[..4].try_into().expect("forms are >= 4 bytes");
            let list = k.by_prefix.entry(key).or_default();
            if !list.contains(&f) {
                list.push(f);
                list.sort_by_key(|n| std::cmp::Reverse(n.len()));
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Secrets not learned because the set was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `text` with every JWT-shaped string and every known secret replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let shaped = redact_shapes(text);
        let k = self.read();
        if k.by_prefix.is_empty() {
            return shaped;
        }
        match redact_known(&shaped, &k) {
            Some(s) => Cow::Owned(s),
            None => shaped,
        }
    }

    /// Redacts every string and object key of `v` in place.
    pub fn redact_json(&self, v: &mut Value) {
        self.redact_json_keeping(v, "")
    }

    /// [`Redactor::redact_json`], but a string that is the value of a key
    /// named `keep` stays as is (encoded histograms: `data`, base64 that a
    /// replacement would corrupt, and that holds no text).
    pub fn redact_json_keeping(&self, v: &mut Value, keep: &str) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json_keeping(x, keep)),
            Value::Object(m) => {
                let dirty = m
                    .keys()
                    .any(|key| matches!(self.redact(key), Cow::Owned(_)));
                if dirty {
                    let old = std::mem::take(m);
                    for (key, x) in old {
                        m.insert(self.redact(&key).into_owned(), x);
                    }
                }
                for (key, x) in m.iter_mut() {
                    if !(key == keep && x.is_string()) {
                        self.redact_json_keeping(x, keep);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

static GLOBAL: OnceLock<Redactor> = OnceLock::new();

/// The process's redactor: what every artifact and console line goes through.
pub fn global() -> &'static Redactor {
    GLOBAL.get_or_init(Redactor::new)
}

/// Teaches the process's redactor a secret.
pub fn learn(secret: &str) {
    global().learn(secret)
}

/// `text` through the process's redactor.
pub fn redact(text: &str) -> String {
    global().redact(text).into_owned()
}

/// A JSON value through the process's redactor.
pub fn redact_json(v: &mut Value) {
    global().redact_json(v)
}

/// A JSON value through the process's redactor, strings under `keep` kept.
pub fn redact_json_keeping(v: &mut Value, keep: &str) {
    global().redact_json_keeping(v, keep)
}

/// What a frame kept as a sample holds: at most `max` bytes of it, redacted.
/// Only a window of `4 * max` bytes is scanned (a 1 MiB frame is not); when
/// the frame was longer, the window's last `max` bytes are dropped after
/// redaction, so a secret cut in two by the window leaves no part behind.
pub fn sample(raw: &str, max: usize) -> String {
    let window = floor_boundary(raw, max.saturating_mul(4));
    let cut = window < raw.len();
    let mut frame = redact(&raw[..window]);
    let keep = if cut {
        frame.len().saturating_sub(max).min(max)
    } else {
        max
    };
    if cut || frame.len() > keep {
        let at = floor_boundary(&frame, keep);
        frame.truncate(at);
        frame.push('…');
    }
    frame
}

fn floor_boundary(s: &str, mut at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Every form of `secret` that chatload sends or a server may echo: raw,
/// base64url with and without padding, standard base64 with and without
/// padding, percent-encoded (of the raw value and of the base64 forms),
/// JSON-escaped and HTML-escaped. (`jwt.`, `jwt-auth.`, `bearer.` and
/// `Bearer ` prefixes need no entry: the secret after them is replaced.)
pub fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let b = secret.as_bytes();
    let mut out = vec![secret.to_string()];
    for e in [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD] {
        let s = e.encode(b);
        out.push(percent_encode(&s));
        out.push(json_escape(&s));
        out.push(s);
    }
    out.push(percent_encode(secret));
    out.push(percent_encode(secret).replace("%20", "+"));
    out.push(json_escape(secret));
    out.push(html_escape(secret));
    let mut seen = HashSet::new();
    out.retain(|f| f.len() >= 4 && seen.insert(f.clone()));
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn json_escape(s: &str) -> String {
    let q = serde_json::to_string(s).expect("a string serializes");
    q[1..q.len() - 1].to_string()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Replaces every needle found; `None` when nothing matched.
fn redact_known(text: &str, k: &Known) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 4 <= b.len() {
        let b2 = u16::from_le_bytes([b[i], b[i + 1]]) as usize;
        if k.first2[b2 / 64] & (1 << (b2 % 64)) == 0 {
            i += 1;
            continue;
        }
        let key: [u8; 4] = b[i..i + 4].try_into().expect("4 bytes");
        let hit = k
            .by_prefix
            .get(&key)
            .and_then(|l| l.iter().find(|n| b[i..].starts_with(n.as_bytes())));
        if let Some(n) = hit {
            out.push_str(&text[copied..i]);
            out.push_str(REDACTED_SECRET);
            i += n.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Whether the whole of `s` is one JWT-shaped string.
pub fn is_jwt_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.starts_with(b"eyJ") && jwt_end(b, 0) == Some(b.len())
}

/// Where a raw JWT starting at `i` ends (two dots, `.` or `%2E`, between
/// base64url parts; `=` padding tolerated).
fn jwt_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut dots = 0;
    while j < b.len() {
        if is_b64url(b[j]) || b[j] == b'=' {
            j += 1;
        } else if dots < 2 && b[j] == b'.' {
            dots += 1;
            j += 1;
        } else if dots < 2 && b[j..].len() >= 3 && b[j..j + 3].eq_ignore_ascii_case(b"%2E") {
            dots += 1;
            j += 3;
        } else {
            break;
        }
    }
    (dots == 2).then_some(j)
}

/// Where a base64 run starting at `i` ends, with its normalised text
/// (standard alphabet, no padding, no escapes).
fn b64_run(b: &[u8], i: usize) -> (usize, Vec<u8>) {
    let mut j = i;
    let mut norm = Vec::new();
    while j < b.len() {
        let c = b[j];
        let rest = &b[j..];
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' {
            norm.push(c);
            j += 1;
        } else if c == b'-' || c == b'_' {
            norm.push(if c == b'-' { b'+' } else { b'/' });
            j += 1;
        } else if c == b'=' {
            j += 1;
        } else if rest.len() >= 3 && rest[0] == b'%' {
            match rest[1..3].to_ascii_uppercase().as_slice() {
                b"2B" => norm.push(b'+'),
                b"2F" => norm.push(b'/'),
                b"3D" => {}
                _ => break,
            }
            j += 3;
        } else if rest.starts_with(b"\\/") {
            norm.push(b'/');
            j += 2;
        } else {
            break;
        }
    }
    (j, norm)
}

/// Whether a normalised base64 run decodes to the start of a JWT.
fn decodes_to_jwt(norm: &[u8]) -> bool {
    let n = norm.len().min(48) / 4 * 4;
    if n < 16 {
        return false;
    }
    let Ok(d) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&norm[..n]) else {
        return false;
    };
    d.starts_with(b"eyJ") && d.iter().all(|&c| is_b64url(c) || c == b'.')
}

/// Replaces JWT-shaped strings and their base64 forms.
fn redact_shapes(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts = i == 0 || !(is_b64url(b[i - 1]) || b[i - 1] == b'+' || b[i - 1] == b'/');
        let end = if !starts {
            None
        } else if b[i..].starts_with(b"eyJ") {
            jwt_end(b, i)
        } else if b[i..].starts_with(b"ZXlK") {
            let (j, norm) = b64_run(b, i);
            decodes_to_jwt(&norm).then_some(j)
        } else {
            None
        };
        match end {
            Some(j) => {
                out.push_str(&text[copied..i]);
                out.push_str(REDACTED_JWT);
                copied = j;
                i = j;
            }
            None => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
