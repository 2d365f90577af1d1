//! The over-time series and latency distributions the HTML charts plot
//! ([`OverTime`], distributions), built from a snapshot's intervals and
//! histograms.
//!
//! Imports `metrics` and `names` (below `report`) and `view.rs` (metric order).

use crate::metrics::snapshot::Snapshot;
use crate::names;

/// Series for the over-time charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverTime {
    /// (t, ttfe p50, p95, p99) in µs.
    pub ttfe: Vec<(f64, f64, f64, f64)>,
    /// (t, ttc p50, p95, p99) in µs.
    pub ttc: Vec<(f64, f64, f64, f64)>,
    /// The first and last drift windows (seconds), when the run has drift rules.
    pub drift_spans: Option<[(f64, f64); 2]>,
    /// (t, ok runs per second, failed runs per second).
    pub runs: Vec<(f64, f64, f64)>,
    /// Per close code: (t, closes per second).
    pub closes: Vec<(String, Vec<(f64, f64)>)>,
}

pub(super) fn over_time(s: &Snapshot) -> OverTime {
    let mut o = OverTime::default();
    let mut codes: std::collections::BTreeSet<String> = Default::default();
    for i in &s.intervals {
        for k in i.counters.keys() {
            if let Some(c) = k.strip_prefix("closes.") {
                codes.insert(c.to_string());
            }
        }
    }
    let mut closes: Vec<(String, Vec<(f64, f64)>)> =
        codes.into_iter().map(|c| (c, Vec::new())).collect();
    for i in chart_intervals(&s.intervals).iter() {
        let t = i.start_s + i.length_s;
        let len = i.length_s.max(1e-3);
        let c = |k: &str| i.counters.get(k).copied().unwrap_or(0) as f64;
        for (metric, series) in [(names::TTFE, &mut o.ttfe), (names::TTC, &mut o.ttc)] {
            if let Some(h) = i.histograms.get(metric) {
                series.push((t, h.p50_us as f64, h.p95_us as f64, h.p99_us as f64));
            }
        }
        o.runs
            .push((t, c(names::RUNS_OK) / len, c(names::RUNS_FAILED) / len));
        for (code, series) in &mut closes {
            series.push((t, c(&format!("closes.{code}")) / len));
        }
    }
    o.closes = closes;
    let has_drift = s
        .scenario
        .get("thresholds")
        .and_then(|t| t.as_object())
        .is_some_and(|t| {
            t.keys()
                .any(|k| k.split_whitespace().nth(2) == Some("drift"))
        });
    if has_drift {
        if let Ok(spec) = crate::metrics::merge::drift_spec_from_echo(&s.scenario) {
            o.drift_spans = crate::metrics::threshold::drift_spans(&s.intervals, spec);
        }
    }
    o
}

/// The intervals the charts plot: a last interval shorter than half the one
/// before it (the run ended a moment after an interval closed) is merged into
/// that one, exactly (counters add, histograms merge). Plotted alone, a few
/// runs over a few milliseconds read as a spike in the per-second rates.
fn chart_intervals(
    intervals: &[crate::metrics::snapshot::IntervalData],
) -> std::borrow::Cow<'_, [crate::metrics::snapshot::IntervalData]> {
    match intervals {
        [.., prev, last] if last.length_s < prev.length_s / 2.0 => {
            let n = intervals.len();
            let mut v = intervals[..n - 2].to_vec();
            v.extend(crate::metrics::collector::roll_up(&intervals[n - 2..]));
            std::borrow::Cow::Owned(v)
        }
        _ => std::borrow::Cow::Borrowed(intervals),
    }
}

pub(super) fn distributions(s: &Snapshot) -> Vec<(String, Vec<(u64, u64)>)> {
    let mut out = Vec::new();
    let mut metrics: Vec<&String> = s.histograms.keys().collect();
    metrics.sort_by_key(|m| metric_rank(m));
    for m in metrics {
        let Ok(h) = s.histograms[m].decode(m) else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let mut buckets: Vec<(u64, u64)> = h
            .iter_log(100, 2.0)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect();
        // Leading empty buckets carry no information.
        let first = buckets.iter().position(|b| b.1 > 0).unwrap_or(0);
        buckets.drain(..first.saturating_sub(1));
        out.push((m.clone(), buckets));
    }
    out
}

/// The metrics whose percentile spectrum the report draws.
pub const SPECTRUM_METRICS: [&str; 3] = [names::WS_CONNECT, names::TTFE, names::TTC];

