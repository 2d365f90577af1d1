//! `[workload]`: the closed model (users through a ramp) or the open model
//! (arrival rates served by a pool), as `plan/` plans. Imports `plan` and the
//! `doc` readers.

use std::time::Duration;

use crate::plan::{self, Arrivals, LoadPlan, OpenModel, RampStep, RatePlan, WhenFull};

use super::doc::{non_negative_f64, positive_u64, Node, Obj};
use super::model::{Model, Workload};

/// What both models read: the model, `on_signal`, `time_unit`, `duration`
/// and `ramp` (with the keys a capacity search refuses).
struct Common<'a> {
    tbl: Obj<'a>,
    /// For errors about the whole plan, judged after the table is finished.
    table: Node<'a>,
    ok: bool,
    open: bool,
    capacity_mode: bool,
    on_signal_ends: bool,
    time_unit: Duration,
    duration: Option<Duration>,
    ramp_node: Option<Node<'a>>,
}

/// `[workload]`: the closed model (users, ramp or iterations) or the open
/// model (`model = "open"`: rate or ramp of rates, served by `max_users`);
/// with `[capacity]`, the plan is left for the search to fill in.
pub(super) fn read_workload(o: &Obj<'_>) -> Option<Workload> {
    let tbl = o.require("workload")?.as_obj()?;
    let c = read_common(o, tbl);
    if c.open {
        read_open(c)
    } else {
        read_closed(c)
    }
}

/// A key only one model (or only a fixed plan) reads: reported when present.
fn refuse(tbl: &Obj<'_>, key: &str, why: &str) -> bool {
    if let Some(n) = tbl.get(key) {
        n.error(why.to_string());
        false
    } else {
        true
    }
}

fn read_common<'a>(o: &Obj<'_>, tbl: Obj<'a>) -> Common<'a> {
    // For errors about the whole plan, judged after the table is finished.
    let table = tbl.node.clone();
    let mut ok = true;
    let mut open = false;
    if let Some(n) = tbl.get("model") {
        open = read_model(&n, &mut ok);
    }
    let capacity_mode = o.get("capacity").is_some();
    let on_signal_ends = read_on_signal(&tbl, &mut ok);
    if capacity_mode {
        for key in ["ramp", "duration", "iterations", "rate"] {
            ok &= refuse(
                &tbl,
                key,
                "a capacity search takes its steps from [capacity]; remove this key",
            );
        }
    }
    let time_unit = read_time_unit(&tbl, open, &mut ok);
    let duration_node = tbl.get("duration").filter(|_| !capacity_mode);
    let duration = read_duration(duration_node.as_ref(), &mut ok);
    let ramp_node = tbl.get("ramp").filter(|_| !capacity_mode);
    Common {
        tbl,
        table,
        ok,
        open,
        capacity_mode,
        on_signal_ends,
        time_unit,
        duration,
        ramp_node,
    }
}

/// `model`: whether it is the open model.
fn read_model(n: &Node<'_>, ok: &mut bool) -> bool {
    let mut open = false;
    match n.as_str() {
        Some("closed") => {}
        Some("open") => open = true,
        Some(m) => {
            n.error(format!(
                "unknown workload model `{m}` (expected closed or open)"
            ));
            *ok = false;
        }
        None => *ok = false,
    }
    open
}

/// `on_signal`: whether a stop signal ends the run normally (`end`) rather
/// than aborting it.
fn read_on_signal(tbl: &Obj<'_>, ok: &mut bool) -> bool {
    match tbl.get("on_signal") {
        None => false,
        Some(n) => match n.as_str() {
            Some("abort") => false,
            Some("end") => true,
            Some(other) => {
                n.error(format!("`{other}` is not abort or end"));
                *ok = false;
                false
            }
            None => {
                *ok = false;
                false
            }
        },
    }
}

/// `time_unit`: the open model's unit of rates (1 s unless written).
fn read_time_unit(tbl: &Obj<'_>, open: bool, ok: &mut bool) -> Duration {
    match tbl.get("time_unit") {
        None => Duration::from_secs(1),
        Some(n) => match n.as_duration() {
            Some(d) if !open => {
                let _ = d;
                n.error("time_unit is for the open model's rates (model = \"open\")");
                *ok = false;
                Duration::from_secs(1)
            }
            Some(d) if d.is_zero() => {
                n.error("must be longer than zero");
                *ok = false;
                Duration::from_secs(1)
            }
            Some(d) => d,
            None => {
                *ok = false;
                Duration::from_secs(1)
            }
        },
    }
}

