//! Realistic journeys against the embedded reference server: a weighted mix
//! with threads, history checks, thread switches, think distributions and
//! repeat blocks; persistence misses counted exactly against the server's
//! truth; thread isolation on the server; history leaks caught by chatload.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatload::auth::{Minter, Secret};
use chatload::server::{self, Settings};
use common::*;
use futures_util::{SinkExt, StreamExt};

fn mix(users: u64, faults: &str) -> String {
    format!(
        r#"
version = 1
name = "mix"
seed = 11
[server]
event_delay = ["1ms", "4ms"]
faults = "{faults}"
[workload]
users = {users}
iterations = 1

[[journeys]]
name = "chatters"
weight = 7
[[journeys.steps]]
step = "create_thread"
[[journeys.steps]]
step = "repeat"
times = 3
[[journeys.steps.steps]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}} ({{{{run}}}})", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journeys.steps.steps]]
step = "await"
timeout = "10s"
[[journeys.steps.steps]]
step = "think"
lognormal = {{ median = "20ms", sigma = 0.5 }}
[[journeys.steps]]
step = "history"
[[journeys.steps]]
step = "create_thread"
name = "create_second"
[[journeys.steps]]
step = "switch_thread"
[[journeys.steps]]
step = "history"
name = "history_after_switch"

[[journeys]]
name = "holders"
weight = 2
[[journeys.steps]]
step = "connect"
[[journeys.steps]]
step = "think"
uniform = ["50ms", "150ms"]
[[journeys.steps]]
step = "reconnect"
[[journeys.steps]]
step = "disconnect"

[[journeys]]
name = "readers"
weight = 1
[[journeys.steps]]
step = "list_threads"
[[journeys.steps]]
step = "think"
exponential = "30ms"
"#
    )
}

/// 100 users in a 70/20/10 mix: every step has its metric; a clean server
/// loses nothing; a server told to lose messages loses exactly what its truth
/// says, and chatload counts exactly that many persistence misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_mix_measures_every_step_and_counts_lost_messages_exactly() {
    let _g = goose_lock().await;
    let (_d, out) = out_dir("clean");
    let r = run(parse(&mix(100, "")), None, SECRET, out).await;
    assert_eq!(r.snapshot.verdict, "pass", "{:?}", r.snapshot.notes);
    // Every step has a metric: its own (REST steps by name, `thread_switch`,
    // the socket's `ws_connect`, the run's `ttc`) or `step.<name>`.
    for (step, metric) in [
        ("create_thread", "create_thread"),
        ("send", "step.send"),
        ("await", "ttc"),
        ("think", "step.think"),
        ("history", "history"),
        ("create_second", "create_second"),
        ("switch_thread", "thread_switch"),
        ("history_after_switch", "history_after_switch"),
        ("connect", "ws_connect"),
        ("reconnect", "step.reconnect"),
        ("disconnect", "step.disconnect"),
        ("list_threads", "list_threads"),
    ] {
        let h = r
            .snapshot
            .histograms
            .get(metric)
            .unwrap_or_else(|| panic!("no metric `{metric}` for step `{step}`"));
        assert!(h.count > 0, "{step}");
    }
    // 70 chatters x 3 runs, every one stored and found again.
    assert_eq!(counter(&r, "runs.ok"), 210);
    assert_eq!(truth(&r, "messages.stored"), 210);
    assert_eq!(counter(&r, "persistence_miss"), 0);
    assert_eq!(counter(&r, "threads.created"), 140);
    assert_eq!(counter(&r, "threads.switched"), 70);
    assert_eq!(counter(&r, "rest.history.200"), 70);
    assert_eq!(counter(&r, "rest.list_threads.200"), 10);
    assert_eq!(counter(&r, "reconnects"), 20);
    assert_eq!(counter(&r, "violations.cross_user_history"), 0);
    for metric in ["create_thread", "history", "list_threads", "thread_switch"] {
        assert!(r.snapshot.histograms.contains_key(metric), "{metric}");
    }

    let (_d2, out2) = out_dir("lossy");
    let r = run(parse(&mix(100, "lose_message=5%")), None, SECRET, out2).await;
    let lost = truth(&r, "faults.lose_message");
    assert!(lost > 0, "the seed must lose some messages");
    assert_eq!(
        counter(&r, "persistence_miss"),
        lost,
        "every lost message, counted once"
    );
    assert_eq!(truth(&r, "messages.stored") + lost, 210);
}

