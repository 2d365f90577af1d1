//! Baselines: is the new run worse than the base run, beyond the scenario's
//! tolerances (`scenario/baseline.rs`), by more than noise explains? Used by
//! `chatload compare` and `run --baseline` (through `judge::compare`).
//!
//! # Method
//!
//! A statistic (a latency percentile, a rate) is **regressed** only when its
//! change is beyond its tolerance *and* significant: a one-sided bootstrap
//! test of "the new run is not worse", its p-values Holm-adjusted across
//! every statistic that has a tolerance (family-wise error 5%).
//!
//! The bootstrap resamples each run's **intervals** (`resample.rs`), not
//! its samples, and not a rank test on the histograms: latency samples of
//! one run are not independent (a busy machine slows a whole stretch of
//! them at once; that is how one binary failed its own baseline by +143% on
//! a p99), and a rank test, assuming independence, would call that noise
//! significant; it also tests "the distributions differ", not "the p95
//! grew", which is what a tolerance names. Resampling whole intervals keeps
//! their spread, works for any percentile and for rates, and merges
//! histograms exactly. The resamples are seeded from the statistic's name:
//! the same snapshots always give the same answer. A run with fewer than
//! five intervals falls back to a sample-level bootstrap (independent
//! samples), which still widens with fewer samples (`resample.rs`).
//!
//! Each row shows the change, its 95% interval, and a status:
//! **regressed**; **inconclusive** (beyond the tolerance, not significant:
//! the data cannot tell; exits 0); **ok**; **insufficient data** (a
//! percentile q needs at least 10 / (1 - q) samples in each run: p50 20,
//! p95 200, p99 1,000; a rate needs a denominator; never flagged).
//!
//! Files: `resample.rs` (run data, resampling), `significance.rs` (p-values,
//! intervals, Holm), `same.rs` (scenario hash, comparability), `tests.rs`.
//! Imports: metrics' own files, `scenario` (tolerances), `units`.

pub mod resample;
pub mod same;
pub mod significance;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::metrics::threshold::rate;
use crate::scenario::baseline::{Allowed, Subject, Tolerance};
use crate::units::{format_us, format_value};
pub use resample::{Method, RunData, Statistic};
pub use significance::Settings;

/// A row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Within its tolerance, or not gated (no tolerance).
    #[default]
    Ok,
    /// Beyond its tolerance and significant.
    Regressed,
    /// Beyond its tolerance, not significant: the data cannot tell.
    Inconclusive,
    /// Too few samples to judge this statistic.
    InsufficientData,
}

impl RowStatus {
    pub fn label(self) -> &'static str {
        match self {
            RowStatus::Ok => "ok",
            RowStatus::Regressed => "regressed",
            RowStatus::Inconclusive => "inconclusive",
            RowStatus::InsufficientData => "insufficient data",
        }
    }

    /// Display order: regressions first.
    fn rank(self) -> u8 {
        match self {
            RowStatus::Regressed => 0,
            RowStatus::Inconclusive => 1,
            RowStatus::Ok => 2,
            RowStatus::InsufficientData => 3,
        }
    }
}

/// The comparison's own verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareVerdict {
    /// A significant regression beyond tolerance (exit 1).
    Regressed,
    /// No statistic beyond its tolerance, or none significantly (exit 0).
    #[default]
    NoRegression,
    /// Some statistic beyond its tolerance, none significantly (exit 0).
    Inconclusive,
}

impl CompareVerdict {
    pub fn label(self) -> &'static str {
        match self {
            CompareVerdict::Regressed => "REGRESSED",
            CompareVerdict::NoRegression => "NO REGRESSION",
            CompareVerdict::Inconclusive => "INCONCLUSIVE",
        }
    }
}

/// One compared statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaRow {
    pub name: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    pub base_text: String,
    pub new_text: String,
    /// The change (the effect): relative for a latency, points for a rate.
    pub delta_text: String,
    /// The tolerance that applies, as written (`+10%`).
    pub tolerance: Option<String>,
    pub regressed: bool,
    #[serde(default)]
    pub status: RowStatus,
    /// The 95% interval of the change, in the change's units (a fraction
    /// for a latency's relative change, a fraction for a rate's points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    #[serde(default)]
    pub interval_text: String,
    /// One-sided p-value of "not worse": Holm-adjusted across the rows with
    /// a tolerance; unadjusted (for ordering only) on the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Why the status is what it is, when it is not obvious.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl DeltaRow {
    /// The status; a row written before statuses existed has only `regressed`.
    pub fn status(&self) -> RowStatus {
        if self.regressed {
            RowStatus::Regressed
        } else {
            self.status
        }
    }
}

