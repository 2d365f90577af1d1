//! The engine: goose schedules closed-model users; each user holds one socket in
//! its session data and walks the scenario's journey, emitting observations.
//!
//! This is the only module that names goose types. Every journey step is a goose
//! transaction (so goose's own report lists them) and every WebSocket step is
//! also recorded into goose with `record_custom_request_duration`; chatload's
//! HDR recorders, fed through [`ObsSender`], stay the source of truth.
//!
//! goose 0.19 facts this relies on: metrics reset after ramp-up only outside a
//! test plan (we always give it a plan or iterations, and our recorders never
//! reset); users stop only between transactions, so every await has a
//! deadline and every pause (think, back-off, repeat) also ends on the run's stop handle,
//! which the plan's end, a signal, `abort_on_fail` and a capacity search's
//! failing step request; its coordinated-omission mitigation mislabels custom
//! requests (off); one reqwest client per user by default (we share one).
//!
//! A run in flight lives in the user's session from its `send` to its
//! terminal event ([`session::ActiveRun`]); whatever step reads the socket
//! meanwhile (a think, a thread switch, a REST call, a heartbeat) feeds it,
//! and the run is counted ok or failed the moment it ends. A run still in
//! flight when the user stops is awaited to its deadline, never lost.

pub mod connect;
pub mod open;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::SinkExt;
use goose::client::GooseClientBuilder;
use goose::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{Minter, Secret};
use crate::metrics::ObsSender;
use crate::names;
use crate::protocol::template::{self, Vars};
use crate::scenario::{Step, StepKind};
use connect::{ConnectFailure, Ws};
use session::{
    ActiveRun, PendingRun, Read, ReadCtx, ReadyOutcome, RunOutcome, RunReport, Want, Who,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("goose refused the configuration: {0}")]
    Goose(String),
}

impl From<GooseError> for EngineError {
    fn from(e: GooseError) -> Self {
        EngineError::Goose(format!("{e:?}"))
    }
}

/// Everything the engine needs, resolved from a scenario and the command line.
#[derive(Clone)]
pub struct EngineConfig {
    pub scenario: crate::scenario::Scenario,
    /// The WebSocket URL to load.
    pub target_url: String,
    pub secret: Secret,
    pub seed: u64,
    /// Where goose writes its own HTML report (None: no goose report).
    pub goose_report: Option<PathBuf>,
    /// This process's slice of the users (`0/1` when not sharded).
    pub shard: crate::plan::Shard,
    /// Set to the instant the load plan's clock starts (goose starting the
    /// closed model's users; the open model's pool ready and pacing).
    pub started: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
    /// Tokens read from `auth.tokens_file` (file source only).
    pub tokens: Option<Arc<Vec<Secret>>>,
    /// The run's stop request (see [`stop_early`]).
    pub stop: StopHandle,
}

/// Shared by every user.
struct Shared {
    cfg: EngineConfig,
    /// The scenario's profile for the whole process: a run in flight keeps
    /// its checker (which borrows the rules) across steps. Leaked once per
    /// `execute`, a few KiB.
    profile: &'static crate::protocol::Profile,
    /// How long a run still in flight when its user stops is awaited: the
    /// longest `await` timeout of the scenario.
    drain_timeout: Duration,
    /// The load plan's length (`None`: iterations, or the open model, whose
    /// pacer ends the plan).
    plan_total: Option<Duration>,
    minter: Minter,
    obs: ObsSender,
    /// One HTTP client for every user (tickets, REST): clones share one pool.
    http: reqwest::Client,
    /// The open model's session pool (None in the closed model).
    pool: Option<Arc<open::Pool>>,
    /// `http(s)://host:port` of the target, for its REST API.
    http_base: String,
    /// The next data row for `select = "round_robin"` (shared by every user).
    next_row: std::sync::atomic::AtomicUsize,
    /// Some journey reads thread histories, so sent messages are remembered.
    checks_history: bool,
}

/// What the user sent in one thread, for the history check.
#[derive(Debug, Default)]
struct ThreadLog {
    /// Hashes of the user's newest messages in runs that completed (8 bytes
    /// each, at most [`SENT_KEPT_PER_THREAD`], so a long soak's memory stays
    /// flat), each with whether its loss was already counted.
    sent: std::collections::VecDeque<(u64, bool)>,
}

/// A message's text as a 64-bit hash, for the history check.
fn content_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Whether any step (inside repeat blocks too) reads a thread's messages.
fn reads_history(steps: &[Step]) -> bool {
    steps.iter().any(|s| match &s.kind {
        StepKind::History | StepKind::SwitchThread { .. } => true,
        StepKind::Repeat { steps, .. } => reads_history(steps),
        _ => false,
    })
}

/// Messages remembered per thread for the history check: each history read
/// checks the newest this many (older ones were checked by earlier reads).
const SENT_KEPT_PER_THREAD: usize = 500;
/// A history read pages through at most this many messages.
const HISTORY_PAGE: usize = 1000;
const HISTORY_PAGES_MAX: usize = 100;

/// Socket phase names used in `closes_by_phase.<phase>.<code>`.
const PHASE_BEFORE_READY: &str = "before_ready";
const PHASE_FIRST_EXCHANGE: &str = "first_exchange";
const PHASE_DURING_RUN: &str = "during_run";
const PHASE_IDLE: &str = "idle";

/// One simulated user's state, kept in goose's session data.
struct UserSession {
    user_id: String,
    ws: Option<Ws>,
    ever_connected: bool,
    /// Runs started on the current socket (0 means the next one is its first exchange).
    runs_on_socket: u64,
    runs: u64,
    iteration: u64,
    thread_id: String,
    /// The run in flight, from its `send` to its end.
    pending: Option<ActiveRun>,
    /// A run that ended outside its `await` step (already counted), for
    /// that step's goose record.
    finished: Option<RunReport>,
    /// Ids of this socket's finished runs, newest last (bounded).
    earlier_runs: Vec<String>,
    rng: ChaCha8Rng,
    tokens: u64,
    /// When the current socket's token expires.
    token_exp: Option<Instant>,
    /// Open model: the intended start of the arrival being served; its first
    /// run's latencies are measured from it.
    intended: Option<Instant>,
    /// Threads this user created, oldest first (`switch_thread` cycles through them).
    threads: Vec<String>,
    /// What this user sent per thread.
    logs: std::collections::HashMap<String, ThreadLog>,
    /// The thread and content of the run in flight (stored once it completes).
    in_flight: Option<(String, String)>,
    /// A token for REST calls and when it expires.
    rest_token: Option<(Secret, Instant)>,
    /// Global user index (picks the user's line of a tokens file).
    index: usize,
    /// The current token (file and login sources) and its expiry.
    token: Option<(Secret, Option<Instant>)>,
    /// Failed connects in a row (drives the back-off). A socket that is lost
    /// before it proved itself counts as one more; see [`Engine::lost_socket`].
    failures: u32,
    /// When the current socket became ready, while it has not yet proved
    /// itself (see [`Engine::proved`]); `None` once it has.
    unproven_since: Option<Instant>,
    /// The loss of the socket was already counted in `failures` (it had not
    /// proved itself), so `lost` adds no attempt of its own.
    loss_counted: bool,
    /// When the next connect attempt may go, and its back-off (drawn once).
    retry_at: Option<(Instant, Duration)>,
    /// When the socket last closed for a token refresh: a token that was due
    /// for one already then (it lives less than the margin) gets none.
    refreshed_at: Option<Instant>,
    /// When the socket dropped unexpectedly (or the first connect failed).
    dropped_at: Option<Instant>,
    /// The reconnect policy's attempts ran out and no new token can help
    /// (a tokens file): the user connects no more this run.
    parked: bool,
    /// The attempts of a series ran out: the next series waits until then.
    cooldown_until: Option<Instant>,
    /// Upgrades refused with 403 in a row (the second renews the token: a
    /// 403 may be a load balancer's refusal, or the token's).
    refused_403: u32,
    /// The socket was lost (not closed by the client) since the last ready.
    lost: bool,
    /// When this socket last sent a heartbeat ping, and the one awaiting its reply.
    last_ping: Option<Instant>,
    ping_pending: Option<Instant>,
    /// Variables captured by `http` steps, for later templates.
    captured: std::collections::BTreeMap<String, String>,
    /// The data row this user took last (`[data]`).
    row: Option<usize>,
}

