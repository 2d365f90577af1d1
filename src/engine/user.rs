//! One simulated user's state: [`UserSession`] (kept in goose's session data
//! behind a [`SessionHandle`]), how a user is made ([`Shared::new_session`]),
//! its data row for templates, and the accounting of its runs (settled,
//! awaited, finished when the user stops).
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use super::connect::Ws;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::session::{ActiveRun, Read, ReadCtx, RunOutcome, RunReport, Want};
use super::shared::{Shared, PHASE_DURING_RUN, PHASE_FIRST_EXCHANGE};
use crate::auth::Secret;
use crate::metrics::RunStep;
use crate::names;
use crate::protocol::template::Vars;

/// What the user sent in one thread, for the history check.
#[derive(Debug, Default)]
pub(super) struct ThreadLog {
    /// Hashes of the user's newest messages in runs that completed (8 bytes
    /// each, at most [`SENT_KEPT_PER_THREAD`], so a long soak's memory stays
    /// flat), each with whether its loss was already counted.
    pub(super) sent: std::collections::VecDeque<(u64, bool)>,
}

/// A message's text as a 64-bit hash, for the history check.
pub(super) fn content_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Messages remembered per thread for the history check: each history read
/// checks the newest this many (older ones were checked by earlier reads).
pub(super) const SENT_KEPT_PER_THREAD: usize = 500;

/// Remembers a message the user stored in `thread` (a completed run's, or
/// an `http` step's with `persist`), for the next history read (bounded).
pub(super) fn remember_sent(s: &mut UserSession, thread: String, content: &str) {
    let log = s.logs.entry(thread).or_default();
    if log.sent.len() == SENT_KEPT_PER_THREAD {
        log.sent.pop_front();
    }
    log.sent.push_back((content_hash(content), false));
}