/// A baseline comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base_run: String,
    pub new_run: String,
    /// Regressions first, then by significance.
    pub rows: Vec<DeltaRow>,
    /// A significant regression beyond tolerance.
    pub regressed: bool,
    #[serde(default)]
    pub verdict: CompareVerdict,
    /// How the rows were judged, in words.
    #[serde(default)]
    pub method: String,
    /// What a reader should know (different target or users, a forced comparison).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Regressions first, then inconclusive, ok, insufficient data; rows
    /// with a tolerance before the others; then by significance (stable).
    pub fn sort_rows(&mut self) {
        self.rows.sort_by(|a, b| {
            (a.status().rank(), a.tolerance.is_none())
                .cmp(&(b.status().rank(), b.tolerance.is_none()))
                .then(
                    a.p_value
                        .unwrap_or(2.0)
                        .total_cmp(&b.p_value.unwrap_or(2.0)),
                )
        });
    }

    /// The verdict; a comparison written before verdicts existed has only `regressed`.
    pub fn verdict(&self) -> CompareVerdict {
        if self.regressed {
            CompareVerdict::Regressed
        } else if self
            .rows
            .iter()
            .any(|r| r.status() == RowStatus::Inconclusive)
        {
            CompareVerdict::Inconclusive
        } else {
            CompareVerdict::NoRegression
        }
    }
}

const RATES: [&str; 4] = ["run_ok", "close_1011", "connect_error", "run_failed"];

/// A row being built: the row and what judging it needs.
struct Draft<'a> {
    row: DeltaRow,
    stat: Statistic<'a>,
    tol: Option<&'a Tolerance>,
    beyond: bool,
    higher_is_worse: bool,
}

/// Compares the recorded data of `new` against `base`. The snapshot-level
/// entry point is `judge::compare`.
pub fn compare_runs(
    base: &RunData,
    new: &RunData,
    tolerances: &[Tolerance],
    settings: &Settings,
) -> Comparison {
    let metrics = latency_metrics(base, new);
    let mut drafts: Vec<Draft<'_>> = Vec::new();
    for m in &metrics {
        for q in [50.0, 95.0, 99.0] {
            drafts.push(latency_draft(base, new, m, q, tolerances));
        }
    }
    for r in RATES {
        drafts.push(rate_draft(base, new, r, tolerances));
    }
    let gated = judge_drafts(base, new, &mut drafts, settings);
    let rows: Vec<DeltaRow> = drafts.into_iter().map(|d| d.row).collect();
    let regressed = rows.iter().any(|r| r.status() == RowStatus::Regressed);
    let mut c = Comparison {
        base_run: base.run_id.clone(),
        new_run: new.run_id.clone(),
        rows,
        regressed,
        verdict: CompareVerdict::NoRegression,
        method: method_text(base, new, gated, settings),
        warnings: Vec::new(),
    };
    c.verdict = c.verdict();
    c.sort_rows();
    c
}

/// Every latency metric both runs recorded (ttfe and ttc first), owned so
/// the drafts can borrow them.
fn latency_metrics(base: &RunData, new: &RunData) -> Vec<String> {
    let mut metrics: Vec<String> = base
        .whole
        .histograms
        .keys()
        .filter(|m| new.whole.histograms.contains_key(*m))
        .cloned()
        .collect();
    metrics.sort_by_key(|m| (!matches!(m.as_str(), "ttfe" | "ttc"), m.clone()));
    metrics
}

/// Samples a percentile needs in each run: 10 / (1 - q).
pub fn samples_needed(q: f64) -> u64 {
    if q >= 1.0 {
        return u64::MAX;
    }
    (10.0 / (1.0 - q) - 1e-6).ceil() as u64
}

fn latency_draft<'a>(
    base: &RunData,
    new: &RunData,
    m: &'a str,
    q: f64,
    tolerances: &'a [Tolerance],
) -> Draft<'a> {
    let value = |run: &RunData| {
        run.whole
            .histograms
            .get(m)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q / 100.0) as f64)
    };
    let (bv, nv) = (value(base), value(new));
    let tol = tolerances.iter().find(|t| {
        t.subject
            == Subject::Latency {
                metric: m.to_string(),
                percentile: q,
            }
    });
    let beyond = match (tol, bv, nv) {
        (Some(t), Some(bv), Some(nv)) => match t.allowed {
            Allowed::Relative(f) => nv > bv * (1.0 + f),
            Allowed::AbsoluteUs(us) => nv > bv + us,
            Allowed::PointsUp(_) | Allowed::PointsDown(_) => false,
        },
        _ => false,
    };
    let delta_text = match (bv, nv) {
        (Some(bv), Some(nv)) if bv > 0.0 => format!("{:+.1}%", (nv - bv) / bv * 100.0),
        _ => "n/a".into(),
    };
    Draft {
        row: DeltaRow {
            name: format!("{m} p{q}"),
            base: bv,
            new: nv,
            base_text: bv.map_or("n/a".into(), format_us),
            new_text: nv.map_or("n/a".into(), format_us),
            delta_text,
            tolerance: tol.map(|t| t.value.clone()),
            regressed: false,
            status: RowStatus::Ok,
            interval: None,
            interval_text: String::new(),
            p_value: None,
            detail: String::new(),
        },
        stat: Statistic::Quantile(m, q / 100.0),
        tol,
        beyond,
        higher_is_worse: true,
    }
}

