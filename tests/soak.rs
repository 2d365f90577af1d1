//! Soak behaviour: drift between the first and last windows of the steady
//! phase is judged (a server that slows down fails, a steady one passes).
//! The generator's memory over a compressed soak is in `tests/memory.rs`.

mod common;

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
