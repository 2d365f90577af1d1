//! The user's socket: connecting under the reconnect policy (back-off,
//! give-up, parking), waiting for ready, reading it whatever the journey is
//! doing, and closing it (keeping it alive while the user thinks is
//! `idle.rs`). How an upgrade is made and how it
//! fails (the handshake half) is [`super::connect`]; the generic frame
//! logic is [`super::session`].
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::time::{Duration, Instant};

use rand::Rng;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::connect::{self, ConnectFailure};
use super::session::{self, Read, ReadCtx, ReadyOutcome, RunOutcome, Want, Who};
use super::shared::{far_future, Shared, PHASE_BEFORE_READY, PHASE_IDLE};
use super::user::UserSession;
use super::wire::{WireClass, WireError};
use crate::auth::Secret;
use crate::names;
use crate::protocol::template;

impl Shared {
    /// Opens the socket and waits for ready, following the reconnect policy:
    /// after failed attempts (or an unexpected close) it waits an exponential,
    /// jittered back-off first. After `reconnect.attempts` failures in a row
    /// the user gives up (`reconnects.gave_up`) and waits the policy's `max`
    /// before a new series, so a target that refuses upgrades for a while
    /// gets its users back; a token that cannot be renewed (a tokens file)
    /// parks the user instead (`users.parked`). Every wait ends on the run's stop handle.
    /// Returns the goose status and error on failure.
    pub(super) async fn connect(
        &self,
        s: &mut UserSession,
    ) -> Result<Duration, (Option<u16>, String)> {
        if s.parked {
            // Nothing this user can do will succeed. In a timed plan it waits
            // for the end (goose would otherwise spin through its steps); with
            // `iterations` or in the open model each step fails at once.
            if self.plan_total.is_some() {
                self.cfg.stop.sleep_until(far_future()).await;
            }
            return Err((
                None,
                "parked: the token cannot be renewed and the server refused it".into(),
            ));
        }
        if let Some(until) = s.cooldown_until.take() {
            if !self.cfg.stop.sleep_until(until).await {
                return Err((None, "stopping".into()));
            }
        }
        if let Some(at) = self.retry_at(s) {
            if !self.cfg.stop.sleep_until(at).await {
                return Err((None, "stopping".into()));
            }
        }
        if let Some((_, wait)) = s.retry_at.take() {
            // Recorded once waited: a back-off drawn in a user's last think
            // and never used is not one.
            self.obs
                .sample("reconnect_backoff", wait.as_micros() as u64);
        }
        match self.connect_once(s).await {
            Ok(took) => {
                // `failures` stays until the socket proves itself: a server
                // that accepts and drops at once must not be retried at the
                // initial back-off forever.
                s.unproven_since = Some(Instant::now());
                s.refused_403 = 0;
                s.lost = false;
                s.loss_counted = false;
                if let Some(at) = s.dropped_at.take() {
                    // From the drop (or first failed attempt) to ready again.
                    self.obs
                        .sample("reconnect_time", at.elapsed().as_micros() as u64);
                }
                Ok(took)
            }
            Err((status, msg)) => {
                s.dropped_at.get_or_insert_with(Instant::now);
                // A refused token is not tried again: the next attempt gets a
                // fresh one. 401 and an auth failure before ready (the
                // profile's `auth_failure`, counted where it was seen) are
                // the token's; a 403 may be a load balancer's, so the token
                // goes on the second.
                let refused_http = match status {
                    Some(401) => true,
                    Some(403) => {
                        s.refused_403 += 1;
                        s.refused_403 >= 2
                    }
                    _ => false,
                };
                if refused_http {
                    self.token_refused(s, PHASE_BEFORE_READY, None);
                }
                let refused_token = std::mem::take(&mut s.token_refused);
                self.failed_attempt(s, refused_token || msg.contains("expired"));
                Err((status, msg))
            }
        }
    }

    /// A recognised auth failure (the profile's `auth_failure`, HTTP 401, a
    /// second 403 in a row): `tokens.rejected` and `tokens.rejected.<phase>`;
    /// its close, if any, also as `closes_auth.<code>` (beside the raw
    /// `closes.<code>`) so the close rates leave it out. The token goes.
    pub(super) fn token_refused(&self, s: &mut UserSession, phase: &str, close: Option<u16>) {
        self.token_refused_in(s, phase, close, None);
    }

