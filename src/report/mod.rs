//! Reports: one view model ([`ReportData`], built from a snapshot only), one
//! renderer per format. A report never needs the network or the live run.
//!
//! This file owns [`ReportData`], [`Format`] (the one list of formats) and
//! [`render`]. The view model is built by `view.rs` (key numbers and count
//! tables), `charts.rs` (over-time series, distributions, percentile
//! spectra), `capacity_view.rs` (a capacity search's steps), `knee_view.rs`
//! (its knee chart's data), `validity_view.rs` (INVALID causes, offered vs
//! achieved, failure reasons). One renderer per format: `markdown.rs`,
//! `html.rs` (a `maud` template; the capacity section is `html_capacity.rs`,
//! code spans `html_text.rs`, the charts `svg.rs`), `junit.rs`; the JSON
//! format is the snapshot itself. Charts are drawn by `plot.rs` (plotters'
//! SVG backend) on the axes of `ticks.rs` (ticks and units). `console.rs`
//! prints the end-of-run summary; `history.rs` keeps the run history (schema
//! versions and migrations) and `history_view.rs` renders the trend pages.
//!
//! May import `metrics` and the leaves below it (`names`, `units`,
//! `outcome`); never `engine`, `run` or `cli`.
//!
//! A new report format touches: this file (a `Format` variant, its
//! `file_name` and `render` arms), its renderer file, and nothing else
//! (`Format::ALL` is the one list the run and `merge` write).

pub mod capacity_view;
pub mod charts;
pub mod console;
mod console_capacity;
pub mod history;
pub mod history_view;
pub mod html;
pub mod html_capacity;
pub mod html_text;
pub mod junit;
pub mod knee_view;
pub mod markdown;
pub mod plot;
pub mod probe_view;
pub mod svg;
pub mod ticks;
pub mod validity_view;
pub mod view;

use crate::metrics::snapshot::Snapshot;
use crate::metrics::threshold::RuleResult;
use crate::units::format_us;

pub use capacity_view::{CapacityRow, CapacityView};
pub use charts::OverTime;
pub use knee_view::KneeView;
pub use view::{close_label, LatencyRow, SampleLine};

/// Everything a renderer shows, already formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    pub title: String,
    pub run_id: String,
    pub verdict: crate::outcome::Verdict,
    pub started_at: String,
    pub duration: String,
    /// The target's URL and TLS settings (an insecure run says so).
    pub target: String,
    /// `target.insecure = true`: certificates were not verified.
    pub insecure: bool,
    pub users: u64,
    pub tool_version: String,
    /// The run's tags (`key=value`).
    pub tags: Vec<(String, String)>,
    pub key_numbers: Vec<(String, String)>,
    pub latencies: Vec<LatencyRow>,
    pub runs: Vec<(String, u64)>,
    pub connections: Vec<(String, u64)>,
    /// Token sources, refreshes, rejections and expiries.
    pub tokens: Vec<(String, u64)>,
    /// Threads, switches, REST statuses, history checks and persistence misses.
    pub threads: Vec<(String, u64)>,
    pub closes: Vec<(String, u64)>,
    /// Sockets ended by a protocol error or a flood, by class (shown
    /// beside the closes).
    pub protocol_errors: Vec<(String, u64)>,
    pub events: Vec<(String, u64)>,
    pub frames: Vec<(String, u64)>,
    pub thresholds: Vec<RuleResult>,
    /// Violations by class (totals), then by class and detail.
    pub violations: Vec<(String, u64)>,
    pub violation_details: Vec<(String, u64)>,
    /// One line per kept offending frame: class, user, run and what was wrong.
    pub samples: Vec<SampleLine>,
    pub notes: Vec<String>,
    pub server_truth: Vec<(String, u64)>,
    /// Comparison with a baseline run.
    pub baseline: Option<crate::metrics::compare::Comparison>,
    /// Over-time data, one point per interval (x = seconds since start at the interval's end).
    pub over_time: OverTime,
    /// Latency distributions: per metric, (bucket upper bound in µs, count).
    pub distributions: Vec<(String, Vec<(u64, u64)>)>,
    /// Percentile spectra of the key metrics: per metric, (nines, µs).
    pub spectra: Vec<(String, Vec<(f64, f64)>)>,
    /// The scenario as run, pretty JSON (holds no secret values).
    pub settings_json: String,
    /// Merged runs: one line per shard.
    pub shards: Vec<crate::metrics::snapshot::ShardSummary>,
    /// How hard the generator worked (single runs).
    pub generator: Option<crate::metrics::snapshot::GeneratorHealth>,
    /// A capacity search's steps and knee.
    pub capacity: Option<CapacityView>,
    /// A capacity search's knee chart (load against ttc).
    pub knee: Option<KneeView>,
    /// Why the run is INVALID, one line per cause (empty: it is valid).
    pub validity: Vec<String>,
    /// Offered vs achieved, one row per phase of the plan
    /// (`validity_view::OFFERED_HEADER`).
    pub offered: Vec<[String; 8]>,
    /// The first distinct connect and handshake failure reasons, with counts.
    pub failures: Vec<(String, u64)>,
    /// The target's own numbers (`[[probe]]`), one per value.
    pub probes: Vec<probe_view::ProbeView>,
}

