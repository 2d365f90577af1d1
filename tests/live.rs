//! Live metrics during a run (`--metrics-addr`, checked with the Prometheus
//! client's own OpenMetrics parser) and the nightly trend over recorded runs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn metrics_endpoint_serves_parseable_openmetrics_during_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/smoke.toml",
            "--users",
            "5",
            "--duration",
            "8s",
            "-q",
            "--metrics-addr",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .env_remove("CHATLOAD_JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Poll until the endpoint shows completed runs (a condition, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(text) = got {
            if text.contains("chatload_runs_total{outcome=\"ok\"}")
                && !text.contains("chatload_runs_total{outcome=\"ok\"} 0")
            {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no metrics with completed runs appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let (head, exposition) = body.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
names = sorted(f.name for f in text_string_to_metric_families(sys.stdin.read()))
print(" ".join(names))
"#;
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        py.stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
    }
    let out = py.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && std::env::var_os("CI").is_none() && err.contains("No module named")
    {
        eprintln!("skipped: the Python prometheus_client package is not installed here (.ci/run installs it)");
        return;
    }
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {err}\n{exposition}"
    );
    let names = String::from_utf8_lossy(&out.stdout);
    for want in [
        "chatload_runs",
        "chatload_latency_seconds",
        "chatload_users",
        "chatload_sockets_open",
        "chatload_events",
    ] {
        assert!(
            names.split_whitespace().any(|n| n == want),
            "{want} missing from {names}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trend_shows_every_recorded_run_with_its_key_figures() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.sqlite");
    let mut ids = Vec::new();
    for delay in [
        "\"5ms\", \"10ms\"",
        "\"20ms\", \"30ms\"",
        "\"40ms\", \"50ms\"",
    ] {
        let (_t, out) = out_dir("night");
        let req = chatload::run::RunRequest {
            scenario: parse(&iterations_scenario(
                4,
                3,
                &format!("[server]\nevent_delay = [{delay}]\n"),
            )),
            target: None,
            secret: chatload::auth::Secret::new(SECRET),
            seed: 7,
            out: Some(out),
            goose_report: false,
            baseline: None,
            progress: false,
            shard: Default::default(),
            start_at: None,
            metrics_addr: None,
            history: Some(history.clone()),
        };
        let r = chatload::run::run(req).await.unwrap();
        ids.push((
            r.snapshot.run_id.clone(),
            r.snapshot.histograms["ttfe"].p95_us,
        ));
    }
    let rows = chatload::report::history::load(&history, Some("it"), &[]).unwrap();
    assert_eq!(rows.len(), 3);
    for (row, (id, p95)) in rows.iter().zip(&ids) {
        assert_eq!(&row.run_id, id);
        assert_eq!(row.us("ttfe", "p95"), Some(*p95));
        assert_eq!(row.runs_started, 12);
        assert_eq!(row.ok_rate, Some(1.0));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["trend", history.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let md = String::from_utf8_lossy(&o.stdout);
    for (id, _) in &ids {
        assert!(md.contains(id.as_str()), "{md}");
    }
    assert!(md.contains("| 12 |") && md.contains("100%"), "{md}");
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["trend", history.to_str().unwrap(), "--format", "html"])
        .output()
        .unwrap();
    // p50/p95/p99 of ws_connect, ttfe and ttc, the 1011 rate, the ok rate.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches("<svg").count(),
        5
    );
}
