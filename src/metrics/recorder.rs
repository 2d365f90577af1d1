//! The recorder: per-metric HDR histograms in microseconds and counters by
//! name, and the plain observations the engine hands to it. The bottom of
//! `metrics/`: it imports no other file of it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Largest recordable value: one hour in microseconds. Larger values are
/// clamped to it and counted under `histogram.clamped`.
pub const MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits of every histogram.
pub const SIGFIG: u8 = 3;

/// A new, empty histogram with chatload's fixed range and precision.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("fixed histogram bounds are valid")
}

/// A metric's or counter's name in an observation: constants
/// (`names::TTFE`) and interned names (`names::events`) are borrowed for
/// free; a name built at run time is owned.
pub type Name = std::borrow::Cow<'static, str>;

/// One thing the engine saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A latency sample in microseconds for a named metric (`ttfe`, `ws_connect`, ...).
    Sample { metric: Name, us: u64 },
    /// A counter increment (`runs.ok`, `closes.1011`, ...).
    Count { counter: Name, n: u64 },
    /// A frame that broke a rule, kept as a sample (bounded) for debugging.
    Offending(Box<OffendingFrame>),
    /// Why a connect or handshake failed, kept by distinct reason with a count (bounded).
    Failure(FailureReason),
}

/// Distinct failure reasons kept; later new reasons are counted under the
/// last line, [`OTHER_REASONS`].
pub const FAILURE_REASONS_MAX: usize = 8;
/// The reason of the line that counts every reason beyond the first ones.
pub const OTHER_REASONS: &str = "(other reasons)";

/// Why connects or handshakes failed (`connect`: the upgrade, `ticket`,
/// `ready`: closed or silent before ready), with how often: the first
/// distinct reasons, as the target gave them ("HTTP 403: no such
/// subprotocol", "protocol: Server sent no subprotocol", "refused:
/// Connection refused (os error 111)").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureReason {
    pub stage: String,
    pub reason: String,
    pub count: u64,
}

/// Samples kept per violation class, and in all.
pub const SAMPLES_PER_CLASS: usize = 5;
pub const SAMPLES_MAX: usize = 200;
/// Longest frame text kept in a sample.
pub const SAMPLE_FRAME_BYTES: usize = 2048;

/// One offending frame, secrets redacted, truncated to [`SAMPLE_FRAME_BYTES`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OffendingFrame {
    pub class: String,
    pub detail: String,
    pub message: String,
    pub user_id: String,
    pub run_id: Option<String>,
    pub frame: String,
}

impl Observation {
    pub fn sample(metric: impl Into<Name>, us: u64) -> Self {
        Observation::Sample {
            metric: metric.into(),
            us,
        }
    }
    pub fn count(counter: impl Into<Name>) -> Self {
        Observation::Count {
            counter: counter.into(),
            n: 1,
        }
    }
    pub fn count_n(counter: impl Into<Name>, n: u64) -> Self {
        Observation::Count {
            counter: counter.into(),
            n,
        }
    }
}

/// Histograms and counters of one run (or one interval, or one shard).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub histograms: BTreeMap<String, Histogram<u64>>,
    pub counters: BTreeMap<String, u64>,
    /// The first offending frames of each class (bounded).
    pub samples: Vec<OffendingFrame>,
    /// The first distinct connect and handshake failure reasons, with counts.
    pub failures: Vec<FailureReason>,
}

impl Recorder {
    /// Records a sample. A metric already seen is found by its name, not
    /// by a copy of it: the name is copied once, when first recorded.
    pub fn record(&mut self, metric: &str, us: u64) {
        let v = if us > MAX_US {
            self.count("histogram.clamped", 1);
            MAX_US
        } else {
            us
        };
        match self.histograms.get_mut(metric) {
            Some(h) => h.saturating_record(v),
            None => self
                .histograms
                .entry(metric.to_string())
                .or_insert_with(new_histogram)
                .saturating_record(v),
        }
    }

    /// Adds to a counter (its name copied only when first counted).
    pub fn count(&mut self, counter: &str, n: u64) {
        match self.counters.get_mut(counter) {
            Some(c) => *c += n,
            None => {
                self.counters.insert(counter.to_string(), n);
            }
        }
    }

    pub fn apply(&mut self, obs: &Observation) {
        match obs {
            Observation::Sample { metric, us } => self.record(metric, *us),
            Observation::Count { counter, n } => self.count(counter, *n),
            Observation::Offending(f) => self.keep_sample(f),
            Observation::Failure(f) => self.keep_failure(f),
        }
    }

