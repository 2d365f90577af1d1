//! One socket's protocol logic: becoming ready, and reading frames whatever
//! the journey is doing. A run in flight is an [`ActiveRun`] that lives from
//! its `send` until its terminal event, so events that arrive while the user
//! thinks, switches threads or waits for a heartbeat reply are judged and
//! timed when they arrive, not when an `await` step gets round to them.
//! Written against generic `Sink`/`Stream` halves so unit tests drive it with
//! scripted sockets; every wait has a deadline or a stop signal. A run in
//! flight (its timings and rule checks) is [`run`]; the unit tests are in
//! `session/tests.rs`.
//!
//! May import: `metrics` (observations), `protocol`, `auth` (redaction),
//! `names`; never goose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::flood::{FloodGate, Gate};
use super::stop::StopSignal;
use super::wire::{self, WireClass, WireError};
use crate::metrics::{ObsSender, Observation, OffendingFrame, SAMPLE_FRAME_BYTES};
use crate::protocol::validate::{check_isolation, Belongs, Identity, Violation};
use crate::protocol::{Frame, Profile};

mod between;
mod run;
use between::{between_runs, late_or_duplicate};
pub use run::{remember_run, ActiveRun, PendingRun, RunOutcome, RunReport, EARLIER_RUNS_KEPT};

/// Code recorded when the socket ended without a close frame (seen by the client only).
pub const ABNORMAL_CLOSE: u16 = 1006;
/// Code recorded for a close frame without a status.
pub const NO_STATUS_CLOSE: u16 = 1005;

/// How waiting for the ready frame ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyOutcome {
    Ready {
        user_id: Option<String>,
    },
    /// The server closed (or the socket dropped) before ready.
    Closed {
        code: u16,
        server_error: Option<String>,
        /// A recognised auth failure (the profile's `auth_failure`): an auth
        /// frame came first, or the code means one on its own.
        auth: bool,
    },
    TimedOut,
    /// A protocol error (not a plain drop) or a flood ended the socket.
    Broken(WireError),
}

/// Whose socket this is, for isolation checks and samples.
#[derive(Debug, Clone)]
pub struct Who<'a> {
    pub user_id: &'a str,
    pub run_id: Option<&'a str>,
}

