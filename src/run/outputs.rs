//! The run's output folder: its name (the run id), the interval files and
//! the first checkpoint written before any user starts (so a killed run can
//! be recovered), and, at the end, the snapshot, `violations.jsonl`, the
//! history row and every report.
//!
//! Imports: `metrics`, `report`, `scenario`, `outcome`.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};

use super::checkpoint::{write_atomic, CHECKPOINT_NOTE};
use super::target::Target;
use super::{RunError, RunRequest};
use crate::metrics::snapshot::{Snapshot, TargetInfo, ToolInfo, FORMAT_VERSION};
use crate::metrics::Collector;
use crate::outcome::Verdict;
use crate::report::{render, Format, ReportData};

/// Where the run writes.
pub(super) struct Outputs {
    pub run_id: String,
    pub dir: PathBuf,
    pub snapshot_path: PathBuf,
    /// The first write of the run's files that failed (`safety.rs` stops the run).
    pub write_failure: super::safety::WriteFailure,
}

fn new_run_id(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // The time says when; the suffix keeps two runs started in the same second apart.
    format!(
        "{safe}-{}-{:04x}",
        Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    )
}

/// Names the run and creates its folder: a bad output path fails in the
/// first second, not after the run.
pub(super) fn prepare(req: &RunRequest) -> Result<Outputs, RunError> {
    let run_id = new_run_id(&req.scenario.name);
    let dir = req
        .out
        .clone()
        .unwrap_or_else(|| req.scenario.output_dir.join(&run_id));
    std::fs::create_dir_all(&dir).map_err(|e| {
        RunError::Usage(format!(
            "cannot create the output folder {}: {e}",
            dir.display()
        ))
    })?;
    let snapshot_path = dir.join("snapshot.json");
    Ok(Outputs {
        run_id,
        dir,
        snapshot_path,
        write_failure: Default::default(),
    })
}

/// The collector, appending every interval to the interval files as it closes.
pub(super) fn collector(req: &RunRequest, out: &Outputs) -> Result<Collector, RunError> {
    let mut files =
        crate::metrics::interval_log::IntervalFiles::create(&out.dir, std::time::SystemTime::now())
            .map_err(|e| {
                RunError::Usage(format!(
                    "cannot write the interval files in {}: {e}",
                    out.dir.display()
                ))
            })?;
    // After a failed append nothing more is written (a torn interval is
    // skipped on recovery; more writes would only fail again), and the run
    // is stopped (`safety.rs`).
    let failed = out.write_failure.clone();
    let sink: crate::metrics::collector::IntervalSink = Box::new(move |i| {
        if failed.get().is_some() {
            return;
        }
        if let Err(e) = files.append(i) {
            say_err!("error: cannot append to the interval files: {e}");
            let _ = failed.set(format!("the interval files: {e}"));
        }
    });
    let interval = req.scenario.interval_or_default();
    // The closed intervals wait in unlinked files beside the interval files
    // until a checkpoint or the end reads them: the heap stays flat over a soak.
    let store = crate::metrics::interval_store::IntervalStore::spill_in(&out.dir).map_err(|e| {
        RunError::Usage(format!(
            "cannot write the interval files in {}: {e}",
            out.dir.display()
        ))
    })?;
    Ok(Collector::with_store(interval, Some(sink), store))
}

/// The run's identity, as every checkpoint and the final snapshot carry it;
/// written at once as the first checkpoint (which doubles as the check that
/// the output folder is writable).
pub(super) fn first_checkpoint(
    req: &RunRequest,
    out: &Outputs,
    target: &Target,
    started_at: DateTime<Utc>,
) -> Result<Snapshot, RunError> {
    let sc = &req.scenario;
    let template = Snapshot {
        format_version: FORMAT_VERSION.into(),
        tool: ToolInfo {
            name: "chatload".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        run_id: out.run_id.clone(),
        scenario_name: sc.name.clone(),
        scenario: sc.echo.clone(),
        scenario_hash: Some(crate::metrics::compare::same::scenario_hash(&sc.echo)),
        seed: req.seed,
        target: TargetInfo {
            url: target.url.clone(),
            embedded: target.is_embedded(),
            insecure: sc.target.tls.insecure,
            tls_server_name: sc.target.tls.server_name.clone(),
            ca_file: sc.target.tls.ca_file.clone(),
        },
        started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ended_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_s: 0.0,
        users: sc.workload.plan.shard(req.shard).peak_users(),
        histograms: Default::default(),
        counters: Default::default(),
        thresholds: Vec::new(),
        verdict: Verdict::Incomplete,
        notes: vec![CHECKPOINT_NOTE.into()],
        samples: Vec::new(),
        baseline: None,
        shard: (req.shard.count > 1).then_some(req.shard),
        generator: None,
        shards: Vec::new(),
        intervals: Vec::new(),
        server_truth: None,
        tags: sc.tags.clone(),
        capacity: None,
        validity: Vec::new(),
        offered: Vec::new(),
        failures: Vec::new(),
        probes: super::probe::template(sc, req.shard),
    };
    write_atomic(&out.snapshot_path, template.to_json().as_bytes()).map_err(|e| {
        RunError::Usage(format!("cannot write {}: {e}", out.snapshot_path.display()))
    })?;
    Ok(template)
}

/// Writes the judged snapshot, the offending samples, the history row and
/// every report; the report data, for the console.
pub(super) fn write(
    req: &RunRequest,
    out: &Outputs,
    snapshot: &Snapshot,
) -> Result<ReportData, RunError> {
    // Everything below is rendered from the redacted copy (`auth/redact.rs`).
    let snapshot = &snapshot.redacted();
    let write = |name: &str, bytes: &[u8]| {
        let p = out.dir.join(name);
        std::fs::write(&p, bytes)
            .map_err(|e| RunError::Aborted(format!("cannot write {}: {e}", p.display())))
    };
    write_atomic(&out.snapshot_path, snapshot.to_json().as_bytes()).map_err(|e| {
        RunError::Aborted(format!("cannot write {}: {e}", out.snapshot_path.display()))
    })?;
    if !snapshot.samples.is_empty() {
        let lines: String = snapshot
            .samples
            .iter()
            .map(|f| serde_json::to_string(f).expect("a sample serializes") + "\n")
            .collect();
        write("violations.jsonl", lines.as_bytes())?;
    }
    if let Some(h) = &req.history {
        if let Err(e) = crate::report::history::append(h, snapshot) {
            say_err!("warning: {e}");
        }
    }
    let report = ReportData::from_snapshot(snapshot);
    // The snapshot (JSON) is written above, with the checkpoints.
    for format in Format::ALL.into_iter().filter(|f| *f != Format::Json) {
        write(format.file_name(), &render(&report, snapshot, format))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use crate::scenario::default_interval;
    use std::time::Duration;

    #[test]
    fn a_short_run_gets_intervals_short_enough_to_draw_a_curve() {
        let n = |total_s: u64| {
            let i = default_interval(Duration::from_secs(total_s)).as_secs();
            (i, total_s / i)
        };
        // 12 s: 1 s intervals, 12 points (5 s intervals gave 2).
        assert_eq!(n(12), (1, 12));
        assert_eq!(n(25), (1, 25));
        assert_eq!(n(90), (3, 30));
        // From 150 s on, the 5 s of before.
        assert_eq!(n(150), (5, 30));
        assert_eq!(n(8 * 3600).0, 5);
        assert_eq!(n(0).0, 1);
    }
}
