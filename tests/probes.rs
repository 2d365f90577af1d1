//! `[[probe]]` against the reference server's own numbers
//! (`/__chatload/stats` as JSON, `/__chatload/metrics` as Prometheus text):
//! a clean server passes every kind of probe rule; `leak_connections` fails
//! the bound and `after_close` rules with the probe's and chatload's figures,
//! and the value read after the close equals the server's truth exactly;
//! `leak_memory` (a separate server process, whose RSS is its own) fails the
//! slope rule; a probe outside `target.allow` is refused before the run
//! (exit 2); a probe that times out is counted and the run goes on.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatload::outcome::Verdict;
use common::*;

const JOURNEY: &str = r#"
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#;

/// `users` users held for `hold` after a 0 s ramp, walking the journey with
/// a 100 ms think, and `rest` (probes, thresholds, other tables).
fn held(name: &str, users: u32, hold: &str, rest: &str) -> String {
    format!(
        r#"
version = 1
name = "{name}"
seed = 7
[workload]
users = {users}
ramp = [{{ to = {users}, over = "0s" }}, {{ hold = "{hold}" }}]
{JOURNEY}
[[journey]]
step = "think"
duration = "100ms"
{rest}
"#
    )
}

/// A probe of the reference server's own count of open connections.
fn stats_probe(every: &str) -> String {
    format!(
        r#"
[[probe]]
name = "health"
url = "/__chatload/stats"
every = "{every}"
[probe.values]
active = "/active_connections"
"#
    )
}

