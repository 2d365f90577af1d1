//! `[capacity]`: a capacity search, its staircase of loads (`plan/`) and the
//! SLO rules (`[capacity.slo]`) that say whether a step held. Imports `plan`,
//! `scenario::thresholds` and the `doc` readers.

use std::time::Duration;

use crate::plan::{arithmetic_levels, CapacityPlan, ConnectRamp, OpenModel, SearchMode};

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
    let levels = read_levels(&tbl, open_model, &load, &per_s);
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
    let mode = read_mode(&tbl, open_model);
    let connect = read_connect(&tbl, open_model, mode);
    let ok = check_warmup(&tbl, step_duration, warmup)
        & check_target(&tbl, levels.as_deref(), target, per_s(1.0));
    tbl.finish();
    let plan = CapacityPlan {
        levels: levels?,
        step_duration: step_duration?,
        warmup: warmup?,
        target,
        rate_unit: unit,
        connect: connect?,
        mode: mode?,
    };
    let measurable = super::capacity_check::check(o, &plan, slo.as_deref()?);
    let ramp_fits = check_ramp(o, &plan);
    if !ok || !measurable || !ramp_fits {
        return None;
    }
    Some(Some(CapacitySearch { plan, slo: slo? }))
}

/// A target above the highest step can never be reached: every step could
/// hold and the search would still fail with no broken rule to show. Named
/// at `target`, with the way to fix it for the plan's kind. `per_unit`:
/// the factor from the written unit to the stored one.
fn check_target(tbl: &Obj<'_>, levels: Option<&[f64]>, target: Option<f64>, per_unit: f64) -> bool {
    let (Some(levels), Some(t)) = (levels, target) else {
        return true;
    };
    let top = levels.iter().copied().fold(f64::MIN, f64::max);
    if t <= top * (1.0 + 1e-9) {
        return true;
    }
    let Some(n) = tbl.get("target") else {
        return true;
    };
    let shown = |v: f64| crate::units::trim_float(v / per_unit, 3);
    let fix = if tbl.get("levels").is_some() {
        format!(
            "the highest of `levels` is {}; add a level at or above the target, or lower the target",
            shown(top)
        )
    } else {
        format!(
            "the highest step (`max`) is {}; raise `max` to at least the target, or lower the target",
            shown(top)
        )
    };
    n.error(format!(
        "{} is above the plan's highest step: the knee can never reach it, so every step could hold and the search would still fail; {fix}",
        shown(t)
    ));
    false
}