/// An epoch-seconds expiry as an `Instant` (in the past when already expired).
fn instant_of(exp_epoch: u64) -> Instant {
    let now = crate::auth::epoch_secs(SystemTime::now());
    match exp_epoch.checked_sub(now) {
        Some(left) => Instant::now() + Duration::from_secs(left),
        None => Instant::now()
            .checked_sub(Duration::from_secs(now - exp_epoch))
            .unwrap_or_else(Instant::now),
    }
}

impl UserSession {
    /// Template values outside a run: the user, its thread and iteration.
    fn vars(&self) -> Vars<'_> {
        Vars {
            user: &self.user_id,
            thread: &self.thread_id,
            run: "",
            prompt: "",
            iteration: self.iteration,
            extra: None,
        }
    }
}

#[derive(Clone)]
struct SessionHandle(Arc<Mutex<UserSession>>);

/// goose's session data must be `Clone`; the socket lives behind the handle.
fn session(user: &GooseUser) -> Option<SessionHandle> {
    user.get_session_data::<SessionHandle>().cloned()
}

impl Shared {
    fn new_session(&self, local: usize) -> UserSession {
        // Shard i of n runs global users i, i + n, i + 2n, ...: disjoint identities,
        // and the same user (id, seed, prompts) as in a single-process run.
        let index = self.cfg.shard.global_user(local);
        // A token from a file names its user (`sub`); otherwise the user is
        // `<prefix><index>`.
        let from_file = self.cfg.tokens.as_ref().and_then(|t| {
            let tok = t.get(index % t.len().max(1))?;
            crate::auth::unverified_claims(tok.expose())?
                .get("sub")?
                .as_str()
                .map(str::to_string)
        });
        let user_id = from_file
            .unwrap_or_else(|| format!("{}{:05}", self.cfg.scenario.auth.user_prefix, index));
        UserSession {
            thread_id: format!("thread-{user_id}-1"),
            user_id,
            ws: None,
            ever_connected: false,
            runs_on_socket: 0,
            runs: 0,
            iteration: 0,
            pending: None,
            finished: None,
            earlier_runs: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(
                self.cfg.seed ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            ),
            tokens: 0,
            token_exp: None,
            intended: None,
            threads: Vec::new(),
            logs: Default::default(),
            in_flight: None,
            rest_token: None,
            index,
            token: None,
            failures: 0,
            unproven_since: None,
            loss_counted: false,
            retry_at: None,
            refreshed_at: None,
            dropped_at: None,
            parked: false,
            cooldown_until: None,
            refused_403: 0,
            lost: false,
            last_ping: None,
            ping_pending: None,
            captured: Default::default(),
            row: None,
        }
    }

