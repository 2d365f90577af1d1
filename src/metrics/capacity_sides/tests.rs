use super::*;
use crate::metrics::capacity::{conclude, judge_step, StepContext};
use crate::metrics::Recorder;
use crate::plan::CapacityStep;

fn rules() -> Vec<Threshold> {
    vec![
        Threshold::parse("auth_failure rate", "< 1%").unwrap(),
        Threshold::parse("run_failed rate", "< 1%").unwrap(),
    ]
}

/// A step with `auth` auth failures of 100 connects and `failed` failed runs of 100.
fn step(index: u32, auth: u64, failed: u64) -> StepResult {
    let mut rec = Recorder::default();
    rec.count(names::CONN_ATTEMPTED, 100);
    rec.count(names::TOKENS_REJECTED, auth);
    rec.count(names::RUNS_STARTED, 100);
    rec.count(names::RUNS_FAILED, failed);
    rec.count(&names::run_failed("closed"), failed);
    rec.count(names::RUNS_OK, 100 - failed);
    let s = CapacityStep {
        index,
        load: index as f64 * 10.0,
        start_s: 0,
        measure_s: 0,
        end_s: 10,
        at_once: None,
    };
    let cx = StepContext {
        window_s: Some(10.0),
        ..StepContext::default()
    };
    judge_step(&s, format!("{} users", index * 10), &rules(), &rec, cx)
}

#[test]
fn each_rule_judges_its_side() {
    let side = |k: &str| {
        let limit = if k.ends_with("rate") { "< 1%" } else { "< 1s" };
        Side::of(&Threshold::parse(k, limit).unwrap())
    };
    assert_eq!(side("ws_ready p95"), Side::Connect);
    assert_eq!(side("close_1011_before_ready rate"), Side::Connect);
    assert_eq!(side("auth_failure rate"), Side::Connect);
    assert_eq!(side("ttc p95"), Side::Run);
    assert_eq!(side("close_1011_during_run rate"), Side::Run);
    assert_eq!(side("run_ok rate"), Side::Run);
    assert_eq!(side("close_1011 rate"), Side::Both);
}

/// The connect side breaks at step 2, the run side at step 4: the search
/// goes on past step 2 and ends at step 4; each knee is named, and the
/// connect side broke first.
#[test]
fn one_search_finds_both_capacities() {
    let slo = rules();
    let steps = vec![step(1, 0, 0), step(2, 5, 0), step(3, 9, 0)];
    assert!(!steps[1].held);
    assert!(search_goes_on(&steps, &slo), "the run side still holds");
    let mut all = steps.clone();
    all.push(step(4, 9, 7));
    assert!(!search_goes_on(&all, &slo));
    let c = conclude(all, 5, "users", &slo, None);
    assert_eq!(c.knee, Some(10.0), "the knee of every SLO is step 1");
    let connect = &c.sides[0];
    let run = &c.sides[1];
    assert_eq!(
        (connect.side, connect.knee, connect.broke_at),
        (Side::Connect, Some(10.0), Some(2))
    );
    assert_eq!(
        (run.side, run.knee, run.broke_at),
        (Side::Run, Some(30.0), Some(4))
    );
    assert_eq!(c.first_broke, Some(Side::Connect));
    let text = c.summary();
    assert!(
        text.contains(
            "connect/auth capacity: 10 users (step 2 at 20 users broke `auth_failure rate < 1%`"
        ),
        "{text}"
    );
    assert!(text.contains("agent-run capacity: 30 users"), "{text}");
    assert!(
        text.contains("the connect/auth capacity broke first"),
        "{text}"
    );
    // Rules of one side only: the first break ends the search.
    let run_only = vec![Threshold::parse("run_failed rate", "< 1%").unwrap()];
    assert!(!search_goes_on(&[step(1, 0, 5)], &run_only));
    assert!(sides_with_rules(&run_only).is_empty());
}

/// The figures carry the numerators and denominators of their SLOs.
#[test]
fn figures_count_what_their_rules_count() {
    let f = step(2, 5, 3).figures();
    assert_eq!(f.runs, Ratio { n: 97, of: 100 });
    assert_eq!(f.auth_failures, Ratio { n: 5, of: 100 });
    assert_eq!(f.runs_per_s, Some(10.0));
    assert_eq!(f.failed_by_class.get("closed"), Some(&3));
    assert_eq!(f.failed_by_class.len(), 1);
}
