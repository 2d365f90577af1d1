//! JWT minting and verification, shared by the client side and the reference server.
//!
//! The clock and the key are passed in, never read here, so both are testable.
//! A [`Secret`] never prints its value: `Debug` and `Display` show `***`.
//! Every `Secret` made is taught to the redactor ([`redact`]), so whatever the
//! run holds as a secret is redacted from every output.
//! A leaf: imports nothing from the crate outside `auth`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod redact;

/// Default HS256 key of the embedded reference server, used only when chatload
/// starts that server itself and the scenario's `secret_env` variable is unset.
pub const EMBEDDED_DEV_SECRET: &str = "chatload-embedded-reference-server-dev-secret";

/// A signing key or token that must never reach any output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s` and teaches it to the process's redactor.
    pub fn new(s: impl Into<String>) -> Self {
        let s = s.into();
        redact::learn(&s);
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token signing failed: {0}")]
    Sign(String),
    #[error("token rejected: {0}")]
    Invalid(String),
}

/// The claims the platform's strict validator enforces (PROTOCOL.md section 1),
/// plus any extra claims a scenario adds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub aud: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Mints one HS256 token per user from a claims template.
#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    /// Claims copied into every token; string values may use `{{user}}`.
    template: Map<String, Value>,
    lifetime: Duration,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("template", &self.template)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch of a system time.
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `exp` of a JWT, read without verifying it (for tokens chatload did not
/// mint: a tokens file, a login endpoint). `None` for an opaque token.
pub fn unverified_exp(token: &str) -> Option<u64> {
    unverified_claims(token)?.get("exp")?.as_u64()
}

/// The claims of a JWT, read without verifying it.
pub fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims the platform's strict validator wants besides `sub`, `iat`,
/// `exp` and `jti` (strings may use `{{user}}`).
pub fn netra_claims() -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), "netra-auth-service".into());
    claims.insert("aud".into(), "netra-platform".into());
    claims.insert("token_type".into(), "access".into());
    claims.insert("email".into(), "{{user}}@loadtest.chatload.invalid".into());
    claims
}

impl Minter {
    pub fn new(secret: &Secret, template: Map<String, Value>, lifetime: Duration) -> Self {
        Minter {
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
            template,
            lifetime,
        }
    }

    /// A token for `user` issued at `now`; `jti` must be unique per token.
    pub fn mint(&self, user: &str, now: SystemTime, jti: &str) -> Result<Secret, AuthError> {
        let iat = epoch_secs(now);
        let mut claims = Map::new();
        for (k, v) in &self.template {
            claims.insert(k.clone(), substitute_user(v, user));
        }
        claims.insert("sub".into(), Value::String(user.to_string()));
        claims.insert("iat".into(), Value::from(iat));
        claims.insert(
            "exp".into(),
            Value::from(iat + self.lifetime.as_secs().max(1)),
        );
        claims.insert("jti".into(), Value::String(jti.to_string()));
        encode(
            &Header::new(Algorithm::HS256),
            &Value::Object(claims),
            &self.key,
        )
        .map(Secret)
        .map_err(|e| AuthError::Sign(e.to_string()))
    }
}

fn substitute_user(v: &Value, user: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{{user}}", user)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_user(x, user)).collect()),
        other => other.clone(),
    }
}

/// What the server's strict validator demands of a token.
#[derive(Clone)]
pub struct VerifyPolicy {
    key: DecodingKey,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub token_type: String,
    /// Largest accepted clock skew of `iat` into the future.
    pub max_future_iat: Duration,
    /// Largest accepted token age.
    pub max_age: Duration,
    /// Refuse a token that carries any `aud` (a JWT library that was given
    /// no audience to expect, such as PyJWT's default); when false, `aud`
    /// is required and must be one of `audiences`.
    pub refuse_aud: bool,
}

impl VerifyPolicy {
    /// The platform's policy (PROTOCOL.md section 1).
    pub fn netra(secret: &Secret) -> Self {
        VerifyPolicy {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            issuer: "netra-auth-service".into(),
            audiences: [
                "netra-platform",
                "netra-services",
                "netra-backend",
                "netra-admin",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            token_type: "access".into(),
            max_future_iat: Duration::from_secs(60),
            max_age: Duration::from_secs(24 * 3600),
            refuse_aud: false,
        }
    }

    /// The same policy, refusing any `aud` when `refuse` (see `refuse_aud`).
    pub fn refusing_aud(mut self, refuse: bool) -> Self {
        self.refuse_aud = refuse;
        self
    }

    /// Verifies signature, expiry, issuer, audience, type, `iat` skew and age.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        if self.refuse_aud {
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "sub", "iss"]);
        } else {
            v.set_audience(&self.audiences);
            v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        }
        // Expiry is checked below against the clock passed in, not the system clock.
        v.validate_exp = false;
        let data = decode::<Claims>(token, &self.key, &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        if self.refuse_aud && !c.aud.is_null() {
            return Err(AuthError::Invalid(format!(
                "unexpected audience {} (this server expects no `aud`)",
                c.aud
            )));
        }
        let now_s = epoch_secs(now);
        if c.exp <= now_s {
            return Err(AuthError::Invalid("token expired".into()));
        }
        if c.token_type != self.token_type {
            return Err(AuthError::Invalid(format!(
                "token_type must be `{}`",
                self.token_type
            )));
        }
        if c.iat > now_s + self.max_future_iat.as_secs() {
            return Err(AuthError::Invalid("iat is in the future".into()));
        }
        if now_s.saturating_sub(c.iat) > self.max_age.as_secs() {
            return Err(AuthError::Invalid("token is too old".into()));
        }
        if c.jti.is_empty() {
            return Err(AuthError::Invalid("jti is missing".into()));
        }
        Ok(c)
    }
}