    /// [`Shared::token_refused`] during a run: counted in the run's
    /// capacity step (`run`), as the run's close is.
    pub(super) fn token_refused_in(
        &self,
        s: &mut UserSession,
        phase: &str,
        close: Option<u16>,
        run: Option<crate::metrics::RunStep>,
    ) {
        let count = |name: String| match run {
            Some(step) => self.obs.count_for(step, name),
            None => self.obs.count(name),
        };
        count(names::TOKENS_REJECTED.to_string());
        count(names::tokens_rejected(phase));
        for name in close
            .map(|code| names::close_auth(phase, code))
            .into_iter()
            .flatten()
        {
            count(name);
        }
        s.token = None;
        s.refused_403 = 0;
        s.token_refused = true;
    }

    /// When the next attempt may go: the n-th attempt after a drop or a
    /// failure waits the n-th back-off delay, drawn once per attempt (so a
    /// `think` that cannot wait it out leaves the rest to the next step).
    /// `None`: at once.
    pub(super) fn retry_at(&self, s: &mut UserSession) -> Option<Instant> {
        if s.retry_at.is_none() {
            let attempt = s.failures + u32::from(s.lost && !s.loss_counted);
            if attempt > 0 {
                let wait = self.cfg.scenario.reconnect.delay(attempt, s.rng.random());
                s.retry_at = Some((Instant::now() + wait, wait));
            }
        }
        s.retry_at.map(|(at, _)| at)
    }

    /// The socket proved itself (a run ended ok on it, it answered a
    /// heartbeat or confirmed a thread switch): losing it starts the
    /// back-off afresh.
    pub(super) fn proved(s: &mut UserSession) {
        s.failures = 0;
        s.unproven_since = None;
    }

    /// One more failed attempt in a row. After `reconnect.attempts` the user
    /// gives up (`reconnects.gave_up`) and waits the policy's `max` before a
    /// new series, or, when its token is the problem and cannot be renewed (a
    /// tokens file), parks.
    pub(super) fn failed_attempt(&self, s: &mut UserSession, token_refused: bool) {
        s.failures += 1;
        let policy = self.cfg.scenario.reconnect;
        if s.failures >= policy.attempts {
            self.obs.count("reconnects.gave_up");
            s.failures = 0;
            let file = matches!(
                self.cfg.scenario.auth.source,
                crate::scenario::TokenSource::File { .. }
            );
            if file && token_refused {
                s.parked = true;
                self.obs.count(names::USERS_PARKED);
            } else {
                s.cooldown_until = Some(Instant::now() + policy.max);
            }
        }
    }

