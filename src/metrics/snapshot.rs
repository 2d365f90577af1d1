//! `snapshot.json`: everything needed to re-render any report and to merge runs.
//!
//! Histograms are stored whole (HdrHistogram V2 + deflate, base64), with a few
//! derived statistics beside them for people and tools that only read JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::threshold::RuleResult;
use super::Recorder;

pub use super::encoding::{
    same_definitions, HistogramData, IntervalData, SnapshotError, FORMAT_VERSION,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    pub url: String,
    /// True when chatload started the reference server itself.
    pub embedded: bool,
    /// `target.insecure = true`: TLS certificates were not verified. Every
    /// report prints it (see [`TargetInfo::tls_text`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// `target.tls_server_name`: the name presented and verified instead of
    /// the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// `target.ca_file`: the CA certificates added to the trust roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// What every report prints beside the target of an insecure run.
pub const INSECURE_TEXT: &str = "INSECURE: TLS certificates not verified (target.insecure = true)";

impl TargetInfo {
    /// The TLS settings in one line for reports (empty with none): the
    /// insecure warning first.
    pub fn tls_text(&self) -> String {
        let mut parts = Vec::new();
        if self.insecure {
            parts.push(INSECURE_TEXT.to_string());
        }
        if let Some(n) = &self.tls_server_name {
            parts.push(format!("TLS server name {n}"));
        }
        if let Some(f) = &self.ca_file {
            parts.push(format!("CA file {f}"));
        }
        parts.join("; ")
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
    /// The generator was likely the bottleneck: why in `saturated_by`
    /// (`run/generator_health.rs` has the rules).
    pub saturated: bool,
    /// Each reason it was saturated, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturated_by: Vec<String>,
    /// The CPUs it could use: its affinity mask, capped by its cgroup quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_cpus: Option<f64>,
    /// How busy those CPUs were over the run, every process counted (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_busy: Option<f64>,
    /// `generator_delay` (kernel receive to chatload having the frame), µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_p50_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_p99_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_p999_us: Option<u64>,
    /// Where frames were timed: `kernel`, or `user (...)` with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_times: Option<String>,
    /// Runs counted (ok and failed) per second of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_per_s: Option<f64>,
    /// The generator's CPU time per run counted, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_run: Option<f64>,
    /// Steps of the realtime clock over 1 ms against the monotonic one
    /// (kernel stamps taken across one are off by it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_jumps: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The hash of the scenario's journey(s) and profile (`compare/same.rs`):
    /// `compare` refuses runs of different scenarios. Absent in older snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_hash: Option<String>,
    /// The run's tags (`[tags]`, `--tag`), values redacted like every
    /// output; shown in reports and kept in the history.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
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
    /// Why the run is INVALID (none: it is valid), see `metrics/validity.rs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validity: Vec<super::validity::ValidityCause>,
    /// Offered vs achieved, per phase of the load plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<super::offered::OfferedPhase>,
    /// The target's own numbers read by `[[probe]]`s (shard 0 only), with
    /// chatload's own figures beside each reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<super::probes::ProbeSeries>,
    /// The first distinct connect and handshake failure reasons, with counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<super::recorder::FailureReason>,
}

/// The key of an encoded histogram's base64, which redaction leaves alone.
const HISTOGRAM_DATA: &str = "data";

impl Snapshot {
    /// Every histogram of a recorder that holds samples, encoded.
    pub fn histograms_from(rec: &Recorder) -> BTreeMap<String, HistogramData> {
        super::encoding::histograms_of(rec)
    }

    /// The recorded data, decoded back into a [`Recorder`].
    pub fn recorder(&self) -> Result<Recorder, SnapshotError> {
        let mut rec = Recorder::default();
        for (k, h) in &self.histograms {
            rec.histograms.insert(k.clone(), h.decode(k)?);
        }
        rec.counters = self.counters.clone();
        rec.samples = self.samples.clone();
        rec.failures = self.failures.clone();
        Ok(rec)
    }

    /// The snapshot as written: every string and key through the redactor
    /// (`auth/redact.rs`), so no secret reaches `snapshot.json` or a checkpoint.
    pub fn to_json(&self) -> String {
        self.clone().into_json()
    }

    /// [`Snapshot::to_json`], consuming the snapshot. A long run's snapshot
    /// is mostly its intervals (up to 720 of ~12 KiB): they become JSON
    /// values one at a time, never all in one tree, which was several times
    /// their size and, built at every checkpoint of a soak, raised the
    /// generator's RSS peaks minute after minute (BENCHMARKS.md). The text is the
    /// same byte for byte: each interval pretty-printed alone and indented
    /// to its place in the array.
    pub fn into_json(mut self) -> String {
        let intervals = std::mem::take(&mut self.intervals);
        let mut v = serde_json::to_value(&self).expect("a snapshot always serializes");
        crate::auth::redact::redact_json_keeping(&mut v, HISTOGRAM_DATA);
        let text = serde_json::to_string_pretty(&v).expect("a snapshot always serializes");
        // The empty array at the top level (two spaces in), where the intervals go.
        const EMPTY: &str = "\n  \"intervals\": []";
        let Some(at) = text.find(EMPTY).filter(|_| !intervals.is_empty()) else {
            return text;
        };
        let mut out = String::with_capacity(text.len() + intervals.len() * 16 * 1024);
        out.push_str(&text[..at]);
        out.push_str("\n  \"intervals\": [");
        for (k, i) in intervals.into_iter().enumerate() {
            let mut v = serde_json::to_value(&i).expect("an interval always serializes");
            drop(i);
            crate::auth::redact::redact_json_keeping(&mut v, HISTOGRAM_DATA);
            let one = serde_json::to_string_pretty(&v).expect("an interval always serializes");
            out.push_str(if k == 0 { "\n" } else { ",\n" });
            // JSON strings hold no raw newline: every line break is the printer's.
            for (n, line) in one.split('\n').enumerate() {
                if n > 0 {
                    out.push('\n');
                }
                out.push_str("    ");
                out.push_str(line);
            }
        }
        out.push_str("\n  ]");
        out.push_str(&text[at + EMPTY.len()..]);
        out
    }

    /// A copy with every string and key redacted, for what is rendered from
    /// it (reports, `violations.jsonl`, history rows, the console).
    pub fn redacted(&self) -> Snapshot {
        let mut v = serde_json::to_value(self).expect("a snapshot always serializes");
        crate::auth::redact::redact_json_keeping(&mut v, HISTOGRAM_DATA);
        // A replaced string that no longer parses (a secret equal to a verdict
        // word, say): the renderers' own text pass still redacts.
        serde_json::from_value(v).unwrap_or_else(|_| self.clone())
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

    /// The intervals printed one at a time read exactly as the whole tree
    /// printed at once (the way `to_json` wrote snapshots before).
    #[test]
    fn intervals_printed_one_at_a_time_are_the_whole_tree_byte_for_byte() {
        let mut s = Snapshot {
            tags: [("build".to_string(), "7".to_string())].into(),
            format_version: FORMAT_VERSION.into(),
            tool: ToolInfo {
                name: "chatload".into(),
                version: "0".into(),
            },
            run_id: "r1".into(),
            scenario_name: "s".into(),
            scenario: serde_json::json!({"version": 1, "intervals": []}),
            scenario_hash: None,
            seed: 1,
            target: TargetInfo::default(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            ended_at: "2026-01-01T00:00:01.000Z".into(),
            duration_s: 1.0,
            users: 2,
            histograms: BTreeMap::new(),
            counters: BTreeMap::from([("runs.ok".to_string(), 3)]),
            thresholds: vec![],
            verdict: crate::outcome::Verdict::Pass,
            notes: vec!["a note".into()],
            baseline: None,
            shard: None,
            generator: None,
            shards: vec![],
            intervals: vec![],
            samples: vec![],
            server_truth: None,
            capacity: None,
            validity: vec![],
            offered: vec![],
            failures: vec![],
            probes: None,
        };
        let whole = |s: &Snapshot| {
            let mut v = serde_json::to_value(s).unwrap();
            crate::auth::redact::redact_json_keeping(&mut v, HISTOGRAM_DATA);
            serde_json::to_string_pretty(&v).unwrap()
        };
        assert_eq!(s.to_json(), whole(&s), "no intervals");
        for k in 0..3u64 {
            let mut r = Recorder::default();
            if k != 1 {
                r.record("ttfe", 1000 + k);
                r.count("frames.unknown.\"odd\"\nname", k);
            }
            s.intervals.push(IntervalData {
                start_s: k as f64 / 3.0,
                length_s: 1.0 / 3.0,
                counters: r.counters.clone(),
                histograms: Snapshot::histograms_from(&r),
            });
        }
        assert_eq!(s.to_json(), whole(&s));
        assert_eq!(
            Snapshot::from_json(&s.to_json()).unwrap().intervals,
            s.intervals
        );
    }

    #[test]
    fn unknown_major_versions_are_refused() {
        let err = Snapshot::from_json(r#"{"format_version":"2.0"}"#).unwrap_err();
        assert!(err.to_string().contains("2.0"), "{err}");
    }
}