fn token(secret: &Secret, user: &str) -> String {
    Minter::new(
        secret,
        chatload::auth::netra_claims(),
        Duration::from_secs(300),
    )
    .mint(user, std::time::SystemTime::now(), &format!("jti-{user}"))
    .unwrap()
    .expose()
    .to_string()
}

/// The reference server never shows one user another's thread: 403 for
/// another user's thread (REST and socket), 404 for an unknown one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_never_read_another_users_thread() {
    let secret = Secret::new(SECRET);
    let srv = server::spawn(
        Settings::new(secret.clone()),
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    let (alice, bob) = (token(&secret, "alice"), token(&secret, "bob"));
    let http = reqwest::Client::new();
    let base = srv.http_url();
    let created: serde_json::Value = http
        .post(format!("{base}/api/threads"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"title": "private"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let posted = http
        .post(format!("{base}/api/threads/{id}/messages"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"message": "alice's secret plan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let status =
        |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    // (method, path, whose token, body, expected status)
    let thread = format!("/api/threads/{id}");
    let messages = format!("/api/threads/{id}/messages");
    let title = serde_json::json!({"title": "mine now"});
    let message = serde_json::json!({"message": "x"});
    let table: [(reqwest::Method, &str, &str, Option<&serde_json::Value>, u16); 7] = [
        (reqwest::Method::GET, &thread, &alice, None, 200),
        (reqwest::Method::GET, &thread, &bob, None, 403),
        (reqwest::Method::GET, &messages, &bob, None, 403),
        (reqwest::Method::POST, &messages, &bob, Some(&message), 403),
        (
            reqwest::Method::GET,
            "/api/threads/th-none/messages",
            &alice,
            None,
            404,
        ),
        // PUT and DELETE follow the same rule: bob can change or remove nothing.
        (reqwest::Method::PUT, &thread, &bob, Some(&title), 403),
        (reqwest::Method::DELETE, &thread, &bob, None, 403),
    ];
    for (method, path, tok, body, want) in table {
        let mut req = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(tok);
        if let Some(b) = body {
            req = req.json(b);
        }
        assert_eq!(status(req).await, want, "{method} {path}");
    }
    let renamed: serde_json::Value = http
        .put(format!("{base}/api/threads/{id}"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"title": "still private"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["title"], "still private");
    assert_eq!(
        status(http.get(format!("{base}/api/threads/{id}"))).await,
        403,
        "no token"
    );
    assert_eq!(
        status(
            http.get(format!("{base}/api/threads"))
                .bearer_auth("not-a-jwt")
        )
        .await,
        401
    );
    let bobs: serde_json::Value = http
        .get(format!("{base}/api/threads"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bobs,
        serde_json::json!([]),
        "bob lists none of alice's threads"
    );

    // Over the socket: bob cannot switch to alice's thread; alice can, and sees her message.
    let switch = |tok: String| {
        let url = srv.ws_url();
        let id = id.clone();
        async move {
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                    .unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {tok}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            let ready = ws
                .next()
                .await
                .unwrap()
                .unwrap()
                .into_text()
                .unwrap()
                .to_string();
            assert!(ready.contains("connection_established"), "{ready}");
            let msg = serde_json::json!({"type": "switch_thread", "payload": {"thread_id": id}});
            ws.send(tokio_tungstenite::tungstenite::Message::Text(
                msg.to_string().into(),
            ))
            .await
            .unwrap();
            ws.next()
                .await
                .unwrap()
                .unwrap()
                .into_text()
                .unwrap()
                .to_string()
        }
    };
    let bob_sees = switch(bob.clone()).await;
    assert!(
        bob_sees.contains("THREAD_ACCESS_DENIED") && !bob_sees.contains("secret plan"),
        "{bob_sees}"
    );
    let alice_sees = switch(alice.clone()).await;
    assert!(
        alice_sees.contains("thread_data") && alice_sees.contains("alice's secret plan"),
        "{alice_sees}"
    );
    // Alice deletes her thread: it is gone for her too.
    assert_eq!(
        status(
            http.delete(format!("{base}/api/threads/{id}"))
                .bearer_auth(&alice)
        )
        .await,
        200
    );
    assert_eq!(
        status(
            http.get(format!("{base}/api/threads/{id}"))
                .bearer_auth(&alice)
        )
        .await,
        404
    );
    let t = srv.truth();
    assert_eq!(t["threads.forbidden_403"], 6);
    assert_eq!(t["threads.not_found_404"], 2);
    assert_eq!(t["threads.deleted"], 1);
    srv.shutdown().await;
}

/// A server that leaks another user's message into history reads: chatload
/// counts each leak (exactly the server's truth) and its sample names both users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatload_reports_a_cross_user_history_leak() {
    let _g = goose_lock().await;
    let (_d, out) = out_dir("leak");
    let r = run(parse(&mix(30, "leak_history=20%")), None, SECRET, out).await;
    let leaked = truth(&r, "faults.leak_history");
    assert!(leaked > 0, "the seed must leak some history reads");
    assert_eq!(counter(&r, "violations.cross_user_history"), leaked);
    let sample = r
        .snapshot
        .samples
        .iter()
        .find(|s| s.class == "cross_user_history")
        .expect("a sample of the leak");
    assert!(
        sample.message.contains(&sample.user_id),
        "{}",
        sample.message
    );
    assert!(
        sample.message.contains("holds a message of chatload-user-"),
        "{}",
        sample.message
    );
    assert_eq!(counter(&r, "persistence_miss"), 0, "a leak is not a loss");
}

/// Prompts and other variables from a data file: per user (user N takes row
/// N) or round robin (every run the next row); columns fill `{{name}}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_fill_templates_per_user_or_round_robin() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rows.csv"),
        "prompt,topic\n\"Cost report, please\",finance\nSummarise the outage,ops\nPlan the sprint,eng\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rows.jsonl"),
        "{\"prompt\": \"one\", \"topic\": \"a\"}\n{\"prompt\": \"two\", \"topic\": \"b\"}\n",
    )
    .unwrap();
    let text = |file: &str, select: &str| {
        format!(
            r#"
version = 1
name = "data"
[data]
file = "{file}"
select = "{select}"
[workload]
users = 3
iterations = 2
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}} [{{{{topic}}}}]", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "history"
"#
        )
    };
    let load = |t: String| {
        chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), t)
            .unwrap_or_else(|d| panic!("{d}"))
    };
    // The history check compares the stored text with what was sent, so a
    // clean run with zero misses proves the rows were rendered and stored.
    let (_d, out) = out_dir("per-user");
    let r = run(load(text("rows.csv", "per_user")), None, SECRET, out).await;
    assert_eq!(counter(&r, "runs.ok"), 6);
    assert_eq!(counter(&r, "persistence_miss"), 0);
    assert_eq!(
        counter(&r, "history.messages_checked"),
        3 + 6,
        "1 then 2 messages per user"
    );
    let (_d2, out2) = out_dir("rr");
    let r = run(load(text("rows.jsonl", "round_robin")), None, SECRET, out2).await;
    assert_eq!(counter(&r, "runs.ok"), 6);
    assert_eq!(counter(&r, "persistence_miss"), 0);

    // A template naming a column the file does not have is refused at load.
    let bad = text("rows.csv", "per_user").replace("{{topic}}", "{{region}}");
    let err = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("{{region}}") && err.contains("{{topic}}"),
        "{err}"
    );
    let missing = text("nope.csv", "per_user");
    let err = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.file") && err.contains("nope.csv"),
        "{err}"
    );
}