    /// Opens the socket once and waits for ready.
    pub(super) async fn connect_once(
        &self,
        s: &mut UserSession,
    ) -> Result<Duration, (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        s.token_refused = false;
        self.obs.count(names::CONN_ATTEMPTED);
        if s.ever_connected {
            self.obs.count(names::RECONNECTS);
        }
        let (token, token_exp) = match self.socket_token(s).await {
            Ok(t) => t,
            Err(e) => {
                // The token source's own answer (a login refused, a redirect
                // not followed or refused) is why this attempt failed.
                self.obs.failure("token", e.1.clone());
                return Err(e);
            }
        };
        let started = Instant::now();
        let mut url = self.cfg.target_url.clone();
        if sc.auth.present.contains(&crate::auth::Presentation::Ticket) {
            url = self.ticket(&url, &token).await?;
        }
        let connect::Opened { mut ws, rx, took } = self.upgrade(&url, &token).await?;
        self.obs.count(names::CONN_UPGRADED);
        self.obs.sample(names::WS_CONNECT, took.as_micros() as u64);
        s.ever_connected = true;
        let ready_at = Instant::now();
        let reply = sc.profile.handshake.as_ref().map(|h| {
            let vars = s.vars();
            template::render(&h.reply, &vars).to_string()
        });
        let who = Who {
            user_id: &s.user_id,
            run_id: None,
        };
        let deadline = ready_at + sc.target.ready_timeout;
        s.flood.reset();
        match session::await_ready(
            &mut ws,
            &sc.profile,
            deadline,
            &self.obs,
            reply.as_deref(),
            &who,
            &s.flood,
        )
        .await
        {
            ReadyOutcome::Ready { user_id } => {
                adopt_identity(self, s, user_id, token.expose());
                self.obs.count(names::CONN_READY);
                self.obs
                    .sample(names::WS_READY, ready_at.elapsed().as_micros() as u64);
                s.socket_ready(ws, rx, token_exp);
                Ok(started.elapsed())
            }
            ReadyOutcome::Closed {
                code,
                server_error,
                auth,
            } => {
                self.obs.count(names::close_code(code));
                self.obs.count(names::close_phase(PHASE_BEFORE_READY, code));
                if auth {
                    self.token_refused(s, PHASE_BEFORE_READY, Some(code));
                }
                let why = server_error
                    .map(|e| format!(" after `{e}`"))
                    .unwrap_or_default();
                let msg = format!("closed with {code} before ready{why}");
                self.obs.failure("ready", msg.clone());
                Err((Some(code), msg))
            }
            ReadyOutcome::Broken(w) => {
                s.flood.flush(&self.obs);
                self.obs.count(names::protocol_error(&w.class.name()));
                let msg = format!("{} before ready", w.describe());
                self.obs.failure("ready", msg.clone());
                Err((None, msg))
            }
            ReadyOutcome::TimedOut => {
                self.obs.count(names::CONN_READY_TIMEOUT);
                let _ = ws.close(None).await;
                let msg = "no ready frame before the ready timeout";
                self.obs.failure("ready", msg.to_string());
                Err((None, msg.into()))
            }
        }
    }

    /// Exchanges the token for a single-use ticket; returns the socket URL
    /// carrying it.
    async fn ticket(&self, url: &str, token: &Secret) -> Result<String, (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        let t0 = Instant::now();
        match connect::ticket_url(&self.http, &self.tls, url, token, sc.target.connect_timeout)
            .await
        {
            Ok(u) => {
                self.obs
                    .sample("rest_ticket", t0.elapsed().as_micros() as u64);
                self.obs.count("tickets.issued");
                Ok(u)
            }
            Err(f) => {
                let status = f.status();
                self.obs.count(match status {
                    Some(st) => format!("tickets.rejected.{st}"),
                    None => "tickets.failed".to_string(),
                });
                self.obs.failure("ticket", f.reason());
                Err((status, format!("ticket request failed: {f:?}")))
            }
        }
    }

    /// Connects and upgrades; a failure is counted by its class.
    async fn upgrade(
        &self,
        url: &str,
        token: &Secret,
    ) -> Result<connect::Opened, (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        match connect::open(
            url,
            &self.tls,
            token,
            &sc.auth.present,
            sc.target.connect_timeout,
            sc.generator.kernel_timestamps,
        )
        .await
        {
            Ok(ok) => Ok(ok),
            Err(f) => {
                let counter = match &f {
                    ConnectFailure::Rejected(status, _) => names::conn_rejected(*status),
                    ConnectFailure::Failed(kind, _) => names::conn_failed(kind),
                    ConnectFailure::Protocol(w) => {
                        self.obs.count(names::protocol_error(&w.class.name()));
                        names::conn_failed("protocol")
                    }
                    ConnectFailure::Local(errno, _) => {
                        self.obs.count(names::conn_local_error(errno));
                        names::conn_failed("local")
                    }
                };
                self.obs.count(counter);
                // chatload's own reports show why (not only goose's).
                self.obs.failure("connect", f.reason());
                let msg = match &f {
                    ConnectFailure::Rejected(st, _) => format!("upgrade rejected with HTTP {st}"),
                    ConnectFailure::Failed(kind, detail) => {
                        format!("connect failed ({kind}): {detail}")
                    }
                    ConnectFailure::Protocol(w) => {
                        format!("connect failed (protocol): {}", w.describe())
                    }
                    ConnectFailure::Local(errno, detail) => format!(
                        "connect failed on this machine ({}): {detail}",
                        errno.to_uppercase()
                    ),
                };
                Err((f.status(), msg))
            }
        }
    }