/// A percentile spectrum per key metric, from its whole histogram: points
/// (x on the "nines" axis, value in µs) every 0.05 nines from p0 up to the
/// last percentile the count can resolve (log10(count) nines: 1,000 values
/// reach p99.9), then the maximum there.
pub(super) fn spectra(
    histograms: &std::collections::BTreeMap<String, crate::metrics::snapshot::HistogramData>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = Vec::new();
    for m in SPECTRUM_METRICS {
        let Some(h) = histograms.get(m).and_then(|h| h.decode(m).ok()) else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let top = (h.len() as f64).log10().clamp(0.5, 6.0);
        let steps = (top / 0.05).floor() as u32;
        let mut pts: Vec<(f64, f64)> = (0..=steps)
            .map(|i| {
                let x = f64::from(i) * 0.05;
                let q = 1.0 - 10f64.powf(-x);
                (x, h.value_at_quantile(q) as f64)
            })
            .collect();
        pts.push((top, h.max() as f64));
        out.push((m.to_string(), pts));
    }
    out
}

/// Order latency metrics the way people read a run: connect, ready, first
/// event, per-event, completion.
pub(super) fn metric_rank(m: &str) -> (u8, String) {
    let r = match m {
        names::WS_CONNECT => 0,
        names::WS_READY => 1,
        names::TTFE => 2,
        names::TTC => 4,
        names::EVENT_GAP_MAX => 5,
        names::SEND_LAG => 6,
        names::GENERATOR_DELAY => 6,
        _ if m.starts_with("event_") => 3,
        _ => 7,
    };
    (r, m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::collector::Interval;
    use crate::metrics::snapshot::IntervalData;
    use crate::metrics::Recorder;

    fn interval(start_s: f64, length_s: f64, ok: u64) -> IntervalData {
        let mut rec = Recorder::default();
        rec.count(names::RUNS_OK, ok);
        rec.record(names::TTC, 1000 * ok);
        IntervalData::from_interval(&Interval {
            start_s,
            length_s,
            rec,
        })
    }

    #[test]
    fn the_spectrum_reads_the_whole_histogram_on_the_nines_axis() {
        let mut rec = Recorder::default();
        for v in 1..=10_000u64 {
            rec.record(names::TTC, v);
        }
        let spectra = spectra(&Snapshot::histograms_from(&rec));
        assert_eq!(spectra.len(), 1, "only the key metrics recorded");
        let (m, pts) = &spectra[0];
        assert_eq!(m, names::TTC);
        let at = |x: f64| pts.iter().find(|p| (p.0 - x).abs() < 1e-9).unwrap().1;
        // 10,000 values 1..=10,000: about p50 5,000, p90 9,000, p99 9,900, up to
        // 4 nines (p99.99), then the max (HDR's 3 significant digits).
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1.0;
        let x50 = nines_of(0.5);
        let q50 = 1.0 - 10f64.powf(-x50);
        assert!(near(at(x50), q50 * 10_000.0), "{}", at(x50));
        assert!(near(at(1.0), 9_000.0), "{}", at(1.0));
        assert!(near(at(2.0), 9_900.0), "{}", at(2.0));
        let last = pts.last().unwrap();
        assert!(
            (last.0 - 4.0).abs() < 1e-9 && near(last.1, 10_000.0),
            "{last:?}"
        );
        assert!(pts.windows(2).all(|w| w[0].1 <= w[1].1), "never decreasing");
    }

    fn nines_of(q: f64) -> f64 {
        // Points are every 0.05 nines: the one nearest q.
        (crate::report::ticks::nines(q) / 0.05).round() * 0.05
    }

    #[test]
    fn a_short_last_interval_joins_the_one_before_it_on_the_charts() {
        // 10 runs/s, then 3 runs in the 0.1 s before the end: 30/s alone.
        let ivs = vec![
            interval(0.0, 2.0, 20),
            interval(2.0, 2.0, 20),
            interval(4.0, 0.1, 3),
        ];
        let chart = chart_intervals(&ivs);
        assert_eq!(chart.len(), 2);
        assert_eq!(chart[0], ivs[0]);
        let last = &chart[1];
        assert_eq!(last.start_s, 2.0);
        assert!((last.length_s - 2.1).abs() < 1e-9, "{}", last.length_s);
        assert_eq!(last.counters[names::RUNS_OK], 23);
        assert_eq!(last.histograms[names::TTC].count, 2);
        // Its rate is the two intervals' together, not a spike.
        let rate = last.counters[names::RUNS_OK] as f64 / last.length_s;
        assert!((rate - 23.0 / 2.1).abs() < 1e-6, "{rate}");
        // An ordinary last interval, or a lone one, is plotted as it is.
        let even = vec![interval(0.0, 2.0, 20), interval(2.0, 1.5, 15)];
        assert_eq!(chart_intervals(&even).len(), 2);
        assert_eq!(chart_intervals(&even[..1]).len(), 1);
        assert!(chart_intervals(&[]).is_empty());
    }
}
