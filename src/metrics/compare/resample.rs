//! One run's data in the shape resampling needs, and the resampling itself.
//!
//! A run is a list of blocks: its intervals, consecutive intervals coalesced
//! into at most [`MAX_BLOCKS`] blocks (an 8-hour soak has thousands of
//! intervals; blocks of neighbours keep the spread over time and bound the
//! memory). A block keeps, per latency metric, the cumulative count at each
//! distinct recorded value of the run, so the quantile of a resample (a
//! weighted sum of blocks) is a binary search over the distinct values,
//! `O(blocks x log values)`, with no histogram built per resample.
//!
//! Two methods, decided per run for latencies (rates always use the second,
//! see [`RunData::resampler`]): with at least [`MIN_BLOCKS`] intervals the
//! blocks are resampled with replacement (a block bootstrap: slow
//! stretches of a busy machine move many samples at once, and resampling
//! whole intervals carries that spread); with fewer, the run's samples are
//! treated as independent (a sample-level bootstrap, drawn in closed form:
//! a resampled quantile's rank follows the order-statistic distribution,
//! Beta(r, n + 1 - r), approximated by a normal; a rate's numerator a
//! binomial, approximated likewise), which still widens with fewer samples.
//!
//! Imports: metrics' own files only.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::metrics::recorder::Recorder;
use crate::metrics::threshold::rate_parts;

/// Fewer intervals than this: the sample-level method. Two to four
/// intervals give too few distinct resamples (two give three) to estimate a spread.
pub const MIN_BLOCKS: usize = 5;
/// More intervals than this are coalesced into this many blocks of neighbours.
pub const MAX_BLOCKS: usize = 50;

/// What a run's statistic is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Whole intervals (blocks) resampled with replacement.
    Intervals,
    /// Samples treated as independent.
    Samples,
}

/// One run's recorded data, split into blocks (one block: [`Method::Samples`]).
#[derive(Debug, Clone)]
pub struct RunData {
    pub run_id: String,
    /// The whole run: the point estimates reports show come from it.
    pub whole: Recorder,
    pub method: Method,
    /// Per latency metric: distinct values (µs, ascending) and, per block,
    /// the cumulative count at each of them.
    latencies: BTreeMap<String, Cumulative>,
    /// Each block's counters (for rates).
    counters: Vec<Recorder>,
    /// How many intervals the run had.
    pub intervals: usize,
}

#[derive(Debug, Clone, Default)]
struct Cumulative {
    values: Vec<u64>,
    /// cum[block][j]: samples of the block at or below values[j].
    cum: Vec<Vec<u64>>,
}

impl RunData {
    /// A run from its whole recorder and its intervals (oldest first).
    pub fn new(
        run_id: &str,
        whole: Recorder,
        intervals: impl ExactSizeIterator<Item = Recorder>,
    ) -> RunData {
        let k = intervals.len();
        Self::from_sparse(run_id, whole, intervals.map(|r| sparse_of(&r)), k)
    }

    /// A run from intervals given as (metric, µs) samples, each value taken
    /// to its histogram bucket's highest equivalent, as HDR iterates it:
    /// the calibration tests' data without building a histogram per interval.
    #[cfg(test)]
    pub(super) fn from_values(
        run_id: &str,
        whole: Recorder,
        intervals: Vec<Vec<(&str, u64)>>,
    ) -> RunData {
        let k = intervals.len();
        let sparse: Vec<Sparse> = intervals
            .into_iter()
            .map(|samples| {
                let mut s = Sparse {
                    hist: BTreeMap::new(),
                    counters: BTreeMap::new(),
                };
                for (m, us) in samples {
                    let v = whole
                        .histograms
                        .get(m)
                        .map_or(us, |h| h.highest_equivalent(us));
                    *s.hist
                        .entry(m.to_string())
                        .or_default()
                        .entry(v)
                        .or_insert(0) += 1;
                }
                s
            })
            .collect();
        Self::from_sparse(run_id, whole, sparse.into_iter(), k)
    }