/// How a client presents its token on the WebSocket upgrade (PROTOCOL.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Presentation {
    /// `Sec-WebSocket-Protocol: jwt.<token>`
    SubprotocolJwt,
    /// `Sec-WebSocket-Protocol: jwt.<base64url(token)>`
    SubprotocolJwtBase64,
    /// The browser client: `Sec-WebSocket-Protocol: jwt-auth, jwt.<base64url(token)>`
    SubprotocolBrowser,
    /// `Sec-WebSocket-Protocol: bearer.<token>`
    SubprotocolBearer,
    /// `Authorization: Bearer <token>`
    Header,
    /// `?token=<token>`
    Query,
    /// `POST /api/websocket/ticket` with the token, then `?ticket=<ticket_id>`
    Ticket,
}

/// Names accepted in `auth.present`.
pub const PRESENTATIONS: [&str; 7] = [
    "subprotocol:jwt",
    "subprotocol:jwt-base64",
    "subprotocol:browser",
    "subprotocol:bearer",
    "header",
    "query",
    "ticket",
];

impl std::str::FromStr for Presentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "subprotocol:jwt" | "subprotocol" => Ok(Presentation::SubprotocolJwt),
            "subprotocol:jwt-base64" => Ok(Presentation::SubprotocolJwtBase64),
            "subprotocol:browser" => Ok(Presentation::SubprotocolBrowser),
            "subprotocol:bearer" => Ok(Presentation::SubprotocolBearer),
            "header" => Ok(Presentation::Header),
            "query" => Ok(Presentation::Query),
            "ticket" => Ok(Presentation::Ticket),
            other => Err(format!(
                "unknown presentation `{other}` (expected {})",
                PRESENTATIONS.join(", ")
            )),
        }
    }
}

impl Presentation {
    /// The `Sec-WebSocket-Protocol` value for subprotocol presentations.
    pub fn subprotocol(self, token: &str) -> Option<String> {
        use base64::Engine as _;
        let b64 = || base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
        match self {
            Presentation::SubprotocolJwt => Some(format!("jwt.{token}")),
            Presentation::SubprotocolJwtBase64 => Some(format!("jwt.{}", b64())),
            Presentation::SubprotocolBrowser => Some(format!("jwt-auth, jwt.{}", b64())),
            Presentation::SubprotocolBearer => Some(format!("bearer.{token}")),
            Presentation::Header | Presentation::Query | Presentation::Ticket => None,
        }
    }
}

/// Subprotocol prefixes that carry a token, with whether the token may be base64url.
pub const TOKEN_SUBPROTOCOL_PREFIXES: [&str; 3] = ["jwt.", "jwt-auth.", "bearer."];

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Map<String, Value> {
        serde_json::json!({
            "iss": "netra-auth-service",
            "aud": "netra-platform",
            "token_type": "access",
            "email": "{{user}}@loadtest.example"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn minted_token_verifies_with_the_same_secret_only() {
        let secret = Secret::new("s3cret");
        let now = SystemTime::now();
        let m = Minter::new(&secret, template(), Duration::from_secs(1800));
        let tok = m.mint("u1", now, "j1").unwrap();
        let claims = VerifyPolicy::netra(&secret)
            .verify(tok.expose(), now)
            .unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.email.as_deref(), Some("u1@loadtest.example"));
        assert_eq!(claims.exp - claims.iat, 1800);
        let other = VerifyPolicy::netra(&Secret::new("other"));
        assert!(other.verify(tok.expose(), now).is_err());
    }

    #[test]
    fn expired_and_wrong_type_tokens_are_rejected() {
        let secret = Secret::new("k");
        let now = SystemTime::now();
        let m = Minter::new(&secret, template(), Duration::from_secs(10));
        let tok = m.mint("u", now, "j").unwrap();
        let later = now + Duration::from_secs(11);
        assert!(VerifyPolicy::netra(&secret)
            .verify(tok.expose(), later)
            .is_err());
        let mut t = template();
        t.insert("token_type".into(), "refresh".into());
        let tok = Minter::new(&secret, t, Duration::from_secs(10))
            .mint("u", now, "j")
            .unwrap();
        assert!(VerifyPolicy::netra(&secret)
            .verify(tok.expose(), now)
            .is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
