//! One socket's protocol logic: becoming ready, and reading frames whatever
//! the journey is doing. A run in flight is an [`ActiveRun`] that lives from
//! its `send` until its terminal event, so events that arrive while the user
//! thinks, switches threads or waits for a heartbeat reply are judged and
//! timed when they arrive, not when an `await` step gets round to them.
//! Written against generic `Sink`/`Stream` halves so unit tests drive it with
//! scripted sockets; every wait has a deadline or a stop signal.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::metrics::{ObsSender, Observation, OffendingFrame, SAMPLE_FRAME_BYTES};
use crate::names;
use crate::protocol::validate::{check_isolation, Belongs, Identity, RunCheck, Violation};
use crate::protocol::{Frame, Profile};

/// Code recorded when the socket ended without a close frame (seen by the client only).
pub const ABNORMAL_CLOSE: u16 = 1006;
/// Code recorded for a close frame without a status.
pub const NO_STATUS_CLOSE: u16 = 1005;

/// How waiting for the ready frame ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyOutcome {
    Ready,
    /// The server closed (or the socket dropped) before ready.
    Closed {
        code: u16,
        server_error: Option<String>,
    },
    TimedOut,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Ok,
    /// The agent reported an error (terminal error event).
    AgentError,
    /// No terminal event before the deadline; `events` says how many arrived.
    TimedOut {
        events: u64,
    },
    /// The socket closed during the run.
    Closed {
        code: u16,
    },
    /// The journey started another run (or ended) before awaiting this one.
    NotAwaited,
}

impl RunOutcome {
    /// The failure class counted under `runs.failed.<class>`.
    pub fn failure_class(&self) -> Option<&'static str> {
        match self {
            RunOutcome::Ok => None,
            RunOutcome::AgentError => Some("agent_error"),
            RunOutcome::TimedOut { events: 0 } => Some("no_response"),
            RunOutcome::TimedOut { .. } => Some("timeout"),
            RunOutcome::Closed { .. } => Some("closed"),
            RunOutcome::NotAwaited => Some("not_awaited"),
        }
    }
}

/// Whose socket this is, for isolation checks and samples.
#[derive(Debug, Clone)]
pub struct Who<'a> {
    pub user_id: &'a str,
    pub run_id: Option<&'a str>,
}

/// Counts a violation and keeps its frame as a sample.
pub fn note_violation(obs: &ObsSender, v: &Violation, raw: &str, who: &Who<'_>) {
    obs.count(format!("violations.{}", v.class));
    obs.count(format!("violations.{}.{}", v.class, v.detail));
    let mut frame = crate::auth::redact(raw);
    if frame.len() > SAMPLE_FRAME_BYTES {
        let mut cut = SAMPLE_FRAME_BYTES;
        while !frame.is_char_boundary(cut) {
            cut -= 1;
        }
        frame.truncate(cut);
        frame.push('…');
    }
    obs.emit(Observation::Offending(Box::new(OffendingFrame {
        class: v.class.to_string(),
        detail: v.detail.clone(),
        message: v.message.clone(),
        user_id: who.user_id.to_string(),
        run_id: who.run_id.map(str::to_string),
        frame,
    })));
}

/// Frame-level problems (not JSON, binary, oversized, unknown type), judged the
/// same way wherever they arrive. Returns the violation, if any.
fn frame_violation(frame: &Frame, len: usize, profile: &Profile) -> Vec<Violation> {
    let mut v = Vec::new();
    if len > profile.rules.max_frame_bytes {
        v.push(Violation::new(
            "oversized_frame",
            "text",
            format!(
                "{len} bytes, above the profile's limit of {}",
                profile.rules.max_frame_bytes
            ),
        ));
    }
    match frame {
        Frame::Unparseable => v.push(Violation::new(
            "unparseable_frame",
            "text",
            "not a JSON object with a type",
        )),
        Frame::Unknown(name) => v.push(Violation::new(
            "unexpected_event",
            name.clone(),
            format!("frame type `{name}` is unknown to the profile"),
        )),
        _ => {}
    }
    v
}

fn binary_violation(len: usize) -> Violation {
    Violation::new(
        "binary_frame",
        "binary",
        format!("a binary frame of {len} bytes"),
    )
}

