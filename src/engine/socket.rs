//! The user's socket: connecting under the reconnect policy (back-off,
//! give-up, parking), waiting for ready, reading it whatever the journey is
//! doing, keeping it alive while the user thinks (heartbeats, token
//! refresh, reconnects), and closing it. How an upgrade is made and how it
//! fails (the handshake half) is [`super::connect`]; the generic frame
//! logic is [`super::session`].
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rand::Rng;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::connect::{self, ConnectFailure, Ws};
use super::session::{self, Read, ReadCtx, ReadyOutcome, RunOutcome, Want, Who};
use super::shared::{far_future, Shared, PHASE_BEFORE_READY, PHASE_IDLE};
use super::user::UserSession;
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
                // fresh one. 401 and an auth close before ready are the token's;
                // a 403 may be a load balancer's, so the token goes on the second.
                let refused_token = match status {
                    Some(401) | Some(1008) => true,
                    Some(403) => {
                        s.refused_403 += 1;
                        s.refused_403 >= 2
                    }
                    _ => false,
                };
                if refused_token {
                    self.obs.count("tokens.rejected");
                    s.token = None;
                    s.refused_403 = 0;
                }
                self.failed_attempt(s, refused_token || msg.contains("expired"));
                Err((status, msg))
            }
        }
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
        self.obs.count(names::CONN_ATTEMPTED);
        if s.ever_connected {
            self.obs.count(names::RECONNECTS);
        }
        let (token, token_exp) = self.socket_token(s).await?;
        let started = Instant::now();
        let mut url = self.cfg.target_url.clone();
        if sc.auth.present.contains(&crate::auth::Presentation::Ticket) {
            url = self.ticket(&url, &token).await?;
        }
        let (mut ws, took) = self.upgrade(&url, &token).await?;
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
        match session::await_ready(
            &mut ws,
            &sc.profile,
            deadline,
            &self.obs,
            reply.as_deref(),
            &who,
        )
        .await
        {
            ReadyOutcome::Ready => {
                self.obs.count(names::CONN_READY);
                self.obs
                    .sample(names::WS_READY, ready_at.elapsed().as_micros() as u64);
                s.ws = Some(ws);
                // The server checks a token when a socket connects: this
                // socket lives on this token until it expires.
                s.token_exp = token_exp;
                s.last_ping = Some(Instant::now());
                s.ping_pending = None;
                s.runs_on_socket = 0;
                s.earlier_runs.clear();
                Ok(started.elapsed())
            }
            ReadyOutcome::Closed { code, server_error } => {
                self.obs.count(names::close_code(code));
                self.obs.count(names::close_phase(PHASE_BEFORE_READY, code));
                let why = server_error
                    .map(|e| format!(" after `{e}`"))
                    .unwrap_or_default();
                Err((Some(code), format!("closed with {code} before ready{why}")))
            }
            ReadyOutcome::TimedOut => {
                self.obs.count(names::CONN_READY_TIMEOUT);
                let _ = ws.close(None).await;
                Err((None, "no ready frame before the ready timeout".into()))
            }
        }
    }

    /// Exchanges the token for a single-use ticket; returns the socket URL
    /// carrying it.
    async fn ticket(&self, url: &str, token: &Secret) -> Result<String, (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        let t0 = Instant::now();
        match connect::ticket_url(&self.http, url, token, sc.target.connect_timeout).await {
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
                Err((status, format!("ticket request failed: {f:?}")))
            }
        }
    }

    /// Connects and upgrades; a failure is counted by its class.
    async fn upgrade(
        &self,
        url: &str,
        token: &Secret,
    ) -> Result<(Ws, Duration), (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        match connect::open(url, token, &sc.auth.present, sc.target.connect_timeout).await {
            Ok(ok) => Ok(ok),
            Err(f) => {
                let counter = match &f {
                    ConnectFailure::Rejected(status) => names::conn_rejected(*status),
                    ConnectFailure::Failed(kind, _) => names::conn_failed(kind),
                };
                self.obs.count(counter);
                let msg = match &f {
                    ConnectFailure::Rejected(st) => format!("upgrade rejected with HTTP {st}"),
                    ConnectFailure::Failed(kind, detail) => {
                        format!("connect failed ({kind}): {detail}")
                    }
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
                user_id,
                pending,
                earlier_runs,
                held,
                ..
            } = s;
            let Some(ws) = ws.as_mut() else {
                return Read::Closed(session::ABNORMAL_CLOSE);
            };
            let cx = ReadCtx {
                profile: self.profile,
                user_id,
                obs: &self.obs,
                held: held.as_ref().map(|h| h.run_id.as_deref()),
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
                    s.finished = Some(report);
                }
                Read::Violated(class) => self.fail_held(s, class),
                Read::Closed(code) => {
                    self.closed(s, code);
                    return Read::Closed(code);
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
                s.finished = Some(report);
            }
            None => {
                self.obs.count(names::close_code(code));
                self.obs.count(names::close_phase(PHASE_IDLE, code));
                self.lost_socket(s, code);
            }
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

    /// A `think`: idles until `until` (or the stop) while keeping the user's
    /// socket as a real client would. It reads what arrives (a run in flight
    /// is timed and judged as its events come; pings are answered); with a
    /// profile heartbeat it pings every `hb.every` (`heartbeats.sent`, and
    /// `ws_ping` to the reply) and closes a socket whose ping went unanswered
    /// for `hb.timeout` (`heartbeats.missed`); a socket whose token is due
    /// is closed and reopened with a fresh one (`tokens.refreshed`); a socket
    /// the server dropped is reconnected under the back-off policy.
    pub(super) async fn idle(&self, s: &mut UserSession, until: Instant) -> bool {
        let hb = self.profile.heartbeat.as_ref();
        let mut reconnected = false;
        loop {
            let now = Instant::now();
            if now >= until || self.cfg.stop.is_set() {
                return reconnected;
            }
            if s.ws.is_none() {
                if self.waits_out(s, until) {
                    self.cfg.stop.sleep_until(until).await;
                    return reconnected;
                }
                reconnected = true;
                let _ = self.connect(s).await;
                continue;
            }
            if self.refresh_if_due(s).await {
                reconnected = true;
                if self.connect(s).await.is_err() {
                    s.lost = true;
                }
                continue;
            }
            if let Some(hb) = hb {
                let last = *s.last_ping.get_or_insert(now);
                if s.ping_pending.is_none() && now >= last + hb.every {
                    let vars = s.vars();
                    let text = template::render(&hb.message, &vars).to_string();
                    let Some(ws) = s.ws.as_mut() else { continue };
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        self.closed(s, session::ABNORMAL_CLOSE);
                        continue;
                    }
                    self.obs.count("heartbeats.sent");
                    s.last_ping = Some(now);
                    s.ping_pending = Some(now);
                }
                if let Some(sent) = s.ping_pending {
                    if now >= sent + hb.timeout {
                        self.obs.count("heartbeats.missed");
                        s.ping_pending = None;
                        self.obs.count("connections.closed_missed_heartbeat");
                        self.close_socket(s, "missed heartbeats").await;
                        // The server stopped answering: come back as after a drop.
                        s.lost = true;
                        s.dropped_at.get_or_insert_with(Instant::now);
                        self.judge_loss(s);
                        continue;
                    }
                }
            }
            let wake = self.idle_wake(s, hb, until, now);
            let want = match (hb, s.ping_pending) {
                (Some(hb), Some(_)) => Want::Frame(&hb.reply),
                _ => Want::Nothing,
            };
            match self.read(s, want, wake, true).await {
                Read::Got(_) => {
                    if let Some(sent) = s.ping_pending.take() {
                        self.obs
                            .sample("ws_ping", sent.elapsed().as_micros() as u64);
                        self.obs.count("heartbeats.answered");
                        Self::proved(s);
                    }
                }
                Read::Stopped => return reconnected,
                // A close was settled by `read`; the loop reconnects.
                Read::Closed(_)
                | Read::TimedOut
                | Read::ServerError(_)
                | Read::RunEnded(_)
                | Read::Violated(_) => {}
            }
        }
    }

    /// A think without a socket: whether it waits to its end rather than
    /// reconnecting. Only a socket lost under the user comes back by itself; one
    /// the journey closed (or never opened) waits for its step.
    /// A back-off or cooldown that outlasts the think is left to
    /// the next step, so the think keeps its length.
    fn waits_out(&self, s: &mut UserSession, until: Instant) -> bool {
        let later = s.lost
            && !s.parked
            && match s.cooldown_until {
                Some(c) => c > until,
                None => self.retry_at(s).is_some_and(|at| at > until),
            };
        !s.lost || s.parked || later
    }

    /// When an idle read wakes: the think's end, the next heartbeat (or its
    /// reply's deadline), the token's refresh; at least 1 ms from `now`.
    fn idle_wake(
        &self,
        s: &UserSession,
        hb: Option<&crate::protocol::Heartbeat>,
        until: Instant,
        now: Instant,
    ) -> Instant {
        let mut wake = until;
        if let Some(hb) = hb {
            wake = wake.min(match s.ping_pending {
                Some(p) => p + hb.timeout,
                None => s.last_ping.map_or(until, |l| l + hb.every),
            });
        }
        if s.pending.is_none() {
            if let Some(at) = self.refresh_at(s) {
                wake = wake.min(at);
            }
        }
        wake.max(now + Duration::from_millis(1))
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
