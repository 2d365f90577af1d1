//! `[capacity]`: a capacity search, its staircase of loads (`plan/`) and the
//! SLO rules (`[capacity.slo]`) that say whether a step held. Imports `plan`,
//! `scenario::thresholds` and the `doc` readers.

use std::time::Duration;

use crate::plan::{CapacityPlan, OpenModel};

use super::doc::{non_negative_f64, Obj};
use super::model::{CapacitySearch, Model, Workload};
use super::thresholds::{read_rules, Threshold};
use super::workload::{pool_plan, whole_seconds};

/// `[capacity]`: the steps, the SLOs that define "holds", and the target.
pub(super) fn read_capacity(
    o: &Obj<'_>,
    open: Option<&OpenModel>,
    vocabulary: &crate::names::Vocabulary,
) -> Option<Option<CapacitySearch>> {
    let Some(tbl) = o.obj("capacity") else {
        return Some(None);
    };
    let unit = open.map(|m| m.time_unit);
    // Whole users unless the model is open (also when the workload has errors).
    let open_model = open.is_some() || workload_model(o) == Some("open");
    let per_s = |v: f64| unit.map_or(v, |u| v / u.as_secs_f64());
    let load = |key: &str, required: bool| -> Option<f64> {
        let n = if required {
            tbl.require(key)?
        } else {
            tbl.get(key)?
        };
        let v = non_negative_f64(&n)?;
        if !open_model && v.fract() != 0.0 {
            n.error("the closed model steps whole users");
            return None;
        }
        Some(per_s(v))
    };
    let start = load("start", true);
    let step = load("step", true);
    let max = load("max", true);
    let target = load("target", false);
    let step_duration = tbl.require("step_duration").and_then(|n| {
        let d = n.as_duration().and_then(|d| whole_seconds(&n, d))?;
        if d.is_zero() {
            n.error("must be longer than zero: a step of 0 s measures nothing and the search never ends");
            return None;
        }
        Some(d)
    });
    let warmup = match tbl.get("warmup") {
        None => Some(Duration::ZERO),
        Some(n) => n.as_duration().and_then(|d| whole_seconds(&n, d)),
    };
    let slo = read_slo(&tbl, vocabulary);
    let loads = [start, step, max];
    let ok = check_steps(&tbl, open_model, loads, step_duration, warmup);
    tbl.finish();
    if !ok {
        return None;
    }
    Some(Some(CapacitySearch {
        plan: CapacityPlan {
            start: start?,
            step: step?,
            max: max?,
            step_duration: step_duration?,
            warmup: warmup?,
            target,
            rate_unit: unit,
        },
        slo: slo?,
    }))
}

/// `[capacity.slo]`: at least one rule; drift rules do not apply.
fn read_slo(tbl: &Obj<'_>, vocabulary: &crate::names::Vocabulary) -> Option<Vec<Threshold>> {
    match tbl.get("slo") {
        Some(n) => n.as_obj().and_then(|rules| {
            if rules.entries().is_empty() {
                rules.error("needs at least one rule, such as \"ttc p95\" = \"< 2s\": the rules define a step that holds");
                return None;
            }
            read_rules(rules, None, vocabulary)
        }),
        None => {
            tbl.ctx().error(
                tbl.node.span.clone(),
                &tbl.child_path("slo"),
                "required key is missing: a table of rules such as \"ttc p95\" = \"< 2s\" that define a step that holds",
            );
            None
        }
    }
}

/// The steps against each other: `start` and `step` above zero, `max` at
/// least `start`, at most 1000 steps, a warm-up shorter than a step.
fn check_steps(
    tbl: &Obj<'_>,
    open_model: bool,
    [start, step, max]: [Option<f64>; 3],
    step_duration: Option<Duration>,
    warmup: Option<Duration>,
) -> bool {
    let mut ok = true;
    if let (Some(n), Some(s)) = (tbl.get("start"), start) {
        if s <= 0.0 {
            n.error(if open_model {
                "must be above 0: a step at rate 0 has no runs, so it measures no data"
            } else {
                "must be at least 1: a step of 0 users has no runs, so it measures no data"
            });
            ok = false;
        }
    }
    if let (Some(n), Some(s)) = (tbl.get("step"), step) {
        if s <= 0.0 {
            n.error("must be above 0");
            ok = false;
        }
    }
    if let (Some(n), Some(s), Some(m)) = (tbl.get("max"), start, max) {
        if m < s {
            n.error("must be at least `start`");
            ok = false;
        }
    }
    if let (Some(n), Some(d), Some(w)) = (tbl.get("warmup"), step_duration, warmup) {
        if w >= d {
            n.error("must be shorter than `step_duration` (the rest of the step is measured)");
            ok = false;
        }
    }
    if let (Some(n), Some(s), Some(st), Some(m)) = (tbl.get("max"), start, step, max) {
        if st > 0.0 && (m - s) / st > 1000.0 {
            n.error("more than 1000 steps: raise `step` or lower `max`");
            ok = false;
        }
    }
    ok
}

/// `workload.model` as written, read without reporting anything (the
/// workload reader reports its problems).
pub(super) fn workload_model<'a>(o: &Obj<'a>) -> Option<&'a str> {
    o.get("workload")?
        .item
        .as_table_like_pub()?
        .get("model")?
        .as_str()
}

/// Fills the workload's plan in from a capacity search that read (the
/// staircase of users, or of rates for the open model), and refuses
/// `[thresholds]` beside `[capacity]`.
pub(super) fn apply(
    o: &Obj<'_>,
    workload: Option<&mut Workload>,
    capacity: Option<&Option<CapacitySearch>>,
) {
    if let (Some(w), Some(Some(cap))) = (workload, capacity) {
        match &mut w.model {
            Model::Open(m) => {
                m.rate = cap.plan.rate_plan();
                w.plan = pool_plan(m.max_users, &m.rate);
            }
            Model::Closed => w.plan = cap.plan.closed_plan(),
        }
        w.capacity = Some(cap.clone());
    }
    if o.get("capacity").is_some() {
        if let Some(t) = o.obj("thresholds") {
            t.error("a capacity search is judged step by step by [capacity.slo]; [thresholds] would judge the whole search, including the step meant to break: move these rules to [capacity.slo]");
            t.skip_rest();
        }
    }
}