/// Writes `text` as a scenario file in `dir`.
fn write_scenario(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let file = dir.join("s.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `chatload run FILE -q --out OUT ARGS...`, killed however the test ends.
fn spawn_run(file: &std::path::Path, out: &std::path::Path, args: &[&str]) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args(["run", file.to_str().unwrap(), "-q", "--out"])
            .arg(out)
            .args(args)
            .env("CHATLOAD_JWT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn rule<'a>(
    r: &'a chatload::run::RunResult,
    expr_start: &str,
) -> &'a chatload::metrics::threshold::RuleResult {
    r.snapshot
        .thresholds
        .iter()
        .find(|t| t.threshold.starts_with(expr_start))
        .unwrap_or_else(|| panic!("no rule `{expr_start}` in {:#?}", r.snapshot.thresholds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_server_passes_every_probe_rule_json_and_prometheus() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("clean");
    let scenario = parse(&format!(
        r#"
version = 1
name = "probes-clean"
seed = 7
[workload]
users = 10
ramp = [{{ to = 10, over = "1s" }}, {{ hold = "5s" }}]
[output]
interval = "1s"
[drift]
warmup = "1s"
{JOURNEY}
[[journey]]
step = "think"
duration = "100ms"

[[probe]]
name = "health"
url = "/__chatload/stats"
every = "250ms"
[probe.values]
active = "/active_connections"
manager = "/manager/connections"

[[probe]]
name = "prom"
url = "/__chatload/metrics"
format = "prometheus"
every = "250ms"
[probe.values]
prom_active = 'chatload_server_connections{{state="active"}}'

[thresholds]
"probe.active" = "<= sockets_open * 1.1 + 2"
"probe.prom_active" = "<= sockets_open + 2"
"probe.manager drift" = "< 10%"
"probe.active slope" = "< 100/h"
"probe.active after_close" = {{ rule = "<= 0", wait = "1s" }}
"#
    ));
    let r = run(scenario, None, SECRET, out).await;
    for t in &r.snapshot.thresholds {
        assert!(t.passed, "{} failed: {}", t.threshold, t.observed_text);
    }
    assert_eq!(r.snapshot.verdict, Verdict::Pass);
    let series = r.snapshot.probes.as_ref().expect("the probes' series");
    // Both formats were read, with the same value: 10 users, every one open.
    let last_during = |v: &str| {
        series
            .samples
            .iter()
            .filter(|s| !s.after_close)
            .filter_map(|s| s.values.get(v))
            .copied()
            .fold(0.0, f64::max)
    };
    assert_eq!(last_during("active"), 10.0);
    assert_eq!(last_during("prom_active"), 10.0);
    assert_eq!(rule(&r, "probe.active after_close").observed, Some(0.0));
    // Every read is counted, ok or failed, and each has a line in probes.jsonl.
    let reads = counter(&r, "probes.ok") + counter(&r, "probes.failed");
    let lines = std::fs::read_to_string(r.out_dir.join("probes.jsonl")).unwrap();
    assert_eq!(lines.lines().count() as u64, reads);
    assert!(reads >= 2 * 20, "{reads} reads");
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(md.contains("## Target probes"), "{md}");
    let html = std::fs::read_to_string(r.out_dir.join("report.html")).unwrap();
    assert!(html.contains(r#"data-chart="probe-active""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaked_connections_fail_the_bound_with_both_figures_and_after_close_equals_the_truth() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("leak");
    let scenario = parse(&format!(
        r#"
version = 1
name = "probes-leak"
seed = 7
[workload]
users = 20
ramp = [{{ to = 20, over = "1s" }}, {{ hold = "6s" }}]
[server]
faults = "leak_connections=5%"
{JOURNEY}
[[journey]]
step = "disconnect"

[[probe]]
name = "health"
url = "/__chatload/stats"
every = "200ms"
[probe.values]
active = "/active_connections"

[thresholds]
"probe.active" = "<= sockets_open * 1.1 + 5"
"probe.active after_close" = {{ rule = "<= 0", wait = "1s" }}
"#
    ));
    let r = run(scenario, None, SECRET, out).await;
    assert_eq!(r.snapshot.verdict, Verdict::Fail);
    let leaked = truth(&r, "faults.leak_connections");
    assert!(leaked > 0);
    let bound = rule(&r, "probe.active <=");
    assert!(!bound.passed, "{}", bound.observed_text);
    assert!(
        bound.observed_text.contains("sockets_open") && bound.observed_text.contains("in a row"),
        "{}",
        bound.observed_text
    );
    assert!(bound.observed.unwrap() > bound.limit);
    // Once every socket closed, the server's count is exactly what it leaked.
    let after = rule(&r, "probe.active after_close");
    assert!(!after.passed);
    assert_eq!(after.observed, Some(leaked as f64));
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("probe.active <= sockets_open * 1.1 + 5"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaked_memory_fails_the_slope_rule() {
    let _g = goose_lock().await;
    let (_server, port) = serve_process("leak_memory=256KiB");
    let (_tmp, out) = out_dir("leak-memory");
    let rest = r#"
[[probe]]
name = "server"
url = "/__chatload/stats"
every = "200ms"
[probe.values]
rss = "/rss_bytes"
[thresholds]
"probe.rss slope" = "< 100MB/h"
"#;
    let scenario = parse(&held("probes-memory", 5, "8s", rest));
    let target = format!("ws://127.0.0.1:{port}/ws");
    let r = run(scenario, Some(target), SECRET, out).await;
    let slope = rule(&r, "probe.rss slope");
    assert!(!slope.passed, "{}", slope.observed_text);
    let series = r.snapshot.probes.as_ref().unwrap();
    let steady = series
        .samples
        .iter()
        .filter(|s| s.values.contains_key("rss"))
        .filter(|s| s.t_s >= series.steady_from_s && s.t_s <= series.steady_to_s)
        .count();
    assert!(steady >= 30, "{steady} readings in the steady phase");
    // Every run kept 256 KiB: the slope is at least a tenth of that rate
    // (RSS lags the heap a little; 1 MB/h is far below it).
    let runs = counter(&r, "runs.ok") as f64;
    let kept_per_hour = runs * 256.0 * 1024.0 / r.snapshot.duration_s * 3600.0;
    assert!(
        slope.observed.unwrap() > kept_per_hour / 10.0,
        "slope {} against {kept_per_hour} kept per hour",
        slope.observed_text
    );
    assert_eq!(r.snapshot.verdict, Verdict::Fail);
}

#[test]
fn a_probe_outside_the_allow_list_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rest = format!(
        r#"
[output]
dir = "{}"
[[probe]]
name = "elsewhere"
url = "http://metrics.example.com/health"
[probe.values]
up = "/up"
"#,
        out.display()
    );
    let file = write_scenario(dir.path(), &held("probe-allow", 1, "1s", &rest));
    for cmd in ["validate", "run"] {
        let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args([cmd, file.to_str().unwrap()])
            .env("CHATLOAD_JWT_SECRET", SECRET)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("probe `elsewhere`") && err.contains("metrics.example.com"),
            "{cmd}: {err}"
        );
    }
    assert!(!out.exists(), "nothing was written: the run never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_that_times_out_is_counted_and_the_run_goes_on() {
    let _g = goose_lock().await;
    // Accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            kept.push(s);
        }
    });
    let (_tmp, out) = out_dir("timeout");
    let probe = format!(
        r#"
[[probe]]
name = "silent"
url = "http://{addr}/stats"
every = "500ms"
timeout = "200ms"
[probe.values]
x = "/x"
"#
    );
    let scenario = parse(&held("probes-timeout", 2, "3s", &probe));
    let r = run(scenario, None, SECRET, out).await;
    hold.abort();
    let timeouts = counter(&r, "probes.failed.timeout");
    let samples = &r.snapshot.probes.as_ref().unwrap().samples;
    assert!(timeouts >= 3, "{timeouts} timeouts");
    assert_eq!(timeouts, samples.len() as u64);
    assert_eq!(counter(&r, "probes.failed"), timeouts);
    assert!(samples
        .iter()
        .all(|s| !s.ok && s.error.as_deref().is_some_and(|e| e.contains("200ms"))));
    assert!(counter(&r, "runs.ok") > 0);
    assert_eq!(r.snapshot.verdict, Verdict::Pass);
}

#[test]
fn probe_values_on_a_mid_run_scrape_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_scenario(
        dir.path(),
        &held("probe-metrics", 3, "6s", &stats_probe("200ms")),
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_run(&file, &dir.path().join("out"), &["--metrics-addr", &addr]);
    // Polls until a scrape shows the probe's reading of 3 open connections.
    let want = r#"chatload_probe_value{probe="health",value="active"} 3"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((_, body)) = scrape(port, None) {
            if body.lines().any(|l| l == want) {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no probe reading of 3 on /metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("# TYPE chatload_probe_value gauge"), "{body}");
    for outcome in [
        "ok",
        "timeout",
        "connect",
        "status",
        "too_large",
        "parse",
        "missing",
    ] {
        assert!(
            body.contains(&format!(
                "chatload_probe_reads_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} missing:\n{body}"
        );
    }
    assert!(body.contains("metric=\"probe_latency\""), "{body}");
    promtool_check(&body);
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

/// Only shard 0 probes, and the merge keeps its series and judges its rules;
/// a bound against one shard's own sockets is refused in a sharded run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_sharded_run_shard_0_probes_and_the_merge_judges_its_series() {
    let _g = goose_lock().await;
    let (_server, port) = serve_process("");
    let target = format!("ws://127.0.0.1:{port}/ws");
    let text = |rule: &str| {
        let rest = format!("{}\n[thresholds]\n{rule}\n", stats_probe("250ms"));
        held("probes-shards", 4, "3s", &rest)
    };
    let refused = {
        let (_d, out) = out_dir("refused");
        let mut req = request(
            parse(&text(r#""probe.active" = "<= sockets_open + 5""#)),
            Some(target.clone()),
            SECRET,
            out,
        );
        req.shard = chatload::plan::Shard { index: 0, count: 2 };
        chatload::run::run(req).await.err().expect("refused")
    };
    assert!(refused.to_string().contains("sharded run"), "{refused}");
    let mut snaps = Vec::new();
    let mut dirs = Vec::new();
    for index in 0..2 {
        let (d, out) = out_dir(&format!("shard-{index}"));
        let mut req = request(
            parse(&text(r#""probe.active" = "<= users_active + 5""#)),
            Some(target.clone()),
            SECRET,
            out,
        );
        req.shard = chatload::plan::Shard { index, count: 2 };
        let r = chatload::run::run(req).await.expect("the shard runs");
        assert_eq!(r.snapshot.probes.is_some(), index == 0, "shard {index}");
        assert_eq!(
            r.out_dir.join("probes.jsonl").exists(),
            index == 0,
            "shard {index}"
        );
        snaps.push(r.snapshot);
        dirs.push(d);
    }
    let merged = chatload::metrics::merge::merge(&snaps).expect("the shards merge");
    assert_eq!(merged.probes, snaps[0].probes);
    let bound = merged
        .thresholds
        .iter()
        .find(|t| t.threshold.starts_with("probe.active"))
        .expect("the probe rule judged on the merged run");
    assert!(bound.passed, "{}", bound.observed_text);
    assert_eq!(merged.verdict, Verdict::Pass);
}

/// A killed run keeps its probe readings: `report --recover` reads
/// `probes.jsonl` back and judges the probe rules on it.
#[test]
fn a_killed_run_keeps_its_probe_readings_for_recover() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rest = format!(
        "{}\n[thresholds]\n\"probe.active\" = \"<= users_active + 5\"\n",
        stats_probe("100ms")
    );
    let file = write_scenario(dir.path(), &held("probe-kill", 2, "60s", &rest));
    let mut child = spawn_run(&file, &out, &[]);
    let lines = || {
        std::fs::read_to_string(out.join("probes.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines() < 10 {
        assert!(Instant::now() < deadline, "no probe readings were written");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.stop();
    let kept = lines();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "report",
            "--recover",
            out.to_str().unwrap(),
            "--format",
            "md",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("recovered/snapshot.json")).unwrap();
    check_schema(&text);
    let s = chatload::metrics::Snapshot::from_json(&text).unwrap();
    assert_eq!(s.probes.as_ref().map(|p| p.samples.len()), Some(kept));
    let bound = s
        .thresholds
        .iter()
        .find(|t| t.threshold.starts_with("probe.active"))
        .expect("the probe rule judged on the recovered readings");
    assert!(bound.passed, "{}", bound.observed_text);
}

/// A probe's identity goes only to its own host: with redirects followed, a
/// hop to another host is refused (and counted) instead of carrying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_identity_never_follows_a_redirect_to_another_host() {
    use std::sync::{Arc, Mutex};
    let _g = goose_lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_by_json = seen.clone();
    let app = axum::Router::new()
        .route(
            "/redir",
            axum::routing::get(move || async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        format!("http://localhost:{port}/json"),
                    )],
                )
            }),
        )
        .route(
            "/json",
            axum::routing::get(move |h: axum::http::HeaderMap| {
                let seen = seen_by_json.clone();
                async move {
                    if let Some(v) = h.get("x-probe") {
                        seen.lock()
                            .unwrap()
                            .push(v.to_str().unwrap_or("").to_string());
                    }
                    axum::Json(serde_json::json!({"up": 1}))
                }
            }),
        );
    let srv = tokio::spawn(async move { axum::serve(listener, app).await });
    std::env::set_var("CHATLOAD_TEST_PROBE_IDENTITY", "probe-identity-7f3a9c");
    let (_tmp, out) = out_dir("redirect");
    let rest = format!(
        r#"
[target]
allow = ["127.0.0.1", "localhost"]
follow_redirects = true
[[probe]]
name = "moved"
url = "http://127.0.0.1:{port}/redir"
every = "250ms"
identity_env = "CHATLOAD_TEST_PROBE_IDENTITY"
header = "X-Probe"
[probe.values]
up = "/up"
"#
    );
    let scenario = parse(&held("probes-redirect", 1, "2s", &rest));
    let r = run(scenario, None, SECRET, out).await;
    srv.abort();
    assert!(
        seen.lock().unwrap().is_empty(),
        "the identity reached another host"
    );
    let samples = &r.snapshot.probes.as_ref().unwrap().samples;
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| !s.ok));
    assert_eq!(counter(&r, "probes.failed.connect"), samples.len() as u64);
    assert!(counter(&r, "http.redirects.refused") >= samples.len() as u64);
    let jsonl = std::fs::read_to_string(r.out_dir.join("probes.jsonl")).unwrap();
    assert!(jsonl.contains("only on its own host"), "{jsonl}");
    for f in ["probes.jsonl", "snapshot.json", "report.md", "report.html"] {
        let text = std::fs::read_to_string(r.out_dir.join(f)).unwrap();
        assert!(
            !text.contains("probe-identity-7f3a9c"),
            "{f} holds the identity"
        );
    }
}

/// A probe identity whose variable is not set: `validate` passes the file
/// (the variable may be set where it runs), `run` refuses it before anything
/// is sent (exit 2).
#[test]
fn run_refuses_an_unset_probe_identity_and_validate_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rest = r#"
[[probe]]
name = "health"
url = "/__chatload/stats"
identity_env = "CHATLOAD_TEST_UNSET_PROBE_TOKEN"
[probe.values]
active = "/active_connections"
"#;
    let file = write_scenario(dir.path(), &held("probe-env", 1, "1s", rest));
    let chatload = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args(args)
            .env("CHATLOAD_JWT_SECRET", SECRET)
            .env_remove("CHATLOAD_TEST_UNSET_PROBE_TOKEN")
            .output()
            .unwrap()
    };
    let f = file.to_str().unwrap();
    assert_eq!(chatload(&["validate", f]).status.code(), Some(0));
    let o = chatload(&["run", f, "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("$CHATLOAD_TEST_UNSET_PROBE_TOKEN"), "{err}");
    assert!(!out.exists());
}
