//! The user's tokens: the socket's token (minted, from a tokens file, or
//! from a login endpoint) and its refresh before expiry, and the token for
//! REST calls.
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::shared::{at_path, http_error, unfollowed_redirect, Shared};
use super::user::UserSession;
use crate::auth::Secret;
use crate::protocol::template;

/// An epoch-seconds expiry as an `Instant` (in the past when already expired).
pub(super) fn instant_of(exp_epoch: u64) -> Instant {
    let now = crate::auth::epoch_secs(SystemTime::now());
    match exp_epoch.checked_sub(now) {
        Some(left) => Instant::now() + Duration::from_secs(left),
        None => Instant::now()
            .checked_sub(Duration::from_secs(now - exp_epoch))
            .unwrap_or_else(Instant::now),
    }
}

impl Shared {
    /// The token for the next socket and its expiry: minted fresh, or the
    /// current one from the file or the login endpoint while it is not about
    /// to expire.
    pub(super) async fn socket_token(
        &self,
        s: &mut UserSession,
    ) -> Result<(Secret, Option<Instant>), (Option<u16>, String)> {
        let margin = self.cfg.scenario.auth.refresh_margin;
        let fresh_enough = |exp: &Option<Instant>| exp.is_none_or(|e| Instant::now() + margin < e);
        if !matches!(
            self.cfg.scenario.auth.source,
            crate::scenario::TokenSource::Mint
        ) {
            if let Some((t, exp)) = &s.token {
                if fresh_enough(exp) {
                    return Ok((t.clone(), *exp));
                }
            }
        }
        let (token, exp) = self.acquire_token(s).await?;
        s.token = Some((token.clone(), exp));
        Ok((token, exp))
    }

    /// A new token from the scenario's source.
    pub(super) async fn acquire_token(
        &self,
        s: &mut UserSession,
    ) -> Result<(Secret, Option<Instant>), (Option<u16>, String)> {
        use crate::scenario::TokenSource;
        let sc = &self.cfg.scenario;
        s.tokens += 1;
        match &sc.auth.source {
            TokenSource::Mint => {
                let jti = format!("{}-{}-{:08x}", s.user_id, s.tokens, s.rng.random::<u32>());
                let token = self
                    .minter
                    .mint(&s.user_id, SystemTime::now(), &jti)
                    .map_err(|e| (None, e.to_string()))?;
                self.obs.count("tokens.minted");
                Ok((token, Some(Instant::now() + sc.auth.lifetime)))
            }
            TokenSource::File { .. } => {
                let tokens = self
                    .cfg
                    .tokens
                    .as_ref()
                    .map(|t| t.as_slice())
                    .unwrap_or_default();
                if tokens.is_empty() {
                    return Err((None, "no tokens loaded".into()));
                }
                let t = tokens[s.index % tokens.len()].clone();
                let exp = crate::auth::unverified_exp(t.expose()).map(instant_of);
                if exp.is_some_and(|e| e <= Instant::now()) {
                    // A file token cannot be renewed: counted, and the reconnect
                    // policy's attempt limit ends the retries.
                    self.obs.count("tokens.expired");
                    return Err((None, "the token from the file has expired".into()));
                }
                self.obs.count("tokens.from_file");
                Ok((t, exp))
            }
            TokenSource::Login {
                url,
                body,
                token_field,
            } => self.login(s, url, body, token_field).await,
        }
    }