    fn from_sparse(
        run_id: &str,
        whole: Recorder,
        intervals: impl Iterator<Item = Sparse>,
        k: usize,
    ) -> RunData {
        let (method, blocks) = if k >= MIN_BLOCKS {
            (Method::Intervals, coalesce(intervals, k))
        } else {
            (Method::Samples, vec![sparse_of(&whole)])
        };
        let metrics: Vec<&String> = whole.histograms.keys().collect();
        let latencies = metrics
            .into_iter()
            .map(|m| (m.clone(), Cumulative::of(m, &blocks)))
            .collect();
        let counters = blocks
            .into_iter()
            .map(|b| Recorder {
                counters: b.counters,
                ..Recorder::default()
            })
            .collect();
        RunData {
            run_id: run_id.to_string(),
            whole,
            method,
            latencies,
            counters,
            intervals: k,
        }
    }

    pub fn blocks(&self) -> usize {
        self.counters.len()
    }
}

/// A block's data: sparse histograms (value, count) and counters.
struct Sparse {
    hist: BTreeMap<String, BTreeMap<u64, u64>>,
    counters: BTreeMap<String, u64>,
}

fn sparse_of(rec: &Recorder) -> Sparse {
    let mut s = Sparse {
        hist: BTreeMap::new(),
        counters: BTreeMap::new(),
    };
    add_to(&mut s, rec);
    s
}

fn add_to(s: &mut Sparse, rec: &Recorder) {
    for (m, h) in &rec.histograms {
        let e = s.hist.entry(m.clone()).or_default();
        for v in h.iter_recorded() {
            *e.entry(v.value_iterated_to()).or_insert(0) += v.count_at_value();
        }
    }
    for (k, v) in &rec.counters {
        *s.counters.entry(k.clone()).or_insert(0) += v;
    }
}

/// `k` intervals into at most [`MAX_BLOCKS`] blocks of consecutive ones.
fn coalesce(intervals: impl Iterator<Item = Sparse>, k: usize) -> Vec<Sparse> {
    let per = k.div_ceil(MAX_BLOCKS).max(1);
    let mut blocks: Vec<Sparse> = Vec::new();
    for (i, s) in intervals.enumerate() {
        match blocks.last_mut() {
            Some(b) if i % per != 0 => {
                for (m, h) in s.hist {
                    let e = b.hist.entry(m).or_default();
                    for (v, c) in h {
                        *e.entry(v).or_insert(0) += c;
                    }
                }
                for (k, v) in s.counters {
                    *b.counters.entry(k).or_insert(0) += v;
                }
            }
            _ => blocks.push(s),
        }
    }
    blocks
}

impl Cumulative {
    fn of(metric: &str, blocks: &[Sparse]) -> Cumulative {
        let mut values: Vec<u64> = blocks
            .iter()
            .filter_map(|b| b.hist.get(metric))
            .flat_map(|h| h.keys().copied())
            .collect();
        values.sort_unstable();
        values.dedup();
        let cum = blocks
            .iter()
            .map(|b| {
                let mut row = vec![0u64; values.len()];
                if let Some(h) = b.hist.get(metric) {
                    for (v, c) in h {
                        let j = values.binary_search(v).expect("value is in the union");
                        row[j] += c;
                    }
                }
                let mut acc = 0;
                for x in &mut row {
                    acc += *x;
                    *x = acc;
                }
                row
            })
            .collect();
        Cumulative { values, cum }
    }

    /// The `q` quantile (0..1) of the blocks weighted by `w` (block, weight),
    /// HDR's way (the value at rank max(1, ceil(q x n))); `None` without samples.
    fn quantile(&self, q: f64, w: &[(usize, u64)]) -> Option<u64> {
        // A plain loop: this is the innermost loop of every resample.
        let at = |j: usize| -> u64 {
            let mut n = 0;
            for &(b, w) in w {
                n += self.cum[b][j] * w;
            }
            n
        };
        let n = at(self.values.len().checked_sub(1)?);
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        self.value_at_rank(rank, at)
    }

    /// The smallest value whose cumulative count reaches `rank`.
    fn value_at_rank(&self, rank: u64, at: impl Fn(usize) -> u64) -> Option<u64> {
        let (mut lo, mut hi) = (0usize, self.values.len().checked_sub(1)?);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid) >= rank {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.values.get(lo).copied()
    }
}