/// The levels: `levels = [10, 20, 40]` as written, or `start`, `step` and
/// `max` (not both). Each above zero, at most 1000 of them.
fn read_levels(
    tbl: &Obj<'_>,
    open_model: bool,
    load: &dyn Fn(&str, bool) -> Option<f64>,
    per_s: &dyn Fn(f64) -> f64,
) -> Option<Vec<f64>> {
    let Some(list) = tbl.get("levels") else {
        let [start, step, max] = [load("start", true), load("step", true), load("max", true)];
        if !check_steps(tbl, open_model, [start, step, max]) {
            return None;
        }
        return Some(arithmetic_levels(start?, step?, max?));
    };
    for key in ["start", "step", "max"] {
        if let Some(n) = tbl.get(key) {
            n.error("`levels` lists the steps: remove `start`, `step` and `max` (or `levels`)");
        }
    }
    let items = list.as_array()?;
    if items.is_empty() || items.len() > 1000 {
        list.error("needs 1 to 1000 levels, such as [10, 20, 40, 60, 80, 100]");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for n in &items {
        let Some(v) = non_negative_f64(n) else {
            ok = false;
            continue;
        };
        if v <= 0.0 {
            n.error("must be above 0: a step at 0 has no runs, so it measures no data");
            ok = false;
        } else if !open_model && v.fract() != 0.0 {
            n.error("the closed model steps whole users");
            ok = false;
        }
        out.push(v);
    }
    if !ok {
        return None;
    }
    Some(out.into_iter().map(per_s).collect())
}

/// `mode`: `load` (the default) or `connect_burst` (closed model only).
fn read_mode(tbl: &Obj<'_>, open_model: bool) -> Option<SearchMode> {
    let Some(n) = tbl.get("mode") else {
        return Some(SearchMode::Load);
    };
    match n.as_str()? {
        "load" => Some(SearchMode::Load),
        "connect_burst" if open_model => {
            n.error("a connect-burst search steps the sockets closed users open at once; the open model's session pool connects before the first step");
            None
        }
        "connect_burst" => Some(SearchMode::ConnectBurst),
        other => {
            n.error(format!("unknown mode `{other}` (load, connect_burst)"));
            None
        }
    }
}

/// `connect_rate` (new sockets per second) or `connect_over` (a duration):
/// how a closed step's new users connect, apart from its level.
fn read_connect(tbl: &Obj<'_>, open_model: bool, mode: Option<SearchMode>) -> Option<ConnectRamp> {
    let rate = tbl.get("connect_rate");
    let over = tbl.get("connect_over");
    let key = rate.as_ref().or(over.as_ref());
    if let Some(n) = key.filter(|_| open_model) {
        n.error("the open model's session pool connects before the first step: a connect ramp applies to closed users");
        return None;
    }
    if let Some(n) = key.filter(|_| mode == Some(SearchMode::ConnectBurst)) {
        n.error(
            "a connect-burst search opens each step's sockets at once: remove the connect ramp",
        );
        return None;
    }
    match (rate, over) {
        (Some(_), Some(o)) => {
            o.error("give `connect_rate` or `connect_over`, not both");
            None
        }
        (Some(r), None) => {
            let v = non_negative_f64(&r)?;
            if v <= 0.0 {
                r.error("must be above 0 (new sockets per second)");
                return None;
            }
            Some(ConnectRamp::Rate(v))
        }
        (None, Some(o)) => {
            let d = o.as_duration().and_then(|d| whole_seconds(&o, d))?;
            Some(ConnectRamp::Over(d))
        }
        (None, None) => Some(ConnectRamp::AtOnce),
    }
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

/// `start`, `step` and `max` against each other: `start` and `step` above
/// zero, `max` at least `start`, at most 1000 steps.
fn check_steps(tbl: &Obj<'_>, open_model: bool, [start, step, max]: [Option<f64>; 3]) -> bool {
    let mut ok = start.is_some() && step.is_some() && max.is_some();
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
    if let (Some(n), Some(s), Some(st), Some(m)) = (tbl.get("max"), start, step, max) {
        if st > 0.0 && (m - s) / st > 1000.0 {
            n.error("more than 1000 steps: raise `step` or lower `max`");
            ok = false;
        }
    }
    ok
}

/// A connect ramp shorter than a step: a step whose new users are still
/// connecting when it ends never reaches its level.
fn check_ramp(o: &Obj<'_>, plan: &CapacityPlan) -> bool {
    let Some(i) = (0..plan.levels.len()).find(|i| plan.connect_time(*i) >= plan.step_duration)
    else {
        return true;
    };
    let tbl = o.obj("capacity");
    if let Some(n) = tbl
        .as_ref()
        .and_then(|t| t.get("connect_rate").or_else(|| t.get("connect_over")))
    {
        n.error(format!(
            "step {} ({}) would still be connecting its new users when it ends ({}s of a {}s step): connect faster or lengthen step_duration",
            i + 1,
            plan.show_load(plan.levels[i]),
            plan.connect_time(i).as_secs(),
            plan.step_duration.as_secs()
        ));
    }
    false
}

/// A warm-up shorter than a step.
fn check_warmup(tbl: &Obj<'_>, step_duration: Option<Duration>, warmup: Option<Duration>) -> bool {
    if let (Some(n), Some(d), Some(w)) = (tbl.get("warmup"), step_duration, warmup) {
        if w >= d {
            n.error("must be shorter than `step_duration` (the rest of the step is measured)");
            return false;
        }
    }
    true
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