    /// A token from the login endpoint: its answer read bounded, a refusal
    /// named with its URL, status and a redacted excerpt of the answer.
    async fn login(
        &self,
        s: &mut UserSession,
        url: &str,
        body: &serde_json::Value,
        token_field: &str,
    ) -> Result<(Secret, Option<Instant>), (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        let vars = s.vars();
        let body = template::render(body, &vars);
        let url = if url.starts_with('/') {
            format!("{}{url}", self.http_base)
        } else {
            self.tls.present(url)
        };
        let t0 = Instant::now();
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .timeout(sc.target.connect_timeout)
            .send()
            .await
            .map_err(|e| {
                self.obs.count("tokens.login_failed");
                let why = super::tls::http_failure(&e).unwrap_or_else(|| http_error(&e));
                (None, format!("login request to {url} failed: {why}"))
            })?;
        let status = resp.status().as_u16();
        let redirect = unfollowed_redirect(
            &self.obs,
            status,
            resp.headers().get(reqwest::header::LOCATION),
        );
        let (bytes, more) = super::body::read_capped(resp, super::body::SMALL_BODY_MAX)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        self.obs.sample("login", t0.elapsed().as_micros() as u64);
        if !(200..300).contains(&status) {
            self.obs.count(format!("tokens.login_failed.{status}"));
            let why = redirect.unwrap_or_else(|| format!("HTTP {status}"));
            return Err((
                Some(status),
                format!(
                    "login at {url} answered {why}{}",
                    super::body::excerpt(&text)
                ),
            ));
        }
        if more {
            self.obs.count(crate::names::TOKENS_LOGIN_TOO_LARGE);
            return Err((
                None,
                format!(
                    "the login answer at {url} is larger than {} MiB",
                    super::body::SMALL_BODY_MAX >> 20
                ),
            ));
        }
        let Some(token) = at_path(&v, token_field).and_then(|t| t.as_str()) else {
            self.obs.count("tokens.login_failed.no_token");
            return Err((None, format!("the login answer has no `{token_field}`")));
        };
        self.obs.count("tokens.login");
        // Trust the token's own `exp`, not `expires_in` (they disagree on the platform).
        let exp = crate::auth::unverified_exp(token).map(instant_of);
        Ok((Secret::new(token), exp))
    }

    /// Closes the socket normally and reconnects with a fresh token when the
    /// socket's token is within `auth.refresh_margin` of its expiry and no
    /// run is in flight (`tokens.refreshed`). Returns whether it refreshed.
    pub(super) async fn refresh_if_due(&self, s: &mut UserSession) -> bool {
        if !self.refresh_due(s) {
            return false;
        }
        Self::closing_by_choice(s);
        s.refreshed_at = Some(Instant::now());
        self.close_socket(s, "token refresh").await;
        self.obs.count("tokens.refreshed");
        true
    }

    /// Whether [`Shared::refresh_if_due`] would close the socket now: a
    /// socket with no run in flight whose token is due.
    pub(super) fn refresh_due(&self, s: &UserSession) -> bool {
        s.pending.is_none()
            && s.ws.is_some()
            && self.refresh_at(s).is_some_and(|at| Instant::now() >= at)
    }

    /// When the socket's token is due for a refresh.
    /// `None` when refreshing cannot help: it is off, the token comes from a
    /// tokens file (the same token would come back), or the token was due
    /// already when the last refresh got it (a login endpoint issuing tokens
    /// that live less than the margin): reopening again would only loop. Such
    /// a token is used until the server refuses it.
    pub(super) fn refresh_at(&self, s: &UserSession) -> Option<Instant> {
        if !self.cfg.scenario.auth.refresh
            || matches!(
                self.cfg.scenario.auth.source,
                crate::scenario::TokenSource::File { .. }
            )
        {
            return None;
        }
        let margin = self.cfg.scenario.auth.refresh_margin;
        let due = s
            .token_exp
            .map(|exp| exp.checked_sub(margin).unwrap_or(exp))?;
        match s.refreshed_at {
            Some(at) if due <= at => None,
            _ => Some(due),
        }
    }

    /// A valid token for the user's REST calls (minted again near expiry).
    pub(super) async fn rest_token(&self, s: &mut UserSession) -> Result<Secret, String> {
        if !matches!(
            self.cfg.scenario.auth.source,
            crate::scenario::TokenSource::Mint
        ) {
            return self.socket_token(s).await.map(|t| t.0).map_err(|e| e.1);
        }
        let margin = self.cfg.scenario.auth.refresh_margin;
        if let Some((t, exp)) = &s.rest_token {
            if Instant::now() + margin < *exp {
                return Ok(t.clone());
            }
        }
        s.tokens += 1;
        let jti = format!(
            "{}-rest-{}-{:08x}",
            s.user_id,
            s.tokens,
            s.rng.random::<u32>()
        );
        let token = self
            .minter
            .mint(&s.user_id, SystemTime::now(), &jti)
            .map_err(|e| e.to_string())?;
        s.rest_token = Some((
            token.clone(),
            Instant::now() + self.cfg.scenario.auth.lifetime,
        ));
        Ok(token)
    }
}
