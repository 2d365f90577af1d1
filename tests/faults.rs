//! Every fault class the reference server can inject, under load (50 users):
//! chatload's count of the matching violation or close equals the server's
//! truth counter exactly, with nothing counted in any other class.

mod common;

use common::*;

/// Violation class totals (`violations.<class>`), without details.
fn violation_totals(r: &chatload::run::RunResult) -> Vec<(String, u64)> {
    r.snapshot
        .counters
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("violations.")
                .filter(|c| !c.contains('.'))
                .map(|c| (c.to_string(), *v))
        })
        .collect()
}

fn closes(r: &chatload::run::RunResult) -> Vec<(String, u64)> {
    r.snapshot
        .counters
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("closes.").map(|c| (c.to_string(), *v)))
        .collect()
}

struct Case {
    faults: &'static str,
    /// Server tool range, so tool faults have tools to act on.
    tools: &'static str,
    think: &'static str,
    await_timeout: &'static str,
    /// Truth counter of the injections.
    truth: &'static str,
    /// Client counter that must equal it.
    detected: &'static str,
    /// The only violation class allowed (None: no violation at all).
    class: Option<&'static str>,
    /// The only close code allowed.
    close: Option<&'static str>,
}

const fn case(
    faults: &'static str,
    truth: &'static str,
    detected: &'static str,
    class: Option<&'static str>,
    close: Option<&'static str>,
) -> Case {
    Case {
        faults,
        tools: "[0, 2]",
        think: "0s",
        await_timeout: "10s",
        truth,
        detected,
        class,
        close,
    }
}