/// A statistic that can be resampled.
#[derive(Debug, Clone, Copy)]
pub enum Statistic<'a> {
    /// A latency quantile (0..1) of a metric.
    Quantile(&'a str, f64),
    /// A named rate (`threshold::rate`).
    Rate(&'a str),
}

/// One run's statistic, ready to be resampled.
pub struct Resampler<'a> {
    method: Method,
    data: Prepared<'a>,
    /// Every block at weight one.
    all: Vec<(usize, u64)>,
}

enum Prepared<'a> {
    Quantile(&'a Cumulative, f64),
    /// Each block's (numerator, denominator).
    Rate(Vec<(u64, u64)>),
}

impl RunData {
    /// The statistic prepared for resampling; `None` when the run lacks it.
    pub fn resampler(&self, s: Statistic<'_>) -> Option<Resampler<'_>> {
        let data = match s {
            Statistic::Quantile(m, q) => Prepared::Quantile(self.latencies.get(m)?, q),
            Statistic::Rate(name) => Prepared::Rate(
                self.counters
                    .iter()
                    .map(|r| rate_parts(r, name).unwrap_or((0, 0)))
                    .collect(),
            ),
        };
        // A rate is a binomial proportion of the whole run: its numerator and
        // denominator land in different intervals (a run starts in one and
        // ends in another), so per-interval ratios carry timing noise the
        // whole run's rate does not.
        let method = match s {
            Statistic::Quantile(..) => self.method,
            Statistic::Rate(_) => Method::Samples,
        };
        Some(Resampler {
            method,
            data,
            all: (0..self.blocks()).map(|b| (b, 1)).collect(),
        })
    }

    /// How many samples (or the rate's denominator) the statistic rests on.
    pub fn samples(&self, s: Statistic<'_>) -> u64 {
        match s {
            Statistic::Quantile(m, _) => self.whole.histograms.get(m).map_or(0, |h| h.len()),
            Statistic::Rate(name) => rate_parts(&self.whole, name).map_or(0, |(_, d)| d),
        }
    }
}

impl Resampler<'_> {
    /// The statistic over all blocks, as the resamples see it.
    pub fn estimate(&self) -> Option<f64> {
        self.weighted(&self.all)
    }

    fn weighted(&self, w: &[(usize, u64)]) -> Option<f64> {
        match &self.data {
            Prepared::Quantile(c, q) => c.quantile(*q, w).map(|v| v as f64),
            Prepared::Rate(parts) => {
                let (num, den) = w.iter().fold((0, 0), |(n, d), (b, w)| {
                    (n + parts[*b].0 * w, d + parts[*b].1 * w)
                });
                (den > 0).then(|| num as f64 / den as f64)
            }
        }
    }

    /// One resample of the statistic (`None` when the resample holds no data).
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> Option<f64> {
        match self.method {
            Method::Intervals => {
                let k = self.all.len();
                let mut counts = vec![0u64; k];
                for _ in 0..k {
                    counts[rng.random_range(0..k)] += 1;
                }
                let mut w = Vec::with_capacity(k);
                for (b, &c) in counts.iter().enumerate() {
                    if c > 0 {
                        w.push((b, c));
                    }
                }
                self.weighted(&w)
            }
            Method::Samples => self.draw_samples(rng),
        }
    }

    /// The sample-level resample, in closed form (see the module docs).
    fn draw_samples(&self, rng: &mut ChaCha8Rng) -> Option<f64> {
        let z = normal(rng);
        match &self.data {
            Prepared::Quantile(c, q) => {
                let all = |j: usize| c.cum.iter().map(|row| row[j]).sum::<u64>();
                let n = all(c.values.len().checked_sub(1)?);
                if n == 0 {
                    return None;
                }
                let nf = n as f64;
                let r = (q * nf).ceil().clamp(1.0, nf);
                let mean = r / (nf + 1.0);
                let sd = (r * (nf + 1.0 - r) / ((nf + 1.0).powi(2) * (nf + 2.0))).sqrt();
                let u = (mean + sd * z).clamp(0.0, 1.0);
                let rank = ((u * nf).ceil() as u64).clamp(1, n);
                c.value_at_rank(rank, all).map(|v| v as f64)
            }
            Prepared::Rate(parts) => {
                let p = self.estimate()?;
                let den: u64 = parts.iter().map(|(_, d)| d).sum();
                let sd = (p * (1.0 - p) / den as f64).sqrt();
                Some((p + sd * z).clamp(0.0, 1.0))
            }
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