/// `duration`: whole seconds, above zero.
fn read_duration(duration_node: Option<&Node<'_>>, ok: &mut bool) -> Option<Duration> {
    match duration_node {
        None => None,
        Some(n) => match n.as_duration().and_then(|d| whole_seconds(n, d)) {
            // A hold of 0 s holds nothing (and a plan of 0 s never ends).
            Some(d) if d.is_zero() => {
                n.error("must be longer than zero");
                *ok = false;
                None
            }
            Some(d) => Some(d),
            None => {
                *ok = false;
                None
            }
        },
    }
}

/// The open model's keys and its rate plan.
fn read_open(c: Common<'_>) -> Option<Workload> {
    let Common {
        tbl,
        table,
        mut ok,
        capacity_mode,
        on_signal_ends,
        time_unit,
        duration,
        ramp_node,
        ..
    } = c;
    let per_s = |v: f64| v / time_unit.as_secs_f64();
    ok &= refuse(
        &tbl,
        "users",
        "the open model's pool is `max_users`; its load is `rate` (arrivals per time_unit)",
    );
    ok &= refuse(
        &tbl,
        "iterations",
        "iterations belong to the closed model; the open model runs for its rate plan",
    );
    let max_users = tbl.require("max_users").and_then(|n| positive_u64(&n));
    let mut arrivals = Arrivals::Constant;
    if let Some(n) = tbl.get("arrivals") {
        ok &= n.parse_into(&mut arrivals);
    }
    let mut when_full = WhenFull::Drop;
    if let Some(n) = tbl.get("when_full") {
        ok &= n.parse_into(&mut when_full);
    }
    let start_tolerance = read_start_tolerance(&tbl, &mut ok);
    let rate_node = tbl.get("rate").filter(|_| !capacity_mode);
    let rate = match &rate_node {
        None => None,
        Some(n) => {
            let r = non_negative_f64(n);
            ok &= r.is_some();
            r
        }
    };
    let mut steps: Vec<plan::RateStep> = Vec::new();
    if let Some(n) = &ramp_node {
        match read_ramp(n, non_negative_f64) {
            Some(r) => steps = r.into_iter().map(|(to, d)| (to.map(per_s), d)).collect(),
            None => ok = false,
        }
    }
    // Only when neither is written: a bad `rate` was reported as such.
    if !capacity_mode && rate_node.is_none() && ramp_node.is_none() {
        tbl.error("the open model needs `rate` (arrivals per time_unit), held for `duration`, or a `ramp` of rates");
        ok = false;
    }
    tbl.finish();
    let max_users = max_users?;
    if !ok {
        return None;
    }
    // Where the plan is written: the ramp, else the rate.
    let at = ramp_node.as_ref().or(rate_node.as_ref());
    let start = per_s(rate.unwrap_or(0.0));
    let rate_plan = open_rate_plan(start, steps, duration, capacity_mode, at, &table)?;
    let model = OpenModel {
        rate: rate_plan,
        arrivals,
        max_users,
        when_full,
        time_unit,
        start_tolerance,
    };
    Some(Workload {
        plan: pool_plan(max_users, &model.rate),
        model: Model::Open(model),
        capacity: None,
        on_signal_ends,
        start_together: false,
    })
}

/// `start_tolerance`: the share of intended arrivals that may be dropped or
/// start late before the run is INVALID (a percent, `"1%"` unless written).
fn read_start_tolerance(tbl: &Obj<'_>, ok: &mut bool) -> f64 {
    let Some(n) = tbl.get("start_tolerance") else {
        return plan::DEFAULT_START_TOLERANCE;
    };
    match n.as_str().map(crate::units::parse_percent) {
        Some(Ok(v)) if (0.0..=1.0).contains(&v) => v,
        Some(Ok(_)) => {
            n.error("start_tolerance is a share of the arrivals, between 0% and 100%");
            *ok = false;
            0.0
        }
        Some(Err(e)) => {
            n.error(format!("{e} (write a percent such as \"1%\")"));
            *ok = false;
            0.0
        }
        None => {
            *ok = false;
            0.0
        }
    }
}