/// Counts a classified non-agent frame; returns a reply to send, if any.
fn count_frame(frame: &Frame, obs: &ObsSender) -> Option<String> {
    match frame {
        Frame::Answer(v) => Some(v.to_string()),
        Frame::Unknown(_) => {
            obs.count("frames.unknown");
            None
        }
        Frame::Unparseable => {
            obs.count("frames.unparseable");
            None
        }
        Frame::ServerError { code, .. } => {
            obs.count(format!(
                "frames.server_error.{}",
                code.as_deref().unwrap_or("unknown")
            ));
            None
        }
        Frame::Ready | Frame::Handshake | Frame::Ignored(_) | Frame::Agent(_) => None,
    }
}

fn close_code(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    frame.map_or(NO_STATUS_CLOSE, |f| u16::from(f.code))
}

/// Reads frames until the profile's ready frame, a close, or the deadline.
/// `handshake_reply` answers the newest generation's `handshake_response`.
pub async fn await_ready<S>(
    ws: &mut S,
    profile: &Profile,
    deadline: Instant,
    obs: &ObsSender,
    handshake_reply: Option<&str>,
    who: &Who<'_>,
) -> ReadyOutcome
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let mut server_error = None;
    loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        let msg = match next {
            Err(_) => return ReadyOutcome::TimedOut,
            Ok(None) | Ok(Some(Err(_))) => {
                return ReadyOutcome::Closed {
                    code: ABNORMAL_CLOSE,
                    server_error,
                }
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                obs.count_n("bytes.received", t.len() as u64);
                let frame = profile.decode(&t);
                if frame == Frame::Ready {
                    return ReadyOutcome::Ready;
                }
                if frame == Frame::Handshake {
                    if let Some(reply) = handshake_reply {
                        obs.count("handshakes.answered");
                        let _ = ws.send(Message::Text(reply.into())).await;
                    }
                    continue;
                }
                if let Frame::ServerError { code, message } = &frame {
                    server_error = Some(format!(
                        "{}{}",
                        code.as_deref().unwrap_or("error"),
                        message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ));
                }
                for v in frame_violation(&frame, t.len(), profile) {
                    note_violation(obs, &v, &t, who);
                }
                if let Some(reply) = count_frame(&frame, obs) {
                    let _ = ws.send(Message::Text(reply.into())).await;
                }
            }
            Message::Binary(b) => {
                obs.count_n("bytes.received", b.len() as u64);
                obs.count("frames.binary");
                note_violation(obs, &binary_violation(b.len()), "<binary>", who);
            }
            Message::Close(f) => {
                return ReadyOutcome::Closed {
                    code: close_code(f),
                    server_error,
                }
            }
            _ => {}
        }
    }
}

/// A stop request that waiting code can both poll and await: set by a
/// signal, an `abort_on_fail` breach, a capacity search's failing step or the
/// load plan's end.
pub struct StopSignal {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    pub const fn new() -> StopSignal {
        StopSignal {
            flag: AtomicBool::new(false),
            notify: tokio::sync::Notify::const_new(),
        }
    }

    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until the stop is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps until `until`; `false` when the stop came first.
    pub async fn sleep_until(&self, until: Instant) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => !self.is_set(),
            _ = notified => false,
        }
    }
}

/// What the client knows about the run it started.
#[derive(Debug, Clone)]
pub struct PendingRun {
    /// The id the client put in the message (`None`: adopted from the first event).
    pub run_id: Option<String>,
    /// The thread the client put in the message (`None`: not checked).
    pub thread_id: Option<String>,
    pub user_id: String,
    /// When the run started: the send in the closed model, the arrival's
    /// intended start in the open model. Every run latency counts from it.
    pub started: Instant,
    /// When the message went out (an `await` timeout counts from it).
    pub sent: Instant,
}

/// How a run ended and what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub outcome: RunOutcome,
    pub violations: Vec<Violation>,
    /// The run id the run ended with (chosen or adopted).
    pub run_id: Option<String>,
    /// From the run's start to its end.
    pub took: Duration,
}

impl RunReport {
    /// `None` for an ok run; otherwise the class counted under `runs.failed.<class>`:
    /// the ending (timeout, closed, agent_error) first, else the first violation.
    pub fn failure_class(&self) -> Option<&'static str> {
        self.outcome
            .failure_class()
            .or_else(|| self.violations.first().map(|v| v.class))
    }
}

