//! End to end: real sockets, real JWTs, the reference server on 127.0.0.1:0.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatload::auth::Secret;
use chatload::server::{self, FaultPlan, Settings};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_users_times_m_runs_complete_exactly() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("nm");
    let r = run(
        parse(&iterations_scenario(12, 5, "")),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    let runs = 12 * 5;
    assert_eq!(r.snapshot.verdict, "pass", "{:?}", r.snapshot.notes);
    assert_eq!(counter(&r, "runs.started"), runs);
    assert_eq!(counter(&r, "runs.ok"), runs);
    assert_eq!(counter(&r, "runs.failed"), 0);
    assert_eq!(r.snapshot.histograms["ttfe"].count, runs);
    assert_eq!(r.snapshot.histograms["ttc"].count, runs);
    assert_eq!(counter(&r, "connections.ready"), 12);
    assert_eq!(truth(&r, "runs.completed"), runs);
    assert_eq!(
        counter(&r, "events.agent_completed"),
        truth(&r, "events.agent_completed")
    );
    assert_eq!(
        counter(&r, "events.agent_thinking"),
        truth(&r, "events.agent_thinking")
    );
    assert_eq!(
        counter(&r, "events.tool_completed"),
        truth(&r, "events.tool_completed")
    );
    // The artifacts are on disk and the snapshot reads back to the same data.
    let text = std::fs::read_to_string(out.join("snapshot.json")).unwrap();
    let back = chatload::metrics::Snapshot::from_json(&text).unwrap();
    assert_eq!(back, r.snapshot);
    let rec = back.recorder().unwrap();
    assert_eq!(rec.histograms["ttc"].len(), runs);
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("| `ttfe` | 60 |"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1011_detections_equal_the_servers_injections() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("1011");
    let text = iterations_scenario(
        20,
        10,
        "[server]\nseed = 99\nfaults = \"close_1011=20%@first_exchange,close_1011=5%@mid_run\"\n",
    );
    let r = run(parse(&text), None, SECRET, out).await;
    let injected = truth(&r, "faults.close_1011");
    assert!(
        injected > 0,
        "the seeded plan injected nothing: {:?}",
        r.snapshot.server_truth
    );
    assert_eq!(counter(&r, "closes.1011"), injected);
    assert_eq!(
        counter(&r, "closes_by_phase.first_exchange.1011")
            + counter(&r, "closes_by_phase.during_run.1011"),
        injected
    );
    assert_eq!(counter(&r, "runs.failed.closed"), injected);
    assert_eq!(counter(&r, "runs.ok"), 200 - injected);
    assert_eq!(counter(&r, "runs.started"), 200);
    // Users whose socket was closed reconnect on their next iteration.
    assert_eq!(
        counter(&r, "connections.attempted"),
        counter(&r, "connections.ready")
    );
    assert!(counter(&r, "reconnects") > 0);
    // No false positives in other classes.
    assert_eq!(counter(&r, "runs.failed"), injected);
    assert_eq!(counter(&r, "closes.1006"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signing_key_fails_every_connection_with_1008_and_aborts() {
    let _g = goose_lock().await;
    let srv = server::spawn(
        Settings::new(Secret::new("the-servers-key")),
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    let (_tmp, out) = out_dir("badkey");
    let r = run(
        parse(&iterations_scenario(5, 2, "")),
        Some(srv.ws_url()),
        "not-the-servers-key",
        out,
    )
    .await;
    let truth = srv.truth();
    srv.shutdown().await;
    assert_eq!(r.snapshot.verdict, "aborted");
    assert_eq!(r.exit_code(), 3);
    let attempted = counter(&r, "connections.attempted");
    assert!(attempted >= 5);
    assert_eq!(counter(&r, "closes_by_phase.before_ready.1008"), attempted);
    assert_eq!(
        truth.get("connections.auth_failed").copied().unwrap_or(0),
        attempted
    );
    assert_eq!(counter(&r, "runs.started"), 0);
    let note = r.snapshot.notes.join("\n");
    assert!(
        note.contains("1008") && note.contains("AUTH_FAILED"),
        "{note}"
    );
    assert!(
        note.contains("secret_env"),
        "the note should say what to check: {note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_that_cannot_hold_fails_the_run() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("thr");
    // Every run waits for at least two 5 ms event delays, so ttc max < 1ms cannot hold.
    let text = iterations_scenario(
        3,
        2,
        "[thresholds]\n\"ttc max\" = \"< 1ms\"\n\"run_ok rate\" = \"> 99%\"\n",
    );
    let r = run(parse(&text), None, SECRET, out).await;
    assert_eq!(r.snapshot.verdict, "fail");
    assert_eq!(r.exit_code(), 1);
    assert!(!r.snapshot.thresholds[0].passed);
    assert!(r.snapshot.thresholds[1].passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_presentation_is_accepted() {
    let _g = goose_lock().await;
    for present in [
        "\"header\"",
        "\"query\"",
        "\"subprotocol:jwt\", \"header\"",
        "\"subprotocol:jwt-base64\"",
        "\"subprotocol:browser\"",
        "\"subprotocol:bearer\"",
        "\"ticket\"",
    ] {
        let (_tmp, out) = out_dir("present");
        let text = iterations_scenario(3, 2, "").replace(
            "[workload]",
            &format!("[auth]\npresent = [{present}]\n[workload]"),
        );
        let r = run(parse(&text), None, SECRET, out).await;
        assert_eq!(
            counter(&r, "runs.ok"),
            6,
            "{present}: {:?}",
            r.snapshot.counters
        );
        assert_eq!(truth(&r, "connections.auth_failed"), 0, "{present}");
        if present.contains("ticket") {
            assert_eq!(counter(&r, "tickets.issued"), 3);
            assert_eq!(truth(&r, "tickets.issued"), 3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_plan_stops_in_flight_runs_at_their_await_deadline() {
    let _g = goose_lock().await;
    // Agent runs take about 6 x 2 s = 12 s; the plan holds 2 s and the await
    // deadline is 3 s, so the run must end near 2 + 3 s, not when the agents finish.
    let text = r#"
version = 1
name = "stop"
[server]
thinking = [4, 4]
tools = [0, 0]
event_delay = ["2s", "2s"]
[workload]
users = 4
ramp = [{ to = 4, over = "0s" }, { hold = "2s" }]
[[journey]]
step = "send"
message = { type = "start_agent", payload = { run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "3s"
"#;
    let (_tmp, out) = out_dir("stop");
    let t0 = Instant::now();
    let r = run(parse(text), None, SECRET, out).await;
    let took = t0.elapsed();
    // A generous bound far below the agents' 12 s: the check is that the
    // deadline, not the agent, ends the run.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let started = counter(&r, "runs.started");
    assert!(started >= 4);
    // No run is lost: each ended as ok or failed, here all by timeout.
    assert_eq!(counter(&r, "runs.failed.timeout"), started);
    assert_eq!(counter(&r, "runs.ok") + counter(&r, "runs.failed"), started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_plan_string_matches_the_table_form() {
    let a = FaultPlan::parse("close_1011=2.5%").unwrap();
    let s = parse(&iterations_scenario(
        1,
        1,
        "[server]\nfaults = { close_1011 = \"2.5%\" }\n",
    ));
    assert_eq!(s.server.faults, a);
}

/// Regression: goose 0.19 never ended a test plan whose last two steps both had
/// 0 users, so a scenario ending in a ramp-down hung forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_ending_in_a_ramp_down_ends() {
    let _g = goose_lock().await;
    let text = r#"
version = 1
name = "ramp-down"
[workload]
users = 3
ramp = [{ to = 3, over = "1s" }, { hold = "1s" }, { to = 0, over = "1s" }]
[[journey]]
step = "send"
message = { type = "start_agent", payload = { run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "5s"
"#;
    let (_tmp, out) = out_dir("rampdown");
    // A deadline against a hang, far above the plan's 3 s.
    let r = tokio::time::timeout(Duration::from_secs(60), run(parse(text), None, SECRET, out))
        .await
        .expect("the run ended");
    assert_eq!(
        r.snapshot.verdict, "pass",
        "{:#?}\n{:#?}",
        r.snapshot.thresholds, r.snapshot.counters
    );
    assert!(counter(&r, "runs.ok") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_single_use_and_needs_a_valid_token() {
    use futures_util::StreamExt;
    let secret = Secret::new(SECRET);
    let srv = server::spawn(
        Settings::new(secret.clone()),
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/websocket/ticket", srv.http_url());
    assert_eq!(http.post(&url).send().await.unwrap().status(), 403);
    assert_eq!(
        http.post(&url)
            .bearer_auth("not-a-jwt")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let minter = chatload::auth::Minter::new(
        &secret,
        parse(&iterations_scenario(1, 1, "")).auth.claims,
        Duration::from_secs(60),
    );
    let token = minter
        .mint("u1", std::time::SystemTime::now(), "j1")
        .unwrap();
    let body: serde_json::Value = http
        .post(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_url = format!(
        "{}?ticket={}",
        srv.ws_url(),
        body["ticket_id"].as_str().unwrap()
    );
    assert_eq!(body["single_use"], true);
    let first_frame = |u: String| async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(u).await.unwrap();
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .to_string()
    };
    assert!(first_frame(ws_url.clone())
        .await
        .contains("connection_established"));
    assert!(
        first_frame(ws_url).await.contains("AUTH_FAILED"),
        "a used ticket is refused"
    );
    srv.shutdown().await;
}
