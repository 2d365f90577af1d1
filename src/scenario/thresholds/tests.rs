//! Unit tests of the threshold grammar and the names it may use.

use super::*;
use crate::names;

#[test]
fn error_rates_parse_with_three_words() {
    let t = Threshold::parse("rest error rate", "< 1%").unwrap();
    assert_eq!(t.expr, "rest error rate < 1%");
    assert_eq!(
        t.subject,
        Subject::Rate {
            name: "rest error".into()
        }
    );
    let t = Threshold::parse("rest.create_thread error rate", "<= 2%").unwrap();
    assert!((t.limit - 0.02).abs() < 1e-12);
    assert!(Threshold::parse("ws error rate", "< 1%").is_err());
    let d = Threshold::parse_with_drift("rest error rate drift", "< 1pp", DriftSpec::default())
        .unwrap();
    assert!(d.drift.is_some());
    let v = names::Vocabulary {
        rest_steps: Some(vec!["create_thread".into()]),
        ..Default::default()
    };
    let ok = Threshold::parse("rest.create_thread error rate", "< 1%").unwrap();
    assert!(ok.check_names(&v).is_ok());
    let bad = Threshold::parse("rest.history error rate", "< 1%").unwrap();
    assert!(bad.check_names(&v).is_err());
}

#[test]
fn bad_rules_are_explained() {
    for (k, v) in [
        ("ttfe", "< 2s"),
        ("ttfe p95", "2s"),
        ("ttfe p95", "< soon"),
        ("ttfe p101", "< 2s"),
        ("ttfe median", "< 2s"),
        ("happiness rate", "< 1%"),
        ("close_1011 rate", "< lots"),
        ("close_1011_lunch rate", "< 1%"),
        ("close_x_idle rate", "< 1%"),
    ] {
        assert!(
            Threshold::parse(k, v).is_err(),
            "{k} = {v} should be refused"
        );
    }
    for phase in names::CLOSE_PHASES {
        let key = format!("close_1011_{phase} rate");
        assert!(Threshold::parse(&key, "< 0.1%").is_ok(), "{key}");
    }
}

/// The names the issue-13 rules and steps added: `violations`, skipped
/// steps, switch requests and named awaits are known to the validator.
#[test]
fn new_names_are_known() {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect());
    let v = names::Vocabulary {
        rest_steps: s(&["get_thread"]),
        timed_steps: s(&["send"]),
        switches_threads: Some(false),
        events: s(&["agent_started"]),
        named_steps: s(&["agent_run"]),
    };
    for (name, want) in [("agent_run", true), ("agent_walk", false)] {
        assert_eq!(names::check_histogram(name, &v).is_ok(), want, "{name}");
    }
    for (name, want) in [
        ("steps.skipped.send", true),
        ("steps.skipped.get_thread", true),
        ("steps.skipped.bogus", false),
        ("violations", true),
        ("threads.switch_requested", true),
    ] {
        assert_eq!(names::check_counter(name, &v).is_ok(), want, "{name}");
    }
}
