//! The default SLOs and what they judge, against the embedded reference
//! server: a scenario with no thresholds fails a server that fails every
//! run; a duplicate terminal event fails its run; REST failures reach the
//! verdict and skip the steps that needed what they did not produce; a
//! named await is gateable; a run nothing judges says so.

mod common;

use common::*;

fn rule<'a>(
    r: &'a chatload::run::RunResult,
    expr: &str,
) -> &'a chatload::metrics::threshold::RuleResult {
    r.snapshot
        .thresholds
        .iter()
        .find(|t| t.threshold == expr)
        .unwrap_or_else(|| panic!("no rule `{expr}`: {:#?}", r.snapshot.thresholds))
}

/// No thresholds at all, and every socket closed with 1011 at its first
/// exchange: the default SLOs fail the run (it used to pass, exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_thresholds_and_every_run_failing_fails_on_the_default_slos() {
    let _g = goose_lock().await;
    let extra = "[server]\nseed = 5\nfaults = \"close_1011=100%@first_exchange\"\n";
    let (_tmp, out) = out_dir("defaults");
    let r = run(
        parse(&iterations_scenario(10, 2, extra)),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    assert_eq!(counter(&r, "runs.ok"), 0);
    assert_eq!(r.exit_code(), 1, "{:#?}", r.snapshot.thresholds);
    let ok = rule(&r, "run_ok rate > 99%");
    assert!(ok.default && !ok.passed, "{ok:?}");
    let closes = rule(&r, "close_1011 rate < 0.1%");
    assert!(closes.default && !closes.passed, "{closes:?}");
    // Every report marks the defaults.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("`run_ok rate > 99%` (default)"), "{md}");
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(xml.contains("run_ok rate &gt; 99% (default)"), "{xml}");
}

/// `[thresholds] defaults = false` and no rule: nothing judges the run, and
/// every report says so; it exits 0 (it is valid and not aborted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_nothing_judges_says_not_judged() {
    let _g = goose_lock().await;
    let extra = "[server]\nseed = 5\nfaults = \"close_1011=100%@first_exchange\"\n[thresholds]\ndefaults = false\n";
    let (_tmp, out) = out_dir("unjudged");
    let r = run(
        parse(&iterations_scenario(4, 1, extra)),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    assert!(r.snapshot.thresholds.is_empty());
    assert_eq!(r.exit_code(), 0);
    for file in ["report.md", "report.html", "junit.xml"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(text.contains("not judged"), "{file}: {text}");
    }
}

/// A duplicate `agent_completed` after a run ended ok fails that run with
/// the class `duplicate_terminal`: exactly as many as the server injected,
/// and every started run ends ok or failed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_terminal_event_fails_its_run() {
    let _g = goose_lock().await;
    let extra = "[[journey]]\nstep = \"think\"\nduration = \"0s\"\n[server]\nseed = 11\ntools = [0, 2]\nfaults = \"duplicate_event=agent_completed:10%\"\n";
    let (_tmp, out) = out_dir("dup");
    let r = run(parse(&iterations_scenario(50, 8, extra)), None, SECRET, out).await;
    let injected = truth(&r, "faults.duplicate_event.agent_completed");
    assert!(injected > 0, "{:?}", r.snapshot.server_truth);
    assert_eq!(counter(&r, "violations.duplicate_terminal"), injected);
    assert_eq!(
        counter(&r, "runs.failed.duplicate_terminal"),
        injected,
        "{:#?}",
        r.snapshot.counters
    );
    assert_eq!(counter(&r, "runs.failed"), injected);
    assert_eq!(
        counter(&r, "runs.ok") + counter(&r, "runs.failed"),
        counter(&r, "runs.started")
    );
    assert_eq!(counter(&r, "violations"), injected);
    let v = rule(&r, "violations rate == 0");
    assert!(v.default && !v.passed, "{v:?}");
    assert_eq!(r.exit_code(), 1);
}

/// The REST journey: a thread per iteration, a run in it, its history.
fn rest_journey(users: u64, iterations: u64, faults: &str) -> String {
    format!(
        r#"
version = 1
name = "rest"
seed = 7
[server]
seed = 9
faults = "{faults}"
[workload]
users = {users}
iterations = {iterations}
[[journey]]
step = "connect"
[[journey]]
step = "create_thread"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "history"
"#
    )
}

/// A server answering 500 on some REST calls: the failures are counted
/// exactly, the default `rest error rate` measures them and fails the run;
/// each failed `create_thread` skips the steps of its iteration that need
/// its thread (the send and the history read), counted as skipped, not as
/// failures of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_fail_the_run_and_skip_the_steps_that_need_their_result() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("rest");
    let r = run(
        parse(&rest_journey(20, 5, "rest_error=500:20%")),
        None,
        SECRET,
        out,
    )
    .await;
    let injected = truth(&r, "faults.rest_error.500");
    let failed_creates = counter(&r, "rest.create_thread.500");
    assert!(failed_creates > 0, "{:#?}", r.snapshot.counters);
    assert_eq!(
        failed_creates + counter(&r, "rest.history.500"),
        injected,
        "{:#?}",
        r.snapshot.counters
    );
    // Every iteration whose thread was not created skipped its send and
    // its history read, and started no run.
    assert_eq!(counter(&r, "steps.skipped.send"), failed_creates);
    assert_eq!(counter(&r, "steps.skipped.history"), failed_creates);
    assert_eq!(counter(&r, "runs.started"), 100 - failed_creates);
    assert_eq!(counter(&r, "rest.history.404"), 0);
    let calls = counter(&r, "rest.create_thread.201")
        + counter(&r, "rest.create_thread.200")
        + failed_creates
        + counter(&r, "rest.history.200")
        + counter(&r, "rest.history.500");
    let v = rule(&r, "rest error rate < 1%");
    assert!(v.default && !v.passed, "{v:?}");
    let want = injected as f64 / calls as f64;
    assert!((v.observed.unwrap() - want).abs() < 1e-9, "{v:?} vs {want}");
    assert_eq!(r.exit_code(), 1);
    // Only the REST rule failed: the runs that started were fine.
    let failed: Vec<_> = r.snapshot.thresholds.iter().filter(|t| !t.passed).collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
}

/// A threshold on a named await (and a named connect) is accepted and
/// judged on the latency recorded under that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_on_a_named_await_is_accepted_and_judged() {
    let _g = goose_lock().await;
    let text = iterations_scenario(
        20,
        12,
        "[thresholds]\n\"agent_run p95\" = \"< 10s\"\n\"socket max\" = \"< 10s\"\n",
    )
    .replace("step = \"await\"", "name = \"agent_run\"\nstep = \"await\"")
    .replace(
        "step = \"connect\"",
        "name = \"socket\"\nstep = \"connect\"",
    );
    let (_tmp, out) = out_dir("named");
    let r = run(parse(&text), None, SECRET, out).await;
    let v = rule(&r, "agent_run p95 < 10s");
    assert!(v.passed && !v.default, "{v:?}");
    assert_eq!(r.snapshot.histograms["agent_run"].count, 240);
    assert!(rule(&r, "socket max < 10s").passed);
    assert_eq!(r.exit_code(), 0, "{:#?}", r.snapshot.thresholds);
}
