//! The validity part of the view model: the causes that make a run
//! INVALID, the offered-vs-achieved table (one row per phase of the plan)
//! and the first distinct connect and handshake failure reasons, formatted
//! once for every renderer.
//!
//! Imports `metrics` (the stored rows) and `units`.

use crate::metrics::offered::OfferedPhase;
use crate::metrics::snapshot::Snapshot;
use crate::units::trim_float;

/// What an INVALID verdict means, shown above its causes.
pub const INVALID_MEANING: &str = "INVALID: the numbers do not describe the planned test (the generator offered less load than the plan); thresholds are still judged and shown";

/// Header of the offered-vs-achieved table.
pub const OFFERED_HEADER: [&str; 8] = [
    "phase",
    "time",
    "users planned",
    "users actual (end / max)",
    "arrivals planned",
    "arrivals started",
    "runs/s",
    "ok runs/s",
];

/// One validity cause, for people: `local_error.emfile (37): ...`.
pub fn cause_lines(s: &Snapshot) -> Vec<String> {
    s.validity
        .iter()
        .map(|c| format!("{} ({}): {}", c.cause, c.count, c.detail))
        .collect()
}

/// The offered-vs-achieved rows, one per phase, in [`OFFERED_HEADER`] order.
pub fn offered_rows(s: &Snapshot) -> Vec<[String; 8]> {
    let open = s.offered.iter().any(|p| p.arrivals_planned_per_s.is_some());
    s.offered.iter().map(|p| row(p, open)).collect()
}

fn row(p: &OfferedPhase, open: bool) -> [String; 8] {
    let rate = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{}/s", trim_float(v, 2)));
    let users = if open {
        format!("pool {}", p.users_to)
    } else if p.users_from == p.users_to {
        p.users_to.to_string()
    } else {
        format!("{} -> {}", p.users_from, p.users_to)
    };
    [
        p.phase.clone(),
        format!("{}s-{}s", trim_float(p.start_s, 1), trim_float(p.end_s, 1)),
        users,
        format!("{} / {}", p.users_end, p.users_max),
        rate(p.arrivals_planned_per_s),
        rate(p.arrivals_per_s),
        trim_float(p.runs_per_s, 2),
        trim_float(p.runs_ok_per_s, 2),
    ]
}

/// The first distinct failure reasons: (`stage: reason`, count).
pub fn failure_rows(s: &Snapshot) -> Vec<(String, u64)> {
    s.failures
        .iter()
        .map(|f| (format!("{}: {}", f.stage, f.reason), f.count))
        .collect()
}
