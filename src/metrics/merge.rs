//! Exact merge of shard snapshots: histograms added (HDR addition), counters
//! summed, intervals merged by time, thresholds re-judged on the whole.
//!
//! Phases: `check` (one run's shards), `add_shards`, `partial_notes`,
//! `assemble`, then the one judge (`judge.rs`).
//!
//! A merge refuses snapshots of different scenarios, seeds or format versions
//! (another major, or another definition of the close rates: 1.0 and 1.1),
//! and reports a missing or failed shard as a partial result, never a complete one.

use std::collections::BTreeMap;

use serde_json::Value;

use super::judge::{Ending, Inputs};
use super::snapshot::{IntervalData, ShardSummary, Snapshot, SnapshotError, TargetInfo};
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

// The rules of a snapshot are read back from its echo by the judge; these
// paths stay for the readers that import them from here.
pub use super::judge::{drift_spec_from_echo, thresholds_from_echo};

/// Merges shard snapshots into one: check they are shards of one run, add
/// their data, note what is missing, then judge the whole.
pub fn merge(snaps: &[Snapshot]) -> Result<Snapshot, MergeError> {
    let (first, count, seen) = check(snaps)?;
    let mut sums = add_shards(&seen)?;
    let thresholds = super::judge::rules_of(first).map_err(MergeError::Mismatch)?;
    let probe_rules =
        super::judge::probe_rules_from_echo(&first.scenario).map_err(MergeError::Mismatch)?;
    let (ending, mut notes) = partial_notes(count, &seen, &sums);
    if !probe_rules.is_empty() && !seen.contains_key(&0) {
        notes.push(format!(
            "{} probe rule(s) not judged: shard 0, the one that probes the target, is missing",
            probe_rules.len()
        ));
    }
    let total = std::mem::take(&mut sums.total);
    let mut merged = assemble(first, count, &seen, sums, &total, notes);
    merged.judge(
        &total,
        Inputs {
            rules: &thresholds,
            probe_rules: &probe_rules,
            capacity: None,
            ending,
        },
    );
    Ok(merged)
}

/// The shards by index, after refusing snapshots of another scenario, seed,
/// format or split, and a shard given twice.
fn check(snaps: &[Snapshot]) -> Result<(&Snapshot, u32, BTreeMap<u32, &Snapshot>), MergeError> {
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
        } else if let Err(e) =
            super::encoding::same_definitions(&first.format_version, &s.format_version)
        {
            Some(format!(
                "has format {}, not {}: {e}",
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
    Ok((first, count, seen))
}

/// The shards' data added together.
struct Sums {
    total: Recorder,
    /// By interval number: start, length and the interval's data.
    intervals: BTreeMap<i64, (f64, f64, Recorder)>,
    /// The embedded servers' truth counters; `None` when a shard has none.
    truth: Option<BTreeMap<String, u64>>,
    shards: Vec<ShardSummary>,
    /// Shards whose run aborted.
    failed: Vec<u32>,
}

fn add_shards(seen: &BTreeMap<u32, &Snapshot>) -> Result<Sums, MergeError> {
    let mut sums = Sums {
        total: Recorder::default(),
        intervals: BTreeMap::new(),
        truth: Some(BTreeMap::new()),
        shards: Vec::new(),
        failed: Vec::new(),
    };
    for (index, s) in seen {
        sums.total.merge(&s.recorder()?);
        add_intervals(&mut sums.intervals, s)?;
        match (
            &mut sums.truth,
            s.server_truth.as_ref().and_then(Value::as_object),
        ) {
            (Some(t), Some(o)) => {
                for (k, v) in o {
                    *t.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
                }
            }
            _ => sums.truth = None,
        }
        if s.verdict == Verdict::Aborted {
            sums.failed.push(*index);
        }
        sums.shards.push(ShardSummary {
            index: *index,
            run_id: s.run_id.clone(),
            users: s.users,
            runs_started: s.counters.get(names::RUNS_STARTED).copied().unwrap_or(0),
            runs_ok: s.counters.get(names::RUNS_OK).copied().unwrap_or(0),
            verdict: s.verdict,
            generator: s.generator.clone(),
        });
    }
    Ok(sums)
}

/// Adds a shard's intervals to the ones of the same number (by time).
fn add_intervals(
    intervals: &mut BTreeMap<i64, (f64, f64, Recorder)>,
    s: &Snapshot,
) -> Result<(), MergeError> {
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
    Ok(())
}

/// Whether the merge is partial (a shard missing or aborted), and the notes
/// that say so and name saturated generators.
fn partial_notes(
    count: u32,
    seen: &BTreeMap<u32, &Snapshot>,
    sums: &Sums,
) -> (Ending, Vec<String>) {
    let failed = &sums.failed;
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
            why.push(format!("shard {} aborted", join(failed)));
        }
        notes.push(format!(
            "partial: {complete} of {count} shards ({})",
            why.join("; ")
        ));
    }
    for s in &sums.shards {
        if s.generator.as_ref().is_some_and(|g| g.saturated) {
            notes.push(format!("shard {}'s generator may have been the bottleneck: its results may understate the target", s.index));
        }
    }
    let ending = if partial {
        Ending::Partial
    } else {
        Ending::Finished
    };
    (ending, notes)
}

/// The merged snapshot, not yet judged.
fn assemble(
    first: &Snapshot,
    count: u32,
    seen: &BTreeMap<u32, &Snapshot>,
    sums: Sums,
    total: &Recorder,
    notes: Vec<String>,
) -> Snapshot {
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
    let merged_intervals: Vec<IntervalData> = sums
        .intervals
        .into_values()
        .map(|(start_s, length_s, r)| IntervalData {
            start_s,
            length_s,
            counters: r.counters.clone(),
            histograms: Snapshot::histograms_from(&r),
        })
        .collect();
    Snapshot {
        format_version: first.format_version.clone(),
        tool: first.tool.clone(),
        run_id: format!("{}-merged-{}of{count}", first.scenario_name, seen.len()),
        scenario_name: first.scenario_name.clone(),
        scenario: first.scenario.clone(),
        scenario_hash: first.scenario_hash.clone(),
        seed: first.seed,
        // One insecure shard makes the merged run insecure.
        target: TargetInfo {
            insecure: seen.values().any(|s| s.target.insecure),
            ..first.target.clone()
        },
        started_at: started,
        ended_at: ended,
        duration_s,
        users: seen.values().map(|s| s.users).sum(),
        histograms: Snapshot::histograms_from(total),
        counters: total.counters.clone(),
        thresholds: Vec::new(),
        verdict: Verdict::Incomplete,
        notes,
        shard: None,
        generator: None,
        shards: sums.shards,
        baseline: None,
        intervals: merged_intervals,
        samples: total.samples.clone(),
        failures: total.failures.clone(),
        validity: super::validity::combine(seen.values().map(|s| s.validity.as_slice())),
        offered: super::offered::combine(seen.values().map(|s| s.offered.as_slice())),
        capacity: None,
        // Only shard 0 probes the target: its series is the run's.
        probes: seen.get(&0).and_then(|s| s.probes.clone()),
        // The tags every shard has with the same value.
        tags: first
            .tags
            .iter()
            .filter(|(k, v)| seen.values().all(|s| s.tags.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        server_truth: sums
            .truth
            .filter(|t| !t.is_empty())
            .and_then(|t| serde_json::to_value(t).ok()),
    }
}

fn first_interval_len(s: &Snapshot) -> f64 {
    s.intervals.first().map_or(1.0, |i| i.length_s.max(1e-3))
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}