/// One simulated user's state, kept in goose's session data.
pub(super) struct UserSession {
    pub(super) user_id: String,
    /// Who the server knows this user as (its token's `sub`; the user id
    /// until a token says otherwise): its events must carry this id.
    pub(super) identity: String,
    pub(super) ws: Option<Ws>,
    /// The kernel receive times of `ws`'s reads (`None`: user-space times).
    pub(super) rx: Option<std::sync::Arc<super::stamp::WireClock>>,
    pub(super) ever_connected: bool,
    /// Runs started on the current socket (0 means the next one is its first exchange).
    pub(super) runs_on_socket: u64,
    pub(super) runs: u64,
    pub(super) iteration: u64,
    pub(super) thread_id: String,
    /// The run in flight, from its `send` to its end. Boxed, as is
    /// `finished`: an idle user holds neither, and a session's size is
    /// memory per idle socket.
    pub(super) pending: Option<Box<ActiveRun>>,
    /// A run that ended outside its `await` step (already counted), for
    /// that step's goose record.
    pub(super) finished: Option<Box<RunReport>>,
    /// The last run of this socket that ended ok, not yet counted in
    /// `runs.ok` (see [`Shared::settle`]).
    pub(super) held: Option<HeldRun>,
    /// Ids of this socket's finished runs, newest last (bounded).
    pub(super) earlier_runs: Vec<String>,
    /// The current socket's flood limit (`flood.rs`).
    pub(super) flood: super::flood::FloodGate,
    pub(super) rng: ChaCha8Rng,
    pub(super) tokens: u64,
    /// When the current socket's token expires.
    pub(super) token_exp: Option<Instant>,
    /// Open model: the intended start of the arrival being served; its first
    /// run's latencies are measured from it.
    pub(super) intended: Option<Instant>,
    /// When the next send falls due (`send_lag`): the end of the step
    /// before it, or a think's intended end; `None`: not measured.
    pub(super) send_due: Option<Instant>,
    /// When the socket last became ready.
    pub(super) ready_at: Option<Instant>,
    /// Threads this user created, oldest first (`switch_thread` cycles through them).
    pub(super) threads: Vec<String>,
    /// What this user sent per thread.
    pub(super) logs: std::collections::HashMap<String, ThreadLog>,
    /// The thread and content of the run in flight (stored once it completes).
    pub(super) in_flight: Option<(String, String)>,
    /// A token for REST calls and when it expires.
    pub(super) rest_token: Option<(Secret, Instant)>,
    /// Global user index (picks the user's line of a tokens file).
    pub(super) index: usize,
    /// The current token (file and login sources) and its expiry.
    pub(super) token: Option<(Secret, Option<Instant>)>,
    /// Failed connects in a row (drives the back-off). A socket that is lost
    /// before it proved itself counts as one more; see [`Engine::lost_socket`].
    pub(super) failures: u32,
    /// When the current socket became ready, while it has not yet proved
    /// itself (see [`Engine::proved`]); `None` once it has.
    pub(super) unproven_since: Option<Instant>,
    /// The loss of the socket was already counted in `failures` (it had not
    /// proved itself), so `lost` adds no attempt of its own.
    pub(super) loss_counted: bool,
    /// When the next connect attempt may go, and its back-off (drawn once).
    pub(super) retry_at: Option<(Instant, Duration)>,
    /// When the socket last closed for a token refresh: a token that was due
    /// for one already then (it lives less than the margin) gets none.
    pub(super) refreshed_at: Option<Instant>,
    /// When the socket dropped unexpectedly (or the first connect failed).
    pub(super) dropped_at: Option<Instant>,
    /// The reconnect policy's attempts ran out and no new token can help
    /// (a tokens file): the user connects no more this run.
    pub(super) parked: bool,
    /// The attempts of a series ran out: the next series waits until then.
    pub(super) cooldown_until: Option<Instant>,
    /// Upgrades refused with 403 in a row (the second renews the token: a
    /// 403 may be a load balancer's refusal, or the token's).
    pub(super) refused_403: u32,
    /// The last connect attempt ended in a recognised auth failure.
    pub(super) token_refused: bool,
    /// An auth frame arrived on the current socket (see `ReadCtx`).
    pub(super) auth_refused: std::sync::atomic::AtomicBool,
    /// The socket was lost (not closed by the client) since the last ready.
    pub(super) lost: bool,
    /// When this socket last sent a heartbeat ping, and the one awaiting its reply.
    pub(super) last_ping: Option<Instant>,
    pub(super) ping_pending: Option<Instant>,
    /// Variables captured by `http` steps, for later templates.
    pub(super) captured: std::collections::BTreeMap<String, String>,
    /// What a failed step of this iteration did not produce (`thread` of a
    /// `create_thread`, an `http` step's capture variables): steps using it
    /// are skipped until the iteration ends or a step produces it.
    pub(super) unavailable: std::collections::BTreeSet<String>,
    /// The data row this user took last (`[data]`).
    pub(super) row: Option<usize>,
}

impl UserSession {
    /// Template values outside a run: the user, its thread and iteration.
    pub(super) fn vars(&self) -> Vars<'_> {
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

/// A run that ended ok whose `runs.ok` is not counted yet.
#[derive(Debug)]
pub(super) struct HeldRun {
    pub(super) run_id: Option<String>,
    /// Its report, whose deferred `ttc` and `event_gap_max` are recorded
    /// when it is counted.
    pub(super) report: RunReport,
}

/// The locked session a step works on.
pub(super) type Guard<'a> = tokio::sync::MutexGuard<'a, UserSession>;

impl UserSession {
    /// A socket became ready: it is the user's now, with the clock of its
    /// receive times. The server checks a token when a socket connects, so
    /// the socket lives on this token until `token_exp`.
    pub(super) fn socket_ready(
        &mut self,
        ws: Ws,
        rx: Option<std::sync::Arc<super::stamp::WireClock>>,
        token_exp: Option<Instant>,
    ) {
        let now = Instant::now();
        self.ws = Some(ws);
        self.rx = rx;
        self.ready_at = Some(now);
        self.token_exp = token_exp;
        self.last_ping = Some(now);
        self.ping_pending = None;
        self.runs_on_socket = 0;
        self.earlier_runs.clear();
        *self.auth_refused.get_mut() = false;
    }
}

#[derive(Clone)]
pub(super) struct SessionHandle(pub(super) Arc<Mutex<UserSession>>);

/// goose's session data must be `Clone`; the socket lives behind the handle.
pub(super) fn session(user: &GooseUser) -> Option<SessionHandle> {
    user.get_session_data::<SessionHandle>().cloned()
}

impl Shared {
    pub(super) fn new_session(&self, local: usize) -> UserSession {
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
            identity: user_id.clone(),
            user_id,
            ws: None,
            rx: None,
            ever_connected: false,
            runs_on_socket: 0,
            runs: 0,
            iteration: 0,
            pending: None,
            finished: None,
            held: None,
            earlier_runs: Vec::new(),
            flood: Default::default(),
            rng: ChaCha8Rng::seed_from_u64(
                self.cfg.seed ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
            ),
            tokens: 0,
            token_exp: None,
            intended: None,
            send_due: None,
            ready_at: None,
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
            token_refused: false,
            auth_refused: Default::default(),
            lost: false,
            last_ping: None,
            ping_pending: None,
            captured: Default::default(),
            unavailable: Default::default(),
            row: None,
        }
    }

