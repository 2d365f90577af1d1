//! The reference server's own numbers (issue 20), as a platform's health
//! endpoint shows them: `GET /__chatload/stats` (JSON) and
//! `GET /__chatload/metrics` (Prometheus text), read from `chatload serve`
//! in its own process (its RSS must not be the generator's). A clean server
//! counts sockets and runs as they open and close and ends at 0; the
//! `leak_connections` fault leaves exactly its truth count behind (the same
//! count for the same seed); `leak_memory` really grows the RSS.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::*;

/// `chatload serve` on a port of its choosing, killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `chatload serve --seed SEED --faults FAULTS` and reads its address
/// from its own announcement.
fn serve(seed: u64, faults: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--seed",
            &seed.to_string(),
        ])
        .args(["--faults", faults])
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve announces its address").unwrap();
        if let Some(rest) = line.strip_prefix("reference server on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep reading its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr }
}

async fn get(srv: &Served, path: &str) -> String {
    let r = reqwest::get(format!("http://{}{path}", srv.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

async fn stats(srv: &Served) -> Value {
    serde_json::from_str(&get(srv, "/__chatload/stats").await).unwrap()
}

async fn server_truth(srv: &Served, key: &str) -> i64 {
    let t: Value = serde_json::from_str(&get(srv, "/__chatload/truth").await).unwrap();
    t[key].as_i64().unwrap_or(0)
}

/// Every socket closed and every run ended (a run's task ends a moment
/// after its last event is handed to the socket).
fn quiet(s: &Value) -> bool {
    n(s, "/open_sockets") == 0 && n(s, "/runs_in_flight") == 0
}

/// Polls the stats until `done` holds (a condition, not a fixed sleep; the
/// server counts a close a moment after the client saw it).
async fn stats_when(srv: &Served, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(srv).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn n(s: &Value, pointer: &str) -> i64 {
    s.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{pointer} missing: {s}"))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket of `user` with a real token, after its ready frame.
async fn ready_socket(srv: &Served, user: &str) -> Socket {
    let minter = chatload::auth::Minter::new(
        &chatload::auth::Secret::new(SECRET),
        parse(&iterations_scenario(1, 1, "")).auth.claims,
        Duration::from_secs(120),
    );
    let token = minter
        .mint(user, std::time::SystemTime::now(), &format!("j-{user}"))
        .unwrap();
    let url = format!("ws://{}/ws?token={}", srv.addr, token.expose());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_text(&mut ws).await;
    assert!(hello.contains("connection_established"), "{hello}");
    ws
}

async fn next_text(ws: &mut Socket) -> String {
    loop {
        match ws.next().await.expect("a frame").expect("a good frame") {
            Message::Text(t) => return t.to_string(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// A chatload run of `users` x `iterations` against the served server.
async fn drive(srv: &Served, users: u64, iterations: u64) -> chatload::run::RunResult {
    let _g = goose_lock().await;
    let (_dir, out) = out_dir("run");
    let scenario = parse(&iterations_scenario(users, iterations, ""));
    run(scenario, Some(format!("ws://{}/ws", srv.addr)), SECRET, out).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_server_counts_sockets_as_they_open_and_close() {
    let srv = serve(3, "");
    let s = stats(&srv).await;
    assert_eq!(
        [
            n(&s, "/open_sockets"),
            n(&s, "/active_connections"),
            n(&s, "/manager/connections"),
            n(&s, "/runs_in_flight")
        ],
        [0, 0, 0, 0],
        "{s}"
    );
    let mut sockets = Vec::new();
    for i in 0..5 {
        sockets.push(ready_socket(&srv, &format!("u{i}")).await);
    }
    // Counted as active just after the ready frame left.
    let s = stats_when(&srv, "5 active", |s| n(s, "/active_connections") == 5).await;
    assert_eq!(n(&s, "/open_sockets"), 5, "{s}");
    assert_eq!(n(&s, "/manager/connections"), 5, "{s}");
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
    let s = stats_when(&srv, "all closed", quiet).await;
    assert_eq!(n(&s, "/active_connections"), 0, "{s}");
    assert_eq!(n(&s, "/manager/connections"), 0, "{s}");

    // The chatload client's users, too: every socket and run ends at 0.
    let r = drive(&srv, 6, 3).await;
    assert_eq!(counter(&r, "runs.ok"), 18);
    let s = stats_when(&srv, "all closed", quiet).await;
    assert_eq!(
        [
            n(&s, "/active_connections"),
            n(&s, "/manager/connections"),
            n(&s, "/runs_in_flight")
        ],
        [0, 0, 0],
        "{s}"
    );
    assert!(n(&s, "/rss_bytes") > 1 << 20, "{s}");
    assert_eq!(server_truth(&srv, "faults.leak_connections").await, 0);
}

/// A run the stall fault hangs is in flight until its socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_run_stays_in_flight_until_its_socket_closes() {
    let srv = serve(3, "stall=100%");
    let mut ws = ready_socket(&srv, "ann").await;
    let start =
        r#"{"type":"start_agent","payload":{"user_request":"hi","thread_id":"t1","run_id":"r1"}}"#;
    ws.send(Message::Text(start.into())).await.unwrap();
    let first = next_text(&mut ws).await;
    assert!(first.contains("r1"), "{first}");
    let s = stats(&srv).await;
    assert_eq!(n(&s, "/runs_in_flight"), 1, "{s}");
    ws.close(None).await.unwrap();
    let s = stats_when(&srv, "no run in flight", |s| {
        n(s, "/runs_in_flight") == 0 && n(s, "/open_sockets") == 0
    })
    .await;
    assert_eq!(n(&s, "/active_connections"), 0, "{s}");
    // Counted once its socket's task ended (the count follows the send).
    assert_eq!(server_truth(&srv, "faults.stall").await, 1);
}

/// leak_connections=50% with a fixed seed: after every socket closed, the
/// server still believes in exactly the closes it forgot (its truth count),
/// the manager's count with it; the same seed forgets the same closes. The
/// Prometheus form passes `promtool check metrics` and says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_connections_are_exactly_the_truth_count_and_replay() {
    let mut leaked = Vec::new();
    for _ in 0..2 {
        let srv = serve(9, "leak_connections=50%");
        let r = drive(&srv, 8, 3).await;
        assert_eq!(counter(&r, "runs.ok"), 24);
        let s = stats_when(&srv, "all closed", quiet).await;
        let truth = server_truth(&srv, "faults.leak_connections").await;
        let ready = server_truth(&srv, "connections.ready").await;
        assert!(truth > 0 && truth < ready, "{truth} of {ready}");
        assert_eq!(n(&s, "/active_connections"), truth, "{s}");
        assert_eq!(n(&s, "/manager/connections"), truth, "{s}");
        assert_eq!(n(&s, "/runs_in_flight"), 0, "{s}");
        prometheus_matches_json(&srv).await;
        leaked.push(truth);
    }
    assert_eq!(leaked[0], leaked[1], "the same seed leaks the same closes");
}

/// The value of one series (`name` with its labels) in Prometheus text.
fn series(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        .parse()
        .unwrap()
}

async fn prometheus_matches_json(srv: &Served) {
    let before = stats(srv).await;
    let text = get(srv, "/__chatload/metrics").await;
    let after = stats(srv).await;
    for (family, pointer) in [
        ("chatload_server_active_connections", "/active_connections"),
        ("chatload_server_open_sockets", "/open_sockets"),
        (
            "chatload_server_manager_connections",
            "/manager/connections",
        ),
        ("chatload_server_runs_in_flight", "/runs_in_flight"),
        (
            "chatload_server_connections{state=\"active\"}",
            "/active_connections",
        ),
        (
            "chatload_server_connections{state=\"open\"}",
            "/open_sockets",
        ),
    ] {
        // Nothing moves once every socket is closed.
        assert_eq!(n(&before, pointer), n(&after, pointer));
        assert_eq!(
            series(&text, family),
            n(&before, pointer),
            "{family}\n{text}"
        );
    }
    // RSS is read per request, and a request's own allocations can move it
    // by a page or two: within 1 MiB of the readings around it.
    let rss = series(&text, "chatload_server_rss_bytes");
    let (a, b) = (n(&before, "/rss_bytes"), n(&after, "/rss_bytes"));
    assert!(
        rss >= a.min(b) - (1 << 20) && rss <= a.max(b) + (1 << 20),
        "{rss} vs {a}, {b}"
    );
    promtool_check(&text);
}

/// leak_memory=1MiB: 20 completed runs keep 20 MiB for good, and the
/// server's own RSS shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_memory_grows_the_servers_rss() {
    let srv = serve(3, "leak_memory=1MiB");
    let before = n(&stats(&srv).await, "/rss_bytes");
    let r = drive(&srv, 4, 5).await;
    assert_eq!(counter(&r, "runs.ok"), 20);
    let s = stats_when(&srv, "all closed", quiet).await;
    assert_eq!(server_truth(&srv, "faults.leak_memory_runs").await, 20);
    assert_eq!(
        server_truth(&srv, "faults.leak_memory_bytes").await,
        20 << 20
    );
    let grown = n(&s, "/rss_bytes") - before;
    assert!(
        grown >= 15 << 20,
        "RSS grew by {grown} bytes ({before} -> {})",
        n(&s, "/rss_bytes")
    );
    prometheus_matches_json(&srv).await;
}