/// The open model's rate plan: the rate or ramp held for `duration` (30 s
/// unless written); it must last and have arrivals (`at` is where the plan
/// is written). A capacity search's plan is filled in later.
fn open_rate_plan(
    start: f64,
    mut steps: Vec<plan::RateStep>,
    duration: Option<Duration>,
    capacity_mode: bool,
    at: Option<&Node<'_>>,
    table: &Node<'_>,
) -> Option<RatePlan> {
    if !capacity_mode {
        if steps.is_empty() {
            steps.push((None, duration.unwrap_or(Duration::from_secs(30))));
        } else if let Some(d) = duration {
            steps.push((None, d));
        }
    }
    let rate_plan = RatePlan::from_steps(start, &steps);
    if !capacity_mode {
        let total = rate_plan.total();
        let why = if total.is_zero() {
            Some("the rate plan lasts 0 s: give the ramp a `{ hold = \"1m\" }` step or set `duration`")
        } else if rate_plan.expected(total.as_secs_f64()) <= 0.0 {
            Some("every stage has rate 0: the plan has no arrivals, so the run would measure nothing")
        } else {
            None
        };
        if let Some(why) = why {
            match at {
                Some(n) => n.error(why),
                None => table.error(why),
            }
            return None;
        }
    }
    Some(rate_plan)
}

/// The closed model's keys and its plan of users.
fn read_closed(c: Common<'_>) -> Option<Workload> {
    let Common {
        tbl,
        table,
        mut ok,
        capacity_mode,
        on_signal_ends,
        duration,
        ramp_node,
        ..
    } = c;
    for key in [
        "max_users",
        "arrivals",
        "when_full",
        "rate",
        "start_tolerance",
    ] {
        ok &= refuse(
            &tbl,
            key,
            "this key belongs to the open model (model = \"open\")",
        );
    }
    let users = if capacity_mode {
        ok &= refuse(
            &tbl,
            "users",
            "a capacity search sets the users of each step from [capacity] (start, step, max)",
        );
        None
    } else {
        tbl.require("users").and_then(|n| positive_u64(&n))
    };
    let iterations = tbl.get("iterations").and_then(|n| positive_u64(&n));
    let steps = match &ramp_node {
        Some(n) => read_users_ramp(n, users, iterations, &mut ok),
        None => Vec::new(),
    };
    let start_together = read_start(&tbl, ramp_node.is_some(), &mut ok);
    tbl.finish();
    if !ok {
        return None;
    }
    if capacity_mode {
        // The staircase is filled in from [capacity] by the caller.
        return Some(Workload {
            plan: LoadPlan {
                stages: Vec::new(),
                iterations: None,
            },
            model: Model::Closed,
            capacity: None,
            on_signal_ends,
            start_together: false,
        });
    }
    let users = users?;
    let plan = closed_plan(
        users,
        steps,
        iterations,
        duration,
        ramp_node.as_ref(),
        &table,
    )?;
    Some(Workload {
        plan,
        model: Model::Closed,
        capacity: None,
        on_signal_ends,
        start_together,
    })
}

/// `start`: `spread` (goose starts the users over about a second, the
/// default) or `together` (every user of the process waits for the last
/// one, then all begin at one instant; across shards `--start-at` lines the
/// processes up). A `ramp` spreads users by design, so it is refused there.
fn read_start(tbl: &Obj<'_>, ramp: bool, ok: &mut bool) -> bool {
    let Some(n) = tbl.get("start") else {
        return false;
    };
    match n.as_str() {
        Some("spread") => false,
        Some("together") if ramp => {
            n.error("`start = \"together\"` starts every user at once; a `ramp` adds them over time (use one or the other)");
            *ok = false;
            false
        }
        Some("together") => true,
        Some(other) => {
            n.error(format!("`{other}` is not spread or together"));
            *ok = false;
            false
        }
        None => {
            *ok = false;
            false
        }
    }
}

