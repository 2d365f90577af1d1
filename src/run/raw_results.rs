//! The raw-results stream (`--raw-results`, `[output] raw_results = true`):
//! `runs.jsonl` in the output folder, one JSON line per finished run
//! (`metrics/raw.rs` has the fields), with the run's tags and the tags of
//! the `send` step that started it, written as the run goes. The file is
//! opened before the users start (a bad folder fails in the first second);
//! lines are flushed whenever the queue runs dry, so a reader following
//! the file sees each run within moments. Every line is redacted.
//!
//! Imports: `metrics`, `scenario`, `auth::redact`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::RunError;
use crate::metrics::raw::{RawRun, RawSink};
use crate::scenario::tags::Tags;

/// The file's name in the output folder.
pub const RAW_FILE: &str = "runs.jsonl";

/// The writer task and the sink the engine emits into.
pub(super) struct RawWriter {
    sink: RawSink,
    task: JoinHandle<std::io::Result<()>>,
}

/// How the stream ended.
#[derive(Debug, Default)]
pub(super) struct RawSummary {
    pub dropped: u64,
    pub error: Option<String>,
}

/// One line: the record, with the run's and its step's tags.
fn line(r: &RawRun, tags: &Tags, step_tags: &BTreeMap<String, Tags>) -> String {
    let mut v = serde_json::to_value(r).expect("a record serializes");
    let mut all = tags.clone();
    if let Some(t) = r.step.as_ref().and_then(|s| step_tags.get(s)) {
        all.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if !all.is_empty() {
        v["tags"] = serde_json::to_value(all).expect("tags serialize");
    }
    crate::auth::redact::redact(&v.to_string())
}

impl RawWriter {
    /// Opens `runs.jsonl` in `dir` and starts writing.
    pub fn start(
        dir: &Path,
        tags: Tags,
        step_tags: BTreeMap<String, Tags>,
    ) -> Result<RawWriter, RunError> {
        let path = dir.join(RAW_FILE);
        let file = std::fs::File::create(&path)
            .map_err(|e| RunError::Usage(format!("cannot write {}: {e}", path.display())))?;
        let (sink, mut rx) = RawSink::channel();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Some(r) = rx.blocking_recv() {
                writeln!(out, "{}", line(&r, &tags, &step_tags))?;
                while let Ok(r) = rx.try_recv() {
                    writeln!(out, "{}", line(&r, &tags, &step_tags))?;
                }
                out.flush()?;
            }
            out.flush()
        });
        Ok(RawWriter { sink, task })
    }

    /// The sink for the engine's configuration.
    pub fn sink(&self) -> RawSink {
        self.sink.clone()
    }

    /// Waits (at most 10 s) for the lines still queued once the engine
    /// dropped its sinks.
    pub async fn finish(self) -> RawSummary {
        let dropped = self.sink.dropped();
        drop(self.sink);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => RawSummary {
                dropped,
                error: None,
            },
            Ok(Ok(Err(e))) => RawSummary {
                dropped,
                error: Some(e.to_string()),
            },
            Ok(Err(e)) => RawSummary {
                dropped,
                error: Some(e.to_string()),
            },
            Err(_) => RawSummary {
                dropped,
                error: Some("the engine still held the stream 10 s after it ended".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_record_and_the_run_and_step_tags() {
        let r = RawRun {
            ended_at: "2026-12-07T05:00:00.000Z".into(),
            duration_ms: 12.5,
            ttfe_ms: Some(3.25),
            ttc_ms: None,
            outcome: "failed",
            class: Some("timeout".into()),
            user: "u1".into(),
            step: Some("ask".into()),
            run_id: Some("u1-r1".into()),
        };
        let tags = Tags::from([("testid".to_string(), "t1".to_string())]);
        let steps = BTreeMap::from([(
            "ask".to_string(),
            Tags::from([("phase".to_string(), "p".to_string())]),
        )]);
        let v: serde_json::Value = serde_json::from_str(&line(&r, &tags, &steps)).unwrap();
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["class"], "timeout");
        assert_eq!(v["ttfe_ms"], 3.25);
        assert_eq!(v["step"], "ask");
        assert_eq!(v["tags"]["testid"], "t1");
        assert_eq!(v["tags"]["phase"], "p");
    }
}
