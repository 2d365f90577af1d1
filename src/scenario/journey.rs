//! `[[journey]]` and `[[journeys]]`: one journey or a weighted mix, and the
//! check that every `await` has a `send` to wait for. The steps themselves are
//! read by `steps.rs`.

use super::doc::{self, positive_u64, Elem, Node, Obj};
use super::fills::Columns;
use super::model::{Journey, Model, Workload};
use super::steps::{capture_names, read_steps, StepFills};

/// The journeys: `[[journey]]` (one) or `[[journeys]]` (a weighted mix, each
/// with `name`, `weight` and `[[journeys.steps]]`).
pub(super) fn read_journey(
    o: &Obj<'_>,
    columns: &Columns,
    workload: Option<&Workload>,
) -> Option<Vec<Journey>> {
    // Variables captured by `http` steps may be used by any step's template.
    let mut captures: Vec<String> = Vec::new();
    for key in ["journey", "journeys"] {
        if let Some(v) = o.get(key).and_then(|n| n.item.to_json_quiet()) {
            capture_names(&v, &mut captures);
        }
    }
    let run_tags: Vec<String> = match o.get("tags").and_then(|n| n.item.to_json_quiet()) {
        Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let fills = StepFills {
        columns,
        captures: &captures,
        run_tags: &run_tags,
    };
    // A closed-model user repeats its journey (unless it runs it once), so an
    // await early in a journey can wait for the run of a later send.
    let repeats = workload.is_none_or(|w| w.open().is_none() && w.plan.iterations != Some(1));
    let capacity_mode = o.get("capacity").is_some();
    match (o.get("journey"), o.get("journeys")) {
        (Some(_), Some(n)) => {
            n.error("use either [[journey]] (one journey) or [[journeys]] (a mix), not both");
            None
        }
        (None, None) => {
            o.require("journey");
            None
        }
        (Some(n), None) => {
            let steps = read_steps(&n, 0, &fills)?;
            if !check_awaits(&n, repeats) {
                return None;
            }
            Some(vec![Journey {
                name: "journey".into(),
                weight: 1,
                exact: false,
                steps,
            }])
        }
        (None, Some(n)) => read_mix(
            &n,
            &fills,
            workload.filter(|_| !capacity_mode),
            capacity_mode,
            repeats,
        ),
    }
}

/// `[[journeys]]`: each journey's share of the users is a `weight`, a `share`
/// (the shares add up to 100%) or an exact count of `users` (adding up to the
/// users); one kind for every journey.
pub(super) fn read_mix(
    n: &Node<'_>,
    fills: &StepFills<'_>,
    workload: Option<&Workload>,
    capacity_mode: bool,
    repeats: bool,
) -> Option<Vec<Journey>> {
    let mut out = Vec::new();
    let mut ok = true;
    let items = n.as_array()?;
    // Per journey: which of weight/share/users it gives (`None`: the default
    // weight), and its weight when it parsed.
    let mut kinds: Vec<Option<&'static str>> = Vec::new();
    let mut weights: Vec<Option<usize>> = Vec::new();
    for item in &items {
        let Some(j) = item.as_obj() else {
            ok = false;
            continue;
        };
        let name = j
            .require("name")
            .and_then(|x| x.as_str().map(str::to_string));
        let (kind, weight) = read_part(&j, &mut ok);
        kinds.push(kind);
        weights.push(weight);
        let steps = j.require("steps").and_then(|s| {
            let steps = read_steps(&s, 0, fills)?;
            check_awaits(&s, repeats).then_some(steps)
        });
        if let Some(nm) = &name {
            if out.iter().any(|x: &Journey| &x.name == nm) {
                if let Some(n) = j.get("name") {
                    n.error(format!("journey name `{nm}` is used twice"));
                }
                ok = false;
            }
        }
        j.finish();
        match (name, weight, steps) {
            (Some(name), Some(weight), Some(steps)) => out.push(Journey {
                name,
                weight,
                exact: kind == Some("users"),
                steps,
            }),
            _ => ok = false,
        }
    }
    if items.is_empty() {
        n.error("needs at least one journey");
        return None;
    }
    if kinds.len() != items.len() {
        return None;
    }
    ok &= check_mix(n, &kinds, &weights, workload, capacity_mode);
    ok.then_some(out)
}

/// Which of `weight`, `share` or `users` a journey gives (`None`: the
/// default weight of 1) and its weight (shares in hundredths of a percent,
/// users as a count), when it parsed.
fn read_part(j: &Obj<'_>, ok: &mut bool) -> (Option<&'static str>, Option<usize>) {
    let given: Vec<&'static str> = ["weight", "share", "users"]
        .into_iter()
        .filter(|k| j.get(k).is_some())
        .collect();
    if let [first, second, ..] = given[..] {
        if let Some(extra) = j.get(second) {
            extra.error(format!(
                "a journey has one of `weight`, `share` (\"70%\") or `users` (a count), not both `{first}` and `{second}`"
            ));
        }
        *ok = false;
    }
    let kind = given.first().copied();
    let weight = match kind {
        None => Some(1),
        Some("share") => j.get("share").and_then(|n| {
            let f = n.as_fraction()?;
            // Shares in hundredths of a percent, as goose weights.
            let w = (f * 10_000.0).round() as usize;
            if w == 0 {
                n.error("must be above 0%");
                return None;
            }
            Some(w)
        }),
        Some("users") => j
            .get("users")
            .and_then(|n| positive_u64(&n))
            .map(|u| u as usize),
        Some(_) => j
            .get("weight")
            .and_then(|w| positive_u64(&w))
            .map(|w| w as usize),
    };
    (kind, weight)
}

/// The mix as a whole, judged only when every journey gave its part: one
/// kind of part for all, shares adding up to 100%, counts to the users.
fn check_mix(
    n: &Node<'_>,
    kinds: &[Option<&'static str>],
    weights: &[Option<usize>],
    workload: Option<&Workload>,
    capacity_mode: bool,
) -> bool {
    let mut ok = true;
    let all_parsed = weights.iter().all(Option::is_some);
    let count = |k: &str| kinds.iter().filter(|x| **x == Some(k)).count();
    let (shares, counts) = (count("share"), count("users"));
    if counts > 0 && counts != kinds.len() {
        n.error("give `users` to every journey or to none (mixing counts with weights or shares is ambiguous)");
        ok = false;
    } else if shares > 0 && shares != kinds.len() {
        n.error("give `share` to every journey or to none (a share beside a weight is ambiguous)");
        ok = false;
    } else if shares > 0 && all_parsed {
        let total: usize = weights.iter().flatten().sum();
        if total != 10_000 {
            n.error(format!(
                "the journeys' shares add up to {}%, not 100%",
                total as f64 / 100.0
            ));
            ok = false;
        }
    } else if counts > 0 && all_parsed {
        let total: usize = weights.iter().flatten().sum();
        let total = total as u64;
        // `None`: the workload's problems are reported by its reader.
        let why = match workload {
            _ if capacity_mode => Some("a capacity search changes the users at every step: give the journeys `weight` or `share`, not `users`".to_string()),
            Some(Workload { model: Model::Open(m), .. }) if m.max_users != total => Some(format!("the journeys' `users` add up to {total}: set workload.max_users = {total} (the open model's session pool) so every journey gets exactly its count")),
            Some(w) if w.open().is_none() && w.plan.peak_users() != total => Some(format!("the journeys' `users` add up to {total}: set workload.users = {total} so every journey gets exactly its count")),
            _ => None,
        };
        if let Some(why) = why {
            n.error(why);
            ok = false;
        }
    }
    ok
}

/// Every `await` must have a `send` before it on some path, or it has no run
/// to wait for (and, waiting for nothing, the user would spin through its
/// journey). A repeat block that runs more than once, and the journey itself
/// when `repeats`, lets a send later in the block come before an await
/// earlier in it. Each such await is reported at its step.
pub(super) fn check_awaits(steps: &Node<'_>, repeats: bool) -> bool {
    fn kind<'a>(n: &Node<'a>) -> Option<&'a str> {
        n.item.as_table_like_pub()?.get("step")?.as_str()
    }
    fn inner<'a>(n: &Node<'a>) -> Vec<Node<'a>> {
        let Some(t) = n.item.as_table_like_pub() else {
            return Vec::new();
        };
        let Some((k, item)) = t.get_key_value("steps") else {
            return Vec::new();
        };
        let node = Node {
            ctx: n.ctx.clone(),
            path: doc::join_path(&n.path, "steps"),
            item: Elem::Item(item),
            span: item.span().or_else(|| k.span()),
        };
        quiet_array(&node)
    }
    fn has_send(items: &[Node<'_>]) -> bool {
        items.iter().any(|n| match kind(n) {
            Some("send") => true,
            Some("repeat") => has_send(&inner(n)),
            _ => false,
        })
    }
    /// Whether a repeat block may run its steps more than once.
    fn loops(n: &Node<'_>) -> bool {
        let t = n.item.as_table_like_pub();
        let times = t.and_then(|t| t.get("times")).and_then(|i| i.as_integer());
        let for_ = t.and_then(|t| t.get("for")).is_some();
        for_ || times.is_none_or(|k| k > 1)
    }
    fn walk(items: &[Node<'_>], looping: bool, mut sent: bool, ok: &mut bool) -> bool {
        if looping && has_send(items) {
            sent = true;
        }
        for n in items {
            match kind(n) {
                Some("send") => sent = true,
                Some("await") if !sent => {
                    n.error("this `await` has no `send` before it (in its journey, or in a repeat block around it): there is no run to wait for");
                    *ok = false;
                }
                Some("repeat") => sent |= walk(&inner(n), loops(n), sent, ok),
                _ => {}
            }
        }
        sent
    }
    let mut ok = true;
    walk(&quiet_array(steps), repeats, false, &mut ok);
    ok
}

/// The elements of an array (of tables), read without reporting anything.
pub(super) fn quiet_array<'a>(n: &Node<'a>) -> Vec<Node<'a>> {
    if n.item.value_is_array() {
        n.as_array().unwrap_or_default()
    } else {
        Vec::new()
    }
}