    /// Reads the socket until `deadline` (already past: only what has
    /// arrived), or the wanted frame, or the stop when `stop` is set. A run
    /// that ends on the way is settled and reading goes on; a close is
    /// settled too (the run in flight fails with its code). Returns what
    /// ended the read.
    pub(super) async fn read(
        &self,
        s: &mut UserSession,
        want: Want<'_>,
        deadline: Instant,
        stop: bool,
    ) -> Read {
        loop {
            let UserSession {
                ws,
                identity: user_id,
                pending,
                earlier_runs,
                auth_refused,
                held,
                flood,
                rx,
                ..
            } = s;
            let Some(ws) = ws.as_mut() else {
                return Read::Closed(session::ABNORMAL_CLOSE);
            };
            let cx = ReadCtx {
                profile: self.profile,
                user_id,
                obs: &self.obs,
                auth_refused,
                held: held.as_ref().map(|h| h.run_id.as_deref()),
                flood,
                rx: rx.as_deref(),
            };
            let out = session::read(
                ws,
                &cx,
                pending,
                earlier_runs,
                want,
                deadline,
                stop.then_some(&*self.cfg.stop),
            )
            .await;
            match out {
                Read::RunEnded(report) => {
                    let report = self.settle(s, report);
                    if want == Want::Run {
                        return Read::RunEnded(report);
                    }
                    s.finished = Some(Box::new(report));
                }
                Read::Violated(class) => self.fail_held(s, class),
                Read::Closed(code) => {
                    self.closed(s, code);
                    return Read::Closed(code);
                }
                Read::Broken(w) => {
                    self.broken(s, w.clone());
                    return Read::Broken(w);
                }
                other @ (Read::Got(_) | Read::ServerError(_) | Read::TimedOut | Read::Stopped) => {
                    return other
                }
            }
        }
    }

    /// Reads what arrived while the socket was idle (a close found there is
    /// an idle close, or ends the run in flight).
    pub(super) async fn drain(&self, s: &mut UserSession) {
        if s.ws.is_some() {
            self.read(s, Want::Nothing, Instant::now(), false).await;
        }
    }

