//! The journey's steps: one function per step kind, dispatched by an
//! exhaustive match over [`StepKind`] in [`run_step`] (the REST kinds live
//! in [`super::rest`]); the goose records of WebSocket steps; the open
//! model's arrival (a whole journey per goose transaction).
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use goose::prelude::*;
use rand::Rng;
use tokio_tungstenite::tungstenite::Message;

use super::rest;
use super::session::{self, ActiveRun, PendingRun, Read, RunOutcome, Want};
use super::shared::{at_path, goose_error, Shared, STOPPING_PAUSE};
use super::user::{session, Guard, UserSession};
use crate::names;
use crate::protocol::template::{self, Vars};
use crate::scenario::{Step, StepKind};

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
pub(super) async fn run_step(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
) -> TransactionResult {
    if shared.cfg.stop.is_set() {
        // goose stops users between transactions, once its controller runs: a
        // step that returned at once would spin the user through no-op
        // transactions without yielding, starving that controller (and
        // flooding goose's metrics). Regression: a capacity stop grew to 9 GB.
        tokio::time::sleep(STOPPING_PAUSE).await;
        return Ok(());
    }
    let t0 = Instant::now();
    // A think (where an idle user spends its time) runs inline; every other
    // step's larger future is boxed for as long as the step runs, so an
    // idle user's future stays small (memory per idle socket).
    let r = match &step.kind {
        StepKind::Think { think } => think_inner(shared, step, user, think).await,
        _ => Box::pin(run_step_inner(shared, step, user)).await,
    };
    // A send falls due when the step before it ends (a think sets its own
    // intended end): `send_lag` is measured from there.
    if !matches!(step.kind, StepKind::Think { .. } | StepKind::Repeat { .. }) {
        if let Some(h) = session(user) {
            h.0.lock().await.send_due = Some(Instant::now());
        }
    }
    if matches!(
        step.kind,
        StepKind::Send { .. } | StepKind::Think { .. } | StepKind::Disconnect | StepKind::Reconnect
    ) {
        shared.obs.sample(
            names::step_metric(&step.name),
            t0.elapsed().as_micros() as u64,
        );
    }
    r
}

/// Records `took` under the step's own name when it has one (see [`run_step`]).
fn own_metric(shared: &Shared, step: &Step, took: Duration) {
    if let Some(name) = step.named_metric() {
        shared.obs.sample(name.to_string(), took.as_micros() as u64);
    }
}

/// A `think` step (see [`run_step`]): what [`run_step_inner`] does for one.
async fn think_inner(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    think: &crate::scenario::Think,
) -> TransactionResult {
    let Some(handle) = session(user) else {
        return Ok(());
    };
    let mut s = handle.0.lock().await;
    if skipped(shared, step, &mut s) {
        return Ok(());
    }
    think_step(shared, s, think).await
}

async fn run_step_inner(shared: &Shared, step: &Step, user: &mut GooseUser) -> TransactionResult {
    let Some(handle) = session(user) else {
        return Ok(());
    };
    let mut s = handle.0.lock().await;
    if skipped(shared, step, &mut s) {
        return Ok(());
    }
    match &step.kind {
        StepKind::Connect => connect(shared, step, user, s).await,
        StepKind::Send { message } => send(shared, step, user, s, message).await,
        StepKind::Await { timeout } => await_run(shared, step, user, s, *timeout).await,
        StepKind::Think { think } => think_step(shared, s, think).await,
        StepKind::CreateThread { title } => rest::create_thread(shared, step, user, s, title).await,
        StepKind::ListThreads => rest::list_threads(shared, step, user, s).await,
        StepKind::History => rest::history_step(shared, step, user, s).await,
        StepKind::SwitchThread { timeout } => switch_thread(shared, step, user, s, *timeout).await,
        StepKind::Disconnect => disconnect(shared, s).await,
        StepKind::Reconnect => reconnect(shared, step, user, s).await,
        StepKind::Http {
            method,
            path,
            body,
            expect,
            capture,
            persist,
        } => {
            let call = rest::HttpCall {
                method,
                path,
                body,
                expect,
                capture,
                persist,
            };
            rest::http(shared, step, user, s, call).await
        }
        StepKind::Repeat { times, for_, steps } => {
            repeat(shared, user, s, *times, *for_, steps).await
        }
    }
}

