//! Auth failures are their own class: the reference server's `reject_token`
//! fault refuses tokens as the real platform does (`error_message` with
//! `VALIDATION_FAILED`, then close 1011 before ready); chatload counts each
//! as `tokens.rejected` (exactly the server's truth), leaves its 1011 out of
//! `close_1011 rate`, and says what the refusals mean.

mod common;

use common::*;

/// Fast retries, so a refused connect comes back at once.
const RECONNECT: &str =
    "[reconnect]\ninitial = \"10ms\"\nmax = \"50ms\"\njitter = 0.0\nattempts = 20\n";

fn rule<'a>(
    r: &'a chatload::run::RunResult,
    expr: &str,
) -> &'a chatload::metrics::threshold::RuleResult {
    r.snapshot
        .thresholds
        .iter()
        .find(|t| t.threshold.starts_with(expr))
        .unwrap_or_else(|| panic!("no rule `{expr}` in {:#?}", r.snapshot.thresholds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_counted_exactly_and_leave_close_1011_rate_alone() {
    let _g = goose_lock().await;
    let extra = format!(
        "{RECONNECT}[server]\nseed = 11\nfaults = \"reject_token=30%\"\n[thresholds]\n\"close_1011 rate\" = \"< 0.1%\"\n\"close_1011_before_ready rate\" = \"== 0\"\n\"auth_failure rate\" = \"< 0.1%\"\n"
    );
    let (_tmp, out) = out_dir("reject");
    let r = run(
        parse(&iterations_scenario(40, 3, &extra)),
        None,
        SECRET,
        out,
    )
    .await;
    let injected = truth(&r, "faults.reject_token");
    let attempted = counter(&r, "connections.attempted");
    eprintln!(
        "{injected} tokens refused by the server of {attempted} attempts; counters: {:#?}",
        r.snapshot.counters
    );
    assert!(injected > 0, "the seeded plan refused nothing");
    // Every refusal recognised, exactly, and by phase.
    assert_eq!(counter(&r, "tokens.rejected"), injected);
    assert_eq!(counter(&r, "tokens.rejected.before_ready"), injected);
    assert_eq!(counter(&r, "closes_auth.1011"), injected);
    assert_eq!(
        counter(&r, "closes_auth_by_phase.before_ready.1011"),
        injected
    );
    // The raw close counter still shows every 1011 the client saw.
    assert_eq!(counter(&r, "closes.1011"), injected);
    assert_eq!(
        counter(&r, "frames.server_error.VALIDATION_FAILED"),
        injected
    );
    // close_1011 rate counts none of them; auth_failure rate is judged (and fails).
    let close = rule(&r, "close_1011 rate");
    assert_eq!((close.observed, close.passed), (Some(0.0), true));
    assert!(rule(&r, "close_1011_before_ready rate").passed);
    let auth = rule(&r, "auth_failure rate");
    assert_eq!(auth.observed, Some(injected as f64 / attempted as f64));
    assert!(!auth.passed);
    assert_eq!(r.snapshot.verdict, "fail");
    assert_eq!(r.exit_code(), 1);
    // Some tokens were accepted: the notes blame the auth path under load.
    let notes = r.snapshot.notes.join("\n");
    assert!(
        notes.contains(&format!(
            "the target's auth path refused {injected} tokens under load"
        )),
        "{notes}"
    );
    assert!(!notes.contains("signing key"), "{notes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_refused_points_at_the_signing_key() {
    let _g = goose_lock().await;
    let extra = format!("{RECONNECT}[server]\nfaults = \"reject_token=100%\"\n");
    let (_tmp, out) = out_dir("reject_all");
    let r = run(parse(&iterations_scenario(5, 2, &extra)), None, SECRET, out).await;
    let injected = truth(&r, "faults.reject_token");
    assert!(injected >= 5, "{injected}");
    assert_eq!(counter(&r, "tokens.rejected"), injected);
    assert_eq!(counter(&r, "connections.attempted"), injected);
    assert_eq!(counter(&r, "connections.ready"), 0);
    let notes = r.snapshot.notes.join("\n");
    assert!(
        notes.contains("every connect was rejected for auth")
            && notes.contains("check the signing key / token source"),
        "{notes}"
    );
    // The console shows the same sentence.
    let data = chatload::report::ReportData::from_snapshot(&r.snapshot);
    let mut console = Vec::new();
    chatload::report::console::render(&data, &mut console).unwrap();
    let console = String::from_utf8(console).unwrap();
    assert!(
        console.contains("check the signing key / token source"),
        "{console}"
    );
}