    /// Opens the socket and waits for ready, following the reconnect policy:
    /// after failed attempts (or an unexpected close) it waits an exponential,
    /// jittered back-off first. After `reconnect.attempts` failures in a row
    /// the user gives up (`reconnects.gave_up`) and waits the policy's `max`
    /// before a new series, so a target that refuses upgrades for a while
    /// gets its users back; a token that cannot be renewed (a tokens file)
    /// parks the user instead (`users.parked`). Every wait ends on the run's stop handle.
    /// Returns the goose status and error on failure.
    async fn connect(&self, s: &mut UserSession) -> Result<Duration, (Option<u16>, String)> {
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
    fn retry_at(&self, s: &mut UserSession) -> Option<Instant> {
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
    fn proved(s: &mut UserSession) {
        s.failures = 0;
        s.unproven_since = None;
    }

    /// One more failed attempt in a row. After `reconnect.attempts` the user
    /// gives up (`reconnects.gave_up`) and waits the policy's `max` before a
    /// new series, or, when its token is the problem and cannot be renewed (a
    /// tokens file), parks.
    fn failed_attempt(&self, s: &mut UserSession, token_refused: bool) {
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

    /// The token for the next socket and its expiry: minted fresh, or the
    /// current one from the file or the login endpoint while it is not about
    /// to expire.
    async fn socket_token(
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
    async fn acquire_token(
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
            } => {
                let vars = s.vars();
                let body = template::render(body, &vars);
                let url = if url.starts_with('/') {
                    format!("{}{url}", self.http_base)
                } else {
                    url.clone()
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
                        (None, format!("login request failed: {e}"))
                    })?;
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
                self.obs.sample("login", t0.elapsed().as_micros() as u64);
                if !(200..300).contains(&status) {
                    self.obs.count(format!("tokens.login_failed.{status}"));
                    return Err((Some(status), format!("login answered HTTP {status}")));
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
        }
    }

    /// Opens the socket once and waits for ready.
    async fn connect_once(&self, s: &mut UserSession) -> Result<Duration, (Option<u16>, String)> {
        let sc = &self.cfg.scenario;
        self.obs.count(names::CONN_ATTEMPTED);
        if s.ever_connected {
            self.obs.count(names::RECONNECTS);
        }
        let (token, token_exp) = self.socket_token(s).await?;
        let started = Instant::now();
        let mut url = self.cfg.target_url.clone();
        if sc.auth.present.contains(&crate::auth::Presentation::Ticket) {
            let t0 = Instant::now();
            match connect::ticket_url(&self.http, &url, &token, sc.target.connect_timeout).await {
                Ok(u) => {
                    self.obs
                        .sample("rest_ticket", t0.elapsed().as_micros() as u64);
                    self.obs.count("tickets.issued");
                    url = u;
                }
                Err(f) => {
                    let status = f.status();
                    self.obs.count(match status {
                        Some(st) => format!("tickets.rejected.{st}"),
                        None => "tickets.failed".to_string(),
                    });
                    return Err((status, format!("ticket request failed: {f:?}")));
                }
            }
        }
        let (mut ws, took) =
            match connect::open(&url, &token, &sc.auth.present, sc.target.connect_timeout).await {
                Ok(ok) => ok,
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
                    return Err((f.status(), msg));
                }
            };
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

    /// Reads the socket until `deadline` (already past: only what has
    /// arrived), or the wanted frame, or the stop when `stop` is set. A run
    /// that ends on the way is settled and reading goes on; a close is
    /// settled too (the run in flight fails with its code). Returns what
    /// ended the read.
    async fn read(
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
                ..
            } = s;
            let Some(ws) = ws.as_mut() else {
                return Read::Closed(session::ABNORMAL_CLOSE);
            };
            let cx = ReadCtx {
                profile: self.profile,
                user_id,
                obs: &self.obs,
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
                Read::Closed(code) => {
                    self.closed(s, code);
                    return Read::Closed(code);
                }
                other => return other,
            }
        }
    }

    /// Reads what arrived while the socket was idle (a close found there is
    /// an idle close, or ends the run in flight).
    async fn drain(&self, s: &mut UserSession) {
        if s.ws.is_some() {
            self.read(s, Want::Nothing, Instant::now(), false).await;
        }
    }

    /// The socket closed under the user: the run in flight (if any) fails
    /// with the code; otherwise it was an idle close.
    fn closed(&self, s: &mut UserSession, code: u16) {
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

    /// Counts a run that ended: ok, or failed by class; a close with its code
    /// and phase; an ok run's message joins the thread's log for the history
    /// check. Returns the report for the `await` step's goose record.
    fn settle(&self, s: &mut UserSession, report: RunReport) -> RunReport {
        let phase = if s.runs_on_socket == 0 {
            PHASE_FIRST_EXCHANGE
        } else {
            PHASE_DURING_RUN
        };
        s.runs_on_socket += 1;
        let in_flight = s.in_flight.take();
        match report.failure_class() {
            None => {
                self.obs.count(names::RUNS_OK);
                Self::proved(s);
                // Set only when a step will check the history.
                if let Some((thread, content)) = in_flight {
                    let log = s.logs.entry(thread).or_default();
                    if log.sent.len() == SENT_KEPT_PER_THREAD {
                        log.sent.pop_front();
                    }
                    log.sent.push_back((content_hash(&content), false));
                }
            }
            Some(class) => self.fail_run(class),
        }
        if let RunOutcome::Closed { code } = report.outcome {
            self.obs.count(names::close_code(code));
            self.obs.count(names::close_phase(phase, code));
            self.lost_socket(s, code);
        }
        report
    }

    /// Takes the data row for the next template: per user its own row, round
    /// robin the next one; captured variables join (and override) its columns.
    /// Borrowed when nothing was captured (no copy per run).
    fn template_extra(
        &self,
        s: &mut UserSession,
        next_row: bool,
    ) -> Option<std::borrow::Cow<'_, std::collections::BTreeMap<String, String>>> {
        let data = self.cfg.scenario.data.as_ref();
        if let Some(d) = data {
            if next_row || s.row.is_none() {
                s.row = Some(match d.select {
                    crate::scenario::DataSelect::PerUser => s.index,
                    crate::scenario::DataSelect::RoundRobin => self
                        .next_row
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                });
            }
        }
        let row = data.zip(s.row).map(|(d, i)| &d.rows[i % d.rows.len()]);
        if s.captured.is_empty() {
            return row.map(std::borrow::Cow::Borrowed);
        }
        let mut m = row.cloned().unwrap_or_default();
        m.extend(s.captured.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(std::borrow::Cow::Owned(m))
    }

    async fn send(
        &self,
        s: &mut UserSession,
        message: &serde_json::Value,
        uses: TemplateUse,
    ) -> Result<Duration, (Option<u16>, String)> {
        self.drain(s).await;
        s.finished = None;
        // The journey starts a run while the last one is still in flight: that
        // one is counted failed, never silently replaced.
        if let Some(run) = s.pending.take() {
            self.settle(s, run.finish(RunOutcome::NotAwaited));
        }
        // A token about to expire is refreshed between runs: the socket closes
        // normally and reconnects with a fresh token, as the server checks
        // tokens when a socket connects.
        self.refresh_if_due(s).await;
        if s.ws.is_none() {
            self.connect(s).await?;
        }
        s.runs += 1;
        let run_id = format!("{}-r{}", s.user_id, s.runs);
        let extra = self.template_extra(s, true);
        let prompts = &self.cfg.scenario.prompts;
        let drawn = s.rng.random::<u64>();
        // A data row's `prompt` column replaces the prompt list.
        let prompt = match extra.as_ref().and_then(|r| r.get("prompt")) {
            Some(p) => p.as_str(),
            None if prompts.is_empty() => "",
            None => prompts[(drawn % prompts.len() as u64) as usize].as_str(),
        };
        let vars = Vars {
            user: &s.user_id,
            thread: &s.thread_id,
            run: &run_id,
            prompt,
            iteration: s.iteration,
            extra: extra.as_deref(),
        };
        let rendered = template::render(message, &vars);
        s.in_flight = if self.checks_history {
            message_in_thread(&rendered)
        } else {
            None
        };
        let text = rendered.to_string();
        let Some(ws) = s.ws.as_mut() else {
            return Err((None, "no socket".into()));
        };
        let t0 = Instant::now();
        // Open model: the first run of an arrival counts from its intended
        // start, so time spent waiting (for a session, a socket) is measured.
        let started = s.intended.take().map_or(t0, |i| i.min(t0));
        self.obs.count(names::RUNS_STARTED);
        self.obs.count_n("bytes.sent", text.len() as u64);
        match ws.send(Message::Text(text.into())).await {
            Ok(()) => {
                let run = PendingRun {
                    run_id: uses.run.then_some(run_id),
                    thread_id: uses.thread.then(|| s.thread_id.clone()),
                    user_id: s.user_id.clone(),
                    started,
                    sent: t0,
                };
                s.pending = Some(ActiveRun::new(run, self.profile));
                Ok(t0.elapsed())
            }
            Err(e) => {
                // The socket was already gone: the run failed before it began.
                s.in_flight = None;
                self.lost_socket(s, session::ABNORMAL_CLOSE);
                self.fail_run("send_error");
                self.obs.count(names::close_code(session::ABNORMAL_CLOSE));
                Err((Some(session::ABNORMAL_CLOSE), format!("send failed: {e}")))
            }
        }
    }

    /// Closes the socket normally and reconnects with a fresh token when the
    /// socket's token is within `auth.refresh_margin` of its expiry and no
    /// run is in flight (`tokens.refreshed`). Returns whether it refreshed.
    async fn refresh_if_due(&self, s: &mut UserSession) -> bool {
        if s.pending.is_some() || s.ws.is_none() {
            return false;
        }
        if self.refresh_at(s).is_none_or(|at| Instant::now() < at) {
            return false;
        }
        Self::closing_by_choice(s);
        s.refreshed_at = Some(Instant::now());
        self.close_socket(s, "token refresh").await;
        self.obs.count("tokens.refreshed");
        true
    }

    /// When the socket's token is due for a refresh.
    /// `None` when refreshing cannot help: it is off, the token comes from a
    /// tokens file (the same token would come back), or the token was due
    /// already when the last refresh got it (a login endpoint issuing tokens
    /// that live less than the margin): reopening again would only loop. Such
    /// a token is used until the server refuses it.
    fn refresh_at(&self, s: &UserSession) -> Option<Instant> {
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

    /// A ready socket ended, for whatever reason (`connections.closed`; open
    /// sockets = `connections.ready` - `connections.closed`).
    fn socket_ended(&self) {
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
    fn lost_socket(&self, s: &mut UserSession, code: u16) {
        if s.ws.take().is_some() {
            self.socket_ended();
        }
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
    fn judge_loss(&self, s: &mut UserSession) {
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
    fn closing_by_choice(s: &mut UserSession) {
        s.failures = 0;
        s.unproven_since = None;
    }

    fn fail_run(&self, class: &str) {
        self.obs.count(names::RUNS_FAILED);
        self.obs.count(names::run_failed(class));
    }

    /// The `await` step: the run in flight to its end, or until `timeout`
    /// after it was sent. A run that already ended (during a think, say) is
    /// returned at once; `None` when no run was started.
    async fn await_run(&self, s: &mut UserSession, timeout: Duration) -> Option<RunReport> {
        if let Some(done) = s.finished.take() {
            return Some(done);
        }
        self.follow_run(s, timeout).await
    }

    /// A run still in flight when the user stops (the plan's end, a signal,
    /// the end of an open-model arrival) is awaited to its deadline (the
    /// scenario's longest await timeout after it was sent), then counted.
    async fn finish_pending(&self, s: &mut UserSession) {
        self.follow_run(s, self.drain_timeout).await;
        s.finished = None;
    }

    /// Reads the run in flight to its end, or until `timeout` after it was
    /// sent (a think between send and await may have used all of it: then
    /// only what has arrived is read); a run still going then timed out.
    /// Returns the settled report (`None`: no run in flight).
    async fn follow_run(&self, s: &mut UserSession, timeout: Duration) -> Option<RunReport> {
        let sent = s.pending.as_ref()?.run.sent;
        let deadline = (sent + timeout).max(Instant::now());
        match self.read(s, Want::Run, deadline, false).await {
            Read::RunEnded(report) => Some(report),
            Read::Closed(_) => s.finished.take(),
            _ => {
                let run = s.pending.take()?;
                let events = run.events();
                Some(self.settle(s, run.finish(RunOutcome::TimedOut { events })))
            }
        }
    }
}

/// Which per-run placeholders a message template uses: the ids the client
/// chose are checked on every event; ids it did not choose are adopted.
#[derive(Debug, Clone, Copy, Default)]
struct TemplateUse {
    run: bool,
    thread: bool,
}

impl TemplateUse {
    fn of(message: &serde_json::Value) -> Self {
        let p = template::placeholders(message);
        TemplateUse {
            run: p.iter().any(|x| x == "run"),
            thread: p.iter().any(|x| x == "thread"),
        }
    }
}

/// The thread a sent message names and the text the user typed: the
/// payload's (or the root's) `thread_id`, and its first of `user_request`,
/// `content`, `text`, `message` (what the platform stores).
fn message_in_thread(msg: &serde_json::Value) -> Option<(String, String)> {
    let payload = msg.get("payload").filter(|p| p.is_object()).unwrap_or(msg);
    let thread = payload.get("thread_id")?.as_str()?.to_string();
    let content = ["user_request", "content", "text", "message"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))?
        .to_string();
    Some((thread, content))
}

/// The value at a dotted path (`data.messages`).
fn at_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(v, |v, k| v.get(k))
}

/// What a REST step ended with: status, body and how long the call took,
/// or why there was none.
type RestResult = Result<(u16, serde_json::Value, Duration), String>;

impl Shared {
    /// A valid token for the user's REST calls (minted again near expiry).
    async fn rest_token(&self, s: &mut UserSession) -> Result<Secret, String> {
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

    /// One REST call with the user's Bearer token; counts its status under
    /// `rest.<metric>.<status>` and its latency as `<metric>`.
    async fn rest(
        &self,
        s: &mut UserSession,
        metric: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> RestResult {
        let token = self.rest_token(s).await?;
        let url = format!("{}{path}", self.http_base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(token.expose())
            .timeout(
                self.cfg
                    .scenario
                    .target
                    .connect_timeout
                    .max(Duration::from_secs(10)),
            );
        if let Some(b) = body {
            req = req.json(&b);
        }
        let t0 = Instant::now();
        let call = async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, bytes))
        };
        // A run in flight keeps being read (and timed) during the call.
        let answer = if s.pending.is_some() && s.ws.is_some() {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    biased;
                    r = &mut call => break r,
                    r = self.read(s, Want::Nothing, far_future(), false) => {
                        if let Read::Closed(_) = r {
                            break call.await;
                        }
                    }
                }
            }
        } else {
            call.await
        };
        let took = t0.elapsed();
        let (status, bytes) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.obs.count(format!("rest.{metric}.failed"));
                return Err(format!("{metric}: request failed: {e}"));
            }
        };
        self.obs.sample(metric, took.as_micros() as u64);
        self.obs.count(format!("rest.{metric}.{status}"));
        self.obs.count_n("bytes.received", bytes.len() as u64);
        let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, v, took))
    }

    /// Checks a thread's messages: every message this user sent there (in a
    /// completed run) must be stored (`persistence_miss` counts each missing
    /// one once), and none may be another user's (`cross_user_history`).
    fn check_history(&self, s: &mut UserSession, thread: &str, messages: &[serde_json::Value]) {
        let mut found: std::collections::HashMap<u64, usize> = Default::default();
        for m in messages {
            let owner = m.get("user_id").and_then(|u| u.as_str());
            if let Some(other) = owner.filter(|o| *o != s.user_id) {
                let v = crate::protocol::validate::Violation::new(
                    "cross_user_history",
                    "history",
                    format!(
                        "the history of thread {thread} read by {} holds a message of {other}",
                        s.user_id
                    ),
                );
                let who = Who {
                    user_id: &s.user_id,
                    run_id: None,
                };
                session::note_violation(&self.obs, &v, &m.to_string(), &who);
                continue;
            }
            if m.get("role")
                .and_then(|r| r.as_str())
                .is_none_or(|r| r == "user")
            {
                if let Some(c) = m.get("content").and_then(|c| c.as_str()) {
                    *found.entry(content_hash(c)).or_default() += 1;
                }
            }
        }
        let Some(log) = s.logs.get_mut(thread) else {
            return;
        };
        // Each remembered message must be found; one missing is counted the
        // first time it is found missing.
        let mut newly_missing = 0u64;
        for (hash, reported) in log.sent.iter_mut() {
            match found.get_mut(hash) {
                Some(n) if *n > 0 => *n -= 1,
                _ if !*reported => {
                    *reported = true;
                    newly_missing += 1;
                }
                _ => {}
            }
        }
        self.obs
            .count_n("history.messages_checked", log.sent.len() as u64);
        if newly_missing > 0 {
            self.obs.count_n("persistence_miss", newly_missing);
        }
    }

    /// A `think`: idles until `until` (or the stop) while keeping the user's
    /// socket as a real client would. It reads what arrives (a run in flight
    /// is timed and judged as its events come; pings are answered); with a
    /// profile heartbeat it pings every `hb.every` (`heartbeats.sent`, and
    /// `ws_ping` to the reply) and closes a socket whose ping went unanswered
    /// for `hb.timeout` (`heartbeats.missed`); a socket whose token is due
    /// is closed and reopened with a fresh one (`tokens.refreshed`); a socket
    /// the server dropped is reconnected under the back-off policy.
    async fn idle(&self, s: &mut UserSession, until: Instant) -> bool {
        let hb = self.profile.heartbeat.as_ref();
        let mut reconnected = false;
        loop {
            let now = Instant::now();
            if now >= until || self.cfg.stop.is_set() {
                return reconnected;
            }
            if s.ws.is_none() {
                // Only a socket lost under the user comes back by itself; one
                // the journey closed (or never opened) waits for its step.
                // A back-off or cooldown that outlasts the think is left to
                // the next step, so the think keeps its length.
                let later = s.lost
                    && !s.parked
                    && match s.cooldown_until {
                        Some(c) => c > until,
                        None => self.retry_at(s).is_some_and(|at| at > until),
                    };
                if !s.lost || s.parked || later {
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
            let wake = wake.max(now + Duration::from_millis(1));
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
                Read::Closed(_) | Read::TimedOut | Read::ServerError(_) | Read::RunEnded(_) => {}
            }
        }
    }

    /// Closes the socket normally (the client's choice), if it is open.
    async fn close_socket(&self, s: &mut UserSession, reason: &str) {
        if let Some(mut ws) = s.ws.take() {
            self.socket_ended();
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: reason.to_string().into(),
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
        }
    }

    /// The journey closes the socket (`disconnect`, `reconnect`): a run still
    /// in flight is awaited first, then the socket closes normally.
    async fn disconnect(&self, s: &mut UserSession, reason: &str) {
        self.drain(s).await;
        self.finish_pending(s).await;
        if s.ws.is_some() {
            self.obs.count("connections.closed_by_client");
            Self::closing_by_choice(s);
            self.close_socket(s, reason).await;
        }
    }

    /// Switches the socket to the user's next thread and waits for the
    /// profile's confirmation; checks the messages it carries.
    async fn switch_thread(
        &self,
        s: &mut UserSession,
        timeout: Duration,
    ) -> Result<Duration, (Option<u16>, String)> {
        self.drain(s).await;
        if s.ws.is_none() {
            self.connect(s).await?;
        }
        let mut pool = s.threads.clone();
        if !pool.contains(&s.thread_id) {
            pool.insert(0, s.thread_id.clone());
        }
        let at = pool.iter().position(|t| *t == s.thread_id).unwrap_or(0);
        let target = pool[(at + 1) % pool.len()].clone();
        let profile = self.profile;
        let vars = Vars {
            user: &s.user_id,
            thread: &target,
            run: "",
            prompt: "",
            iteration: s.iteration,
            extra: None,
        };
        let text = template::render(&profile.switch_thread.message, &vars).to_string();
        let t0 = Instant::now();
        let Some(ws) = s.ws.as_mut() else {
            return Err((None, "no socket".into()));
        };
        self.obs.count_n("bytes.sent", text.len() as u64);
        if let Err(e) = ws.send(Message::Text(text.into())).await {
            self.closed(s, session::ABNORMAL_CLOSE);
            return Err((Some(session::ABNORMAL_CLOSE), format!("send failed: {e}")));
        }
        let Some(reply) = profile.switch_thread.reply.clone() else {
            s.thread_id = target;
            self.obs.count("threads.switched");
            return Ok(t0.elapsed());
        };
        let out = self
            .read(s, Want::Frame(&reply), Instant::now() + timeout, false)
            .await;
        match out {
            Read::Got(v) => {
                let took = t0.elapsed();
                self.obs.sample("thread_switch", took.as_micros() as u64);
                self.obs.count("threads.switched");
                Self::proved(s);
                let path = profile.switch_thread.messages_path.clone();
                let messages = at_path(&v, &path)
                    .and_then(|m| m.as_array())
                    .cloned()
                    .unwrap_or_default();
                s.thread_id = target.clone();
                self.check_history(s, &target, &messages);
                Ok(took)
            }
            Read::ServerError(code) => {
                self.obs.count(format!("threads.switch_failed.{code}"));
                Err((None, format!("switch to {target} refused: {code}")))
            }
            Read::Closed(code) => Err((
                Some(code),
                format!("closed with {code} while switching threads"),
            )),
            Read::TimedOut | Read::Stopped | Read::RunEnded(_) => {
                self.obs.count("threads.switch_timeout");
                Err((
                    None,
                    format!(
                        "no `{reply}` within {}",
                        humantime::format_duration(timeout)
                    ),
                ))
            }
        }
    }
}

