//! Unit tests of the session logic, driven by scripted sockets.

use super::*;
use crate::metrics::Collector;
use futures_util::stream;
use std::time::Duration;
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
        step: Default::default(),
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
        rx: None,
        flood: &crate::engine::flood::FloodGate::default(),
        profile: netra(),
        user_id: "u",
        obs,
        auth_refused: &AtomicBool::new(false),
        held: None,
    };
    let mut active = Some(Box::new(ActiveRun::new(pending, netra())));
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
    let out = await_ready(
        &mut ws,
        &p,
        deadline,
        &c.sender(),
        None,
        &who(),
        &Default::default(),
    )
    .await;
    assert_eq!(
        out,
        ReadyOutcome::Closed {
            code: 1008,
            server_error: Some("AUTH_FAILED: bad signature".into()),
            auth: true,
        }
    );
    let mut ws = script(
        &[r#"{"type":"connection_established","data":{"user_id":"u7"}}"#],
        None,
        true,
    );
    assert_eq!(
        await_ready(
            &mut ws,
            &p,
            deadline,
            &c.sender(),
            None,
            &who(),
            &Default::default()
        )
        .await,
        ReadyOutcome::Ready {
            user_id: Some("u7".into())
        }
    );
}

/// The platform's auth failure: `VALIDATION_FAILED` then 1011 before ready
/// is an auth failure; the same 1011 without the frame is not; after ready,
/// an auth frame marks the socket for the close that follows.
#[tokio::test]
async fn an_auth_frame_makes_the_close_after_it_an_auth_failure() {
    let c = Collector::start();
    let p = Profile::netra();
    let deadline = Instant::now() + Duration::from_secs(1);
    let close_1011 = || {
        Some(Message::Close(Some(CloseFrame {
            code: CloseCode::Error,
            reason: "SSOT Auth failed".into(),
        })))
    };
    let refused = r#"{"type":"error_message","error_code":"VALIDATION_FAILED","message":"no"}"#;
    let busy = r#"{"type":"error_message","error_code":"SERVICE_BUSY","message":"no"}"#;
    for (frames, want) in [(vec![refused], true), (vec![busy], false), (vec![], false)] {
        let mut ws = script(&frames, close_1011(), false);
        match await_ready(
            &mut ws,
            &p,
            deadline,
            &c.sender(),
            None,
            &who(),
            &Default::default(),
        )
        .await
        {
            ReadyOutcome::Closed { code, auth, .. } => {
                assert_eq!((code, auth), (1011, want), "{frames:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    let obs = c.sender();
    for (frame, want) in [(refused, true), (busy, false)] {
        let flag = AtomicBool::new(false);
        let cx = ReadCtx {
            rx: None,
            flood: &crate::engine::flood::FloodGate::default(),
            profile: netra(),
            user_id: "u",
            obs: &obs,
            auth_refused: &flag,
            held: None,
        };
        let mut ws = script(&[frame], close_1011(), false);
        let out = read(
            &mut ws,
            &cx,
            &mut None,
            &mut Vec::new(),
            Want::Nothing,
            deadline,
            None,
        )
        .await;
        assert_eq!(
            (out, flag.load(Ordering::Relaxed)),
            (Read::Closed(1011), want)
        );
    }
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
        &Default::default(),
    )
    .await;
    assert_eq!(out, ReadyOutcome::Ready { user_id: None });
    assert_eq!(ws.sent, vec![Message::Text(reply.into())]);
}

#[tokio::test]
async fn a_past_deadline_reads_only_what_already_arrived() {
    let c = Collector::start();
    let obs = c.sender();
    let cx = ReadCtx {
        rx: None,
        flood: &crate::engine::flood::FloodGate::default(),
        profile: netra(),
        user_id: "u",
        obs: &obs,
        auth_refused: &AtomicBool::new(false),
        held: None,
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
        rx: None,
        flood: &crate::engine::flood::FloodGate::default(),
        profile: netra(),
        user_id: "u",
        obs: &obs,
        auth_refused: &AtomicBool::new(false),
        held: None,
    };
    let mut ws = script(
        &[
            r#"{"type":"agent_started","run_id":"r1","user_id":"u","thread_id":"t"}"#,
            r#"{"type":"agent_completed","run_id":"r1","status":"ok","final_response":"x"}"#,
        ],
        None,
        true,
    );
    let mut active = Some(Box::new(ActiveRun::new(run(), netra())));
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
        rx: None,
        flood: &crate::engine::flood::FloodGate::default(),
        profile: netra(),
        user_id: "u",
        obs: &obs,
        auth_refused: &AtomicBool::new(false),
        held: None,
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

/// A duplicate terminal of the run that just ended ok (held, not yet
/// counted) is that run's violation, between runs and during the next run
/// alike; the next run is not blamed for it.
#[tokio::test]
async fn a_straggler_of_the_held_run_fails_that_run() {
    let c = Collector::start();
    let obs = c.sender();
    let cx = ReadCtx {
        rx: None,
        flood: &crate::engine::flood::FloodGate::default(),
        profile: netra(),
        user_id: "u",
        obs: &obs,
        auth_refused: &AtomicBool::new(false),
        held: Some(Some("r0")),
    };
    let dup = r#"{"type":"agent_completed","run_id":"r0","user_id":"u","status":"ok","result":1}"#;
    let mut earlier = vec!["r0".to_string()];
    // Between runs.
    let mut ws = script(&[dup], None, true);
    let now = Instant::now();
    let out = read(
        &mut ws,
        &cx,
        &mut None,
        &mut earlier,
        Want::Nothing,
        now,
        None,
    )
    .await;
    assert_eq!(out, Read::Violated("duplicate_terminal"));
    // During the next run (r1): the active run stays clean.
    let mut ws = script(&[dup], None, true);
    let mut active = Some(Box::new(ActiveRun::new(run(), netra())));
    let out = read(
        &mut ws,
        &cx,
        &mut active,
        &mut earlier,
        Want::Nothing,
        now,
        None,
    )
    .await;
    assert_eq!(out, Read::Violated("duplicate_terminal"));
    let report = active.take().unwrap().finish(RunOutcome::Ok);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    drop(obs);
    let rec = c.finish().await.total;
    assert_eq!(rec.counter("violations.duplicate_terminal"), 2);
    assert_eq!(rec.counter("violations"), 2);
}
