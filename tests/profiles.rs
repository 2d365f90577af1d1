//! Protocol profiles: the default `netra` profile reads every envelope and
//! ready generation with zero violations, and a custom profile written only in
//! TOML works against a server configured to match.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netra_reads_every_envelope_and_ready_generation_cleanly() {
    let _g = goose_lock().await;
    for envelope in ["payload", "data", "flat", "wrapped"] {
        for ready in ["connection_established", "system_message", "handshake"] {
            // The wrapped generation correlates by a client-chosen turn_id and carries no thread_id.
            let message = if envelope == "wrapped" {
                r#"{ type = "agent_request", payload = { message = "{{prompt}}", turn_id = "{{run}}" } }"#
            } else {
                r#"{ type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }"#
            };
            let text = iterations_scenario(10, 3, &format!("[server]\nenvelope = \"{envelope}\"\nready = \"{ready}\"\ntools = [1, 2]\n"))
                .replace(
                    r#"{ type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }"#,
                    message,
                );
            let (_tmp, out) = out_dir("env");
            let r = run(parse(&text), None, SECRET, out).await;
            let tag = format!("{envelope}/{ready}");
            assert_eq!(
                counter(&r, "runs.ok"),
                30,
                "{tag}: {:#?}",
                r.snapshot.counters
            );
            assert!(
                r.snapshot.samples.is_empty(),
                "{tag}: {:?}",
                r.snapshot.samples
            );
            assert_eq!(truth(&r, "messages.lost_before_handshake"), 0, "{tag}");
            if ready == "handshake" {
                assert_eq!(counter(&r, "handshakes.answered"), 10, "{tag}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_profile_written_only_in_toml_works() {
    let _g = goose_lock().await;
    let text = r#"
version = 1
name = "custom-dialect"
[profile]
type_field = "kind"
run_id_fields = ["job_id"]
terminal_ok = ["done"]
agent_events = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "done"]
sequence = "agent_started agent_thinking+ (tool_executing tool_completed)* done"
required = { agent_started = ["user_id"], tool_completed = ["tool_name", "results", "duration:number"], done = ["status", "final_response:non_empty"] }
[server]
envelope = "flat"
thinking = [1, 3]
tools = [0, 2]
naming = { type_field = "kind", run_id_field = "job_id", events = { agent_completed = "done" } }
[workload]
users = 8
iterations = 4
[[journey]]
step = "send"
message = { kind = "start_agent", payload = { user_request = "{{prompt}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#;
    let (_tmp, out) = out_dir("custom");
    let r = run(parse(text), None, SECRET, out).await;
    assert_eq!(counter(&r, "runs.ok"), 32, "{:#?}", r.snapshot.counters);
    assert_eq!(counter(&r, "events.done"), 32);
    assert!(r.snapshot.samples.is_empty(), "{:?}", r.snapshot.samples);

    // The same profile notices when the dialect breaks its rules.
    // The server names the event `agent_completed` inside and `done` on the wire.
    let broken = text.replace(
        "[workload]",
        "faults = \"omit_field=agent_completed.status:50%\"\n[workload]",
    );
    let (_tmp, out) = out_dir("custom2");
    let r = run(parse(&broken), None, SECRET, out).await;
    let omitted = truth(&r, "faults.omit_field.agent_completed.status");
    assert!(omitted > 0);
    assert_eq!(counter(&r, "violations.missing_field.done.status"), omitted);
}

#[test]
fn profile_mistakes_are_reported_with_positions() {
    let text = iterations_scenario(1, 1, "[profile]\nsequence = \"agent_started (agent_completed\"\nterminal_ok = [\"finished\"]\nrequired = { done = [\"x:colour\"] }\n");
    let err =
        chatload::scenario::Scenario::parse(std::path::Path::new("p.toml"), text).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("sequence: expected `)`"), "{all}");
    assert!(all.contains("unknown field type `colour`"), "{all}");
    assert!(all.contains("terminal event `finished`"), "{all}");
}