/// Counts a violation and keeps its frame as a sample.
pub fn note_violation(obs: &ObsSender, v: &Violation, raw: &str, who: &Who<'_>) {
    obs.count(crate::names::VIOLATIONS_ALL);
    obs.count(format!("violations.{}", v.class));
    obs.count(format!("violations.{}.{}", v.class, v.detail));
    let frame = crate::auth::redact::sample(raw, SAMPLE_FRAME_BYTES);
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
        Frame::Ready
        | Frame::Agent(_)
        | Frame::Answer(_)
        | Frame::Handshake
        | Frame::ServerError { .. }
        | Frame::Ignored(_) => {}
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
fn count_frame(frame: &Frame, obs: &ObsSender, flood: &FloodGate) -> Option<String> {
    match frame {
        Frame::Answer(v) => {
            obs.count(crate::names::FRAMES_ANSWERED);
            if let Some(gap) = flood.answered() {
                obs.sample(crate::names::SERVER_PING_GAP, gap.as_micros() as u64);
            }
            Some(v.to_string())
        }
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
    flood: &FloodGate,
) -> ReadyOutcome
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let mut server_error = None;
    let mut auth_frame = false;
    let closed = |code: u16, server_error: Option<String>, auth_frame: bool| ReadyOutcome::Closed {
        code,
        server_error,
        auth: profile.auth_failure.close_before_ready(code, auth_frame),
    };
    loop {
        if obs.backlogged() {
            let t0 = Instant::now();
            obs.backpressure().await;
            flood.paused(t0.elapsed());
        }
        let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        let msg = match next {
            Err(_) => return ReadyOutcome::TimedOut,
            Ok(None) => return closed(ABNORMAL_CLOSE, server_error, auth_frame),
            Ok(Some(Err(e))) => match broken(&e) {
                Some(w) => return ReadyOutcome::Broken(w),
                None => return closed(ABNORMAL_CLOSE, server_error, auth_frame),
            },
            Ok(Some(Ok(m))) => m,
        };
        match flood.frame(Instant::now(), obs) {
            Gate::Pass => {}
            Gate::Drop => continue,
            Gate::Close => return ReadyOutcome::Broken(flooded()),
        }
        match msg {
            Message::Text(t) => {
                obs.count_n("bytes.received", t.len() as u64);
                let frame = profile.decode(&t);
                if frame == Frame::Ready {
                    let user_id = profile.ready_user_id(&t);
                    return ReadyOutcome::Ready { user_id };
                }
                if frame == Frame::Handshake {
                    if let Some(reply) = handshake_reply {
                        obs.count("handshakes.answered");
                        let _ = ws.send(Message::Text(reply.into())).await;
                    }
                    continue;
                }
                if let Frame::ServerError {
                    code,
                    message,
                    auth,
                } = &frame
                {
                    auth_frame |= *auth;
                    server_error = Some(format!(
                        "{}{}",
                        code.as_deref().unwrap_or("error"),
                        message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ));
                }
                if stray(&frame, false) {
                    flood.unexpected();
                }
                for v in frame_violation(&frame, t.len(), profile) {
                    note_violation(obs, &v, &t, who);
                }
                if let Some(reply) = count_frame(&frame, obs, flood) {
                    let _ = ws.send(Message::Text(reply.into())).await;
                }
            }
            Message::Binary(b) => {
                flood.unexpected();
                obs.count_n("bytes.received", b.len() as u64);
                obs.count("frames.binary");
                note_violation(obs, &binary_violation(b.len()), "<binary>", who);
            }
            Message::Close(f) => return closed(close_code(f), server_error, auth_frame),
            _ => {}
        }
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
    /// A violation of the held run (see [`ReadCtx::held`]), already counted
    /// under `violations.*`: that run fails with this class. The socket's
    /// `read` settles it and reads on (it never returns this).
    Violated(&'static str),
    /// A protocol error or a flood ended the socket (the active run, if
    /// any, is still active: the caller fails it as `protocol_error`).
    Broken(WireError),
}

/// A read error that is a protocol error (`None`: a plain drop, 1006).
fn broken(e: &WsError) -> Option<WireError> {
    let w = wire::classify(e);
    (!w.is_drop()).then_some(w)
}

/// Whether a frame is one no run expects (for the flood limit): not JSON,
/// of an unknown type, or an agent event while no run is active.
fn stray(frame: &Frame, run_active: bool) -> bool {
    match frame {
        Frame::Unparseable | Frame::Unknown(_) => true,
        Frame::Agent(_) => !run_active,
        Frame::Ready
        | Frame::Answer(_)
        | Frame::Handshake
        | Frame::ServerError { .. }
        | Frame::Ignored(_) => false,
    }
}

/// The flood class with its reason.
fn flooded() -> WireError {
    WireError::new(
        WireClass::Flood,
        format!(
            "more than {} frames no run expects (or {} frames) per second, in {} windows",
            super::flood::FLOOD_UNEXPECTED_PER_S,
            super::flood::FLOOD_FRAMES_PER_S,
            super::flood::FLOOD_SECONDS
        ),
    )
}

/// The parts of a read that stay the same for a whole session.
pub struct ReadCtx<'a> {
    pub profile: &'static Profile,
    pub user_id: &'a str,
    pub obs: &'a ObsSender,
    /// Set when an auth frame (the profile's `auth_failure`) arrives on this
    /// socket: the close that follows is a recognised auth failure.
    pub auth_refused: &'a AtomicBool,
    /// The run on this socket that ended ok but is not counted yet, with
    /// its id if it has one (`None`: no such run). A duplicate terminal or
    /// a late event of that run, or an event naming no run while none is
    /// active, fails it ([`Read::Violated`]) instead of the active run.
    pub held: Option<Option<&'a str>>,
    /// The socket's flood limit.
    pub flood: &'a FloodGate,
    /// The kernel receive times of the socket's reads (`None`: frames are
    /// timed when chatload's task has them).
    pub rx: Option<&'a super::stamp::WireClock>,
}

impl ReadCtx<'_> {
    /// Whether an event of run `run_id` is the held run's.
    fn is_held(&self, run_id: Option<&str>) -> bool {
        matches!((self.held, run_id), (Some(Some(h)), Some(r)) if h == r)
    }
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
    active: &mut Option<Box<ActiveRun>>,
    earlier_runs: &mut Vec<String>,
    want: Want<'_>,
    deadline: Instant,
    stop: Option<&StopSignal>,
) -> Read
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let out = read_frames(ws, cx, active, earlier_runs, want, deadline, stop).await;
    cx.flood.flush(cx.obs);
    out
}