/// A closed model's `ramp`, its `to` at most `users`; refused beside `iterations`.
fn read_users_ramp(
    n: &Node<'_>,
    users: Option<u64>,
    iterations: Option<u64>,
    ok: &mut bool,
) -> Vec<RampStep> {
    let mut steps = Vec::new();
    if iterations.is_some() {
        n.error("`ramp` and `iterations` exclude each other: iterations start every user at once");
        *ok = false;
    }
    let to_users = |n: &Node<'_>| {
        let to = n.as_u64()?;
        if users.is_some_and(|u| to > u) {
            n.error(format!("ramps to {to} users, above `workload.users`"));
            return None;
        }
        Some(to)
    };
    match read_ramp(n, to_users) {
        Some(r) => steps.extend(r.into_iter().map(|(to, over)| match to {
            Some(to) => RampStep::To { to, over },
            None => RampStep::Hold(over),
        })),
        None => *ok = false,
    }
    steps
}

/// The closed plan: the ramp (or everyone at once) held for `duration`, or
/// everyone at once for `iterations`; a plan that never ends or never
/// starts a user is refused at the ramp (else the table).
fn closed_plan(
    users: u64,
    mut steps: Vec<RampStep>,
    iterations: Option<u64>,
    duration: Option<Duration>,
    ramp_node: Option<&Node<'_>>,
    table: &Node<'_>,
) -> Option<LoadPlan> {
    if steps.is_empty() && iterations.is_none() {
        // Default shape: everyone at once, then hold for `duration` (default 30 s).
        steps.push(RampStep::To {
            to: users,
            over: Duration::ZERO,
        });
        steps.push(RampStep::Hold(duration.unwrap_or(Duration::from_secs(30))));
    } else if let Some(d) = duration {
        if iterations.is_none() {
            steps.push(RampStep::Hold(d));
        }
    }
    if iterations.is_some() {
        steps = vec![RampStep::To {
            to: users,
            over: Duration::ZERO,
        }];
    }
    let plan = LoadPlan::from_ramp(&steps, iterations);
    if iterations.is_none() {
        // goose 0.19 never ends a plan of 0 s, and a plan of 0 users runs nothing.
        let why = if plan.total().is_zero() {
            Some("the plan lasts 0 s (goose would never end it): give the ramp a `{ hold = \"1m\" }` step or set `duration`")
        } else if plan.peak_users() == 0 {
            Some("the plan never starts a user: every stage has 0 users")
        } else {
            None
        };
        if let Some(why) = why {
            match ramp_node {
                Some(n) => n.error(why),
                None => table.error(why),
            }
            return None;
        }
    }
    Some(plan)
}

/// The goose users of the open model: the whole pool starts at once and
/// stays for the rate plan (the engine ends it when the last journey is done).
pub fn pool_plan(max_users: u64, rate: &RatePlan) -> LoadPlan {
    LoadPlan::from_ramp(
        &[
            RampStep::To {
                to: max_users,
                over: Duration::ZERO,
            },
            RampStep::Hold(rate.total()),
        ],
        None,
    )
}

/// A `ramp` list: `{ to, over }` (`to` read by `read_to`) or `{ hold }`, as
/// `(Some(to), over)` and `(None, hold)`; every mistake is reported.
pub(super) fn read_ramp<T>(
    n: &Node<'_>,
    read_to: impl Fn(&Node<'_>) -> Option<T>,
) -> Option<Vec<(Option<T>, Duration)>> {
    let mut steps = Vec::new();
    let mut ok = true;
    for item in n.as_array()? {
        let Some(st) = item.as_obj() else {
            ok = false;
            continue;
        };
        if let Some(h) = st.get("hold") {
            if st.get("to").is_some() || st.get("over").is_some() {
                st.error("a ramp step is either { to, over } or { hold }");
                ok = false;
            }
            match h.as_duration().and_then(|d| whole_seconds(&h, d)) {
                Some(d) if d.is_zero() => {
                    h.error("must be longer than zero (a hold of 0 s holds nothing)");
                    ok = false;
                }
                Some(d) => steps.push((None, d)),
                None => ok = false,
            }
        } else {
            let to = st.require("to").and_then(|n| read_to(&n));
            let over = st
                .require("over")
                .and_then(|n| n.as_duration().and_then(|d| whole_seconds(&n, d)));
            match (to, over) {
                (Some(to), Some(over)) => steps.push((Some(to), over)),
                _ => ok = false,
            }
        }
        st.finish();
    }
    ok.then_some(steps)
}

pub(super) fn whole_seconds(n: &Node<'_>, d: Duration) -> Option<Duration> {
    if d.subsec_nanos() != 0 {
        n.error("workload durations are whole seconds (goose's test plan resolution)");
        return None;
    }
    Some(d)
}