/// Far enough ahead to mean "until stopped".
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 86_400)
}

fn goose_error(msg: &str) -> String {
    // goose keys errors by text; keep them short and stable.
    msg.chars().take(120).collect()
}

/// The default name of a step's kind: a step named otherwise has a metric of
/// its own besides the shared one.
fn default_name(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Connect => "connect",
        StepKind::Await { .. } => "await",
        StepKind::SwitchThread { .. } => "thread_switch",
        _ => "",
    }
}

/// Runs one step. A step without a latency metric of its own (`send`,
/// `think`, `disconnect`, `reconnect`) has its whole duration recorded as
/// `step.<name>`; the others already have theirs (`ws_connect`/`ws_ready`,
/// `ttfe`/`ttc`, the REST step's name, `thread_switch`), and a `connect`,
/// `await` or `switch_thread` step given a name of its own also records that
/// latency under its name (so two awaits can be told apart). A repeat block's
/// steps are recorded one by one. (Every step also shows in goose's report.)
/// A second histogram for every step cost a 2-minute soak about 4% of RSS
/// growth, hence only for steps named on purpose. Once the user is asked to
/// stop, steps do nothing: a run in flight is awaited when the user stops.
async fn run_step(shared: &Shared, step: &Step, user: &mut GooseUser) -> TransactionResult {
    if shared.cfg.stop.is_set() {
        // goose stops users between transactions, once its controller runs: a
        // step that returned at once would spin the user through no-op
        // transactions without yielding, starving that controller (and
        // flooding goose's metrics). Regression: a capacity stop grew to 9 GB.
        tokio::time::sleep(STOPPING_PAUSE).await;
        return Ok(());
    }
    let t0 = Instant::now();
    let r = run_step_inner(shared, step, user).await;
    if matches!(
        step.kind,
        StepKind::Send { .. } | StepKind::Think { .. } | StepKind::Disconnect | StepKind::Reconnect
    ) {
        shared.obs.sample(
            &format!("step.{}", step.name),
            t0.elapsed().as_micros() as u64,
        );
    }
    r
}

