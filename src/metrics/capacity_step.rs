//! One measured step of a capacity search ([`StepResult`]): its own
//! histograms and counters (the connect side over the whole step, the runs
//! that started in its measured window), its window and its verdicts. The
//! judging and the knee are `capacity.rs`; the step's figures and the two
//! capacities `capacity_sides.rs`.
//!
//! Imports `metrics` siblings and `plan`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::encoding::HistogramData;
use super::threshold::RuleResult;
use super::validity::ValidityCause;

/// One measured step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub index: u32,
    /// Users (closed model) or arrivals per second (open model).
    pub load: f64,
    /// The load as written (`12 users`, `20/s`).
    pub load_text: String,
    /// Seconds since the plan started: step start, measurement start, end.
    pub start_s: u64,
    pub measure_s: u64,
    pub end_s: u64,
    /// Every SLO held on this step's data.
    pub held: bool,
    pub slo: Vec<RuleResult>,
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, HistogramData>,
    /// Why the step is INVALID: the generator could not offer its load
    /// (connects failed on this machine). An invalid step ends the search
    /// and is never the knee.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<ValidityCause>,
    /// Ready sockets when the step began and when its measured window ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets_at_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets_at_end: Option<u64>,
    /// Seconds the measured window was open (shorter than planned when the
    /// run stopped in it), and waited after it for the runs started in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_s: Option<f64>,
    /// Sockets the plan opens at once in this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_once: Option<u64>,
}
