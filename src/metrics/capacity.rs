//! The result of a capacity search: one section per step ([`StepResult`]:
//! the connect side over the whole step, the runs that started in its
//! measured window), each step judged against the SLOs, and the knee: the
//! highest step where every SLO held (each capacity's apart:
//! `capacity_sides.rs`).
use serde::{Deserialize, Serialize};

use super::encoding::histograms_of;
use super::recorder::Recorder;
use super::threshold::{RuleResult, Threshold};
use super::validity::{self, ValidityCause};
use crate::plan::CapacityStep;

pub use super::capacity_step::StepResult;

/// The step where the search stopped and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirstFailing {
    pub index: u32,
    pub load: f64,
    pub load_text: String,
    /// The SLOs that failed on it.
    pub failed: Vec<RuleResult>,
}

/// `snapshot.capacity`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityResult {
    /// `users` or `arrivals_per_s`.
    pub unit: String,
    /// The SLO rules as written.
    pub slo: Vec<String>,
    /// Measured steps, in order (the search stops at the first failing one).
    pub steps: Vec<StepResult>,
    /// The highest step where every SLO held (`None`: not even the first).
    pub knee: Option<f64>,
    pub knee_text: Option<String>,
    pub first_failing: Option<FirstFailing>,
    /// Every planned step held: the knee is at or above the plan's max.
    pub reached_max: bool,
    pub target: Option<f64>,
    pub target_text: Option<String>,
    /// `knee / target - 1`: 0.25 means 25% above the target load; negative
    /// means the knee is below it.
    pub headroom: Option<f64>,
    /// The step that reached the generator's limit (INVALID) before any SLO
    /// broke: the search ended there without a knee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_limit: Option<FirstFailing>,
    /// `at_least` when the knee is a lower bound (no step broke), `below`
    /// when no step held (the headroom is that of the first step, an upper
    /// bound); absent when the knee was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom_bound: Option<String>,
    /// The connect/auth and agent-run capacities apart, when the SLOs
    /// judge both (see `capacity_sides.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sides: Vec<super::capacity_sides::SideKnee>,
    /// Which capacity broke first (`both`: on the same step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broke: Option<super::capacity_sides::Side>,
}

/// What judging a step needs besides its own data.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepContext {
    /// Ready sockets open when the step began (they carry the step's runs
    /// as much as the sockets it opens).
    pub sockets_at_start: u64,
    /// An open-model search: the step must also have offered its load.
    pub open_model: bool,
    /// Ready sockets when the measured window ended.
    pub sockets_at_end: Option<u64>,
    /// Seconds the measured window was open, and waited after it for its runs.
    pub window_s: Option<f64>,
    pub drain_s: Option<f64>,
}

/// Judges one step's data against the SLOs. In the open model a step also
/// holds only if every arrival started on time: one the pool could not
/// serve (dropped, or late in `queue` mode) means the step's load was not
/// offered, whether the target's latency filled the pool (Little's law) or
/// the pool is too small for it (`workload.max_users`).
pub fn judge_step(
    step: &CapacityStep,
    load_text: String,
    slo: &[Threshold],
    rec: &Recorder,
    cx: StepContext,
) -> StepResult {
    let mut verdicts: Vec<RuleResult> = slo
        .iter()
        .map(|t| judge_in_step(t, rec, cx.sockets_at_start))
        .collect();
    if cx.open_model {
        verdicts.push(offered(rec));
    }
    let invalid = validity::local_errors(rec);
    StepResult {
        index: step.index,
        load: step.load,
        load_text,
        start_s: step.start_s,
        measure_s: step.measure_s,
        end_s: step.end_s,
        held: verdicts.iter().all(|v| v.passed) && invalid.is_empty(),
        slo: verdicts,
        counters: rec.counters.clone(),
        histograms: histograms_of(rec),
        invalid,
        sockets_at_start: Some(cx.sockets_at_start),
        sockets_at_end: cx.sockets_at_end,
        window_s: cx.window_s,
        drain_s: cx.drain_s,
        at_once: step.at_once,
    }
}

/// The rule every open-model step carries: its arrivals all started on time.
pub const OFFERED_RULE: &str = "every arrival started on time (starts.dropped + starts.late == 0)";

fn offered(rec: &Recorder) -> RuleResult {
    let dropped = rec.counter(crate::names::STARTS_DROPPED);
    let late = rec.counter(crate::names::STARTS_LATE);
    let intended = rec.counter(crate::names::STARTS_INTENDED);
    let missed = dropped + late;
    RuleResult {
        threshold: OFFERED_RULE.to_string(),
        passed: missed == 0,
        observed: Some(missed as f64),
        limit: 0.0,
        observed_text: if missed == 0 {
            format!("every one of {intended} arrivals started on time")
        } else {
            format!("{dropped} dropped and {late} late of {intended} arrivals: the session pool was full")
        },
        limit_text: "0".to_string(),
        unit: "count".to_string(),
        default: false,
    }
}