    /// Counts a failure reason: under its own line while fewer than
    /// [`FAILURE_REASONS_MAX`] are kept, else under [`OTHER_REASONS`].
    pub fn keep_failure(&mut self, f: &FailureReason) {
        let same = |r: &&mut FailureReason| r.stage == f.stage && r.reason == f.reason;
        if let Some(r) = self.failures.iter_mut().find(same) {
            r.count += f.count;
            return;
        }
        if self.failures.len() + 1 < FAILURE_REASONS_MAX {
            self.failures.push(f.clone());
            return;
        }
        let other = FailureReason {
            stage: "any".into(),
            reason: OTHER_REASONS.into(),
            count: 0,
        };
        let is_other = |r: &&mut FailureReason| r.reason == OTHER_REASONS;
        if self.failures.iter_mut().find(is_other).is_none() {
            self.failures.push(other);
        }
        if let Some(r) = self.failures.iter_mut().find(is_other) {
            r.count += f.count;
        }
    }

    /// Keeps a sample if its class and the total are under their bounds.
    pub fn keep_sample(&mut self, f: &OffendingFrame) {
        let same = self.samples.iter().filter(|s| s.class == f.class).count();
        if same < SAMPLES_PER_CLASS && self.samples.len() < SAMPLES_MAX {
            self.samples.push(f.clone());
        }
    }

    /// Adds another recorder into this one (exact: HDR addition, counter sums).
    pub fn merge(&mut self, other: &Recorder) {
        for (k, h) in &other.histograms {
            let mine = self
                .histograms
                .entry(k.clone())
                .or_insert_with(new_histogram);
            mine.add(h).expect("histograms share fixed bounds");
        }
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_insert(0) += v;
        }
        for f in &other.samples {
            self.keep_sample(f);
        }
        for f in &other.failures {
            self.keep_failure(f);
        }
    }

    /// Allocates `metrics`' histograms now, empty (none is reported before
    /// it has a sample), so their first samples allocate nothing.
    pub fn preallocate(&mut self, metrics: &[&str]) {
        for m in metrics {
            self.histograms
                .entry((*m).to_string())
                .or_insert_with(new_histogram);
        }
    }

    /// Empties the recorder but keeps its histograms' memory for reuse.
    pub fn clear(&mut self) {
        self.histograms.values_mut().for_each(|h| h.reset());
        self.counters.clear();
        self.samples.clear();
        self.failures.clear();
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Sum of every counter whose name starts with `prefix`.
    pub fn counter_prefix_sum(&self, prefix: &str) -> u64 {
        self.counters
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_exact_addition() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        let mut all = Recorder::default();
        for i in 0..1000u64 {
            let v = i * 37 % 5000 + 1;
            if i % 3 == 0 {
                a.record("ttfe", v)
            } else {
                b.record("ttfe", v)
            }
            all.record("ttfe", v);
        }
        a.count("runs.ok", 3);
        b.count("runs.ok", 4);
        a.merge(&b);
        let (m, u) = (&a.histograms["ttfe"], &all.histograms["ttfe"]);
        assert_eq!(m.len(), 1000);
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(m.value_at_quantile(q), u.value_at_quantile(q));
        }
        assert_eq!(a.counter("runs.ok"), 7);
    }

    #[test]
    fn huge_values_are_clamped_and_counted() {
        let mut r = Recorder::default();
        r.record("ttc", MAX_US * 10);
        assert_eq!(r.counter("histogram.clamped"), 1);
        assert!(r.histograms["ttc"].max() >= MAX_US);
    }

    #[test]
    fn prefix_sums_only_match_the_prefix() {
        let mut r = Recorder::default();
        r.count("closes.1011", 2);
        r.count("closes.1000", 1);
        r.count("closesx", 5);
        assert_eq!(r.counter_prefix_sum("closes."), 3);
    }

    #[test]
    fn failure_reasons_are_kept_distinct_with_counts_and_bounded() {
        let f = |reason: &str| FailureReason {
            stage: "connect".into(),
            reason: reason.into(),
            count: 1,
        };
        let mut r = Recorder::default();
        for _ in 0..40 {
            r.apply(&Observation::Failure(f(
                "protocol: Server sent no subprotocol",
            )));
        }
        r.apply(&Observation::Failure(f("HTTP 503")));
        assert_eq!(r.failures.len(), 2);
        assert_eq!(r.failures[0].count, 40);
        for i in 0..20 {
            r.keep_failure(&f(&format!("reason {i}")));
        }
        assert_eq!(r.failures.len(), FAILURE_REASONS_MAX);
        let other = r.failures.last().unwrap();
        assert_eq!(other.reason, OTHER_REASONS);
        let total: u64 = r.failures.iter().map(|x| x.count).sum();
        assert_eq!(total, 61, "every failure is counted somewhere");
        let mut m = Recorder::default();
        m.merge(&r);
        m.merge(&r);
        assert_eq!(m.failures[0].count, 80);
    }
}