impl ReportData {
    /// Shard lines for tables: index, run, users, runs started, ok, CPU, send lag p99, verdict.
    pub fn shard_rows(&self) -> Vec<[String; 8]> {
        self.shards
            .iter()
            .map(|s| {
                let g = s.generator.as_ref();
                [
                    s.index.to_string(),
                    s.run_id.clone(),
                    s.users.to_string(),
                    s.runs_started.to_string(),
                    s.runs_ok.to_string(),
                    g.and_then(|g| g.cpu_s)
                        .map_or("n/a".into(), |c| format!("{c:.1}s")),
                    g.and_then(|g| g.send_lag_p99_us)
                        .map_or("n/a".into(), |v| format_us(v as f64)),
                    format!(
                        "{}{}",
                        s.verdict,
                        if g.is_some_and(|g| g.saturated) {
                            " (generator saturated)"
                        } else {
                            ""
                        }
                    ),
                ]
            })
            .collect()
    }

    /// The failed thresholds, as written.
    pub fn failed_thresholds(&self) -> Vec<&RuleResult> {
        self.thresholds.iter().filter(|v| !v.passed).collect()
    }

    /// Whether anything judged the run: a threshold (default SLOs
    /// included), a capacity search or a baseline. A run with none of them
    /// is "not judged" ([`NOT_JUDGED`]): its PASS only says it ran.
    pub fn judged(&self) -> bool {
        !self.thresholds.is_empty() || self.capacity.is_some() || self.baseline.is_some()
    }
}

/// What every report says of a run nothing judged.
pub const NOT_JUDGED: &str =
    "not judged: no thresholds and the default SLOs are off (`[thresholds] defaults = false`)";

/// A rule as reports list it: as written, with "(default)" after a default SLO.
pub fn rule_label(v: &RuleResult) -> String {
    format!("{}{}", v.threshold, default_mark(v))
}

/// ` (default)` after a default SLO, nothing after a written rule.
pub fn default_mark(v: &RuleResult) -> &'static str {
    if v.default {
        " (default)"
    } else {
        ""
    }
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "md")]
    Markdown,
    Html,
    Json,
    Junit,
}

impl Format {
    /// Every format, in the order a run and `merge` write them (the one list:
    /// a new format is a variant here, its arms below and its renderer file).
    pub const ALL: [Format; 4] = [Format::Json, Format::Markdown, Format::Html, Format::Junit];

    /// The file a run writes for this format.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Markdown => "report.md",
            Format::Html => "report.html",
            Format::Json => "snapshot.json",
            Format::Junit => "junit.xml",
        }
    }
}

/// Renders one format from a snapshot's view model (the JSON format is the snapshot itself).
pub fn render(report: &ReportData, snapshot: &Snapshot, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    let r = match format {
        Format::Markdown => markdown::render(report, &mut out),
        Format::Html => html::render(report, &mut out),
        Format::Junit => junit::render(report, &mut out),
        Format::Json => {
            out.extend_from_slice(snapshot.to_json().as_bytes());
            Ok(())
        }
    };
    r.expect("rendering into memory cannot fail");
    if format == Format::Json {
        return out; // `to_json` redacts, histograms left whole.
    }
    // The last pass before the file (`auth/redact.rs`): a snapshot written by
    // an older chatload, or text the renderers escaped, still leaves no secret.
    match String::from_utf8(out) {
        Ok(text) => crate::auth::redact::redact(&text).into_bytes(),
        Err(e) => e.into_bytes(),
    }
}