/// Data columns fill `http` steps too, and each user takes its own row: user
/// N's thread titles come from row N (read back from the server). Regression:
/// `http` steps rendered captured variables only, leaving `{{topic}}` as
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_columns_fill_http_steps_with_each_users_own_row() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rows.csv"),
        "prompt,topic\nP0,finance\nP1,ops\nP2,eng\n",
    )
    .unwrap();
    let text = r#"
version = 1
name = "data-http"
[data]
file = "rows.csv"
select = "per_user"
[workload]
users = 3
iterations = 2
[[journey]]
step = "http"
name = "titled"
method = "POST"
path = "/api/threads"
body = { title = "{{topic}}: {{prompt}}" }
"#;
    let sc = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), text.into())
        .unwrap_or_else(|d| panic!("{d}"));
    let secret = Secret::new(SECRET);
    let srv = server::spawn(
        Settings::new(secret.clone()),
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    let (_d, out) = out_dir("data-http");
    let r = run(sc, Some(srv.ws_url()), SECRET, out).await;
    assert_eq!(counter(&r, "rest.titled.200"), 6);
    let http = reqwest::Client::new();
    for (n, want) in ["finance: P0", "ops: P1", "eng: P2"].iter().enumerate() {
        let user = format!("chatload-user-{n:05}");
        let threads: serde_json::Value = http
            .get(format!("{}/api/threads", srv.http_url()))
            .bearer_auth(token(&secret, &user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let titles: Vec<&str> = threads
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, vec![*want, *want], "{user}");
    }
    srv.shutdown().await;
}

/// Generic `http` steps: templates in path and body, expected statuses, and a
/// captured field used by later steps; journeys given exact user counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_capture_fields_for_later_steps_and_journeys_take_exact_counts() {
    let _g = goose_lock().await;
    let text = r#"
version = 1
name = "http"
[workload]
users = 5
iterations = 1

[[journeys]]
name = "api"
users = 3
[[journeys.steps]]
step = "http"
name = "create"
method = "POST"
path = "/api/threads"
body = { title = "made by {{user}}" }
capture = { tid = "id" }
[[journeys.steps]]
step = "http"
name = "post_message"
method = "POST"
path = "/api/threads/{{tid}}/messages"
body = { message = "hello from {{user}}" }
[[journeys.steps]]
step = "http"
name = "read"
path = "/api/threads/{{tid}}"
capture = { count = "message_count" }
[[journeys.steps]]
step = "http"
name = "unknown"
path = "/api/threads/th-made-up"
expect = 404
[[journeys.steps]]
step = "send"
message = { type = "start_agent", payload = { user_request = "in thread {{tid}} with {{count}} message", thread_id = "{{tid}}", run_id = "{{run}}" } }
[[journeys.steps]]
step = "await"
timeout = "10s"

[[journeys]]
name = "idle"
users = 2
[[journeys.steps]]
step = "connect"
name = "idle_connect"
"#;
    let (_d, out) = out_dir("http");
    let r = run(parse(text), None, SECRET, out).await;
    assert_eq!(r.snapshot.verdict, "pass", "{:?}", r.snapshot.notes);
    for (k, n) in [
        ("rest.create.200", 3),
        ("rest.post_message.200", 3),
        ("rest.read.200", 3),
        ("rest.unknown.404", 3),
        ("runs.ok", 3),
    ] {
        assert_eq!(counter(&r, k), n, "{k}");
    }
    // 3 api users connect at their send, 2 idle users at idle_connect.
    assert_eq!(r.snapshot.histograms["ws_connect"].count, 5);
    assert_eq!(truth(&r, "threads.created"), 3);
    // The run went to the captured thread: 1 posted + 1 run message stored there.
    assert_eq!(truth(&r, "messages.stored"), 3);
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(md.contains("HTTP create.200"), "{md}");

    // Counts must add up to workload.users; an unknown placeholder is refused.
    let bad = text
        .replace("users = 5", "users = 6")
        .replace("{{tid}}/messages", "{{tidd}}/messages");
    let err = chatload::scenario::Scenario::parse(std::path::Path::new("h.toml"), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("add up to 5"), "{err}");
    assert!(err.contains("{{tidd}}"), "{err}");
}
