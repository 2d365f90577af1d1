//! The one judge of a snapshot: thresholds over the whole run, drift rules
//! over its intervals, a capacity search's result folded in, and the verdict
//! (`outcome::Verdict`). Used by `run` (its end and every checkpoint),
//! `merge` and `report --recover`; none of them decides a verdict its own way.
//!
//! How the data came to an end (a signal, a missing shard, a killed run) is
//! decided by whoever recorded it and comes in as an [`Ending`]; the notes
//! explaining it stay with the caller.
//!
//! Imports: metrics' own files, `scenario` (the threshold grammar, through
//! `threshold`), `units`, `outcome`.

use serde_json::Value;

use super::capacity::CapacityResult;
use super::compare::same::{comparability, Identity};
use super::compare::{compare_runs, Comparison, RunData, Settings};
use super::snapshot::IntervalData;
use super::threshold::{judge_all, DriftSpec, Threshold};
use super::{Recorder, Snapshot};
use crate::outcome::Verdict;

/// How the judged data came to an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The plan ran to its end (or a stop was judged as a normal end): the rules decide.
    Finished,
    /// Stopped early (a signal, an engine error, no socket ever ready).
    Aborted,
    /// A checkpoint of a run in progress, or a run recovered after it was killed.
    Incomplete,
    /// A merge that lacks a shard or holds an aborted one.
    Partial,
}

/// What the judge weighs besides the recorded data.
pub struct Inputs<'a> {
    /// The scenario's thresholds (drift rules included).
    pub rules: &'a [Threshold],
    /// A capacity search's result: a search whose knee misses its target fails the run.
    pub capacity: Option<CapacityResult>,
    /// The probe rules, judged on the snapshot's probe series (when it has one).
    pub probe_rules: &'a [crate::scenario::probe_rules::ProbeRule],
    pub ending: Ending,
}

impl Snapshot {
    /// Judges `rec` (the whole run) and `self.intervals` against `inputs`,
    /// and sets the snapshot's thresholds, capacity section and verdict.
    /// Notes are the caller's.
    pub fn judge(&mut self, rec: &Recorder, inputs: Inputs<'_>) {
        self.thresholds = judge_all(inputs.rules, rec, &self.intervals);
        if let Some(p) = &self.probes {
            self.thresholds.extend(p.judge(inputs.probe_rules));
        }
        self.capacity = inputs.capacity;
        let failed = !self.thresholds.iter().all(|v| v.passed)
            || self.capacity.as_ref().is_some_and(|c| !c.passed());
        self.verdict = match inputs.ending {
            Ending::Finished => Verdict::Pass.fail_if(failed),
            Ending::Aborted => Verdict::Aborted,
            Ending::Incomplete => Verdict::Incomplete,
            Ending::Partial => Verdict::Partial,
        };
        self.fold_validity();
    }

    /// Weighs `self.validity` (set by whoever recorded the data, see
    /// `validity.rs`) and a capacity search that reached the generator's
    /// limit: any cause makes a finished run INVALID, its rules judged and
    /// shown all the same; a run cut short keeps its verdict.
    pub fn fold_validity(&mut self) {
        if let Some(cause) = self
            .capacity
            .as_ref()
            .and_then(|c| c.generator_limit_cause())
        {
            if !self.validity.iter().any(|c| c.cause == cause.cause) {
                self.validity.push(cause);
            }
        }
        self.verdict = super::validity::fold(self.verdict, &self.validity);
    }
}

/// The scenario's `[drift]` settings, read back from its echo in a snapshot.
pub fn drift_spec_from_echo(scenario: &Value) -> Result<DriftSpec, String> {
    let mut spec = DriftSpec::default();
    if let Some(d) = scenario.get("drift") {
        if let Some(w) = d.get("warmup").and_then(Value::as_str) {
            spec.warmup = crate::units::parse_duration(w)?;
        }
        match d.get("window") {
            Some(Value::String(w)) => spec.window = crate::units::parse_percent(w)?,
            Some(Value::Number(n)) => spec.window = n.as_f64().unwrap_or(spec.window),
            _ => {}
        }
    }
    Ok(spec)
}

/// Every rule a snapshot was judged by, to judge it again (`merge`,
/// `report --recover`): the scenario's own rules, read back from its echo,
/// and the default SLOs it was judged by (marked `default` in its results:
/// which defaults apply was decided when the scenario was read).
pub fn rules_of(s: &Snapshot) -> Result<Vec<Threshold>, String> {
    let mut rules = thresholds_from_echo(&s.scenario)?;
    for r in s.thresholds.iter().filter(|r| r.default) {
        let words: Vec<&str> = r.threshold.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.starts_with(['<', '>', '=']))
            .ok_or_else(|| format!("default rule `{}` has no operator", r.threshold))?;
        let mut t = Threshold::parse(&words[..at].join(" "), &words[at..].join(" "))?;
        t.default = true;
        rules.push(t);
    }
    Ok(rules)
}

