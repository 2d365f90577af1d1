//! Axis ticks and their labels for every chart of the reports: where the
//! ticks go (steps of 1, 2, 2.5 or 5 times a power of ten; time axes in
//! seconds, minutes or hours; the percentile "nines" axis) and how a tick
//! reads in its unit. One unit per axis, chosen from the axis' top, with as
//! many decimals as the step needs: an axis of 0 to 7.5 ms reads `0ms`,
//! `2.5ms`, `5ms`, `7.5ms` (never `2`, `8` or `0µs`).
//!
//! A leaf of `report`: imports only `units`.

use crate::units::trim_float;

/// What an axis measures, which decides its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Latency in microseconds, labelled in µs, ms or s (one for the axis).
    Micros,
    /// Events per second.
    PerSecond,
    /// A plain count (integers).
    Count,
    /// A fraction, labelled in percent.
    Fraction,
    /// Virtual users or another load figure, with its unit text.
    Plain,
}

/// An axis: its range, its ticks and how they read.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    step: f64,
    quantity: Quantity,
    /// µs per displayed unit (latency axes) and the unit's suffix.
    scale: f64,
    suffix: &'static str,
}

/// Steps of 1, 2, 2.5 and 5 times a power of ten: the smallest step that
/// covers `span` in at most `max_ticks` intervals.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    let raw = (span / max_ticks.max(1) as f64).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw * (1.0 - 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Ticks from 0 (or below `lo`) up to the first multiple of the step at or
/// above `hi`: the axis ends on a tick.
fn ticks_for(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step).floor();
    let last = (hi / step - 1e-9).ceil().max(first + 1.0);
    (first as i64..=last as i64)
        .map(|i| {
            let v = i as f64 * step;
            // 0.1 * 3 is 0.30000000000000004: round to the step's decimals.
            let d = decimals(step) as i32 + 1;
            (v * 10f64.powi(d)).round() / 10f64.powi(d)
        })
        .collect()
}

/// Decimals that show every multiple of `step` exactly (2.5 -> 1, 0.25 -> 2).
pub fn decimals(step: f64) -> usize {
    (0..9)
        .find(|&d| {
            let s = step * 10f64.powi(d as i32);
            (s - s.round()).abs() < 1e-6 * s.abs().max(1.0)
        })
        .unwrap_or(9)
}

impl Axis {
    /// A value axis from `lo` (usually 0) to at least `hi`, about
    /// `max_ticks` intervals.
    pub fn linear(lo: f64, hi: f64, max_ticks: usize, quantity: Quantity) -> Axis {
        let hi = if hi.is_finite() && hi > lo {
            hi
        } else {
            lo + 1.0
        };
        let (scale, suffix) = match quantity {
            Quantity::Micros => latency_unit(hi),
            Quantity::Fraction => (0.01, "%"),
            Quantity::PerSecond => (1.0, "/s"),
            Quantity::Count | Quantity::Plain => (1.0, ""),
        };
        // Steps are nice in the displayed unit (2.5 ms, not 2,500 µs).
        let mut step = nice_step((hi - lo) / scale, max_ticks) * scale;
        if quantity == Quantity::Count {
            step = step.max(1.0);
        }
        let ticks = ticks_for(lo / scale, hi / scale, step / scale)
            .into_iter()
            .map(|t| t * scale)
            .collect::<Vec<_>>();
        Axis {
            lo: ticks[0],
            hi: *ticks.last().expect("at least two ticks"),
            ticks,
            step,
            quantity,
            scale,
            suffix,
        }
    }

    /// A tick's label, in the axis' one unit.
    pub fn label(&self, v: f64) -> String {
        let d = decimals(self.step / self.scale);
        let n = trim_float(v / self.scale, d);
        let n = if n == "-0" { "0".to_string() } else { n };
        match self.quantity {
            Quantity::Micros | Quantity::Fraction | Quantity::PerSecond => {
                format!("{n}{}", self.suffix)
            }
            Quantity::Count | Quantity::Plain => n,
        }
    }
}

/// The unit of a latency axis whose top is `hi_us`: (µs per unit, suffix).
pub fn latency_unit(hi_us: f64) -> (f64, &'static str) {
    if hi_us < 1_000.0 {
        (1.0, "µs")
    } else if hi_us < 1_000_000.0 {
        (1_000.0, "ms")
    } else {
        (1_000_000.0, "s")
    }
}

/// Time-axis steps (seconds): whole seconds, then minutes, then hours.
const TIME_STEPS: [f64; 19] = [
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0, 7200.0, 14400.0, 21600.0,
];

/// A time axis from 0 to the end of the run (seconds), its step chosen so
/// that a 12 s run and an 8 h soak both get a handful of readable ticks.
pub fn time_axis(end_s: f64, max_ticks: usize) -> Axis {
    let end = if end_s.is_finite() && end_s > 0.0 {
        end_s
    } else {
        1.0
    };
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| end / s <= max_ticks as f64)
        .unwrap_or_else(|| nice_step(end / 3600.0, max_ticks) * 3600.0);
    let ticks = ticks_for(0.0, end, step);
    Axis {
        lo: 0.0,
        hi: *ticks.last().expect("at least two ticks"),
        ticks,
        step,
        quantity: Quantity::Plain,
        scale: 1.0,
        suffix: "",
    }
}

