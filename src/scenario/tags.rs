//! Tags: `[tags]` in the scenario, `--tag k=v` on the command line (the flag
//! wins over the file for the same name) and `tags = { k = "v" }` on a
//! journey step. A run's tags label every live series (`/metrics`, remote
//! write) and are kept in the snapshot, every report and the history; a
//! step's tags label the latency series of the metric that step records
//! and the raw-results lines of its runs.
//!
//! Names follow the Prometheus label syntax (`[a-zA-Z_][a-zA-Z0-9_]*`);
//! `job`, `instance`, names starting with `__` and the label names chatload
//! itself puts on series ([`OWN_LABELS`]) are refused. Values are non-empty
//! strings; one that matches a secret is redacted where it is written, like
//! every other output (`auth/redact.rs`).
//!
//! Imports: the `doc` readers.

use std::collections::BTreeMap;

use super::doc::{Node, Obj};
use super::model::{Scenario, Step, StepKind};

/// Tags by name.
pub type Tags = BTreeMap<String, String>;

impl Step {
    /// Visits every step, inside repeat blocks too, mutably.
    pub fn walk_mut(steps: &mut [Step], f: &mut impl FnMut(&mut Step)) {
        for s in steps {
            f(s);
            if let super::model::StepKind::Repeat { steps, .. } = &mut s.kind {
                Step::walk_mut(steps, f);
            }
        }
    }
}

impl Scenario {
    /// The tags of the steps that have some, by step name (steps of one
    /// name merge their tags): the raw-results lines of the runs a `send`
    /// step starts carry them.
    pub fn step_tags(&self) -> BTreeMap<String, Tags> {
        let mut out: BTreeMap<String, Tags> = BTreeMap::new();
        for j in &self.journeys {
            Step::walk(&j.steps, &mut |s| {
                if !s.tags.is_empty() {
                    let t = out.entry(s.name.clone()).or_default();
                    t.extend(s.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            });
        }
        out
    }

    /// The tags of the steps that have some, by the latency metric the step
    /// records: `step.<name>` for `send`, `think`, `disconnect` and
    /// `reconnect`, the step's name for the others.
    pub fn metric_tags(&self) -> BTreeMap<String, Tags> {
        let mut out: BTreeMap<String, Tags> = BTreeMap::new();
        for j in &self.journeys {
            Step::walk(&j.steps, &mut |s| {
                if s.tags.is_empty() {
                    return;
                }
                let timed = matches!(
                    s.kind,
                    StepKind::Send { .. }
                        | StepKind::Think { .. }
                        | StepKind::Disconnect
                        | StepKind::Reconnect
                );
                let metric = if timed {
                    format!("step.{}", s.name)
                } else {
                    s.name.clone()
                };
                let t = out.entry(metric).or_default();
                t.extend(s.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            });
        }
        out
    }
}

/// Label names chatload puts on its own series: a tag of that name would
/// make a series with the label twice.
pub const OWN_LABELS: &[&str] = &[
    "le", "quantile", "metric", "outcome", "class", "code", "kind", "name", "event", "run_id",
    "scenario",
];

/// A tag's name and value, or why they are refused.
pub fn check_tag(name: &str, value: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let syntax = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !syntax {
        return Err(format!(
            "tag name `{name}` is not a Prometheus label name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if name == "job" || name == "instance" || name.starts_with("__") {
        return Err(format!(
            "tag name `{name}` is reserved by Prometheus (`job`, `instance` and names starting with `__`)"
        ));
    }
    if OWN_LABELS.contains(&name) {
        return Err(format!(
            "tag name `{name}` is a label chatload puts on its own series (reserved: {})",
            OWN_LABELS.join(", ")
        ));
    }
    if value.is_empty() {
        return Err(format!("tag `{name}` has an empty value"));
    }
    Ok(())
}

/// `--tag k=v`.
pub fn parse_flag(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!(
            "--tag `{s}`: expected NAME=VALUE, e.g. --tag testid=nightly-42"
        ));
    };
    check_tag(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// A table of tags (`[tags]`, a step's `tags`): every bad entry reported at
/// its key.
pub(super) fn read_table(n: &Node<'_>) -> Option<BTreeMap<String, String>> {
    let t = n.as_obj()?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v, _) in t.entries() {
        let Some(value) = v.as_str() else {
            ok = false;
            continue;
        };
        match check_tag(&k, value) {
            Ok(()) => {
                out.insert(k, value.to_string());
            }
            Err(e) => {
                v.error(e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A step's `tags`: as [`read_table`], and no name of the run's own tags
/// (`[tags]`), reported at the step's key.
pub(super) fn read_step_table(
    n: &Node<'_>,
    run_tags: &[String],
) -> Option<BTreeMap<String, String>> {
    let t = read_table(n)?;
    let mut ok = true;
    if let Some(o) = n.as_obj() {
        for (k, v, _) in o.entries() {
            if run_tags.contains(&k) {
                v.error(clash(&k, "[tags]"));
                ok = false;
            }
        }
    }
    ok.then_some(t)
}

/// Why a step tag may not share a run tag's name.
pub fn clash(name: &str, run_source: &str) -> String {
    format!(
        "tag `{name}` is also a run tag ({run_source}): a step's series would carry the label `{name}` twice, which Prometheus refuses; rename one of them"
    )
}

/// `[tags]` (none when absent).
pub(super) fn read_tags(o: &Obj<'_>) -> Option<BTreeMap<String, String>> {
    match o.get("tags") {
        Some(n) => read_table(&n),
        None => Some(BTreeMap::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_label_syntax_and_reserved_ones_are_refused() {
        for good in ["testid", "_x", "release_2", "Branch"] {
            assert_eq!(check_tag(good, "v"), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("2x", "not a Prometheus label name"),
            ("a-b", "not a Prometheus label name"),
            ("", "not a Prometheus label name"),
            ("job", "reserved by Prometheus"),
            ("instance", "reserved by Prometheus"),
            ("__name__", "reserved by Prometheus"),
            ("le", "chatload puts on its own series"),
        ] {
            let e = check_tag(bad, "v").unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_tag("x", "").unwrap_err().contains("empty value"));
        assert_eq!(
            parse_flag("testid=a=b"),
            Ok(("testid".into(), "a=b".into()))
        );
        assert!(parse_flag("testid").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_flag("job=x").unwrap_err().contains("reserved"));
    }
}