/// The thresholds of a scenario, read back from its echo in a snapshot
/// (`defaults = false` is a setting, not a rule).
pub fn thresholds_from_echo(scenario: &Value) -> Result<Vec<Threshold>, String> {
    let Some(t) = scenario.get("thresholds").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let spec = drift_spec_from_echo(scenario)?;
    t.iter()
        .filter(|(k, _)| k.as_str() != "defaults" && !k.starts_with("probe."))
        .map(|(k, v)| {
            let (rule, abort, grace) = match v {
                Value::String(s) => (s.clone(), false, None),
                Value::Object(o) => (
                    o.get("rule")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    o.get("abort_on_fail")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    o.get("grace").and_then(Value::as_str).map(str::to_string),
                ),
                other => return Err(format!("threshold `{k}` is {other}, not a rule")),
            };
            let mut th = Threshold::parse_with_drift(k, &rule, spec)?;
            th.abort_on_fail = abort;
            if let Some(g) = grace {
                th.grace = crate::units::parse_duration(&g)?;
            }
            Ok(th)
        })
        .collect()
}

/// The probe rules of a scenario, read back from its echo in a snapshot.
pub fn probe_rules_from_echo(
    scenario: &Value,
) -> Result<Vec<crate::scenario::probe_rules::ProbeRule>, String> {
    let Some(t) = scenario.get("thresholds").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let values: Vec<&str> = scenario
        .get("probe")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("values").and_then(Value::as_object))
        .flat_map(|v| v.keys().map(String::as_str))
        .collect();
    t.iter()
        .filter(|(k, _)| k.starts_with("probe."))
        .map(|(k, v)| {
            let (rule, consecutive, wait) = match v {
                Value::String(s) => (s.clone(), None, None),
                Value::Object(o) => (
                    o.get("rule")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    o.get("consecutive").and_then(Value::as_u64),
                    o.get("wait").and_then(Value::as_str).map(str::to_string),
                ),
                other => return Err(format!("threshold `{k}` is {other}, not a rule")),
            };
            let wait = match wait {
                Some(w) => crate::units::parse_duration(&w)?,
                None => std::time::Duration::from_secs(5),
            };
            let k3 = consecutive.unwrap_or(3).clamp(1, 1000) as u32;
            crate::scenario::probe_rules::parse_rule(k, &rule, k3, wait, &values)
        })
        .collect()
}

/// Rebuilds a killed run's snapshot from its folder's interval files, judged
/// as incomplete (`chatload report --recover`).
pub fn recover(dir: &std::path::Path) -> Result<Snapshot, String> {
    let (total, intervals) = super::interval_log::recover(dir)
        .map_err(|e| format!("cannot read the interval files in {}: {e}", dir.display()))?;
    // The first checkpoint is written before any user starts: it holds the run's identity.
    let mut s = Snapshot::read(&dir.join("snapshot.json"))?;
    let thresholds = rules_of(&s)?;
    s.histograms = Snapshot::histograms_from(&total);
    s.counters = total.counters.clone();
    s.intervals = intervals
        .iter()
        .map(super::snapshot::IntervalData::from_interval)
        .collect();
    let capacity = s.capacity.take();
    let probe_rules = probe_rules_from_echo(&s.scenario)?;
    if let Some(p) = s.probes.as_mut() {
        p.read_jsonl(&dir.join(super::probes::PROBES_FILE), &probe_rules);
    }
    s.judge(
        &total,
        Inputs {
            rules: &thresholds,
            probe_rules: &probe_rules,
            capacity,
            ending: Ending::Incomplete,
        },
    );
    s.duration_s = intervals.last().map_or(0.0, |i| i.start_s + i.length_s);
    s.notes = vec![format!(
        "incomplete: recovered from the interval files of a run that did not finish ({} intervals, the first {:.1} s); the interval in progress when it stopped is lost",
        intervals.len(),
        s.duration_s
    )];
    Ok(s)
}

/// Why a comparison did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Not the same scenario (`compare/same.rs`).
    #[error("not comparable: {0}")]
    NotComparable(String),
    #[error(transparent)]
    Snapshot(#[from] super::encoding::SnapshotError),
}

fn identity(s: &Snapshot) -> Identity<'_> {
    Identity {
        run_id: &s.run_id,
        scenario_name: &s.scenario_name,
        scenario_hash: s.scenario_hash.as_deref(),
        scenario: &s.scenario,
        target: &s.target.url,
        embedded: s.target.embedded,
        users: s.users,
    }
}

/// Compares `new` against `base` (`chatload compare`, `run --baseline`):
/// refused when they are not the same scenario, unless `force`, and
/// always when their formats define their numbers differently.
pub fn compare(
    base: &Snapshot,
    new: &Snapshot,
    tolerances: &[crate::scenario::baseline::Tolerance],
    force: bool,
) -> Result<Comparison, CompareError> {
    super::encoding::same_definitions(&base.format_version, &new.format_version)?;
    let same = comparability(identity(base), identity(new));
    if !same.refused.is_empty() && !force {
        return Err(CompareError::NotComparable(same.refused.join("; ")));
    }
    let run = |s: &Snapshot| -> Result<RunData, CompareError> {
        Ok(RunData::new(
            &s.run_id,
            s.recorder()?,
            s.intervals.iter().map(IntervalData::to_recorder),
        ))
    };
    let mut c = compare_runs(&run(base)?, &run(new)?, tolerances, &Settings::default());
    c.warnings = same
        .refused
        .into_iter()
        .map(|r| format!("forced: {r}"))
        .chain(same.warnings)
        .collect();
    Ok(c)
}