/// Records `took` under the step's own name when it has one (see [`run_step`]).
fn own_metric(shared: &Shared, step: &Step, took: Duration) {
    let default = default_name(&step.kind);
    if !default.is_empty() && step.name != default {
        shared.obs.sample(&step.name, took.as_micros() as u64);
    }
}

async fn run_step_inner(shared: &Shared, step: &Step, user: &mut GooseUser) -> TransactionResult {
    let Some(handle) = session(user) else {
        return Ok(());
    };
    let mut s = handle.0.lock().await;
    match &step.kind {
        StepKind::Connect => {
            if s.ws.is_some() {
                return Ok(());
            }
            let r = shared.connect(&mut s).await;
            drop(s);
            if let Ok(took) = &r {
                own_metric(shared, step, *took);
            }
            record_ws(user, &step.name, r, Some(101)).await
        }
        StepKind::Send { message } => {
            let r = shared.send(&mut s, message, TemplateUse::of(message)).await;
            drop(s);
            record_ws(user, &step.name, r, None).await
        }
        StepKind::Await { timeout } => {
            let r = shared.await_run(&mut s, *timeout).await;
            drop(s);
            let Some(report) = r else {
                return Ok(());
            };
            let status = match report.outcome {
                RunOutcome::Closed { code } => Some(code),
                _ => None,
            };
            let err = report.failure_class();
            if err.is_none() {
                own_metric(shared, step, report.took);
            }
            user.record_custom_request_duration(
                "WS",
                &step.name,
                report.took,
                err.is_none(),
                status,
                err,
            )
            .await
        }
        StepKind::Think { think } => {
            let duration = think.sample(&mut s.rng);
            let intended = Instant::now() + duration;
            let reconnected = shared.idle(&mut s, intended).await;
            drop(s);
            // The generator's own lateness: how far past its intended time the
            // user woke (`idle` returns at that time, or on a stop). A think
            // that reopened the socket may end late by the handshake: the
            // target's time, not the generator's.
            if !shared.cfg.stop.is_set() && !reconnected {
                shared
                    .obs
                    .sample(names::SEND_LAG, intended.elapsed().as_micros() as u64);
            }
            Ok(())
        }
        StepKind::CreateThread { title } => {
            let body = serde_json::json!({
                "title": title.clone().unwrap_or_else(|| format!("chatload {}", s.iteration)),
                "metadata": { "source": "chatload" },
            });
            let r = shared
                .rest(
                    &mut s,
                    &step.name,
                    reqwest::Method::POST,
                    "/api/threads",
                    Some(body),
                )
                .await;
            let r = match r {
                Ok((200..=299, v, took)) => match v.get("id").and_then(|i| i.as_str()) {
                    Some(id) => {
                        s.threads.push(id.to_string());
                        s.thread_id = id.to_string();
                        shared.obs.count("threads.created");
                        Ok(took)
                    }
                    None => Err((None, "the created thread has no `id`".to_string())),
                },
                Ok((st, _, _)) => Err((Some(st), format!("create_thread: HTTP {st}"))),
                Err(e) => Err((None, e)),
            };
            drop(s);
            record_rest(user, &step.name, r).await
        }
        StepKind::ListThreads => {
            let r = shared
                .rest(
                    &mut s,
                    &step.name,
                    reqwest::Method::GET,
                    "/api/threads?limit=100",
                    None,
                )
                .await;
            drop(s);
            let r = match r {
                Ok((200..=299, v, took)) if v.is_array() => Ok(took),
                Ok((200..=299, _, _)) => Err((None, "list_threads: not a list".to_string())),
                Ok((st, _, _)) => Err((Some(st), format!("list_threads: HTTP {st}"))),
                Err(e) => Err((None, e)),
            };
            record_rest(user, &step.name, r).await
        }
        StepKind::History => {
            let r = history(shared, &mut s, &step.name).await;
            drop(s);
            record_rest(user, &step.name, r).await
        }
        StepKind::SwitchThread { timeout } => {
            let r = shared.switch_thread(&mut s, *timeout).await;
            drop(s);
            if let Ok(took) = &r {
                own_metric(shared, step, *took);
            }
            record_ws(user, &step.name, r, None).await
        }
        StepKind::Disconnect => {
            shared.disconnect(&mut s, "journey disconnect").await;
            Ok(())
        }
        StepKind::Reconnect => {
            shared.disconnect(&mut s, "journey reconnect").await;
            let r = shared.connect(&mut s).await;
            drop(s);
            record_ws(user, &step.name, r, Some(101)).await
        }
        StepKind::Http {
            method,
            path,
            body,
            expect,
            capture,
        } => {
            // The same variables as a `send`: the user's data row (the one its
            // last run took), captured fields, the user, thread and iteration.
            let extra = shared.template_extra(&mut s, false);
            let vars = Vars {
                user: &s.user_id,
                thread: &s.thread_id,
                run: "",
                prompt: extra
                    .as_ref()
                    .and_then(|r| r.get("prompt"))
                    .map_or("", String::as_str),
                iteration: s.iteration,
                extra: extra.as_deref(),
            };
            let path = match template::render(&serde_json::Value::String(path.clone()), &vars) {
                serde_json::Value::String(p) => p,
                _ => path.clone(),
            };
            let body = body.as_ref().map(|b| template::render(b, &vars));
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let r = shared.rest(&mut s, &step.name, m, &path, body).await;
            let r = match r {
                Ok((st, v, took)) if expect.contains(&st) => {
                    let mut missing = Vec::new();
                    for (var, p) in capture {
                        match at_path(&v, p) {
                            Some(serde_json::Value::String(x)) => {
                                s.captured.insert(var.clone(), x.clone());
                            }
                            Some(x) if !x.is_null() => {
                                s.captured.insert(var.clone(), x.to_string());
                            }
                            _ => missing.push(p.clone()),
                        }
                    }
                    if missing.is_empty() {
                        Ok(took)
                    } else {
                        shared
                            .obs
                            .count(format!("rest.{}.capture_missing", step.name));
                        Err((
                            Some(st),
                            format!("{}: no `{}` in the answer", step.name, missing.join("`, `")),
                        ))
                    }
                }
                Ok((st, _, _)) => Err((
                    Some(st),
                    format!("{}: HTTP {st}, expected {expect:?}", step.name),
                )),
                Err(e) => Err((None, e)),
            };
            drop(s);
            record_rest(user, &step.name, r).await
        }
        StepKind::Repeat { times, for_, steps } => {
            drop(s);
            let until = for_.map(|d| Instant::now() + d);
            let mut round = 0u64;
            loop {
                if shared.cfg.stop.is_set()
                    || times.is_some_and(|n| round >= n)
                    || until.is_some_and(|u| Instant::now() >= u)
                {
                    break;
                }
                for inner in steps {
                    // A failed inner step is recorded; the block goes on, as a journey does.
                    let _ = Box::pin(run_step(shared, inner, user)).await;
                }
                round += 1;
            }
            Ok(())
        }
    }
}

