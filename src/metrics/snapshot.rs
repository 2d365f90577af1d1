//! `snapshot.json`: everything needed to re-render any report and to merge runs.
//!
//! Histograms are stored whole (HdrHistogram V2 + deflate, base64), with a few
//! derived statistics beside them for people and tools that only read JSON.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::threshold::RuleResult;
use super::Recorder;

/// Major.minor of the snapshot format. A reader refuses another major version.
pub const FORMAT_VERSION: &str = "1.0";
const ENCODING: &str = "hdr-v2-deflate-base64";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("snapshot format {found} is not supported by this chatload (reads {FORMAT_VERSION} and other 1.x)")]
    Version { found: String },
    #[error("histogram `{metric}` cannot be decoded: {detail}")]
    Histogram { metric: String, detail: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    pub url: String,
    /// True when chatload started the reference server itself.
    pub embedded: bool,
}

/// One histogram, whole, plus derived statistics in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistogramData {
    pub encoding: String,
    pub data: String,
    pub count: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl HistogramData {
    pub fn encode(h: &Histogram<u64>) -> HistogramData {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut buf)
            .expect("serializing a histogram into memory cannot fail");
        HistogramData {
            encoding: ENCODING.into(),
            data: base64::engine::general_purpose::STANDARD.encode(&buf),
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { h.min() },
            max_us: h.max(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
        }
    }

    pub fn decode(&self, metric: &str) -> Result<Histogram<u64>, SnapshotError> {
        let err = |detail: String| SnapshotError::Histogram {
            metric: metric.to_string(),
            detail,
        };
        if self.encoding != ENCODING {
            return Err(err(format!("unknown encoding `{}`", self.encoding)));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .map_err(|e| err(e.to_string()))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| err(format!("{e:?}")))?;
        // Re-home into chatload's fixed bounds so merges always line up.
        let mut out = super::new_histogram();
        out.add(&h).map_err(|e| err(format!("{e:?}")))?;
        Ok(out)
    }
}

/// What happened in one interval of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IntervalData {
    /// Seconds since the run started.
    pub start_s: f64,
    pub length_s: f64,
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, HistogramData>,
}

impl IntervalData {
    /// The interval's data as a recorder (histograms decoded).
    pub fn to_recorder(&self) -> Recorder {
        let mut r = Recorder::default();
        for (k, h) in &self.histograms {
            if let Ok(d) = h.decode(k) {
                r.histograms.insert(k.clone(), d);
            }
        }
        r.counters = self.counters.clone();
        r
    }

    pub fn from_interval(i: &super::collector::Interval) -> Self {
        IntervalData {
            start_s: i.start_s,
            length_s: i.length_s,
            counters: i.rec.counters.clone(),
            histograms: Snapshot::histograms_from(&i.rec),
        }
    }
}

/// How hard the generator itself worked: a saturated generator makes the
/// target look slower than it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneratorHealth {
    /// CPU seconds (user + system) of the generator process, when the OS tells.
    pub cpu_s: Option<f64>,
    pub cores: u32,
    /// p99 of `send_lag` (how late users woke from their think time), µs.
    pub send_lag_p99_us: Option<u64>,
    /// The generator was likely the bottleneck (CPU above 85% of its cores, or send lag p99 above 50 ms).
    pub saturated: bool,
}

/// One shard's line in a merged snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardSummary {
    pub index: u32,
    pub run_id: String,
    pub users: u64,
    pub runs_started: u64,
    pub runs_ok: u64,
    pub verdict: crate::outcome::Verdict,
    pub generator: Option<GeneratorHealth>,
}

/// The saved result of one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub format_version: String,
    pub tool: ToolInfo,
    pub run_id: String,
    pub scenario_name: String,
    /// The scenario as loaded, after command-line overrides; holds no secret values.
    pub scenario: Value,
    pub seed: u64,
    pub target: TargetInfo,
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// Peak users of the load plan.
    pub users: u64,
    pub histograms: BTreeMap<String, HistogramData>,
    pub counters: BTreeMap<String, u64>,
    pub thresholds: Vec<RuleResult>,
    /// The run's verdict (`pass`, `fail`, `aborted`, ...).
    pub verdict: crate::outcome::Verdict,
    /// Why the run was aborted or anything else a reader must know.
    #[serde(default)]
    pub notes: Vec<String>,
    /// This run's slice of the users, when sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::plan::Shard>,
    /// How hard the generator worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorHealth>,
    /// In a merged snapshot: one line per shard that was merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardSummary>,
    /// The comparison with a baseline run, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::metrics::compare::Comparison>,
    /// Interval data, oldest first (counters and histograms of each interval).
    #[serde(default)]
    pub intervals: Vec<IntervalData>,
    /// The first offending frames of each violation class (secrets redacted).
    #[serde(default)]
    pub samples: Vec<super::OffendingFrame>,
    /// What the embedded reference server says it did (its truth counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_truth: Option<Value>,
    /// A capacity search: every step's data and verdict, and the knee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<super::capacity::CapacityResult>,
}

impl Snapshot {
    pub fn histograms_from(rec: &Recorder) -> BTreeMap<String, HistogramData> {
        rec.histograms
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(k, h)| (k.clone(), HistogramData::encode(h)))
            .collect()
    }

    /// The recorded data, decoded back into a [`Recorder`].
    pub fn recorder(&self) -> Result<Recorder, SnapshotError> {
        let mut rec = Recorder::default();
        for (k, h) in &self.histograms {
            rec.histograms.insert(k.clone(), h.decode(k)?);
        }
        rec.counters = self.counters.clone();
        rec.samples = self.samples.clone();
        Ok(rec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a snapshot always serializes")
    }

    /// Reads a snapshot, refusing unknown major versions with a clear message.
    pub fn from_json(text: &str) -> Result<Snapshot, SnapshotError> {
        let v: Value = serde_json::from_str(text)?;
        let found = v
            .get("format_version")
            .and_then(Value::as_str)
            .unwrap_or("missing")
            .to_string();
        if found.split('.').next() != FORMAT_VERSION.split('.').next() {
            return Err(SnapshotError::Version { found });
        }
        Ok(serde_json::from_value(v)?)
    }

    /// Reads a snapshot file; the message names the file.
    pub fn read(p: &std::path::Path) -> Result<Snapshot, String> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        Snapshot::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_exactly() {
        let mut rec = Recorder::default();
        for v in [1u64, 17, 900, 12_345, 2_000_000, 3_000_000_000] {
            rec.record("ttc", v);
        }
        rec.count("runs.ok", 6);
        let data = HistogramData::encode(&rec.histograms["ttc"]);
        assert_eq!(data.count, 6);
        let back = data.decode("ttc").unwrap();
        assert_eq!(back, rec.histograms["ttc"]);
    }

    #[test]
    fn unknown_major_versions_are_refused() {
        let err = Snapshot::from_json(r#"{"format_version":"2.0"}"#).unwrap_err();
        assert!(err.to_string().contains("2.0"), "{err}");
    }
}