/// What a step uses from earlier steps of its iteration: `{{thread}}` (a
/// `history` step reads the current thread) and captured variables, as
/// placeholder names. Steps that use nothing such are never skipped.
fn uses(kind: &StepKind) -> Vec<String> {
    match kind {
        StepKind::Send { message } => template::placeholders(message),
        StepKind::Http { path, body, .. } => {
            let mut v = template::placeholders(&serde_json::Value::String(path.clone()));
            v.extend(body.iter().flat_map(template::placeholders));
            v
        }
        StepKind::History => vec!["thread".to_string()],
        StepKind::Connect
        | StepKind::Await { .. }
        | StepKind::Think { .. }
        | StepKind::CreateThread { .. }
        | StepKind::ListThreads
        | StepKind::SwitchThread { .. }
        | StepKind::Disconnect
        | StepKind::Reconnect
        | StepKind::Repeat { .. } => Vec::new(),
    }
}

/// Whether the step is skipped: it uses what a step of this iteration
/// failed to produce (`{{thread}}` of a failed `create_thread`, a variable
/// a failed `http` step did not capture; see `UserSession::unavailable`).
/// A skipped step is counted as `steps.skipped.<name>`, not as a failure of
/// its own (its target would only answer 404), and what it would have
/// captured is unavailable in turn.
fn skipped(shared: &Shared, step: &Step, s: &mut UserSession) -> bool {
    if s.unavailable.is_empty() {
        return false;
    }
    if !uses(&step.kind).iter().any(|v| s.unavailable.contains(v)) {
        return false;
    }
    shared.obs.count(format!("steps.skipped.{}", step.name));
    if let StepKind::Http { capture, .. } = &step.kind {
        s.unavailable
            .extend(capture.iter().map(|(var, _)| var.clone()));
    }
    true
}