/// Judges a rule on a step's data. A close-code rate is per socket in use in
/// the step (open when it began, or opened in it): sockets outlive steps, so
/// per new connection a step with one new socket and one close would read
/// 100%. With no socket in use and no such close, the rate is 0.
fn judge_in_step(t: &Threshold, rec: &Recorder, sockets_at_start: u64) -> RuleResult {
    if let super::threshold::Subject::Rate { name } = &t.subject {
        if let Some(code) = name.strip_prefix("close_") {
            let closes = super::threshold::unexplained_closes(rec, code).unwrap_or(0);
            let in_use = rec.counter(crate::names::CONN_UPGRADED) + sockets_at_start;
            // The step's counters (the closes, and the auth failures they leave out).
            let mut r = Recorder {
                counters: rec.counters.clone(),
                ..Recorder::default()
            };
            r.counters
                .insert(crate::names::CONN_UPGRADED.into(), in_use.max(1));
            let mut v = t.judge(&r);
            if in_use == 0 && closes > 0 {
                v.observed_text = format!("{closes} closes and no socket in use");
            } else {
                v.observed_text = format!("{} ({closes} of {in_use} sockets)", v.observed_text);
            }
            return v;
        }
    }
    t.judge(rec)
}

/// Names the knee from the measured steps.
pub fn conclude(
    steps: Vec<StepResult>,
    planned: usize,
    unit: &str,
    slo: &[Threshold],
    target: Option<(f64, String)>,
) -> CapacityResult {
    let first_stop = steps.iter().position(|s| !s.held);
    // A step the generator could not offer ends the search without a knee.
    let limit = first_stop.filter(|i| !steps[*i].invalid.is_empty());
    let first_bad = first_stop.filter(|_| limit.is_none());
    let held = &steps[..first_stop.unwrap_or(steps.len())];
    let knee = held.last().filter(|_| limit.is_none());
    let (headroom, headroom_bound) = match (&target, knee, steps.first()) {
        (Some((t, _)), Some(k), _) if *t > 0.0 => (
            Some(k.load / t - 1.0),
            first_bad.is_none().then(|| "at_least".to_string()),
        ),
        // No step held: the knee is below the first step's load.
        (Some((t, _)), None, Some(first)) if *t > 0.0 && limit.is_none() => {
            (Some(first.load / t - 1.0), Some("below".to_string()))
        }
        (Some(_), None, _) => (Some(-1.0), None),
        _ => (None, None),
    };
    let sides = super::capacity_sides::side_knees(&steps, slo);
    CapacityResult {
        first_broke: super::capacity_sides::first_broke(&sides),
        sides,
        headroom_bound,
        unit: unit.to_string(),
        slo: slo.iter().map(|t| t.expr.clone()).collect(),
        knee: knee.map(|k| k.load),
        knee_text: knee.map(|k| k.load_text.clone()),
        first_failing: first_bad.map(|i| {
            let s = &steps[i];
            FirstFailing {
                index: s.index,
                load: s.load,
                load_text: s.load_text.clone(),
                failed: s.slo.iter().filter(|v| !v.passed).cloned().collect(),
            }
        }),
        generator_limit: limit.map(|i| {
            let s = &steps[i];
            FirstFailing {
                index: s.index,
                load: s.load,
                load_text: s.load_text.clone(),
                failed: Vec::new(),
            }
        }),
        reached_max: first_bad.is_none() && steps.len() == planned && planned > 0,
        target: target.as_ref().map(|t| t.0),
        target_text: target.map(|t| t.1),
        headroom,
        steps,
    }
}

impl CapacityResult {
    /// Whether the search passes: some step held, and the knee carries the target load.
    pub fn passed(&self) -> bool {
        match (self.knee, self.target) {
            (None, _) => false,
            (Some(k), Some(t)) => k >= t,
            (Some(_), None) => true,
        }
    }

    /// The validity cause of a search that reached the generator's limit.
    pub fn generator_limit_cause(&self) -> Option<ValidityCause> {
        let g = self.generator_limit.as_ref()?;
        Some(ValidityCause {
            cause: validity::GENERATOR_LIMIT.into(),
            count: 1,
            detail: self.generator_limit_text(g),
        })
    }

