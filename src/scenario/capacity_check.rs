//! Whether a capacity search's SLOs can be judged in the plan as written:
//! a `ws_connect` or `ws_ready` rule is judged on the sockets each step
//! opens, so every step must open enough of them (a percentile needs
//! [`samples_needed`]; any other statistic one). A rule no step (or not
//! every step) can measure would read "no data" or "insufficient data" and
//! break the search on a step that held; `validate` refuses it and says why.
//!
//! Imports `plan` and the scenario's `doc` and `thresholds` readers.

use crate::plan::{CapacityPlan, SearchMode};

use super::doc::Obj;
use super::thresholds::{samples_needed, Stat, Subject, Threshold};

/// Checks every connect-latency rule of `[capacity.slo]` against the
/// sockets each step opens; reports each one that cannot be judged at its
/// key. Whether all can.
pub(super) fn check(o: &Obj<'_>, plan: &CapacityPlan, slo: &[Threshold]) -> bool {
    let Some(rules) = o.obj("capacity").and_then(|c| c.obj("slo")) else {
        return true;
    };
    let entries = rules.entries();
    let mut ok = true;
    for t in slo {
        let Some(why) = unmeasurable(plan, t) else {
            continue;
        };
        ok = false;
        match entries
            .iter()
            .find(|(k, _, _)| t.expr.starts_with(k.as_str()))
        {
            Some((_, n, _)) => n.error(why),
            None => rules.error(why),
        }
    }
    ok
}

/// Why `t` cannot be judged on every step of `plan` (`None`: it can).
pub fn unmeasurable(plan: &CapacityPlan, t: &Threshold) -> Option<String> {
    let Subject::Latency { metric, stat } = &t.subject else {
        return None;
    };
    if metric != crate::names::WS_CONNECT && metric != crate::names::WS_READY {
        return None;
    }
    let need = match stat {
        Stat::Percentile(q) => samples_needed(*q).unwrap_or(1),
        Stat::Mean | Stat::Max | Stat::Min => 1,
    };
    if plan.rate_unit.is_some() {
        return Some(format!(
            "`{}` cannot be judged in this search: {metric} is measured on the sockets a step opens, and the open model's session pool (workload.max_users) connects before the first step, so no step opens any; judge {metric} in a closed search, or a connect-burst search (mode = \"connect_burst\")",
            t.expr
        ));
    }
    let (i, new) = (0..plan.levels.len())
        .map(|i| {
            let before = if i == 0 { 0 } else { plan.users_at(i - 1) };
            (i, plan.users_at(i).saturating_sub(before))
        })
        .min_by_key(|(_, n)| *n)?;
    if new >= need {
        return None;
    }
    let stat_needs = match stat {
        Stat::Percentile(_) => format!("this percentile needs {need} samples in every step"),
        Stat::Mean | Stat::Max | Stat::Min => "it needs at least one in every step".to_string(),
    };
    let fix = match plan.mode {
        SearchMode::Load => "levels whose every step adds that many users, or a connect-burst search (mode = \"connect_burst\") whose levels are that large",
        SearchMode::ConnectBurst => "levels of at least that many sockets",
    };
    Some(format!(
        "`{}` cannot be judged in this search: {metric} is measured on the sockets a step opens (closed users connect once, when their step adds them), step {} ({}) opens {new}, and {stat_needs}; it would read \"{}\" and break a step that held. Use {fix}",
        t.expr,
        i + 1,
        plan.show_load(plan.levels[i]),
        if new == 0 { "no data" } else { "insufficient data" }
    ))
}