/// The `history` step: pages through the current thread's messages and
/// checks them against what this user sent there.
async fn history(
    shared: &Shared,
    s: &mut UserSession,
    metric: &str,
) -> Result<Duration, (Option<u16>, String)> {
    let thread = s.thread_id.clone();
    let mut messages = Vec::new();
    let mut took = Duration::ZERO;
    for page in 0..HISTORY_PAGES_MAX {
        let path = format!(
            "/api/threads/{thread}/messages?limit={HISTORY_PAGE}&offset={}",
            page * HISTORY_PAGE
        );
        match shared
            .rest(s, metric, reqwest::Method::GET, &path, None)
            .await
        {
            Ok((200..=299, v, t)) => {
                took += t;
                let got = v
                    .get("messages")
                    .and_then(|m| m.as_array())
                    .cloned()
                    .unwrap_or_default();
                let total = v.get("total").and_then(|t| t.as_u64());
                let n = got.len();
                messages.extend(got);
                let more = total.map_or(n == HISTORY_PAGE, |t| (messages.len() as u64) < t);
                if n == 0 || !more {
                    break;
                }
            }
            // A thread the server never stored (all its messages lost) is 404:
            // every message sent there is missing.
            Ok((404, _, _)) if page == 0 => {
                shared.check_history(s, &thread, &[]);
                return Err((Some(404), "history: HTTP 404".to_string()));
            }
            Ok((st, _, _)) => return Err((Some(st), format!("history: HTTP {st}"))),
            Err(e) => return Err((None, e)),
        }
    }
    shared.check_history(s, &thread, &messages);
    Ok(took)
}