    fn generator_limit_text(&self, g: &FirstFailing) -> String {
        let why = self
            .steps
            .iter()
            .find(|s| s.index == g.index)
            .map(|s| {
                s.invalid
                    .iter()
                    .map(|c| c.detail.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let held = self
            .steps
            .iter()
            .take_while(|s| s.index < g.index && s.held)
            .last()
            .map_or("no step held before it".to_string(), |s| {
                format!("every SLO held up to {}", s.load_text)
            });
        format!(
            "generator limit reached before any SLO broke: step {} at {} could not be offered ({why}); {held}, so the knee is above that and was not found",
            g.index, g.load_text
        )
    }

    /// One line for people: the knee, what broke, the headroom.
    pub fn summary(&self) -> String {
        if let Some(g) = &self.generator_limit {
            return self.generator_limit_text(g);
        }
        let mut s = match (&self.knee_text, &self.first_failing) {
            (Some(k), Some(f)) => format!(
                "knee: {k} (the highest step where every SLO held); step {} at {} broke {}",
                f.index,
                f.load_text,
                f.failed
                    .iter()
                    .map(|v| format!("`{}` (measured {})", v.threshold, v.observed_text))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(k), None) if self.reached_max => {
                format!("knee: at least {k}: every step held, up to the plan's highest; add higher steps (a higher capacity.max, or a higher level in capacity.levels) to find it")
            }
            (Some(k), None) => format!("knee: at least {k}: the search ended before a step broke"),
            (None, Some(f)) => format!(
                "no step held: the first step ({}) already broke {}",
                f.load_text,
                f.failed
                    .iter()
                    .map(|v| format!("`{}` (measured {})", v.threshold, v.observed_text))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, None) => "no step was measured".to_string(),
        };
        if let (Some(h), Some(t)) = (self.headroom, &self.target_text) {
            let bound = match self.headroom_bound.as_deref() {
                Some("at_least") => "at least ",
                Some("below") => "below ",
                _ => "",
            };
            s.push_str(&format!(
                "; headroom against the target {t}: {bound}{:+.0}%",
                h * 100.0
            ));
        }
        for side in &self.sides {
            s.push_str("; ");
            s.push_str(&side.sentence());
        }
        if let Some(first) = self.first_broke {
            s.push_str(&match first {
                super::capacity_sides::Side::Both => {
                    "; both capacities broke on the same step".to_string()
                }
                side => format!("; the {} capacity broke first", side.name()),
            });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: u32, load: f64, ttc_ms: u64) -> StepResult {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let mut rec = Recorder::default();
        // p95 is judged on at least 200 samples (fewer: insufficient data).
        for _ in 0..200 {
            rec.record("ttc", ttc_ms * 1000);
        }
        let s = CapacityStep {
            index,
            load,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
            at_once: None,
        };
        judge_step(
            &s,
            format!("{load} users"),
            &slo,
            &rec,
            StepContext::default(),
        )
    }

    #[test]
    fn the_knee_is_the_last_step_before_the_first_failure() {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let r = conclude(
            vec![step(1, 4.0, 50), step(2, 8.0, 80), step(3, 12.0, 150)],
            5,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(r.knee, Some(8.0));
        let f = r.first_failing.as_ref().unwrap();
        assert_eq!((f.index, f.failed.len()), (3, 1));
        assert!((r.headroom.unwrap() - (8.0 / 6.0 - 1.0)).abs() < 1e-12);
        assert!(r.passed() && !r.reached_max);
        assert!(r.summary().contains("knee: 8 users"), "{}", r.summary());
        assert!(r.summary().contains("+33%"), "{}", r.summary());
        // Below the target: fails.
        let low = conclude(
            vec![step(1, 4.0, 50), step(2, 8.0, 150)],
            5,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(low.knee, Some(4.0));
        assert!(!low.passed());
        // No step held.
        let none = conclude(vec![step(1, 4.0, 150)], 5, "users", &slo, None);
        assert_eq!(none.knee, None);
        assert!(!none.passed());
        assert!(none.summary().starts_with("no step held"));
        // A close rate counts every socket in use in the step: the ones open
        // at its start too (sockets outlive steps).
        let rate = vec![Threshold::parse("close_1011 rate", "< 1%").unwrap()];
        let mut rec = Recorder::default();
        rec.count("runs.started", 10);
        let s = CapacityStep {
            index: 1,
            load: 1.0,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
            at_once: None,
        };
        let cx = |sockets| StepContext {
            sockets_at_start: sockets,
            ..StepContext::default()
        };
        assert!(judge_step(&s, "1".into(), &rate, &rec, cx(0)).held);
        rec.count("closes.1011", 2);
        let broke = judge_step(&s, "1".into(), &rate, &rec, cx(0));
        assert!(!broke.held);
        assert_eq!(broke.slo[0].observed_text, "2 closes and no socket in use");
        rec.count("connections.upgraded", 1);
        let per_socket = judge_step(&s, "1".into(), &rate, &rec, cx(399));
        assert_eq!(per_socket.slo[0].observed, Some(2.0 / 400.0));
        assert!(per_socket.held, "2 of 400 sockets is 0.5%");
        assert!(
            per_socket.slo[0]
                .observed_text
                .contains("(2 of 400 sockets)"),
            "{}",
            per_socket.slo[0].observed_text
        );
        // The open model: a step whose pool dropped or delayed arrivals did
        // not offer its load, whatever the SLOs say.
        let mut open = Recorder::default();
        open.count("starts.intended", 100);
        open.count("runs.started", 97);
        open.count("starts.dropped", 3);
        let o = judge_step(
            &s,
            "10/s".into(),
            &[],
            &open,
            StepContext {
                open_model: true,
                ..StepContext::default()
            },
        );
        assert!(!o.held);
        assert_eq!(o.slo.len(), 1);
        assert_eq!(o.slo[0].threshold, OFFERED_RULE);
        assert!(o.slo[0]
            .observed_text
            .starts_with("3 dropped and 0 late of 100"));
        // Every step held.
        let all = conclude(
            vec![step(1, 4.0, 10), step(2, 8.0, 10)],
            2,
            "users",
            &slo,
            None,
        );
        assert!(all.reached_max && all.passed());
        assert!(all.summary().contains("at least 8 users"));
    }

    /// A step that offered its load says so, not that the pool was full.
    #[test]
    fn the_offered_rule_says_what_its_counts_say() {
        let s = CapacityStep {
            index: 1,
            load: 1.0,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
            at_once: None,
        };
        let mut served = Recorder::default();
        served.count("starts.intended", 100);
        served.count("runs.started", 100);
        let cx = StepContext {
            open_model: true,
            ..StepContext::default()
        };
        let s2 = judge_step(&s, "10/s".into(), &[], &served, cx);
        assert!(s2.held);
        assert_eq!(
            s2.slo[0].observed_text,
            "every one of 100 arrivals started on time"
        );
    }

    /// The headroom carries the knee's bound: a lower bound when no step
    /// broke, an upper bound (the first step's) when none held.
    #[test]
    fn the_headroom_carries_the_knee_bound() {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let bound = conclude(
            vec![step(1, 4.0, 10), step(2, 8.0, 10)],
            2,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(bound.headroom_bound.as_deref(), Some("at_least"));
        assert!(
            bound
                .summary()
                .ends_with("headroom against the target 6 users: at least +33%"),
            "{}",
            bound.summary()
        );
        let below = conclude(
            vec![step(1, 10.0, 150)],
            3,
            "users",
            &slo,
            Some((60.0, "60 users".into())),
        );
        assert!(
            below
                .summary()
                .ends_with("headroom against the target 60 users: below -83%"),
            "{}",
            below.summary()
        );
    }

    /// A step whose connects failed on this machine is the generator's
    /// limit: it ends the search, and neither it nor the step before it is
    /// reported as the knee.
    #[test]
    fn a_step_the_generator_could_not_offer_ends_the_search_without_a_knee() {
        let slo = vec![Threshold::parse("ttc p95", "< 100ms").unwrap()];
        let mut limited = step(3, 12.0, 50);
        assert!(limited.held);
        let mut rec = Recorder::default();
        // Enough samples for a p95 (insufficient data would break the SLO).
        for _ in 0..200 {
            rec.record("ttc", 50_000);
        }
        rec.count("connections.local_error.emfile", 37);
        let s = CapacityStep {
            index: 3,
            load: 12.0,
            start_s: 0,
            measure_s: 0,
            end_s: 1,
            at_once: None,
        };
        limited = judge_step(&s, "12 users".into(), &slo, &rec, StepContext::default());
        assert!(!limited.held, "an invalid step does not hold");
        assert!(limited.slo.iter().all(|v| v.passed), "no SLO broke");
        let r = conclude(
            vec![step(1, 4.0, 50), step(2, 8.0, 50), limited],
            5,
            "users",
            &slo,
            Some((6.0, "6 users".into())),
        );
        assert_eq!(r.knee, None, "the generator's limit is never the knee");
        assert!(r.first_failing.is_none());
        assert_eq!(r.generator_limit.as_ref().map(|g| g.index), Some(3));
        let text = r.summary();
        assert!(
            text.starts_with("generator limit reached before any SLO broke"),
            "{text}"
        );
        assert!(
            text.contains("37 connects failed on this machine"),
            "{text}"
        );
        assert!(text.contains("every SLO held up to 8 users"), "{text}");
        let cause = r.generator_limit_cause().unwrap();
        assert_eq!(cause.cause, validity::GENERATOR_LIMIT);
    }
}