    /// Counts a run that ended: failed by class, or ok; a close with its code
    /// and phase; an ok run's message joins the thread's log for the history
    /// check. Returns the report for the `await` step's goose record.
    ///
    /// Every violation fails its run, even one that arrives after the run's
    /// terminal event (a duplicate `agent_completed`, a late event). So an
    /// ok run is *held*: counted in `runs.ok` only when the next run on its
    /// socket settles or the socket ends ([`Shared::release_held`]); until
    /// then a violation of it counts it in `runs.failed.<class>` instead
    /// ([`Shared::fail_held`]). Counting each run once, late, rather than
    /// moving it from ok to failed keeps every counter a sum of increments,
    /// so interval sums and merges still add up, and `runs.ok + runs.failed
    /// == runs.started` holds at the end. A timer ("keep the run open for
    /// N ms") would miss duplicates slower than N and slow every journey.
    pub(super) fn settle(&self, s: &mut UserSession, mut report: RunReport) -> RunReport {
        self.release_held(s);
        super::session::remember_run(&mut s.earlier_runs, report.run_id.as_deref());
        let phase = if s.runs_on_socket == 0 {
            PHASE_FIRST_EXCHANGE
        } else {
            PHASE_DURING_RUN
        };
        s.runs_on_socket += 1;
        let in_flight = s.in_flight.take();
        match report.failure_class() {
            None => {
                s.held = Some(HeldRun {
                    run_id: report.run_id.clone(),
                    report: report.clone(),
                });
                // The held copy records them; the returned one must not.
                report.end_samples = None;
                Self::proved(s);
                // Set only when a step will check the history.
                if let Some((thread, content)) = in_flight {
                    remember_sent(s, thread, &content);
                }
            }
            Some(class) => {
                report.record_end_samples(&self.obs);
                self.fail_run(report.step, class);
                self.raw_run(&s.user_id, &report, Some(class));
            }
        }
        if let RunOutcome::Closed { code } = report.outcome {
            self.obs.count_for(report.step, names::close_code(code));
            self.obs
                .count_for(report.step, names::close_phase(phase, code));
            if s.auth_refused
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                self.token_refused_in(s, phase, Some(code), Some(report.step));
            }
            self.lost_socket(s, code);
        }
        if let RunOutcome::Broken { .. } = report.outcome {
            self.lost_socket(s, super::session::ABNORMAL_CLOSE);
        }
        report
    }

    /// Takes the data row for the next template: per user its own row, round
    /// robin the next one; captured variables join (and override) its columns.
    /// Borrowed when nothing was captured (no copy per run).
    pub(super) fn template_extra(
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

    /// Counts a failed run, in its capacity step.
    pub(super) fn fail_run(&self, step: RunStep, class: &str) {
        self.obs.count_for(step, names::RUNS_FAILED);
        self.obs.count_for(step, names::run_failed(class));
    }

    /// The held ok run (see [`Shared::settle`]) is final: counted ok.
    pub(super) fn release_held(&self, s: &mut UserSession) {
        if let Some(mut h) = s.held.take() {
            h.report.record_end_samples(&self.obs);
            self.obs.count_for(h.report.step, names::RUNS_OK);
            self.raw_run(&s.user_id, &h.report, None);
        }
    }

    /// Closes the socket as a handshake while an ok run is held: sends the
    /// close frame, then reads (and judges) what the server sent until its
    /// own close or the end of the stream, at most 2 s. TCP keeps order, so
    /// a duplicate terminal the server wrote before the socket ended is
    /// seen, however close behind the terminal it came. The socket stays in
    /// the session for [`Shared::close_socket`] to drop.
    pub(super) async fn linger(&self, s: &mut UserSession, frame: CloseFrame) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let Some(ws) = s.ws.as_mut() else {
            return;
        };
        let close = ws.send(Message::Close(Some(frame)));
        if !matches!(
            tokio::time::timeout_at(deadline.into(), close).await,
            Ok(Ok(()))
        ) {
            return;
        }
        loop {
            let UserSession {
                ws,
                identity: user_id,
                pending,
                earlier_runs,
                held,
                auth_refused,
                flood,
                rx,
                ..
            } = &mut *s;
            let (Some(ws), Some(h)) = (ws.as_mut(), held.as_ref()) else {
                return;
            };
            let cx = ReadCtx {
                profile: self.profile,
                user_id,
                obs: &self.obs,
                auth_refused,
                held: Some(h.run_id.as_deref()),
                flood,
                rx: rx.as_deref(),
            };
            let out = super::session::read(
                ws,
                &cx,
                pending,
                earlier_runs,
                Want::Nothing,
                deadline,
                None,
            );
            match out.await {
                Read::Violated(class) => self.fail_held(s, class),
                Read::Broken(w) => return self.broken(s, w),
                Read::RunEnded(_)
                | Read::Got(_)
                | Read::ServerError(_)
                | Read::Closed(_)
                | Read::TimedOut
                | Read::Stopped => return,
            }
        }
    }

    /// A violation of the held ok run arrived: it fails by `class`.
    pub(super) fn fail_held(&self, s: &mut UserSession, class: &str) {
        if let Some(mut h) = s.held.take() {
            h.report.record_end_samples(&self.obs);
            self.fail_run(h.report.step, class);
            self.raw_run(&s.user_id, &h.report, Some(class));
        }
    }

    /// The `await` step: the run in flight to its end, or until `timeout`
    /// after it was sent. A run that already ended (during a think, say) is
    /// returned at once; `None` when no run was started.
    pub(super) async fn await_run(
        &self,
        s: &mut UserSession,
        timeout: Duration,
    ) -> Option<RunReport> {
        if let Some(done) = s.finished.take() {
            return Some(*done);
        }
        self.follow_run(s, timeout).await
    }

    /// A run still in flight when the user stops (the plan's end, a signal,
    /// the end of an open-model arrival) is awaited to its deadline (the
    /// scenario's longest await timeout after it was sent), then counted.
    pub(super) async fn finish_pending(&self, s: &mut UserSession) {
        self.follow_run(s, self.drain_timeout).await;
        s.finished = None;
    }

    /// Reads the run in flight to its end, or until `timeout` after it was
    /// sent (a think between send and await may have used all of it: then
    /// only what has arrived is read); a run still going then timed out.
    /// Returns the settled report (`None`: no run in flight).
    pub(super) async fn follow_run(
        &self,
        s: &mut UserSession,
        timeout: Duration,
    ) -> Option<RunReport> {
        let sent = s.pending.as_ref()?.run.sent;
        let deadline = (sent + timeout).max(Instant::now());
        match self.read(s, Want::Run, deadline, false).await {
            Read::RunEnded(report) => Some(report),
            Read::Closed(_) | Read::Broken(_) => s.finished.take().map(|b| *b),
            Read::Got(_)
            | Read::ServerError(_)
            | Read::TimedOut
            | Read::Stopped
            | Read::Violated(_) => {
                let run = s.pending.take()?;
                let events = run.events();
                Some(self.settle(s, run.finish(RunOutcome::TimedOut { events })))
            }
        }
    }
}
