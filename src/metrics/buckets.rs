//! Classic Prometheus histogram buckets read off chatload's HDR recorders:
//! the bounds ([`LATENCY_BUCKETS_S`]) and the counts of one histogram
//! ([`Buckets::of`]), which `prometheus.rs` hands to `prometheus-client`'s
//! histogram encoder and `run/remote_write.rs` pushes.
//!
//! Why not a `prometheus_client::metrics::histogram::Histogram` fed sample
//! by sample: the HDR recorders are the truth (DESIGN.md "whole
//! histograms"), and a second recording path on the engine's hot path could
//! drift from them. Counting the HDR histogram into fixed bounds at scrape
//! time costs a few microseconds per metric whatever the run's length. A
//! value within the HDR precision (0.1 %, `SIGFIG` = 3) of a bound may be
//! counted on either side of it.
//!
//! Imports: `recorder` only.

use hdrhistogram::Histogram;

/// Upper bounds (seconds) of the latency buckets, chosen for agent
/// latencies: connects and handshakes in milliseconds, first events in
/// hundreds of milliseconds to seconds, completions up to minutes. `+Inf`
/// comes on top. README.md lists them.
pub const LATENCY_BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// One histogram as classic buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Sum of the recorded values, seconds (HDR-equivalent values: within 0.1 %).
    pub sum_s: f64,
    pub count: u64,
    /// `(upper bound in seconds, values at or below it)`, cumulative, the
    /// last bound `+Inf` (= `count`).
    pub cumulative: Vec<(f64, u64)>,
}

impl Buckets {
    /// The buckets of `h` (microseconds) over [`LATENCY_BUCKETS_S`].
    pub fn of(h: &Histogram<u64>) -> Buckets {
        let count = h.len();
        let mut cumulative: Vec<(f64, u64)> = LATENCY_BUCKETS_S
            .iter()
            .map(|&le| {
                let us = (le * 1e6).round() as u64;
                (
                    le,
                    if count == 0 {
                        0
                    } else {
                        h.count_between(0, us)
                    },
                )
            })
            .collect();
        cumulative.push((f64::INFINITY, count));
        Buckets {
            sum_s: if count == 0 {
                0.0
            } else {
                h.mean() * count as f64 / 1e6
            },
            count,
            cumulative,
        }
    }

    /// Empty buckets (a metric present from the start).
    pub fn empty() -> Buckets {
        Buckets::of(&crate::metrics::new_histogram())
    }

    /// Per-bucket (not cumulative) counts, as `prometheus-client` encodes them.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut prev = 0;
        self.cumulative
            .iter()
            .map(|&(le, c)| {
                let n = c.saturating_sub(prev);
                prev = prev.max(c);
                (le, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_value_at_or_below_its_bound() {
        let mut h = crate::metrics::new_histogram();
        for us in [
            3_000,
            40_000,
            40_000,
            700_000,
            4_000_000_000u64.min(crate::metrics::MAX_US),
        ] {
            h.record(us).unwrap();
        }
        let b = Buckets::of(&h);
        let at = |le: f64| b.cumulative.iter().find(|(x, _)| *x == le).unwrap().1;
        assert_eq!(at(0.005), 1);
        assert_eq!(at(0.025), 1);
        assert_eq!(at(0.05), 3);
        assert_eq!(at(1.0), 4);
        assert_eq!(at(300.0), 4);
        assert_eq!(at(f64::INFINITY), 5);
        assert_eq!(b.count, 5);
        let per: u64 = b.per_bucket().iter().map(|(_, n)| n).sum();
        assert_eq!(per, 5);
        assert!((b.sum_s - (0.003 + 0.08 + 0.7 + 3600.0)).abs() < 3600.0 * 0.002);
    }

    #[test]
    fn empty_buckets_are_all_zero() {
        let b = Buckets::empty();
        assert_eq!(b.count, 0);
        assert!(b.cumulative.iter().all(|(_, c)| *c == 0));
        assert_eq!(b.cumulative.len(), LATENCY_BUCKETS_S.len() + 1);
    }
}