/// Per-run timings, recorded as the events arrive.
#[derive(Debug, Default)]
struct RunTimes {
    events: u64,
    first: Option<Duration>,
    last: Option<Duration>,
    gap_max: Duration,
    seen: BTreeSet<String>,
}

/// A run in flight: what the client sent and what its events showed so far.
/// Records `ttfe`, `event_<name>`, `ttc`, `event_gap_max` and event counts as
/// the events arrive, and every violation of the profile's rules.
pub struct ActiveRun {
    pub run: PendingRun,
    times: RunTimes,
    check: RunCheck<'static>,
    me: Identity,
    violations: Vec<Violation>,
}

impl ActiveRun {
    pub fn new(run: PendingRun, profile: &'static Profile) -> ActiveRun {
        ActiveRun {
            me: Identity {
                user_id: run.user_id.clone(),
                thread_id: run.thread_id.clone(),
                run_id: run.run_id.clone(),
            },
            run,
            times: RunTimes::default(),
            check: RunCheck::new(&profile.rules),
            violations: Vec::new(),
        }
    }

    /// Events of this run so far.
    pub fn events(&self) -> u64 {
        self.times.events
    }

    /// Ends the run with `outcome`.
    pub fn finish(self, outcome: RunOutcome) -> RunReport {
        RunReport {
            outcome,
            violations: self.violations,
            run_id: self.me.run_id,
            took: self.run.started.elapsed(),
        }
    }

    fn violated(&mut self, obs: &ObsSender, v: Violation, raw: &str) {
        note_violation(
            obs,
            &v,
            raw,
            &Who {
                user_id: &self.me.user_id,
                run_id: self.me.run_id.as_deref(),
            },
        );
        self.violations.push(v);
    }

    /// Judges one of this run's events; the outcome when it was terminal.
    fn on_event(
        &mut self,
        ev: &crate::protocol::Event,
        text: &str,
        profile: &Profile,
        obs: &ObsSender,
    ) -> Option<RunOutcome> {
        if self.me.run_id.is_none() {
            self.me.run_id = ev.run_id.clone();
        }
        let at = self.run.started.elapsed();
        let t = &mut self.times;
        obs.count(names::events(&ev.name));
        t.events += 1;
        if t.first.is_none() {
            t.first = Some(at);
            obs.sample(names::TTFE, at.as_micros() as u64);
        }
        if let Some(prev) = t.last {
            t.gap_max = t.gap_max.max(at.saturating_sub(prev));
        }
        t.last = Some(at);
        if t.seen.insert(ev.name.clone()) {
            obs.sample(&names::event_metric(&ev.name), at.as_micros() as u64);
        }
        for v in self.check.on_event(ev, text, at) {
            self.violated(obs, v, text);
        }
        let ok = profile.terminal(&ev.name)?;
        obs.sample(names::TTC, at.as_micros() as u64);
        obs.sample(names::EVENT_GAP_MAX, self.times.gap_max.as_micros() as u64);
        if !ok {
            return Some(RunOutcome::AgentError);
        }
        for v in self.check.on_end() {
            self.violated(obs, v, text);
        }
        Some(RunOutcome::Ok)
    }
}

/// Runs of the current socket remembered for classifying late events.
pub const EARLIER_RUNS_KEPT: usize = 8;

/// Remembers a finished run's id (bounded, newest last).
pub fn remember_run(earlier_runs: &mut Vec<String>, run_id: Option<&str>) {
    if let Some(id) = run_id {
        if earlier_runs.len() == EARLIER_RUNS_KEPT {
            earlier_runs.remove(0);
        }
        earlier_runs.push(id.to_string());
    }
}

/// What a read waits for besides the active run's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want<'a> {
    /// Nothing: read until the deadline (or the stop), answering and judging.
    Nothing,
    /// The active run's end (the `await` step).
    Run,
    /// A frame of this type (a thread switch's confirmation, a heartbeat's reply).
    Frame(&'a str),
}

/// Why a read returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The active run ended (it is no longer active); settle it.
    RunEnded(RunReport),
    /// The wanted frame arrived (parsed).
    Got(serde_json::Value),
    /// The server answered a wanted frame with an error frame instead.
    ServerError(String),
    /// The socket closed (the active run, if any, is still active: the caller
    /// ends it with this code).
    Closed(u16),
    TimedOut,
    Stopped,
}

/// The parts of a read that stay the same for a whole session.
pub struct ReadCtx<'a> {
    pub profile: &'static Profile,
    pub user_id: &'a str,
    pub obs: &'a ObsSender,
}

