//! A capacity search's steps and knee, formatted for every renderer
//! ([`CapacityView`]). Built from the snapshot's `metrics::capacity` result.
//!
//! Imports `metrics`, `names` and `units` (below `report`).

use crate::metrics::snapshot::HistogramData;
use crate::names;
use crate::units::format_us;

/// A capacity search, formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityView {
    /// The knee, what broke and the headroom, in one line.
    pub summary: String,
    pub slo: Vec<String>,
    pub rows: Vec<CapacityRow>,
    /// The step that is the knee.
    pub knee_index: Option<u32>,
    pub passed: bool,
}

/// One step of a capacity search.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityRow {
    pub index: u32,
    pub load: String,
    pub runs: u64,
    pub ttc_p50: String,
    pub ttc_p95: String,
    pub ttc_p99: String,
    /// Failed runs per started run.
    pub error_rate: String,
    /// 1011 closes per started run.
    pub close_1011: String,
    /// Open model: arrivals of the step that did not start on time
    /// (`dropped D, late L`); `None` in the closed model.
    pub not_on_time: Option<String>,
    pub held: bool,
    /// The SLOs that failed, with what was measured.
    pub broke: String,
}

pub(super) fn capacity_view(c: &crate::metrics::capacity::CapacityResult) -> CapacityView {
    let rows = c
        .steps
        .iter()
        .map(|st| {
            let n = |k: &str| st.counters.get(k).copied().unwrap_or(0);
            let started = n(names::RUNS_STARTED);
            let per_run_of = |count: u64| {
                if started == 0 {
                    "n/a".to_string()
                } else {
                    crate::units::format_value(count as f64 / started as f64, "fraction")
                }
            };
            let per_run = |k: &str| per_run_of(n(k));
            let ttc = |q: fn(&HistogramData) -> u64| {
                st.histograms
                    .get(names::TTC)
                    .map_or_else(|| "n/a".to_string(), |h| format_us(q(h) as f64))
            };
            CapacityRow {
                index: st.index,
                load: st.load_text.clone(),
                runs: started,
                ttc_p50: ttc(|h| h.p50_us),
                ttc_p95: ttc(|h| h.p95_us),
                ttc_p99: ttc(|h| h.p99_us),
                error_rate: per_run(names::RUNS_FAILED),
                // As `close_1011 rate`: recognised auth failures left out.
                close_1011: per_run_of(n("closes.1011").saturating_sub(n("closes_auth.1011"))),
                not_on_time: st.counters.contains_key(names::STARTS_INTENDED).then(|| {
                    format!(
                        "{} dropped, {} late",
                        n(names::STARTS_DROPPED),
                        n(names::STARTS_LATE)
                    )
                }),
                held: st.held,
                broke: st
                    .slo
                    .iter()
                    .filter(|v| !v.passed)
                    .map(|v| format!("{} (measured {})", v.threshold, v.observed_text))
                    .chain(st.invalid.iter().map(|c| format!("INVALID: {}", c.detail)))
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })
        .collect();
    let knee_index = c
        .steps
        .iter()
        .take_while(|s| s.held)
        .last()
        .map(|s| s.index)
        .filter(|_| c.generator_limit.is_none());
    CapacityView {
        summary: c.summary(),
        slo: c.slo.clone(),
        rows,
        knee_index,
        passed: c.passed(),
    }
}
