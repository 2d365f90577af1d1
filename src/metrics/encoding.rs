//! How recorded data is stored: whole histograms (HdrHistogram V2 + deflate,
//! base64) with derived statistics beside them, intervals, and the snapshot
//! format version. Below `snapshot.rs`, so the files that make a snapshot's
//! parts (threshold, capacity, collector) need not import the snapshot.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::recorder::Recorder;

/// Major.minor of the snapshot format. A reader refuses another major version.
/// 1.1: `close_CODE rate` (and its per-phase, per-1k-runs and drift forms)
/// leaves out the closes that ended a recognised auth failure; 1.0 counted
/// every close. `compare` and `merge` refuse to mix the two
/// ([`same_definitions`]); a 1.0 snapshot alone still reads and renders.
/// 1.2: run latencies end at the frame's kernel receive time (they ended
/// when chatload's task read it, up to the generator's own delay later:
/// `generator_delay`), and `send_lag` is measured at every send, from the
/// moment it fell due (an arrival's intended start, a think's end, or the
/// end of the step before), not only after a think. 1.1 and 1.2 mix in
/// `compare` and `merge`: the closes are defined alike, and the latencies
/// differ by the generator's delay, which `compare` shows as a change.
pub const FORMAT_VERSION: &str = "1.2";
const ENCODING: &str = "hdr-v2-deflate-base64";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("snapshot format {found} is not supported by this chatload (reads {FORMAT_VERSION} and other 1.x)")]
    Version { found: String },
    #[error("snapshots of format {base} and {new} define `close_1011 rate` differently (from 1.1 on it leaves out the 1011s that ended a recognised auth failure, counted as tokens.rejected; 1.0 counted every 1011), so their numbers cannot be mixed: compare or merge snapshots of one definition (re-run the older test with this chatload)")]
    Definitions { base: String, new: String },
    #[error("histogram `{metric}` cannot be decoded: {detail}")]
    Histogram { metric: String, detail: String },
}

/// Refuses to mix snapshots whose format versions define their numbers
/// differently (see [`FORMAT_VERSION`]): 1.0 and 1.1 or later.
pub fn same_definitions(base: &str, new: &str) -> Result<(), SnapshotError> {
    // The generation of definitions: 1.0 (and older 1.x without a minor) is
    // the first; every later 1.x so far shares the second.
    let generation = |v: &str| {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|minor| minor >= 1)
    };
    if generation(base) == generation(new) {
        Ok(())
    } else {
        Err(SnapshotError::Definitions {
            base: base.to_string(),
            new: new.to_string(),
        })
    }
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
        let mut out = super::recorder::new_histogram();
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
}

/// Every histogram of a recorder that holds samples, encoded.
pub fn histograms_of(rec: &Recorder) -> BTreeMap<String, HistogramData> {
    rec.histograms
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(k, h)| (k.clone(), HistogramData::encode(h)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_one_definition_mix_and_others_do_not() {
        for (a, b, same) in [
            ("1.0", "1.0", true),
            ("1.1", "1.1", true),
            ("1.1", "1.2", true),
            ("1.0", "1.1", false),
            ("1.1", "1.0", false),
        ] {
            assert_eq!(same_definitions(a, b).is_ok(), same, "{a} {b}");
        }
        let e = same_definitions("1.0", "1.1").unwrap_err().to_string();
        assert!(
            e.contains("1.0 and 1.1") && e.contains("close_1011 rate"),
            "{e}"
        );
    }
}