/// Reads frames until the active run ends, the wanted frame arrives, the
/// socket closes, `deadline` passes or `stop` is requested, whichever is
/// first. Every frame on the way is judged: an agent event is the active
/// run's (timed now) or, with no run active, a late, crossed or foreign one;
/// pings are answered; server errors, unknown and malformed frames counted.
/// A deadline already past reads only what has arrived.
pub async fn read<S>(
    ws: &mut S,
    cx: &ReadCtx<'_>,
    active: &mut Option<ActiveRun>,
    earlier_runs: &mut Vec<String>,
    want: Want<'_>,
    deadline: Instant,
    stop: Option<&StopSignal>,
) -> Read
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let profile = cx.profile;
    let who = Who {
        user_id: cx.user_id,
        run_id: None,
    };
    // One timer and one stop registration for the whole read, not one per
    // frame; a deadline already past only polls (no timer at all).
    let polling = deadline <= Instant::now();
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    let stopped = async {
        match stop {
            Some(st) => st.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    loop {
        // `next()` is the only await raced against the deadline and the
        // stop: it is cancel-safe. A frame that has arrived wins over both.
        let next = if polling {
            if stop.is_some_and(StopSignal::is_set) {
                return Read::Stopped;
            }
            match ws.next().now_or_never() {
                Some(m) => m,
                None => return Read::TimedOut,
            }
        } else {
            tokio::select! {
                biased;
                m = ws.next() => m,
                _ = &mut sleep => return Read::TimedOut,
                _ = &mut stopped => return Read::Stopped,
            }
        };
        let msg = match next {
            None | Some(Err(_)) => return Read::Closed(ABNORMAL_CLOSE),
            Some(Ok(m)) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => {
                cx.obs.count_n("bytes.received", b.len() as u64);
                cx.obs.count("frames.binary");
                let v = binary_violation(b.len());
                match active.as_mut() {
                    Some(run) => run.violated(cx.obs, v, "<binary>"),
                    None => note_violation(cx.obs, &v, "<binary>", &who),
                }
                continue;
            }
            Message::Close(f) => return Read::Closed(close_code(f)),
            _ => continue,
        };
        cx.obs.count_n("bytes.received", text.len() as u64);
        let frame = profile.decode(&text);
        if let Want::Frame(w) = want {
            if matches!(&frame, Frame::Unknown(name) | Frame::Ignored(name) if name == w) {
                if let Ok(v) = serde_json::from_str(&text) {
                    return Read::Got(v);
                }
            }
            if let Frame::ServerError { code, .. } = &frame {
                let code = code.clone().unwrap_or_else(|| "error".into());
                count_frame(&frame, cx.obs);
                return Read::ServerError(code);
            }
        }
        for v in frame_violation(&frame, text.len(), profile) {
            match active.as_mut() {
                Some(run) => run.violated(cx.obs, v, &text),
                None => note_violation(cx.obs, &v, &text, &who),
            }
        }
        let Frame::Agent(ev) = frame else {
            if let Some(reply) = count_frame(&frame, cx.obs) {
                let _ = ws.send(Message::Text(reply.into())).await;
            }
            continue;
        };
        let Some(run) = active.as_mut() else {
            between_runs(&ev, &text, profile, cx, earlier_runs);
            continue;
        };
        if let Belongs::Foreign(v) = check_isolation(&ev, &run.me, earlier_runs) {
            cx.obs.count("frames.foreign");
            run.violated(cx.obs, v, &text);
            continue;
        }
        if let Some(outcome) = run.on_event(&ev, &text, profile, cx.obs) {
            let report = active.take().expect("a run is active").finish(outcome);
            remember_run(earlier_runs, report.run_id.as_deref());
            return Read::RunEnded(report);
        }
    }
}

/// An agent event with no run active: late (a finished run's), a second
/// terminal, foreign, or one that names no run at all.
fn between_runs(
    ev: &crate::protocol::Event,
    text: &str,
    profile: &Profile,
    cx: &ReadCtx<'_>,
    earlier_runs: &[String],
) {
    cx.obs.count("frames.between_runs");
    let me = Identity {
        user_id: cx.user_id.to_string(),
        thread_id: None,
        run_id: Some(String::new()),
    };
    let v = match check_isolation(ev, &me, earlier_runs) {
        Belongs::Foreign(v) if v.class == "late_event" && profile.terminal(&ev.name).is_some() => {
            Violation::new(
                "duplicate_terminal",
                ev.name.clone(),
                format!("a second `{}` after the run ended", ev.name),
            )
        }
        Belongs::Foreign(v) => v,
        Belongs::Mine => Violation::new(
            "crossed_run",
            ev.name.clone(),
            format!(
                "`{}` without a run id arrived while no run was active",
                ev.name
            ),
        ),
    };
    note_violation(
        cx.obs,
        &v,
        text,
        &Who {
            user_id: cx.user_id,
            run_id: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Collector;
    use futures_util::stream;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    /// A socket double: a fixed script of incoming frames and a sink that keeps what was sent.
    struct Scripted {
        incoming: stream::Iter<std::vec::IntoIter<Result<Message, WsError>>>,
        sent: Vec<Message>,
        /// Stay open (pending) after the script instead of ending.
        hang: bool,
    }

    impl Stream for Scripted {
        type Item = Result<Message, WsError>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            match self.incoming.poll_next_unpin(cx) {
                std::task::Poll::Ready(None) if self.hang => std::task::Poll::Pending,
                other => other,
            }
        }
    }

    impl Sink<Message> for Scripted {
        type Error = WsError;
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(mut self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), WsError> {
            self.sent.push(item);
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn script(frames: &[&str], tail: Option<Message>, hang: bool) -> Scripted {
        let mut v: Vec<Result<Message, WsError>> = frames
            .iter()
            .map(|f| Ok(Message::Text((*f).into())))
            .collect();
        if let Some(t) = tail {
            v.push(Ok(t));
        }
        Scripted {
            incoming: stream::iter(v),
            sent: Vec::new(),
            hang,
        }
    }

    fn netra() -> &'static Profile {
        static P: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
        P.get_or_init(Profile::netra)
    }

    fn run() -> PendingRun {
        PendingRun {
            run_id: Some("r1".into()),
            thread_id: None,
            user_id: "u".into(),
            started: Instant::now(),
            sent: Instant::now(),
        }
    }

    /// Reads until the run ends, as the `await` step does, and ends it the
    /// way the engine does on a close or a timeout.
    async fn follow(
        ws: &mut Scripted,
        pending: PendingRun,
        deadline: Instant,
        obs: &ObsSender,
    ) -> RunReport {
        let cx = ReadCtx {
            profile: netra(),
            user_id: "u",
            obs,
        };
        let mut active = Some(ActiveRun::new(pending, netra()));
        let mut earlier = Vec::new();
        match read(
            ws,
            &cx,
            &mut active,
            &mut earlier,
            Want::Run,
            deadline,
            None,
        )
        .await
        {
            Read::RunEnded(r) => r,
            Read::Closed(code) => active.take().unwrap().finish(RunOutcome::Closed { code }),
            Read::TimedOut => {
                let a = active.take().unwrap();
                let events = a.events();
                a.finish(RunOutcome::TimedOut { events })
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn report(ws: &mut Scripted, deadline: Instant, obs: &ObsSender) -> RunReport {
        follow(ws, run(), deadline, obs).await
    }

    fn who() -> Who<'static> {
        Who {
            user_id: "u",
            run_id: None,
        }
    }

    #[tokio::test]
    async fn a_complete_run_records_every_metric_once() {
        let c = Collector::start();
        let mut ws = script(
            &[
                r#"{"type":"ping"}"#,
                r#"{"type":"agent_started","run_id":"r1","user_id":"u","data":{}}"#,
                r#"{"type":"agent_thinking","run_id":"other","data":{"reasoning":"a"}}"#,
                r#"{"type":"agent_thinking","run_id":"r1","data":{"reasoning":"b"}}"#,
                r#"{"type":"agent_thinking","run_id":"r1","data":{"reasoning":"c"}}"#,
                "garbage",
                r#"{"type":"agent_completed","run_id":"r1","data":{"status":"ok","final_response":"x"}}"#,
            ],
            None,
            true,
        );
        let r = report(
            &mut ws,
            Instant::now() + Duration::from_secs(5),
            &c.sender(),
        )
        .await;
        assert_eq!(r.outcome, RunOutcome::Ok);
        let classes: Vec<_> = r.violations.iter().map(|v| v.class).collect();
        assert_eq!(classes, vec!["crossed_run", "unparseable_frame"]);
        assert_eq!(r.failure_class(), Some("crossed_run"));
        assert_eq!(ws.sent, vec![Message::Text(r#"{"type":"pong"}"#.into())]);
        let rec = c.finish().await.total;
        assert_eq!(rec.histograms["ttfe"].len(), 1);
        assert_eq!(rec.histograms["ttc"].len(), 1);
        assert_eq!(rec.histograms["event_agent_thinking"].len(), 1);
        assert_eq!(rec.counter("events.agent_thinking"), 2);
        assert_eq!(rec.counter("violations.crossed_run"), 1);
        assert_eq!(rec.counter("violations.unparseable_frame"), 1);
        assert_eq!(rec.samples.len(), 2);
        assert_eq!(rec.samples[1].frame, "garbage");
    }

    #[tokio::test]
    async fn close_timeout_and_agent_error_are_classified() {
        let c = Collector::start();
        let soon = || Instant::now() + Duration::from_millis(50);
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Error,
            reason: "boom".into(),
        }));
        let started = r#"{"type":"agent_started","run_id":"r1","user_id":"u"}"#;
        let mut ws = script(&[started], Some(close), false);
        assert_eq!(
            report(&mut ws, soon(), &c.sender()).await.outcome,
            RunOutcome::Closed { code: 1011 }
        );
        let mut ws = script(&[], None, false);
        assert_eq!(
            report(&mut ws, soon(), &c.sender()).await.outcome,
            RunOutcome::Closed { code: 1006 }
        );
        let mut ws = script(&[], None, true);
        assert_eq!(
            report(&mut ws, soon(), &c.sender()).await.failure_class(),
            Some("no_response")
        );
        let mut ws = script(&[started], None, true);
        assert_eq!(
            report(&mut ws, soon(), &c.sender()).await.outcome,
            RunOutcome::TimedOut { events: 1 }
        );
        let mut ws = script(&[r#"{"type":"agent_error","run_id":"r1"}"#], None, true);
        assert_eq!(
            report(&mut ws, soon(), &c.sender()).await.outcome,
            RunOutcome::AgentError
        );
    }

    #[tokio::test]
    async fn a_run_id_chosen_by_the_server_is_adopted() {
        let c = Collector::start();
        let mut ws = script(
            &[
                r#"{"type":"agent_started","run_id":"srv-1","user_id":"u"}"#,
                r#"{"type":"agent_completed","run_id":"srv-1","status":"ok","result":1}"#,
            ],
            None,
            true,
        );
        let mut pending = run();
        pending.run_id = None;
        let r = follow(
            &mut ws,
            pending,
            Instant::now() + Duration::from_secs(1),
            &c.sender(),
        )
        .await;
        assert_eq!(
            (r.outcome, r.run_id.as_deref(), r.violations.len()),
            (RunOutcome::Ok, Some("srv-1"), 0)
        );
    }

    #[tokio::test]
    async fn ready_reports_the_auth_error_and_close_code() {
        let c = Collector::start();
        let p = Profile::netra();
        let deadline = Instant::now() + Duration::from_secs(1);
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "auth".into(),
        }));
        let mut ws = script(
            &[r#"{"type":"error_message","error_code":"AUTH_FAILED","message":"bad signature"}"#],
            Some(close),
            false,
        );
        let out = await_ready(&mut ws, &p, deadline, &c.sender(), None, &who()).await;
        assert_eq!(
            out,
            ReadyOutcome::Closed {
                code: 1008,
                server_error: Some("AUTH_FAILED: bad signature".into())
            }
        );
        let mut ws = script(
            &[r#"{"type":"connection_established","data":{}}"#],
            None,
            true,
        );
        assert_eq!(
            await_ready(&mut ws, &p, deadline, &c.sender(), None, &who()).await,
            ReadyOutcome::Ready
        );
    }

    #[tokio::test]
    async fn the_newest_handshake_is_answered_before_ready() {
        let c = Collector::start();
        let p = Profile::netra();
        let mut ws = script(
            &[
                r#"{"type":"handshake_response","thread_id":"t","run_id":"r","session_token":"s"}"#,
                r#"{"type":"handshake_complete"}"#,
            ],
            None,
            true,
        );
        let reply = r#"{"type":"handshake_acknowledged","thread_id":"t"}"#;
        let out = await_ready(
            &mut ws,
            &p,
            Instant::now() + Duration::from_secs(1),
            &c.sender(),
            Some(reply),
            &who(),
        )
        .await;
        assert_eq!(out, ReadyOutcome::Ready);
        assert_eq!(ws.sent, vec![Message::Text(reply.into())]);
    }

    #[tokio::test]
    async fn a_past_deadline_reads_only_what_already_arrived() {
        let c = Collector::start();
        let obs = c.sender();
        let cx = ReadCtx {
            profile: netra(),
            user_id: "u",
            obs: &obs,
        };
        let mut ws = script(
            &[
                r#"{"type":"ping"}"#,
                r#"{"type":"agent_completed","run_id":"r0","user_id":"u","status":"ok","result":1}"#,
            ],
            Some(Message::Close(Some(CloseFrame {
                code: CloseCode::Error,
                reason: "".into(),
            }))),
            true,
        );
        let mut earlier = vec!["r0".to_string()];
        async fn read_now(ws: &mut Scripted, cx: &ReadCtx<'_>, earlier: &mut Vec<String>) -> Read {
            read(
                ws,
                cx,
                &mut None,
                earlier,
                Want::Nothing,
                Instant::now(),
                None,
            )
            .await
        }
        let out = read_now(&mut ws, &cx, &mut earlier).await;
        assert_eq!(out, Read::Closed(1011));
        assert_eq!(ws.sent, vec![Message::Text(r#"{"type":"pong"}"#.into())]);
        // Nothing more had arrived: a second read times out at once.
        let mut ws = script(&[], None, true);
        let out = read_now(&mut ws, &cx, &mut earlier).await;
        assert_eq!(out, Read::TimedOut);
        drop(obs);
        let rec = c.finish().await.total;
        assert_eq!(rec.counter("violations.duplicate_terminal"), 1);
    }

    /// A run's events that arrive while the journey does something else (a
    /// think) are timed when they arrive and end the run there; the `await`
    /// step then finds it finished. Regression: events read outside `await`
    /// were dropped as `frames.between_runs`, failing every such run.
    #[tokio::test(start_paused = true)]
    async fn events_read_while_thinking_belong_to_the_active_run() {
        let c = Collector::start();
        let obs = c.sender();
        let cx = ReadCtx {
            profile: netra(),
            user_id: "u",
            obs: &obs,
        };
        let mut ws = script(
            &[
                r#"{"type":"agent_started","run_id":"r1","user_id":"u","thread_id":"t"}"#,
                r#"{"type":"agent_completed","run_id":"r1","status":"ok","final_response":"x"}"#,
            ],
            None,
            true,
        );
        let mut active = Some(ActiveRun::new(run(), netra()));
        let mut earlier = Vec::new();
        let think_until = Instant::now() + Duration::from_secs(5);
        let out = read(
            &mut ws,
            &cx,
            &mut active,
            &mut earlier,
            Want::Nothing,
            think_until,
            None,
        )
        .await;
        let Read::RunEnded(r) = out else {
            panic!("{out:?}")
        };
        assert_eq!((r.outcome, r.violations.len()), (RunOutcome::Ok, 0));
        assert!(active.is_none());
        assert_eq!(earlier, vec!["r1".to_string()]);
        drop(obs);
        let rec = c.finish().await.total;
        assert_eq!(rec.counter("frames.between_runs"), 0);
        assert_eq!(rec.histograms["ttc"].len(), 1);
        // Timed at arrival (the paused clock did not move), not after the think.
        assert!(rec.histograms["ttc"].max() < 1_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_an_idle_read_and_a_sleep() {
        let c = Collector::start();
        let obs = c.sender();
        let cx = ReadCtx {
            profile: netra(),
            user_id: "u",
            obs: &obs,
        };
        let stop = StopSignal::new();
        let mut ws = script(&[], None, true);
        let far = Instant::now() + Duration::from_secs(3600);
        let mut earlier = Vec::new();
        let mut idle = None;
        let reading = read(
            &mut ws,
            &cx,
            &mut idle,
            &mut earlier,
            Want::Nothing,
            far,
            Some(&stop),
        );
        let (out, ()) = tokio::join!(reading, async { stop.request() });
        assert_eq!(out, Read::Stopped);
        assert!(!stop.sleep_until(far).await, "already stopped");
        stop.reset();
        assert!(
            stop.sleep_until(Instant::now() + Duration::from_millis(5))
                .await
        );
    }
}