/// A time tick's label: `7.5s`, `45s`, `2m`, `1m30s`, `1h`, `2h30m`.
pub fn time_label(t: f64, step: f64) -> String {
    if step < 1.0 {
        return format!("{}s", trim_float(t, decimals(step)));
    }
    let t = t.round() as u64;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

impl Axis {
    /// An axis with ticks chosen by the caller (runs on a trend's x axis).
    pub fn fixed(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
        Axis {
            lo,
            hi,
            ticks,
            step: 1.0,
            quantity: Quantity::Plain,
            scale: 1.0,
            suffix: "",
        }
    }

    /// The step between ticks (in the axis' raw unit).
    pub fn step(&self) -> f64 {
        self.step
    }
}

/// The percentile "nines" axis: x = -log10(1 - q). 0 is the median's
/// left end (p0), 1 is p90, 2 p99, 3 p99.9.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q.clamp(0.0, 1.0 - 1e-12)).log10()
}

/// A nines tick's label: `0%`, `90%`, `99%`, `99.9%`, `99.99%`.
pub fn nines_label(x: f64) -> String {
    let q = (1.0 - 10f64.powf(-x)) * 100.0;
    format!("{}%", trim_float(q, (x.round() as usize).saturating_sub(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_millisecond_axis_reads_in_ms_with_the_decimals_its_step_needs() {
        // Data up to 7.2 ms: ticks every 2.5 ms, all in ms, 0 included.
        let a = Axis::linear(0.0, 7_200.0, 3, Quantity::Micros);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["0ms", "2.5ms", "5ms", "7.5ms"]);
        assert_eq!(a.hi, 7_500.0);
        assert!(labels.iter().all(|l| !l.contains("µs")));
    }

    #[test]
    fn units_follow_the_axis_top() {
        let us = Axis::linear(0.0, 850.0, 4, Quantity::Micros);
        assert_eq!(us.label(us.ticks[1]), "250µs");
        let s = Axis::linear(0.0, 1_840_000.0, 4, Quantity::Micros);
        let labels: Vec<String> = s.ticks.iter().map(|t| s.label(*t)).collect();
        assert_eq!(labels, ["0s", "0.5s", "1s", "1.5s", "2s"]);
        let pct = Axis::linear(0.0, 0.0012, 4, Quantity::Fraction);
        assert_eq!(pct.label(pct.ticks[1]), "0.05%");
        let rate = Axis::linear(0.0, 31.0, 4, Quantity::PerSecond);
        let labels: Vec<String> = rate.ticks.iter().map(|t| rate.label(*t)).collect();
        assert_eq!(labels, ["0/s", "10/s", "20/s", "30/s", "40/s"]);
        // Counts never show fractions: 0..3 counts step by 1.
        let c = Axis::linear(0.0, 3.0, 6, Quantity::Count);
        assert_eq!(c.ticks, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn steps_are_one_two_two_and_a_half_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0, 4), 2.5);
        assert_eq!(nice_step(7.2, 4), 2.0);
        assert_eq!(nice_step(0.3, 3), 0.1);
        assert_eq!(nice_step(900.0, 4), 250.0);
        assert_eq!(decimals(2.5), 1);
        assert_eq!(decimals(0.25), 2);
        assert_eq!(decimals(50.0), 0);
        // 0.1 * 3 prints as 0.3.
        let a = Axis::linear(0.0, 0.3, 3, Quantity::Plain);
        assert_eq!(a.label(a.ticks[3]), "0.3");
        // An empty or flat series still gets an axis.
        let flat = Axis::linear(0.0, 0.0, 4, Quantity::Micros);
        assert!(flat.ticks.len() >= 2 && flat.hi > 0.0);
    }

    #[test]
    fn time_axes_adapt_from_seconds_to_hours() {
        let short = time_axis(12.0, 6);
        assert_eq!(short.ticks, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(time_label(12.0, short.step()), "12s");
        let minutes = time_axis(330.0, 6);
        assert_eq!(minutes.step(), 60.0);
        assert_eq!(time_label(300.0, 60.0), "5m");
        assert_eq!(time_label(90.0, 30.0), "1m30s");
        let soak = time_axis(8.0 * 3600.0, 6);
        assert_eq!(soak.step(), 7200.0);
        assert_eq!(time_label(9000.0, 1800.0), "2h30m");
        assert_eq!(time_label(7200.0, 7200.0), "2h");
        let tiny = time_axis(0.4, 4);
        assert_eq!(time_label(tiny.ticks[1], tiny.step()), "0.1s");
    }

    #[test]
    fn the_nines_axis_labels_percentiles() {
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }
}
