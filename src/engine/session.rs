//! One socket's protocol logic: becoming ready and following an agent run to its
//! terminal event. Written against generic `Sink`/`Stream` halves so unit tests
//! drive it with channels; every wait has a deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::metrics::{names, ObsSender};
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
        Frame::Ready | Frame::Ignored(_) | Frame::Agent(_) => None,
    }
}

fn close_code(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    frame.map_or(NO_STATUS_CLOSE, |f| u16::from(f.code))
}

/// Reads frames until the profile's ready frame, a close, or the deadline.
pub async fn await_ready<S>(
    ws: &mut S,
    profile: &Profile,
    deadline: Instant,
    obs: &ObsSender,
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
                if let Some(reply) = count_frame(&frame, obs) {
                    let _ = ws.send(Message::Text(reply.into())).await;
                }
            }
            Message::Binary(b) => {
                obs.count_n("bytes.received", b.len() as u64);
                obs.count("frames.binary");
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

/// What the client knows about the run it started.
#[derive(Debug, Clone)]
pub struct PendingRun {
    pub run_id: String,
    /// When the run started (send time in the closed model).
    pub started: Instant,
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
/// `ttfe`, `event_<name>`, `ttc`, `event_gap_max` and event counts.
pub async fn await_run<S>(
    ws: &mut S,
    profile: &Profile,
    run: &PendingRun,
    deadline: Instant,
    obs: &ObsSender,
) -> RunOutcome
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let mut t = RunTimes::default();
    loop {
        let next = tokio::time::timeout_at(deadline.into(), ws.next()).await;
        let msg = match next {
            Err(_) => return RunOutcome::TimedOut { events: t.events },
            Ok(None) | Ok(Some(Err(_))) => {
                return RunOutcome::Closed {
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
                continue;
            }
            Message::Close(f) => {
                return RunOutcome::Closed {
                    code: close_code(f),
                }
            }
            _ => continue,
        };
        obs.count_n("bytes.received", text.len() as u64);
        let frame = profile.decode(&text);
        let Frame::Agent(ev) = frame else {
            if let Some(reply) = count_frame(&frame, obs) {
                let _ = ws.send(Message::Text(reply.into())).await;
            }
            continue;
        };
        if ev.run_id.as_deref().is_some_and(|id| id != run.run_id) {
            obs.count("frames.uncorrelated");
            continue;
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
        if let Some(ok) = profile.terminal(&ev.name) {
            obs.sample(names::TTC, at.as_micros() as u64);
            obs.sample(names::EVENT_GAP_MAX, t.gap_max.as_micros() as u64);
            return if ok {
                RunOutcome::Ok
            } else {
                RunOutcome::AgentError
            };
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
            run_id: "r1".into(),
            started: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_complete_run_records_every_metric_once() {
        let c = Collector::start();
        let mut ws = script(
            &[
                r#"{"type":"ping"}"#,
                r#"{"type":"agent_started","run_id":"r1","data":{}}"#,
                r#"{"type":"agent_thinking","run_id":"other","data":{}}"#,
                r#"{"type":"agent_thinking","run_id":"r1","data":{}}"#,
                r#"{"type":"agent_thinking","run_id":"r1","data":{}}"#,
                "garbage",
                r#"{"type":"agent_completed","run_id":"r1","data":{}}"#,
            ],
            None,
            true,
        );
        let out = await_run(
            &mut ws,
            &Profile::netra(),
            &run(),
            Instant::now() + Duration::from_secs(5),
            &c.sender(),
        )
        .await;
        assert_eq!(out, RunOutcome::Ok);
        assert_eq!(ws.sent, vec![Message::Text(r#"{"type":"pong"}"#.into())]);
        let rec = c.finish().await;
        assert_eq!(rec.histograms["ttfe"].len(), 1);
        assert_eq!(rec.histograms["ttc"].len(), 1);
        assert_eq!(rec.histograms["event_agent_thinking"].len(), 1);
        assert_eq!(rec.counter("events.agent_thinking"), 2);
        assert_eq!(rec.counter("frames.uncorrelated"), 1);
        assert_eq!(rec.counter("frames.unparseable"), 1);
    }

    #[tokio::test]
    async fn close_timeout_and_agent_error_are_classified() {
        let c = Collector::start();
        let p = Profile::netra();
        let soon = || Instant::now() + Duration::from_millis(50);
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Error,
            reason: "boom".into(),
        }));
        let mut ws = script(
            &[r#"{"type":"agent_started","run_id":"r1"}"#],
            Some(close),
            false,
        );
        assert_eq!(
            await_run(&mut ws, &p, &run(), soon(), &c.sender()).await,
            RunOutcome::Closed { code: 1011 }
        );
        let mut ws = script(&[], None, false);
        assert_eq!(
            await_run(&mut ws, &p, &run(), soon(), &c.sender()).await,
            RunOutcome::Closed { code: 1006 }
        );
        let mut ws = script(&[], None, true);
        let out = await_run(&mut ws, &p, &run(), soon(), &c.sender()).await;
        assert_eq!(out.failure_class(), Some("no_response"));
        let mut ws = script(&[r#"{"type":"agent_started","run_id":"r1"}"#], None, true);
        let out = await_run(&mut ws, &p, &run(), soon(), &c.sender()).await;
        assert_eq!(out, RunOutcome::TimedOut { events: 1 });
        let mut ws = script(&[r#"{"type":"agent_error","run_id":"r1"}"#], None, true);
        assert_eq!(
            await_run(&mut ws, &p, &run(), soon(), &c.sender()).await,
            RunOutcome::AgentError
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
        let out = await_ready(&mut ws, &p, deadline, &c.sender()).await;
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
            await_ready(&mut ws, &p, deadline, &c.sender()).await,
            ReadyOutcome::Ready
        );
    }
}
