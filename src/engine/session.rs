//! One socket's protocol logic: becoming ready and following an agent run to its
//! terminal event. Written against generic `Sink`/`Stream` halves so unit tests
//! drive it with channels; every wait has a deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::metrics::{names, ObsSender, Observation, OffendingFrame, SAMPLE_FRAME_BYTES};
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

/// What waiting for one named frame ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameOutcome {
    /// The frame arrived (parsed).
    Got(serde_json::Value),
    /// The server answered with an error frame instead.
    ServerError(String),
    Closed(u16),
    TimedOut,
}

/// Reads frames until one of type `want` (the profile's type field), a server
/// error frame, a close or the deadline; answers what the profile answers and
/// counts what else arrives.
pub async fn await_frame<S>(
    ws: &mut S,
    profile: &Profile,
    want: &str,
    deadline: Instant,
    obs: &ObsSender,
    who: &Who<'_>,
) -> FrameOutcome
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let msg = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Err(_) => return FrameOutcome::TimedOut,
            Ok(None) | Ok(Some(Err(_))) => return FrameOutcome::Closed(ABNORMAL_CLOSE),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                obs.count_n("bytes.received", t.len() as u64);
                let frame = profile.decode(&t);
                if matches!(&frame, Frame::Unknown(name) | Frame::Ignored(name) if name == want) {
                    if let Ok(v) = serde_json::from_str(&t) {
                        return FrameOutcome::Got(v);
                    }
                }
                if let Frame::ServerError { code, .. } = &frame {
                    let code = code.clone().unwrap_or_else(|| "error".into());
                    count_frame(&frame, obs);
                    return FrameOutcome::ServerError(code);
                }
                for v in frame_violation(&frame, t.len(), profile) {
                    note_violation(obs, &v, &t, who);
                }
                if let Frame::Agent(_) = &frame {
                    obs.count("frames.between_runs");
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
            Message::Close(f) => return FrameOutcome::Closed(close_code(f)),
            _ => {}
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
    /// When the run started (send time in the closed model).
    pub started: Instant,
}

/// How a run ended and what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub outcome: RunOutcome,
    pub violations: Vec<Violation>,
    /// The run id the run ended with (chosen or adopted).
    pub run_id: Option<String>,
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

/// Per-run timings, recorded when the run ends.
#[derive(Debug, Default)]
struct RunTimes {
    events: u64,
    first: Option<Duration>,
    last: Option<Duration>,
    gap_max: Duration,
    seen: BTreeSet<String>,
}

/// Follows one run to its terminal event, a close or the deadline, recording
/// `ttfe`, `event_<name>`, `ttc`, `event_gap_max`, event counts and every
/// violation of the profile's rules.
pub async fn await_run<S>(
    ws: &mut S,
    profile: &Profile,
    run: &PendingRun,
    earlier_runs: &[String],
    deadline: Instant,
    obs: &ObsSender,
) -> RunReport
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let mut t = RunTimes::default();
    let mut check = RunCheck::new(&profile.rules);
    let mut me = Identity {
        user_id: run.user_id.clone(),
        thread_id: run.thread_id.clone(),
        run_id: run.run_id.clone(),
    };
    let mut violations = Vec::new();
    macro_rules! violated {
        ($v:expr, $raw:expr) => {{
            let v = $v;
            note_violation(
                obs,
                &v,
                $raw,
                &Who {
                    user_id: &me.user_id,
                    run_id: me.run_id.as_deref(),
                },
            );
            violations.push(v);
        }};
    }
    let outcome = loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        let msg = match next {
            Err(_) => break RunOutcome::TimedOut { events: t.events },
            Ok(None) | Ok(Some(Err(_))) => {
                break RunOutcome::Closed {
                    code: ABNORMAL_CLOSE,
                }
            }
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(b) => {
                obs.count_n("bytes.received", b.len() as u64);
                obs.count("frames.binary");
                violated!(binary_violation(b.len()), "<binary>");
                continue;
            }
            Message::Close(f) => {
                break RunOutcome::Closed {
                    code: close_code(f),
                }
            }
            _ => continue,
        };
        obs.count_n("bytes.received", text.len() as u64);
        let frame = profile.decode(&text);
        for v in frame_violation(&frame, text.len(), profile) {
            violated!(v, &text);
        }
        let Frame::Agent(ev) = frame else {
            if let Some(reply) = count_frame(&frame, obs) {
                let _ = ws.send(Message::Text(reply.into())).await;
            }
            continue;
        };
        if let Belongs::Foreign(v) = check_isolation(&ev, &me, earlier_runs) {
            obs.count("frames.foreign");
            violated!(v, &text);
            continue;
        }
        if me.run_id.is_none() {
            me.run_id = ev.run_id.clone();
        }
        let at = run.started.elapsed();
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
        for v in check.on_event(&ev, &text, at) {
            violated!(v, &text);
        }
        if let Some(ok) = profile.terminal(&ev.name) {
            obs.sample(names::TTC, at.as_micros() as u64);
            obs.sample(names::EVENT_GAP_MAX, t.gap_max.as_micros() as u64);
            if ok {
                for v in check.on_end() {
                    violated!(v, &text);
                }
                break RunOutcome::Ok;
            }
            break RunOutcome::AgentError;
        }
    };
    RunReport {
        outcome,
        violations,
        run_id: me.run_id,
    }
}

