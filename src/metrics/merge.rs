//! Exact merge of shard snapshots: histograms added (HDR addition), counters
//! summed, intervals merged by time, thresholds re-judged on the whole.
//!
//! A merge refuses snapshots of different scenarios, seeds or format versions,
//! and reports a missing or failed shard as a partial result, never a complete one.

use std::collections::BTreeMap;

use serde_json::Value;

use super::snapshot::{IntervalData, ShardSummary, Snapshot, SnapshotError};
use super::threshold::Threshold;
use super::Recorder;
use crate::names;
use crate::outcome::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The scenario's `[drift]` settings, read back from its echo in a snapshot.
pub fn drift_spec_from_echo(scenario: &Value) -> Result<super::threshold::DriftSpec, String> {
    let mut spec = super::threshold::DriftSpec::default();
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

/// The thresholds of a scenario, read back from its echo in a snapshot.
pub fn thresholds_from_echo(scenario: &Value) -> Result<Vec<Threshold>, String> {
    let Some(t) = scenario.get("thresholds").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let spec = drift_spec_from_echo(scenario)?;
    t.iter()
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

/// Merges shard snapshots into one.
pub fn merge(snaps: &[Snapshot]) -> Result<Snapshot, MergeError> {
    let first = snaps.first().ok_or(MergeError::Empty)?;
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    let Some(count) = first.shard.map(|s| s.count) else {
        return Err(MergeError::Mismatch(format!(
            "run {} is not a shard (it was not run with --shard): nothing to merge it with",
            first.run_id
        )));
    };
    let mut seen: BTreeMap<u32, &Snapshot> = BTreeMap::new();
    for s in snaps {
        let why = if s.scenario_name != first.scenario_name || s.scenario != first.scenario {
            Some(format!(
                "is of scenario `{}`, not `{}` (or the file differs)",
                s.scenario_name, first.scenario_name
            ))
        } else if s.seed != first.seed {
            Some(format!("has seed {}, not {}", s.seed, first.seed))
        } else if major(&s.format_version) != major(&first.format_version) {
            Some(format!(
                "has format {}, not {}",
                s.format_version, first.format_version
            ))
        } else if s.shard.map(|x| x.count) != Some(count) {
            Some(format!(
                "is shard {:?} of another split (expected one of {count})",
                s.shard
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(MergeError::Mismatch(format!(
                "cannot merge: run {} {why}",
                s.run_id
            )));
        }
        let index = s.shard.map(|x| x.index).unwrap_or(0);
        if seen.insert(index, s).is_some() {
            return Err(MergeError::Mismatch(format!(
                "cannot merge: shard {index}/{count} is given twice"
            )));
        }
    }
    let mut total = Recorder::default();
    let mut intervals: BTreeMap<i64, (f64, f64, Recorder)> = BTreeMap::new();
    let mut truth: Option<BTreeMap<String, u64>> = Some(BTreeMap::new());
    let mut shards = Vec::new();
    let mut failed = Vec::new();
    for (index, s) in &seen {
        total.merge(&s.recorder()?);
        for i in &s.intervals {
            let len = i.length_s.max(1e-3);
            let key = (i.start_s / first_interval_len(s)).round() as i64;
            let mut r = Recorder::default();
            for (k, h) in &i.histograms {
                r.histograms.insert(k.clone(), h.decode(k)?);
            }
            r.counters = i.counters.clone();
            let slot = intervals
                .entry(key)
                .or_insert((i.start_s, len, Recorder::default()));
            slot.0 = slot.0.min(i.start_s);
            slot.1 = slot.1.max(len);
            slot.2.merge(&r);
        }
        match (
            &mut truth,
            s.server_truth.as_ref().and_then(Value::as_object),
        ) {
            (Some(t), Some(o)) => {
                for (k, v) in o {
                    *t.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
                }
            }
            _ => truth = None,
        }
        if s.verdict == Verdict::Aborted {
            failed.push(*index);
        }
        shards.push(ShardSummary {
            index: *index,
            run_id: s.run_id.clone(),
            users: s.users,
            runs_started: s.counters.get(names::RUNS_STARTED).copied().unwrap_or(0),
            runs_ok: s.counters.get(names::RUNS_OK).copied().unwrap_or(0),
            verdict: s.verdict.clone(),
            generator: s.generator.clone(),
        });
    }
    let thresholds = thresholds_from_echo(&first.scenario).map_err(MergeError::Mismatch)?;
    let merged_intervals: Vec<IntervalData> = intervals
        .into_values()
        .map(|(start_s, length_s, r)| IntervalData {
            start_s,
            length_s,
            counters: r.counters.clone(),
            histograms: Snapshot::histograms_from(&r),
        })
        .collect();
    let verdicts = super::threshold::judge_all(&thresholds, &total, &merged_intervals);
    let missing: Vec<u32> = (0..count).filter(|i| !seen.contains_key(i)).collect();
    let mut notes = Vec::new();
    let complete = count as usize - missing.len() - failed.len();
    let partial = !missing.is_empty() || !failed.is_empty();
    if partial {
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!("missing shard {}", join(&missing)));
        }
        if !failed.is_empty() {
            why.push(format!("shard {} aborted", join(&failed)));
        }
        notes.push(format!(
            "partial: {complete} of {count} shards ({})",
            why.join("; ")
        ));
    }
    for s in &shards {
        if s.generator.as_ref().is_some_and(|g| g.saturated) {
            notes.push(format!("shard {}'s generator may have been the bottleneck: its results may understate the target", s.index));
        }
    }
    let verdict = if partial {
        Verdict::Partial
    } else {
        Verdict::Pass.fail_if(!verdicts.iter().all(|v| v.passed))
    };
    let started = seen
        .values()
        .map(|s| s.started_at.clone())
        .min()
        .unwrap_or_default();
    let ended = seen
        .values()
        .map(|s| s.ended_at.clone())
        .max()
        .unwrap_or_default();
    let duration_s = seen.values().map(|s| s.duration_s).fold(0.0, f64::max);
    Ok(Snapshot {
        format_version: first.format_version.clone(),
        tool: first.tool.clone(),
        run_id: format!("{}-merged-{}of{count}", first.scenario_name, seen.len()),
        scenario_name: first.scenario_name.clone(),
        scenario: first.scenario.clone(),
        seed: first.seed,
        target: first.target.clone(),
        started_at: started,
        ended_at: ended,
        duration_s,
        users: seen.values().map(|s| s.users).sum(),
        histograms: Snapshot::histograms_from(&total),
        counters: total.counters.clone(),
        thresholds: verdicts,
        verdict,
        notes,
        shard: None,
        generator: None,
        shards,
        baseline: None,
        intervals: merged_intervals,
        samples: total.samples.clone(),
        capacity: None,
        server_truth: truth
            .filter(|t| !t.is_empty())
            .and_then(|t| serde_json::to_value(t).ok()),
    })
}

fn first_interval_len(s: &Snapshot) -> f64 {
    s.intervals.first().map_or(1.0, |i| i.length_s.max(1e-3))
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}