async fn read_frames<S>(
    ws: &mut S,
    cx: &ReadCtx<'_>,
    active: &mut Option<Box<ActiveRun>>,
    earlier_runs: &mut Vec<String>,
    want: Want<'_>,
    deadline: Instant,
    stop: Option<&StopSignal>,
) -> Read
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
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
        // The collector is behind: stop reading (bounded, see `ObsSender`).
        if cx.obs.backlogged() {
            let t0 = Instant::now();
            cx.obs.backpressure().await;
            cx.flood.paused(t0.elapsed());
        }
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
            None => return Read::Closed(ABNORMAL_CLOSE),
            Some(Err(e)) => {
                return broken(&e).map_or(Read::Closed(ABNORMAL_CLOSE), Read::Broken);
            }
            Some(Ok(m)) => m,
        };
        let now = Instant::now();
        let rx = received(cx, now);
        // Bounded: see `flood.rs`.
        match cx.flood.frame(now, cx.obs) {
            Gate::Pass => {}
            Gate::Drop => continue,
            Gate::Close => return Read::Broken(flooded()),
        }
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => {
                cx.flood.unexpected();
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
        match on_text(&text, cx, active, earlier_runs, want, &who, rx) {
            OnText::Next => {}
            OnText::Reply(reply) => {
                let _ = ws.send(Message::Text(reply.into())).await;
            }
            OnText::Done(read) => return read,
        }
    }
}

/// What [`read`] does after a text frame.
enum OnText {
    /// Reads on.
    Next,
    /// Sends this answer (a ping's), then reads on.
    Reply(String),
    /// Returns.
    Done(Read),
}

/// Judges one text frame for [`read`]: the wanted frame (or a server error
/// instead) ends the read; an agent event is the active run's (its end ends
/// the read) or, with no run active, a late, crossed or foreign one.
fn on_text(
    text: &str,
    cx: &ReadCtx<'_>,
    active: &mut Option<Box<ActiveRun>>,
    earlier_runs: &mut Vec<String>,
    want: Want<'_>,
    who: &Who<'_>,
    rx: Instant,
) -> OnText {
    let profile = cx.profile;
    cx.obs.count_n("bytes.received", text.len() as u64);
    let frame = profile.decode(text);
    if stray(&frame, active.is_some()) {
        cx.flood.unexpected();
    }
    if let Frame::ServerError { auth: true, .. } = &frame {
        cx.auth_refused.store(true, Ordering::Relaxed);
    }
    if let Want::Frame(w) = want {
        if matches!(&frame, Frame::Unknown(name) | Frame::Ignored(name) if name == w) {
            if let Ok(v) = serde_json::from_str(text) {
                return OnText::Done(Read::Got(v));
            }
        }
        if let Frame::ServerError { code, .. } = &frame {
            let code = code.clone().unwrap_or_else(|| "error".into());
            count_frame(&frame, cx.obs, cx.flood);
            return OnText::Done(Read::ServerError(code));
        }
    }
    for v in frame_violation(&frame, text.len(), profile) {
        match active.as_mut() {
            Some(run) => run.violated(cx.obs, v, text),
            None => note_violation(cx.obs, &v, text, who),
        }
    }
    let Frame::Agent(ev) = frame else {
        return match count_frame(&frame, cx.obs, cx.flood) {
            Some(reply) => OnText::Reply(reply),
            None => OnText::Next,
        };
    };
    let Some(run) = active.as_mut() else {
        return match between_runs(&ev, text, profile, cx, earlier_runs) {
            Some(class) => OnText::Done(Read::Violated(class)),
            None => OnText::Next,
        };
    };
    if let Belongs::Foreign(v) = check_isolation(&ev, &run.me, earlier_runs) {
        cx.obs.count("frames.foreign");
        // A late event of the run that just ended ok is that run's fault.
        if v.class == "late_event" && cx.is_held(ev.run_id.as_deref()) {
            let v = late_or_duplicate(&ev, v, profile);
            let who = Who {
                user_id: cx.user_id,
                run_id: ev.run_id.as_deref(),
            };
            note_violation(cx.obs, &v, text, &who);
            return OnText::Done(Read::Violated(v.class));
        }
        run.violated(cx.obs, v, text);
        return OnText::Next;
    }
    if let Some(outcome) = run.on_event(&ev, text, profile, cx.obs, rx) {
        let report = active.take().expect("a run is active").finish(outcome);
        remember_run(earlier_runs, report.run_id.as_deref());
        return OnText::Done(Read::RunEnded(report));
    }
    OnText::Next
}

/// When the kernel had the frame in hand at `now` (`now` itself without a
/// kernel stamp), recording how long chatload took to get to it
/// (`generator_delay`): latencies end at the kernel's time.
fn received(cx: &ReadCtx<'_>, now: Instant) -> Instant {
    match cx.rx.and_then(|c| c.received(now)) {
        Some(rx) => {
            let delay = (now - rx).as_micros() as u64;
            cx.obs.sample(crate::names::GENERATOR_DELAY, delay);
            rx
        }
        None => now,
    }
}

#[cfg(test)]
mod tests;