/// The `connect` step: opens the socket unless it is open.
async fn connect(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
) -> TransactionResult {
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

/// The `send` step: starts a run.
async fn send(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
    message: &serde_json::Value,
) -> TransactionResult {
    let r = shared
        .send(&mut s, &step.name, message, template::RunVars::of(message))
        .await;
    drop(s);
    record_ws(user, &step.name, r, None).await
}

/// The `await` step: the run in flight to its end, recorded with its time
/// and failure class.
async fn await_run(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
    timeout: Duration,
) -> TransactionResult {
    let r = shared.await_run(&mut s, timeout).await;
    drop(s);
    let Some(report) = r else {
        return Ok(());
    };
    let status = match report.outcome {
        RunOutcome::Closed { code } => Some(code),
        RunOutcome::Ok
        | RunOutcome::AgentError
        | RunOutcome::TimedOut { .. }
        | RunOutcome::Broken { .. }
        | RunOutcome::NotAwaited => None,
    };
    let err = report.failure_class();
    if err.is_none() {
        own_metric(shared, step, report.took);
    }
    user.record_custom_request_duration("WS", &step.name, report.took, err.is_none(), status, err)
        .await
}

/// The `think` step: idles for a drawn time, keeping the socket.
async fn think_step(
    shared: &Shared,
    mut s: Guard<'_>,
    think: &crate::scenario::Think,
) -> TransactionResult {
    let duration = think.sample(&mut s.rng);
    let intended = Instant::now() + duration;
    let reconnected = shared.idle(&mut s, intended).await;
    // The next send falls due at the think's intended end, so `send_lag`
    // shows how late the user woke and sent. A think that reopened the
    // socket may end late by the handshake: the target's time, not the
    // generator's, so that send is not measured.
    s.send_due = (!reconnected).then_some(intended);
    Ok(())
}

/// The `switch_thread` step.
async fn switch_thread(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
    timeout: Duration,
) -> TransactionResult {
    let r = shared.switch_thread(&mut s, timeout).await;
    drop(s);
    if let Ok(took) = &r {
        own_metric(shared, step, *took);
    }
    record_ws(user, &step.name, r, None).await
}

/// The `disconnect` step.
async fn disconnect(shared: &Shared, mut s: Guard<'_>) -> TransactionResult {
    shared.disconnect(&mut s, "journey disconnect").await;
    Ok(())
}

/// The `reconnect` step: closes the socket and opens it again.
async fn reconnect(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
) -> TransactionResult {
    shared.disconnect(&mut s, "journey reconnect").await;
    let r = shared.connect(&mut s).await;
    drop(s);
    record_ws(user, &step.name, r, Some(101)).await
}

/// A `repeat` block: its steps, `times` times or for `for_`, until the stop.
async fn repeat(
    shared: &Shared,
    user: &mut GooseUser,
    s: Guard<'_>,
    times: Option<u64>,
    for_: Option<Duration>,
    steps: &[Step],
) -> TransactionResult {
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

impl Shared {
    async fn send(
        &self,
        s: &mut UserSession,
        step: &str,
        message: &serde_json::Value,
        uses: template::RunVars,
    ) -> Result<Duration, (Option<u16>, String)> {
        let due = s.send_due.take();
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
        let intended = s.intended.take();
        let run_step = self.obs.run_step();
        self.obs.count_for(run_step, names::RUNS_STARTED);
        self.obs.count_n("bytes.sent", text.len() as u64);
        match ws.send(Message::Text(text.into())).await {
            Ok(()) => {
                // Sent: the write system call that put the frame on the
                // wire (its start: a capture stamps the packet inside it),
                // else when the write returned.
                let sent =
                    s.rx.as_deref()
                        .and_then(super::stamp::WireClock::sent)
                        .filter(|at| *at >= t0)
                        .unwrap_or_else(Instant::now);
                // A socket opened after the send fell due put the target's
                // handshake into the wait: not the generator's lateness.
                if let Some(due) = due.filter(|d| s.ready_at.is_none_or(|r| r <= *d)) {
                    self.obs
                        .sample(names::SEND_LAG, (sent - due.min(sent)).as_micros() as u64);
                }
                // Open model: the first run of an arrival counts from its intended
                // start, so time spent waiting (for a session, a socket) is measured.
                let started = intended.map_or(sent, |i| i.min(sent));
                let run = PendingRun {
                    run_id: uses.run.then_some(run_id),
                    thread_id: uses.thread.then(|| s.thread_id.clone()),
                    user_id: s.identity.clone(),
                    started,
                    sent,
                    step: run_step,
                };
                let mut active = ActiveRun::new(run, self.profile).defer_end_samples();
                active.send_step = Some(step.to_string());
                s.pending = Some(Box::new(active));
                Ok(t0.elapsed())
            }
            Err(e) => {
                // The socket was already gone: the run failed before it began.
                s.in_flight = None;
                self.lost_socket(s, session::ABNORMAL_CLOSE);
                self.fail_run(run_step, "send_error");
                self.raw_send_error(s, step, run_id);
                self.obs
                    .count_for(run_step, names::close_code(session::ABNORMAL_CLOSE));
                Err((Some(session::ABNORMAL_CLOSE), format!("send failed: {e}")))
            }
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
        self.obs.count(names::THREADS_SWITCH_REQUESTED);
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
            Read::Broken(w) => Err((None, format!("{} while switching threads", w.describe()))),
            Read::TimedOut | Read::Stopped | Read::RunEnded(_) | Read::Violated(_) => {
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

/// Open model: waits for an arrival (or the stop); runs the whole journey
/// for it, step by step until the stop, awaits a run left in flight, and
/// then frees its pool slot. One goose transaction is one arrival, so
/// goose's report counts arrivals, not idle polls.
pub(super) async fn serve_arrival(
    shared: &Shared,
    journey: &[Step],
    user: &mut GooseUser,
) -> TransactionResult {
    let Some(pool) = &shared.pool else {
        return Ok(());
    };
    let Some(arrival) = pool.next(&shared.cfg.stop).await else {
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
        s.unavailable.clear();
        s.intended = Some(intended);
        // The pickup's lateness is recorded above; the journey's first send
        // falls due now, unless a step comes before it.
        s.send_due = Some(Instant::now());
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