/// Reads whatever already arrived on an idle socket (between runs) without
/// waiting: answers pings, counts late or foreign events, and reports a close.
pub fn drain<S>(
    ws: &mut S,
    profile: &Profile,
    user_id: &str,
    earlier_runs: &[String],
    obs: &ObsSender,
) -> (Vec<String>, Option<u16>)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let mut replies = Vec::new();
    let who = Who {
        user_id,
        run_id: None,
    };
    let me = Identity {
        user_id: user_id.to_string(),
        thread_id: None,
        run_id: Some(String::new()),
    };
    loop {
        let Some(next) = ws.next().now_or_never() else {
            return (replies, None);
        };
        let msg = match next {
            None | Some(Err(_)) => return (replies, Some(ABNORMAL_CLOSE)),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Text(text) => {
                obs.count_n("bytes.received", text.len() as u64);
                let frame = profile.decode(&text);
                for v in frame_violation(&frame, text.len(), profile) {
                    note_violation(obs, &v, &text, &who);
                }
                if let Frame::Agent(ev) = &frame {
                    obs.count("frames.between_runs");
                    let v = match check_isolation(ev, &me, earlier_runs) {
                        Belongs::Foreign(v)
                            if v.class == "late_event" && profile.terminal(&ev.name).is_some() =>
                        {
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
                    note_violation(obs, &v, &text, &who);
                } else if let Some(reply) = count_frame(&frame, obs) {
                    replies.push(reply);
                }
            }
            Message::Binary(b) => {
                obs.count("frames.binary");
                note_violation(obs, &binary_violation(b.len()), "<binary>", &who);
            }
            Message::Close(f) => return (replies, Some(close_code(f))),
            _ => {}
        }
    }
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

    fn run() -> PendingRun {
        PendingRun {
            run_id: Some("r1".into()),
            thread_id: None,
            user_id: "u".into(),
            started: Instant::now(),
        }
    }

    async fn report(ws: &mut Scripted, deadline: Instant, obs: &ObsSender) -> RunReport {
        await_run(ws, &Profile::netra(), &run(), &[], deadline, obs).await
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
        let r = await_run(
            &mut ws,
            &Profile::netra(),
            &pending,
            &[],
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
    async fn drain_reads_only_what_already_arrived() {
        let c = Collector::start();
        let p = Profile::netra();
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
        let (replies, closed) = drain(&mut ws, &p, "u", &["r0".to_string()], &c.sender());
        assert_eq!(replies, vec![r#"{"type":"pong"}"#.to_string()]);
        assert_eq!(closed, Some(1011));
        let rec = c.finish().await.total;
        assert_eq!(rec.counter("violations.duplicate_terminal"), 1);
    }
}
