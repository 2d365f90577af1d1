//! Is a change real? The bootstrap distribution of the change between two
//! runs' statistic, its one-sided p-value and interval, and Holm's step-down
//! procedure across the gated statistics (family-wise error at `alpha`).
//!
//! Imports: metrics' own files only.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::resample::{Method, RunData, Statistic};

/// How the comparison tests: resamples per statistic, the family-wise error
/// rate, the confidence of the shown intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub resamples: usize,
    /// Family-wise error rate across the gated statistics (Holm).
    pub alpha: f64,
    /// Two-sided confidence of the interval shown for each change.
    pub confidence: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resamples: 1000,
            alpha: 0.05,
            confidence: 0.95,
        }
    }
}

/// The change of one statistic, new against base, on the scale it is
/// tested on (log of a latency: a relative change; a rate: a difference).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// One-sided p-value of "new is not worse than base" (unadjusted).
    pub p: f64,
    /// Interval of the change, in the row's units (relative change for a
    /// latency, fraction for a rate).
    pub low: f64,
    pub high: f64,
}

/// Seeds a statistic's resampling from its name: deterministic, and
/// independent of the order rows are compared in (FNV-1a).
fn seed_of(name: &str) -> u64 {
    super::same::fnv1a(name.as_bytes()) ^ 0x6368_6174_6c6f_6164
}

/// Inflation of a block bootstrap's spread: resampling k blocks
/// underestimates the variance by (k - 1) / k.
fn inflation(run: &RunData, stat: Statistic<'_>) -> f64 {
    match (run.method, stat) {
        (Method::Intervals, Statistic::Quantile(..)) => {
            let k = run.blocks() as f64;
            (k / (k - 1.0)).sqrt()
        }
        (Method::Samples, _) | (_, Statistic::Rate(_)) => 1.0,
    }
}

/// Bootstraps the change of `stat` from `base` to `new`. `log` tests a
/// latency on the log scale; `higher_is_worse` gives the direction.
pub fn change(
    base: &RunData,
    new: &RunData,
    stat: Statistic<'_>,
    log: bool,
    higher_is_worse: bool,
    settings: &Settings,
) -> Option<Change> {
    let f = |x: f64| if log { x.max(1.0).ln() } else { x };
    let (rb, rn) = (base.resampler(stat)?, new.resampler(stat)?);
    let (b0, n0) = (f(rb.estimate()?), f(rn.estimate()?));
    let (cb, cn) = (inflation(base, stat), inflation(new, stat));
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(&format!("{stat:?}")));
    let mut deltas = Vec::with_capacity(settings.resamples);
    for _ in 0..settings.resamples {
        let (Some(b), Some(n)) = (rb.draw(&mut rng), rn.draw(&mut rng)) else {
            continue;
        };
        let b = b0 + (f(b) - b0) * cb;
        let n = n0 + (f(n) - n0) * cn;
        deltas.push(n - b);
    }
    if deltas.is_empty() {
        return None;
    }
    let not_worse = deltas
        .iter()
        .filter(|d| {
            if higher_is_worse {
                **d <= 0.0
            } else {
                **d >= 0.0
            }
        })
        .count();
    let p = (1 + not_worse) as f64 / (1 + deltas.len()) as f64;
    deltas.sort_by(f64::total_cmp);
    let tail = (1.0 - settings.confidence) / 2.0;
    let pick = |q: f64| deltas[(q * (deltas.len() - 1) as f64).round() as usize];
    let back = |d: f64| if log { d.exp() - 1.0 } else { d };
    Some(Change {
        p,
        low: back(pick(tail)),
        high: back(pick(1.0 - tail)),
    })
}

/// Holm's step-down adjustment: adjusted p-values in the input's order.
/// A statistic is significant when its adjusted p is at most alpha.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (i, &idx) in order.iter().enumerate() {
        running = running.max(((m - i) as f64 * p[idx]).min(1.0));
        adjusted[idx] = running;
    }
    adjusted
}
