//! Soak behaviour: drift between the first and last windows of the steady
//! phase is judged (a server that slows down fails, a steady one passes), and
//! the generator's memory stays flat over a compressed soak.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn drift_scenario(slowdown: f64) -> String {
    format!(
        r#"
version = 1
name = "drift"
[output]
interval = "1s"
[drift]
warmup = "2s"
window = "25%"
[server]
event_delay = ["20ms", "40ms"]
slowdown_per_minute = {slowdown}
[workload]
users = 10
ramp = [{{ to = 10, over = "0s" }}, {{ hold = "12s" }}]
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "100ms"
[thresholds]
"ttfe p95 drift" = "< 50%"
"close_1011 rate drift" = "< 0.05pp"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_slows_down_fails_the_drift_threshold_and_a_steady_one_passes() {
    let _g = goose_lock().await;
    let (_t, out) = out_dir("steady");
    let steady = run(parse(&drift_scenario(0.0)), None, SECRET, out).await;
    assert_eq!(
        steady.snapshot.verdict, "pass",
        "{:?}",
        steady.snapshot.thresholds
    );
    // Event delays grow by 15x per minute: four times slower after 12 s.
    let (_t, out) = out_dir("slowing");
    let slowing = run(parse(&drift_scenario(15.0)), None, SECRET, out).await;
    assert_eq!(slowing.snapshot.verdict, "fail");
    let v = &slowing.snapshot.thresholds[0];
    assert!(!v.passed && v.observed.unwrap() > 0.5, "{v:?}");
    assert!(
        slowing.snapshot.thresholds[1].passed,
        "no 1011s either way: {:?}",
        slowing.snapshot.thresholds[1]
    );
    // The drift shows in every report.
    let md = std::fs::read_to_string(slowing.out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("ttfe p95 drift < 50%") && md.contains("**FAIL**"),
        "{md}"
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A compressed soak: 200 users for two minutes against a separate server
/// process; the generator's RSS, sampled every 2 s, may not grow by 5% between
/// the medians of the first and the last quarter after warm-up.
#[test]
fn generator_memory_stays_flat_over_a_compressed_soak() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let scenario = dir.path().join("soak.toml");
    std::fs::write(
        &scenario,
        r#"
version = 1
name = "soak"
[output]
interval = "2s"
checkpoint = "10s"
[workload]
users = 200
ramp = [{ to = 200, over = "10s" }, { hold = "115s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "1s"
"#,
    )
    .unwrap();
    let mut gen = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--target",
            &format!("ws://127.0.0.1:{port}/ws"),
            "--out",
        ])
        .arg(dir.path().join("out"))
        .arg("-q")
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let status = loop {
        if let Some(st) = gen.try_wait().unwrap() {
            break st;
        }
        if let Some(kib) = rss_kib(gen.id()) {
            samples.push((t0.elapsed().as_secs_f64(), kib));
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(status.code(), Some(0));
    // Warm-up: the ramp (10 s) and the first interval after it.
    let steady: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= 20.0 && *t <= 120.0)
        .map(|s| s.1)
        .collect();
    assert!(steady.len() >= 30, "too few samples: {samples:?}");
    let q = steady.len() / 4;
    // The median of each quarter: a checkpoint (every 10 s here) briefly
    // allocates its JSON, and one such sample must not pass for growth, while
    // memory that is kept moves the median too.
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2] as f64
    };
    let (first, last) = (median(&steady[..q]), median(&steady[steady.len() - q..]));
    let growth = (last - first) / first;
    eprintln!(
        "generator RSS: first quarter median {first:.0} KiB, last quarter median {last:.0} KiB, growth {:.2}%",
        growth * 100.0
    );
    assert!(
        growth < 0.05,
        "RSS grew {:.1}% ({first:.0} -> {last:.0} KiB): {samples:?}",
        growth * 100.0
    );
    let snap = chatload::metrics::Snapshot::from_json(
        &std::fs::read_to_string(dir.path().join("out/snapshot.json")).unwrap(),
    )
    .unwrap();
    assert!(
        snap.counters["runs.ok"] > 10_000,
        "{}",
        snap.counters["runs.ok"]
    );
    assert_eq!(snap.counters.get("runs.failed").copied().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_they_expire_without_a_single_auth_failure() {
    let _g = goose_lock().await;
    // Tokens live 3 s and are refreshed 1 s before expiry, over an 8 s hold.
    let text = r#"
version = 1
name = "refresh"
[auth]
lifetime = "3s"
refresh_margin = "1s"
[workload]
users = 5
ramp = [{ to = 5, over = "0s" }, { hold = "8s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "5s"
[[journey]]
step = "think"
duration = "200ms"
"#;
    let (_t, out) = out_dir("refresh");
    let r = run(parse(text), None, SECRET, out).await;
    let refreshed = counter(&r, "tokens.refreshed");
    assert!(
        refreshed >= 5,
        "every user refreshes at least once: {refreshed}"
    );
    assert_eq!(truth(&r, "connections.auth_failed"), 0);
    assert_eq!(counter(&r, "runs.failed"), 0);
    assert_eq!(
        counter(&r, "connections.ready"),
        counter(&r, "connections.attempted")
    );
    assert_eq!(
        counter(&r, "connections.attempted"),
        5 + refreshed,
        "one new socket per refresh"
    );
}

#[test]
fn a_refresh_margin_longer_than_the_token_is_refused() {
    let text = iterations_scenario(1, 1, "").replace(
        "[workload]",
        "[auth]\nlifetime = \"30s\"\nrefresh_margin = \"1m\"\n[workload]",
    );
    let err =
        chatload::scenario::Scenario::parse(std::path::Path::new("r.toml"), text).unwrap_err();
    assert!(err.to_string().contains("refresh_margin"), "{err}");
}