/// Records a WebSocket step in goose's report: its time and `ok_status`, or
/// its failure's status and message.
async fn record_ws(
    user: &mut GooseUser,
    name: &str,
    r: Result<Duration, (Option<u16>, String)>,
    ok_status: Option<u16>,
) -> TransactionResult {
    match r {
        Ok(took) => {
            user.record_custom_request_duration("WS", name, took, true, ok_status, None)
                .await
        }
        Err((status, msg)) => {
            let e = goose_error(&msg);
            user.record_custom_request_duration("WS", name, Duration::ZERO, false, status, Some(&e))
                .await
        }
    }
}

/// Records a REST step in goose's report with the call's real time.
async fn record_rest(
    user: &mut GooseUser,
    name: &str,
    r: Result<Duration, (Option<u16>, String)>,
) -> TransactionResult {
    match r {
        Ok(took) => {
            user.record_custom_request_duration("REST", name, took, true, Some(200), None)
                .await
        }
        Err((status, msg)) => {
            let e = goose_error(&msg);
            user.record_custom_request_duration(
                "REST",
                name,
                Duration::ZERO,
                false,
                status,
                Some(&e),
            )
            .await
        }
    }
}

/// Asks every user to stop after its current step (goose's kill switch):
/// thinks, back-offs and repeat blocks end, later steps do nothing, and runs
/// in flight are awaited to their deadline. Used by stop signals,
/// `abort_on_fail` and a capacity search's failing step.
pub fn stop_early(stop: &StopHandle, reason: &str) {
    stop.request();
    goose::trigger_killswitch(reason);
}

/// The run's stop request, made by `run/` (one per run, no static): set by
/// [`stop_early`] and when the load plan's time is up. The open model's
/// pacer issues no more arrivals, and every pause ends.
pub type StopHandle = Arc<session::StopSignal>;

/// How long a step waits, once the users are asked to stop, for goose to stop
/// its user (see [`run_step`]).
const STOPPING_PAUSE: Duration = Duration::from_millis(50);

/// Longest wait for the open model's pool to start before pacing begins.
const POOL_START_LIMIT: Duration = Duration::from_secs(60);

/// Open model: after the rate plan ends, journeys in flight get the longest
/// await timeout plus this to finish before they are stopped (k6's
/// `gracefulStop`).
const OPEN_GRACE: Duration = Duration::from_secs(30);

/// The open model's goose plan holds the pool this much past the rate plan;
/// the engine ends it (goose's kill switch) once the last journey is done.
const POOL_SLACK: Duration = Duration::from_secs(3600);