    /// The socket closed under the user: the run in flight (if any) fails
    /// with the code; otherwise it was an idle close.
    pub(super) fn closed(&self, s: &mut UserSession, code: u16) {
        match s.pending.take() {
            Some(run) => {
                let report = run.finish(RunOutcome::Closed { code });
                let report = self.settle(s, report);
                s.finished = Some(Box::new(report));
            }
            None => {
                self.obs.count(names::close_code(code));
                self.obs.count(names::close_phase(PHASE_IDLE, code));
                if s.auth_refused
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    self.token_refused(s, PHASE_IDLE, Some(code));
                }
                self.lost_socket(s, code);
            }
        }
    }

    /// A protocol error (or a flood) ended the socket: counted as
    /// `connections.protocol_error.<class>` with its reason among the
    /// failures (stage `protocol`); a flood is also a `violations.flood`
    /// (the default `violations rate == 0` SLO fails the run). The run in
    /// flight fails as `runs.failed.protocol_error`; the socket is lost
    /// (reconnect under the back-off policy).
    pub(super) fn broken(&self, s: &mut UserSession, w: WireError) {
        self.obs.count(names::protocol_error(&w.class.name()));
        self.obs.failure("protocol", w.describe());
        if w.class == WireClass::Flood {
            let v = crate::protocol::validate::Violation::new("flood", "frames", w.reason.clone());
            let run_id = s.pending.as_ref().and_then(|r| r.run.run_id.clone());
            let who = session::Who {
                user_id: &s.user_id,
                run_id: run_id.as_deref(),
            };
            session::note_violation(&self.obs, &v, "<flood>", &who);
        }
        match s.pending.take() {
            Some(run) => {
                let class = w.class.name();
                let report = self.settle(s, run.finish(RunOutcome::Broken { class }));
                s.finished = Some(Box::new(report));
            }
            None => self.lost_socket(s, session::ABNORMAL_CLOSE),
        }
    }

    /// A ready socket ended, for whatever reason (`connections.closed`; open
    /// sockets = `connections.ready` - `connections.closed`).
    pub(super) fn socket_ended(&self) {
        self.obs.count(names::CONN_CLOSED);
    }

    /// The server (or the network) closed the socket: the next connect is a
    /// reconnect under the back-off policy, timed from now. A 1008 on an open
    /// socket means the server stopped accepting its token.
    ///
    /// A socket lost before it proved itself (see [`Engine::proved`]; or up
    /// for `reconnect.min_uptime`) counts as a failed attempt, so
    /// a server that closes sockets right after ready, or on every first
    /// exchange, sees the back-off grow as for refused upgrades (and users
    /// give up after `reconnect.attempts`) instead of a reconnect every
    /// `reconnect.initial`.
    pub(super) fn lost_socket(&self, s: &mut UserSession, code: u16) {
        if s.ws.take().is_some() {
            self.socket_ended();
        }
        self.release_held(s);
        s.lost = true;
        s.dropped_at.get_or_insert_with(Instant::now);
        if code == 1008 {
            self.obs.count("tokens.expired_on_socket");
            s.token = None;
        }
        self.judge_loss(s);
    }

    /// A socket was lost: one that had not proved itself counts as a failed
    /// attempt (see [`Engine::lost_socket`]); one that had starts the
    /// back-off afresh. Never parks the user: the upgrade accepted its
    /// token, and a 1008 on an open socket may be a policy's (a rate limit),
    /// so only a refused upgrade can tell that the token is the problem.
    pub(super) fn judge_loss(&self, s: &mut UserSession) {
        match s.unproven_since.take() {
            Some(at) if at.elapsed() < self.cfg.scenario.reconnect.min_uptime => {
                self.failed_attempt(s, false);
                s.loss_counted = true;
            }
            _ => s.failures = 0,
        }
    }

    /// The socket is closed by the journey's or the token's choice, not the
    /// server's: whatever failed before it, the next connect starts afresh.
    pub(super) fn closing_by_choice(s: &mut UserSession) {
        s.failures = 0;
        s.unproven_since = None;
    }

    /// Closes the socket normally (the client's choice), if it is open.
    /// With an ok run held, what the server sent before the close is read
    /// first ([`Shared::linger`]): a straggler of that run still fails it.
    pub(super) async fn close_socket(&self, s: &mut UserSession, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason.to_string().into(),
        };
        if s.held.is_some() {
            self.linger(s, frame.clone()).await;
        }
        self.release_held(s);
        if let Some(mut ws) = s.ws.take() {
            self.socket_ended();
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
        }
    }

    /// The journey closes the socket (`disconnect`, `reconnect`): a run still
    /// in flight is awaited first, then the socket closes normally.
    pub(super) async fn disconnect(&self, s: &mut UserSession, reason: &str) {
        self.drain(s).await;
        self.finish_pending(s).await;
        if s.ws.is_some() {
            self.obs.count("connections.closed_by_client");
            Self::closing_by_choice(s);
            self.close_socket(s, reason).await;
        }
    }
}

/// The server identity of the user: its token's `sub` when the token names
/// one, else (an opaque token) the ready frame's user id, else its own id;
/// recorded (`identity.rs`) and used for its isolation checks. A minted
/// token's `sub` is chatload's own choice: a ready frame naming someone else
/// is an `identity_mismatch` violation (the server did not take the token's
/// identity, e.g. every user mapped to one account), and isolation is still
/// judged against the token's `sub`, so such a server cannot pass as users
/// that merely share an identity.
fn adopt_identity(shared: &Shared, s: &mut UserSession, ready: Option<String>, token: &str) {
    let sub = super::identity::token_identity(token);
    let minted = matches!(
        shared.cfg.scenario.auth.source,
        crate::scenario::TokenSource::Mint
    );
    if let (true, Some(sub), Some(r)) = (minted, &sub, &ready) {
        if sub != r {
            super::identity::mismatch(&shared.obs, &s.user_id, sub, r);
        }
    }
    let identity = sub.or(ready).unwrap_or_else(|| s.user_id.clone());
    shared.identities.record(&identity, &s.user_id);
    s.identity = identity;
}
