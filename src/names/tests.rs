//! Unit tests of the vocabulary, and the scan that keeps it complete.

use super::*;

fn journey_vocabulary() -> Vocabulary {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect());
    Vocabulary {
        rest_steps: s(&["create_thread", "get_thread"]),
        timed_steps: s(&["send", "nap"]),
        switches_threads: Some(false),
        events: s(&["agent_started", "agent_completed", "tool_executing"]),
        named_steps: s(&["agent_run"]),
    }
}

#[test]
fn histogram_names_table() {
    let v = journey_vocabulary();
    let cases = [
        ("ttfe", true),
        ("ttc", true),
        ("ws_connect", true),
        ("ws_ready", true),
        ("ws_ping", true),
        ("send_lag", true),
        ("generator_delay", true),
        ("ttfe_service", true),
        ("event_gap_max", true),
        ("reconnect_time", true),
        ("reconnect_backoff", true),
        ("login", true),
        ("rest_ticket", true),
        ("event_agent_started", true),
        ("event_tool_executing", true),
        ("event_bogus", false),
        ("create_thread", true),
        ("get_thread", true),
        ("list_threads", false),
        ("step.send", true),
        ("step.nap", true),
        ("step.await", false),
        ("thread_switch", false),
        ("ttcc", false),
        ("bogus_metric", false),
        ("runs.ok", false),
    ];
    for (name, want) in cases {
        assert_eq!(check_histogram(name, &v).is_ok(), want, "{name}");
    }
    let with_switch = Vocabulary {
        switches_threads: Some(true),
        ..journey_vocabulary()
    };
    assert!(check_histogram("thread_switch", &with_switch).is_ok());
    // Without a loaded journey or profile, names depending on them pass.
    let unknown = Vocabulary::unknown();
    for name in ["thread_switch", "event_whatever", "step.x", "my_step"] {
        assert!(check_histogram(name, &unknown).is_ok(), "{name}");
    }
    assert!(check_histogram("a.b", &unknown).is_err());
}

#[test]
fn counter_names_table() {
    let v = journey_vocabulary();
    let cases = [
        ("runs.started", true),
        ("runs.failed", true),
        ("runs.failed.timeout", true),
        ("runs.failed.no_response", true),
        ("runs.failed.order", true),
        ("runs.failed.cross_user_leak", true),
        ("runs.faild.timeout", false),
        ("runs.failed.timeuot", false),
        ("runs.cut_off", false),
        ("starts.dropped", true),
        ("starts.cancelled", false),
        ("users.parked", true),
        ("users.parkd", false),
        ("tokens.refreshed", true),
        ("tokens.refreshed_idle", false),
        ("tokens.login_failed.401", true),
        ("tokens.login_failed.no_token", true),
        ("tokens.login_failed.x", false),
        ("reconnects", true),
        ("reconnects.gave_up", true),
        ("reconnects.series", false),
        ("closes.1011", true),
        ("closes.1006", true),
        ("closes.abc", false),
        ("closes.70000", false),
        ("closes_by_phase.first_exchange.1011", true),
        ("closes_by_phase.lunch.1011", false),
        ("connections.rejected.503", true),
        ("connections.rejected.5", false),
        ("connections.failed.refused", true),
        ("connections.failed.dns", false),
        ("connections.closed_by_client", true),
        ("events.agent_started", true),
        ("events.agent_finished", false),
        ("violations.order", true),
        ("violations.missing_field.tool_completed.tool_name", true),
        ("violations.orderr", false),
        ("frames.server_error.RATE_LIMITED", true),
        ("frames.binary", true),
        ("frames.bogus", false),
        ("tickets.rejected.403", true),
        ("tickets.failed", true),
        ("threads.switch_failed.NOT_FOUND", true),
        ("rest.create_thread.201", true),
        ("rest.get_thread.failed", true),
        ("rest.get_thread.capture_missing", true),
        ("rest.list_threads.200", false),
        ("rest.create_thread.ok", false),
        ("persistence_miss", true),
        ("history.messages_checked", true),
        ("histogram.clamped", true),
        ("bytes.sent", true),
        ("heartbeats.missed", true),
        ("nonsense", false),
    ];
    for (name, want) in cases {
        assert_eq!(check_counter(name, &v).is_ok(), want, "{name}");
    }
}

#[test]
fn unknown_names_come_with_the_closest_known_one() {
    let v = journey_vocabulary();
    let e = check_counter("runs.faild.timeout", &v).unwrap_err();
    assert!(e.contains("did you mean `runs.failed.timeout`"), "{e}");
    let e = check_histogram("ttcc", &v).unwrap_err();
    assert!(e.contains("did you mean `ttc`"), "{e}");
    let e = check_histogram("bogus_metric", &v).unwrap_err();
    assert!(!e.contains("did you mean"), "{e}");
}

/// The literal names the engine records must all be known here: a counter
/// added to the engine without a constant in this module fails this test
/// (otherwise a threshold on it would be refused at load).
#[test]
fn every_literal_name_the_engine_records_is_known() {
    // Every source file of the recording side, read whole, so moving
    // code between files cannot hide a name from the scan.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("engine"), root.join("run")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let sources: Vec<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let v = Vocabulary::unknown();
    let mut seen = 0;
    for src in &sources {
        for (call, is_counter) in [
            (".count(\"", true),
            (".count_n(\"", true),
            (".sample(\"", false),
            (".record(\"", false),
        ] {
            let mut rest = src.as_str();
            while let Some(i) = rest.find(call) {
                let after = &rest[i + call.len()..];
                let name = &after[..after.find('"').unwrap()];
                rest = after;
                seen += 1;
                let known = if is_counter {
                    check_counter(name, &v)
                } else {
                    check_histogram(name, &v)
                };
                assert!(known.is_ok(), "`{name}` is recorded but not known here");
            }
        }
    }
    assert!(seen > 20, "the scan found only {seen} names");
}

/// An interned name is built once and then borrowed; past the cap a new
/// name is still right, only built each time (and never kept).
#[test]
fn interned_names_are_built_once_and_capped() {
    use std::borrow::Cow;
    let kept = super::Interned::new();
    let first = kept.get("agent_started", |n| format!("events.{n}"));
    let again = kept.get("agent_started", |_| unreachable!("built once"));
    match (&first, &again) {
        (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(*a, *b)),
        other => panic!("not borrowed: {other:?}"),
    }
    assert_eq!(first, "events.agent_started");
    for i in 1..super::INTERNED_MAX {
        kept.get(&i.to_string(), |n| format!("events.{n}"));
    }
    let past = kept.get("one_too_many", |n| format!("events.{n}"));
    assert!(matches!(past, Cow::Owned(_)));
    assert_eq!(past, "events.one_too_many");
    let past_again = kept.get("one_too_many", |n| format!("events.{n}"));
    assert!(
        matches!(past_again, Cow::Owned(_)),
        "never kept past the cap"
    );
    assert_eq!(super::events("x"), "events.x");
    assert_eq!(super::event_metric("x"), "event_x");
    assert_eq!(super::step_metric("send"), "step.send");
}