/// Runs the scenario's users on goose until the load plan ends.
pub async fn execute(cfg: EngineConfig, obs: ObsSender) -> Result<(), EngineError> {
    let sc = &cfg.scenario;
    let minter = Minter::new(&cfg.secret, sc.auth.claims.clone(), sc.auth.lifetime);
    let plan = sc.workload.plan.shard(cfg.shard);
    let journeys = sc.journeys.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| EngineError::Goose(format!("cannot build the HTTP client: {e}")))?;
    let pool = sc.workload.open.as_ref().map(|m| {
        Arc::new(open::Pool::new(
            cfg.shard.share(m.max_users) as usize,
            cfg.stop.clone(),
        ))
    });
    let http_base = {
        let mut u = url::Url::parse(&cfg.target_url)
            .map_err(|e| EngineError::Goose(format!("bad target URL: {e}")))?;
        let scheme = if u.scheme() == "wss" { "https" } else { "http" };
        u.set_path("");
        u.set_query(None);
        let mut b = u.to_string().replacen(u.scheme(), scheme, 1);
        while b.ends_with('/') {
            b.pop();
        }
        b
    };
    let drain_timeout = journeys
        .iter()
        .flat_map(|j| await_timeouts(&j.steps))
        .max()
        .unwrap_or(Duration::from_secs(30));
    let plan_total = (pool.is_none() && plan.iterations.is_none()).then(|| plan.total());
    let shared = Arc::new(Shared {
        profile: Box::leak(Box::new(sc.profile.clone())),
        drain_timeout,
        plan_total,
        cfg: cfg.clone(),
        minter,
        obs,
        http,
        pool: pool.clone(),
        http_base,
        next_row: std::sync::atomic::AtomicUsize::new(0),
        checks_history: sc.journeys.iter().any(|j| reads_history(&j.steps)),
    });

    // A journey's `start` makes the user's session (and in the open model
    // opens the socket when that journey uses one).
    let start = |uses_socket: bool| {
        let shared = shared.clone();
        Transaction::new(Arc::new(move |user: &mut GooseUser| {
            let shared = shared.clone();
            Box::pin(async move {
                let mut s = shared.new_session(user.weighted_users_index);
                if let Some(pool) = &shared.pool {
                    // Pre-allocated sessions: a pool user whose journey uses
                    // the socket opens it before pacing starts, so no
                    // arrival's latency holds a connect it did not ask for.
                    // (A failure is counted; its first arrival tries again.)
                    if uses_socket {
                        let _ = shared.connect(&mut s).await;
                    }
                    user.set_session_data(SessionHandle(Arc::new(Mutex::new(s))));
                    open::join(pool);
                } else {
                    user.set_session_data(SessionHandle(Arc::new(Mutex::new(s))));
                }
                Ok(())
            })
        }))
        .set_name("start")
        .set_on_start()
    };
    let iteration_mark = {
        Transaction::new(Arc::new(move |user: &mut GooseUser| {
            Box::pin(async move {
                if let Some(h) = session(user) {
                    h.0.lock().await.iteration += 1;
                }
                Ok(())
            })
        }))
        .set_name("iteration")
    };
    let stop = {
        let shared = shared.clone();
        Transaction::new(Arc::new(move |user: &mut GooseUser| {
            let shared = shared.clone();
            Box::pin(async move {
                if let Some(h) = session(user) {
                    let mut s = h.0.lock().await;
                    // What arrived since the last step (an idle close, late
                    // events) still counts, and a run in flight is awaited.
                    shared.drain(&mut s).await;
                    shared.finish_pending(&mut s).await;
                    if s.ws.is_some() {
                        shared.obs.count("connections.closed_by_client");
                        shared.close_socket(&mut s, "load test done").await;
                    }
                }
                Ok(())
            })
        }))
        .set_name("stop")
        .set_on_stop()
    };

    // One goose scenario per journey, weighted: goose gives each its share of
    // the users. Exact counts are split across shards so that every shard's
    // parts add up to each count (goose gives weights equal to counts exactly).
    let weights: Vec<usize> = match journeys
        .iter()
        .map(|j| j.count())
        .collect::<Option<Vec<_>>>()
    {
        Some(counts) => cfg
            .shard
            .journey_counts(&counts)
            .into_iter()
            .map(|c| c as usize)
            .collect(),
        None => journeys.iter().map(|j| j.weight).collect(),
    };
    let mut scenarios = Vec::new();
    for (journey, weight) in journeys.into_iter().zip(weights) {
        if weight == 0 {
            // No user of this shard walks it (goose refuses a weight of 0).
            continue;
        }
        let mut scenario = goose::goose::Scenario::new(&journey.name)
            .set_weight(weight)?
            .register_transaction(start(uses_socket(&journey.steps)));
        if pool.is_some() {
            // Open model: one transaction serves one arrival, running every step
            // (each still recorded under its own name).
            let shared = shared.clone();
            let steps = Arc::new(journey.steps.clone());
            let t = Transaction::new(Arc::new(move |user: &mut GooseUser| {
                let shared = shared.clone();
                let steps = steps.clone();
                Box::pin(async move { serve_arrival(&shared, &steps, user).await })
            }))
            .set_name("arrival");
            scenario = scenario.register_transaction(t);
        } else {
            scenario = scenario.register_transaction(iteration_mark.clone());
            for step in journey.steps {
                let shared = shared.clone();
                let name = step.name.clone();
                let step = Arc::new(step);
                let t = Transaction::new(Arc::new(move |user: &mut GooseUser| {
                    let shared = shared.clone();
                    let step = step.clone();
                    Box::pin(async move { run_step(&shared, &step, user).await })
                }))
                .set_name(&name);
                scenario = scenario.register_transaction(t);
            }
        }
        scenarios.push(scenario.register_transaction(stop.clone()));
    }

    let http_base = cfg.target_url.replacen("ws", "http", 1);
    let mut attack =
        GooseAttack::initialize_with_config(goose::config::GooseConfiguration::default())?
            .set_client_builder_without_cookies(
                GooseClientBuilder::new()
                    .without_cookies()
                    .timeout(Duration::from_secs(30)),
            )?;
    for scenario in scenarios {
        attack = attack.register_scenario(scenario);
    }
    attack = *attack.set_default(GooseDefault::Host, http_base.as_str())?;
    attack = *attack.set_default(
        GooseDefault::CoordinatedOmissionMitigation,
        GooseCoordinatedOmissionMitigation::Disabled,
    )?;
    attack = *attack.set_default(GooseDefault::NoPrintMetrics, true)?;
    attack = *attack.set_default(GooseDefault::Quiet, 1usize)?;
    attack = *attack.set_default(GooseDefault::NoTelnet, true)?;
    match plan.iterations {
        _ if pool.is_some() => {
            let size = pool.as_ref().map_or(0, |p| p.size);
            let hold = plan.total() + POOL_SLACK;
            attack = *attack.set_default(
                GooseDefault::TestPlan,
                format!("{size},0;{size},{};0,0", hold.as_secs()).as_str(),
            )?;
        }
        Some(n) => {
            let users = plan.peak_users() as usize;
            attack = *attack.set_default(GooseDefault::Users, users)?;
            attack = *attack.set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?;
            attack = *attack.set_default(GooseDefault::Iterations, n as usize)?;
        }
        None => {
            attack =
                *attack.set_default(GooseDefault::TestPlan, plan.goose_test_plan().as_str())?;
            // goose 0.19 never resets metrics under a test plan (and refuses
            // `no_reset_metrics` beside one); chatload's own recorders are never reset.
        }
    }
    if let Some(p) = &cfg.goose_report {
        attack = *attack.set_default(GooseDefault::ReportFile, p.to_string_lossy().as_ref())?;
    }
    let pacing = match (&pool, &sc.workload.open) {
        (Some(pool), Some(model)) => {
            let pacer = crate::plan::Pacer::new(
                model.rate.shard(cfg.shard),
                model.arrivals,
                cfg.seed,
                cfg.shard,
            );
            let (pool, obs, started) = (pool.clone(), shared.obs.clone(), cfg.started.clone());
            let stop = cfg.stop.clone();
            let when_full = model.when_full;
            let total = model.rate.total();
            let grace = drain_timeout + OPEN_GRACE;
            Some(tokio::spawn(async move {
                open::wait_for_pool(&pool, POOL_START_LIMIT).await;
                let epoch = tokio::time::Instant::now();
                let _ = started.send(Some(epoch.into_std()));
                open::pace(pacer, when_full, pool.clone(), obs.clone(), epoch).await;
                // The plan's clock runs out before the end (a capacity search
                // judges its last step on a whole window); then, as k6's
                // gracefulStop, every arrival already issued (a `queue`
                // backlog too) gets `grace` to finish its journey.
                if stop.sleep_until((epoch + total).into_std()).await {
                    open::drain(&pool, grace).await;
                }
                // Past the grace (or on a stop): journeys stop after their
                // current step, their runs in flight are awaited, and arrivals
                // no session took never started.
                stop.request();
                let left = pool.rx.drain().count() as u64;
                if left > 0 {
                    obs.count_n(names::STARTS_DROPPED, left);
                }
                open::drain(&pool, drain_timeout + Duration::from_secs(5)).await;
                goose::trigger_killswitch(
                    "open model: the rate plan ended and every journey finished",
                );
            }))
        }
        _ => {
            let now = Instant::now();
            let _ = cfg.started.send(Some(now));
            // A timed plan ends on time: users in a long think or repeat block
            // stop with it instead of holding goose's end.
            let stop = cfg.stop.clone();
            plan_total.map(|total| {
                tokio::spawn(async move {
                    if stop.sleep_until(now + total).await {
                        stop_early(&stop, "the load plan ended");
                    }
                })
            })
        }
    };
    let result = attack.execute().await;
    if let Some(p) = pacing {
        if let Some(pool) = &pool {
            pool.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = p.await;
        } else {
            // The plan timer of a run that ended first (iterations, a stop).
            p.abort();
        }
    }
    // Arrivals no session took before the users stopped were not started.
    if let Some(pool) = &pool {
        let left = pool.rx.drain().count() as u64;
        if left > 0 {
            shared.obs.count_n(names::STARTS_DROPPED, left);
        }
    }
    result?;
    Ok(())
}

/// Open model: waits for an arrival (or the stop); runs the whole journey
/// for it, step by step until the stop, awaits a run left in flight, and
/// then frees its pool slot. One goose transaction is one arrival, so
/// goose's report counts arrivals, not idle polls.
async fn serve_arrival(
    shared: &Shared,
    journey: &[Step],
    user: &mut GooseUser,
) -> TransactionResult {
    let Some(pool) = &shared.pool else {
        return Ok(());
    };
    let Some(arrival) = pool.next(&*shared.cfg.stop).await else {
        // Stopping: let goose stop this user without spinning through
        // transactions until its kill switch lands.
        tokio::time::sleep(STOPPING_PAUSE).await;
        return Ok(());
    };
    let intended = arrival.intended.into_std();
    shared
        .obs
        .sample(names::SEND_LAG, intended.elapsed().as_micros() as u64);
    if let Some(h) = session(user) {
        let mut s = h.0.lock().await;
        s.iteration += 1;
        s.intended = Some(intended);
    }
    for step in journey {
        // A failed step is recorded by run_step; the journey goes on, as goose
        // goes on to the next transaction in the closed model.
        if shared.cfg.stop.is_set() {
            break;
        }
        let _ = run_step(shared, step, user).await;
    }
    if let Some(h) = session(user) {
        let mut s = h.0.lock().await;
        s.intended = None;
        shared.finish_pending(&mut s).await;
    }
    drop(arrival);
    Ok(())
}

/// Every `await` timeout in the steps (inside repeat blocks too).
fn await_timeouts(steps: &[Step]) -> Vec<Duration> {
    steps
        .iter()
        .flat_map(|s| match &s.kind {
            StepKind::Await { timeout } => vec![*timeout],
            StepKind::Repeat { steps, .. } => await_timeouts(steps),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether any step (inside repeat blocks too) uses the socket.
fn uses_socket(steps: &[Step]) -> bool {
    steps.iter().any(|s| match &s.kind {
        StepKind::Connect
        | StepKind::Send { .. }
        | StepKind::SwitchThread { .. }
        | StepKind::Reconnect => true,
        StepKind::Repeat { steps, .. } => uses_socket(steps),
        _ => false,
    })
}