/// A watched rate ([`RATES`]).
fn rate_draft<'a>(
    base: &RunData,
    new: &RunData,
    r: &'a str,
    tolerances: &'a [Tolerance],
) -> Draft<'a> {
    let (bv, nv) = (rate(&base.whole, r), rate(&new.whole, r));
    let tol = tolerances.iter().find(|t| {
        t.subject
            == Subject::Rate {
                name: r.to_string(),
            }
    });
    let (beyond, higher_is_worse) = match (tol.map(|t| t.allowed), bv, nv) {
        (Some(Allowed::PointsUp(p)), Some(bv), Some(nv)) => (nv - bv > p + 1e-12, true),
        (Some(Allowed::PointsDown(p)), Some(bv), Some(nv)) => (bv - nv > p + 1e-12, false),
        (Some(Allowed::PointsDown(_)), ..) => (false, false),
        _ => (false, r != "run_ok"),
    };
    Draft {
        row: DeltaRow {
            name: format!("{r} rate"),
            base: bv,
            new: nv,
            base_text: bv.map_or("n/a".into(), |v| format_value(v, "fraction")),
            new_text: nv.map_or("n/a".into(), |v| format_value(v, "fraction")),
            delta_text: match (bv, nv) {
                (Some(bv), Some(nv)) => format!("{:+.3}pp", (nv - bv) * 100.0),
                _ => "n/a".into(),
            },
            tolerance: tol.map(|t| t.value.clone()),
            regressed: false,
            status: RowStatus::Ok,
            interval: None,
            interval_text: String::new(),
            p_value: None,
            detail: String::new(),
        },
        stat: Statistic::Rate(r),
        tol,
        beyond,
        higher_is_worse,
    }
}

/// Sets every draft's interval, p-value and status; how many rows were
/// gated (the Holm family).
fn judge_drafts(
    base: &RunData,
    new: &RunData,
    drafts: &mut [Draft<'_>],
    settings: &Settings,
) -> usize {
    let mut family: Vec<(usize, f64)> = Vec::new();
    for (i, d) in drafts.iter_mut().enumerate() {
        if let Some(why) = insufficient(base, new, d) {
            d.row.status = RowStatus::InsufficientData;
            d.row.detail = why;
            continue;
        }
        if d.tol.is_some() && d.row.base.is_some() && d.row.new.is_none() {
            d.row.status = RowStatus::Regressed;
            d.row.detail = "recorded by the base run, missing in the new run".into();
            continue;
        }
        let log = matches!(d.stat, Statistic::Quantile(..));
        let Some(c) = significance::change(base, new, d.stat, log, d.higher_is_worse, settings)
        else {
            continue;
        };
        d.row.interval = Some([c.low, c.high]);
        d.row.interval_text = if log {
            format!("[{:+.1}%, {:+.1}%]", c.low * 100.0, c.high * 100.0)
        } else {
            format!("[{:+.3}pp, {:+.3}pp]", c.low * 100.0, c.high * 100.0)
        };
        d.row.p_value = Some(c.p);
        if d.tol.is_some() {
            family.push((i, c.p));
        }
    }
    let adjusted = significance::holm(&family.iter().map(|(_, p)| *p).collect::<Vec<_>>());
    for ((i, _), p) in family.iter().zip(&adjusted) {
        let d = &mut drafts[*i];
        d.row.p_value = Some(*p);
        d.row.status = match (d.beyond, *p <= settings.alpha) {
            (true, true) => RowStatus::Regressed,
            (true, false) => RowStatus::Inconclusive,
            (false, _) => RowStatus::Ok,
        };
    }
    for d in drafts.iter_mut() {
        d.row.regressed = d.row.status == RowStatus::Regressed;
    }
    family.len()
}

/// Why a draft cannot be judged, if it cannot.
fn insufficient(base: &RunData, new: &RunData, d: &Draft<'_>) -> Option<String> {
    let (nb, nn) = (base.samples(d.stat), new.samples(d.stat));
    match d.stat {
        Statistic::Quantile(_, q) => {
            let need = samples_needed(q);
            // A statistic the base run never had enough of cannot vanish either.
            let short = nb < need || (nn < need && nn > 0) || (nn == 0 && d.tol.is_none());
            short.then(|| {
                format!(
                    "p{} needs {need} samples in each run: the base run has {nb}, the new run {nn}",
                    q * 100.0
                )
            })
        }
        Statistic::Rate(_) => (nb == 0 || nn == 0).then(|| "no data in one of the runs".into()),
    }
}

/// The method, in words, for the comparison's header.
fn method_text(base: &RunData, new: &RunData, gated: usize, s: &Settings) -> String {
    let run = |r: &RunData, who: &str| match r.method {
        Method::Intervals => format!(
            "{who}: {} blocks of its {} intervals",
            r.blocks(),
            r.intervals
        ),
        Method::Samples => format!(
            "{who}: independent samples (sample-level bootstrap; {} intervals, fewer than {})",
            r.intervals,
            resample::MIN_BLOCKS
        ),
    };
    format!(
        "bootstrap ({} resamples per statistic; {}, {}); a regression is beyond its tolerance and significant, Holm-adjusted at {}% across {gated} statistics with a tolerance; intervals {}%",
        s.resamples,
        run(base, "base"),
        run(new, "new"),
        s.alpha * 100.0,
        s.confidence * 100.0
    )
}