async fn check(c: Case) {
    let extra = format!(
        "[[journey]]\nstep = \"think\"\nduration = \"{}\"\n[server]\nseed = 11\ntools = {}\nfaults = \"{}\"\n",
        c.think, c.tools, c.faults
    );
    let text = iterations_scenario(50, 8, &extra).replace(
        "timeout = \"10s\"",
        &format!("timeout = \"{}\"", c.await_timeout),
    );
    let (_tmp, out) = out_dir("fault");
    let r = run(parse(&text), None, SECRET, out).await;
    let injected = truth(&r, c.truth);
    assert!(
        injected > 0,
        "{}: the seeded plan injected nothing: {:?}",
        c.faults,
        r.snapshot.server_truth
    );
    assert_eq!(
        counter(&r, c.detected),
        injected,
        "{}: {} vs truth {}\n{:#?}",
        c.faults,
        c.detected,
        c.truth,
        r.snapshot.counters
    );
    let v = violation_totals(&r);
    let unexpected: Vec<_> = v
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != c.class)
        .collect();
    assert!(
        unexpected.is_empty(),
        "{}: violations in other classes: {unexpected:?}",
        c.faults
    );
    let cl = closes(&r);
    let unexpected: Vec<_> = cl
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != c.close)
        .collect();
    assert!(
        unexpected.is_empty(),
        "{}: unexpected closes: {unexpected:?}",
        c.faults
    );
    // Every run ended as ok or failed: none lost.
    assert_eq!(
        counter(&r, "runs.ok") + counter(&r, "runs.failed"),
        counter(&r, "runs.started"),
        "{}",
        c.faults
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1011_at_connect() {
    let _g = goose_lock().await;
    check(case(
        "close_1011=5%@connect",
        "faults.close_1011.connect",
        "closes_by_phase.before_ready.1011",
        None,
        Some("1011"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1011_at_first_exchange() {
    let _g = goose_lock().await;
    check(case(
        "close_1011=10%@first_exchange",
        "faults.close_1011.first_exchange",
        "closes_by_phase.first_exchange.1011",
        None,
        Some("1011"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1011_mid_run() {
    let _g = goose_lock().await;
    check(case(
        "close_1011=5%@mid_run",
        "faults.close_1011.mid_run",
        "closes.1011",
        None,
        Some("1011"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1011_while_idle() {
    let _g = goose_lock().await;
    let mut c = case(
        "close_1011=5%@idle",
        "faults.close_1011.idle",
        "closes_by_phase.idle.1011",
        None,
        Some("1011"),
    );
    // The close comes 20 ms after a run; users think 300 ms, so it lands while idle.
    c.think = "300ms";
    check(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1006_without_a_close_frame() {
    let _g = goose_lock().await;
    check(case(
        "close_1006=5%",
        "faults.close_1006",
        "closes.1006",
        None,
        Some("1006"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_first_event_is_an_order_violation() {
    let _g = goose_lock().await;
    check(case(
        "drop_event=agent_started:5%",
        "faults.drop_event.agent_started",
        "violations.order",
        Some("order"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tool_completion_is_an_unpaired_tool() {
    let _g = goose_lock().await;
    let mut c = case(
        "drop_event=tool_completed:10%",
        "faults.drop_event.tool_completed",
        "violations.unpaired_tool",
        Some("unpaired_tool"),
        None,
    );
    c.tools = "[1, 2]";
    check(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_event() {
    let _g = goose_lock().await;
    check(case(
        "duplicate_event=agent_thinking:5%",
        "faults.duplicate_event.agent_thinking",
        "violations.duplicate_event",
        Some("duplicate_event"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_events() {
    let _g = goose_lock().await;
    check(case(
        "reorder=5%",
        "faults.reorder",
        "violations.order",
        Some("order"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_required_field() {
    let _g = goose_lock().await;
    let mut c = case(
        "omit_field=tool_completed.results:10%",
        "faults.omit_field.tool_completed.results",
        "violations.missing_field.tool_completed.results",
        Some("missing_field"),
        None,
    );
    c.tools = "[1, 2]";
    check(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_user_leak() {
    let _g = goose_lock().await;
    check(case(
        "leak=3%",
        "faults.leak",
        "violations.cross_user_leak",
        Some("cross_user_leak"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_run_times_out() {
    let _g = goose_lock().await;
    let mut c = case(
        "stall=5%",
        "faults.stall",
        "runs.failed.timeout",
        None,
        None,
    );
    c.await_timeout = "1s";
    check(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_frame() {
    let _g = goose_lock().await;
    check(case(
        "malformed=5%",
        "faults.malformed",
        "violations.unparseable_frame",
        Some("unparseable_frame"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame() {
    let _g = goose_lock().await;
    check(case(
        "binary=5%",
        "faults.binary",
        "violations.binary_frame",
        Some("binary_frame"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame() {
    let _g = goose_lock().await;
    check(case(
        "oversized=100000:5%",
        "faults.oversized",
        "violations.oversized_frame",
        Some("oversized_frame"),
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades() {
    let _g = goose_lock().await;
    check(case(
        "refuse_upgrade=503:10%",
        "faults.refuse_upgrade.503",
        "connections.rejected.503",
        None,
        None,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_accepts_show_in_ws_connect() {
    let _g = goose_lock().await;
    let extra = "[server]\nseed = 11\nfaults = \"slow_accept=600ms:20%\"\n";
    // One connection per user, so each user's ws_connect is one sample.
    let (_tmp, out) = out_dir("slow");
    let r = run(parse(&iterations_scenario(50, 1, extra)), None, SECRET, out).await;
    let injected = truth(&r, "faults.slow_accept");
    assert!(injected > 0);
    let h = r.snapshot.histograms["ws_connect"]
        .decode("ws_connect")
        .unwrap();
    assert_eq!(
        h.count_between(550_000, chatload::metrics::MAX_US),
        injected
    );
    assert!(violation_totals(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leak_in_ten_thousand_events_is_found_and_names_both_users() {
    let _g = goose_lock().await;
    // 50 users x 40 runs x 5 events (1 thinking, 1 tool pair) = 10,000 events;
    // a leak rate of 1 per 2,000 runs injects about one.
    let extra = "[server]\nseed = 3\nthinking = [1, 1]\ntools = [1, 1]\nevent_delay = [\"1ms\", \"3ms\"]\nfaults = \"leak=0.05%\"\n";
    let (_tmp, out) = out_dir("leak");
    let r = run(
        parse(&iterations_scenario(50, 40, extra)),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    let injected = truth(&r, "faults.leak");
    assert_eq!(
        injected, 1,
        "seed 3 injects exactly one leak: {:?}",
        r.snapshot.server_truth
    );
    assert!(truth(&r, "events.agent_started") + truth(&r, "events.agent_thinking") >= 4000);
    assert_eq!(counter(&r, "violations.cross_user_leak"), injected);
    assert_eq!(violation_totals(&r).len(), 1, "{:?}", violation_totals(&r));
    let sample = r
        .snapshot
        .samples
        .iter()
        .find(|s| s.class == "cross_user_leak")
        .expect("the leak is sampled");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let line = report
        .lines()
        .find(|l| l.starts_with("| cross_user_leak |") && l.contains("reached"))
        .unwrap_or_else(|| panic!("{report}"));
    // The line names the receiving user and the user the event belonged to.
    assert!(line.contains(&sample.user_id), "{line}");
    let owner = sample
        .message
        .split('`')
        .nth(3)
        .expect("the owner is named");
    assert!(
        owner.starts_with("chatload-user-") && owner != sample.user_id,
        "{line}"
    );
    assert!(line.contains(owner), "{line}");
}
