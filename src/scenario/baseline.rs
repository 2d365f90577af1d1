//! `[baseline]`: how much each statistic may worsen against a baseline run
//! (`chatload compare`, `run --baseline`). The comparison itself judges
//! data, so it lives in `metrics/compare.rs`. The `[baseline]` table reader
//! (`read_baseline`) is at the end; imports only `units` and the `doc` readers.
//!
//! Tolerance grammar (the scenario's `[baseline]` table, or `--tolerance`):
//!
//! | key | value | regression when |
//! |---|---|---|
//! | `METRIC pNN` | `+10%` | new > base x 1.10 |
//! | `METRIC pNN` | `+50ms` | new > base + 50 ms |
//! | `RATE rate` | `+0.05pp` | new - base > 0.05 percentage points |
//! | `RATE rate` | `-0.5pp` | base - new > 0.5 percentage points |

use super::doc::Obj;

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Latency { metric: String, percentile: f64 },
    Rate { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowed {
    /// Relative increase, as a fraction.
    Relative(f64),
    /// Absolute increase in microseconds.
    AbsoluteUs(f64),
    /// Increase of a rate, as a fraction (0.0005 = 0.05 pp).
    PointsUp(f64),
    /// Decrease of a rate, as a fraction.
    PointsDown(f64),
}

/// How much one statistic may worsen.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    pub key: String,
    pub value: String,
    pub subject: Subject,
    pub allowed: Allowed,
}

impl Tolerance {
    pub fn parse(key: &str, value: &str) -> Result<Tolerance, String> {
        let mut w = key.split_whitespace();
        let (Some(metric), Some(stat), None) = (w.next(), w.next(), w.next()) else {
            return Err(format!(
                "tolerance key `{key}` must be `METRIC pNN` or `RATE rate`, e.g. \"ttfe p95\""
            ));
        };
        let v = value.trim();
        let subject = if stat == "rate" {
            Subject::Rate {
                name: metric.to_string(),
            }
        } else {
            let q: f64 = stat
                .strip_prefix('p')
                .and_then(|q| q.parse().ok())
                .filter(|q| (0.0..=100.0).contains(q))
                .ok_or_else(|| format!("`{stat}` is not a percentile such as p95 (or `rate`)"))?;
            Subject::Latency {
                metric: metric.to_string(),
                percentile: q,
            }
        };
        let bad = || format!("tolerance `{value}` must look like +10%, +50ms, +0.05pp or -0.5pp");
        let allowed = match &subject {
            Subject::Latency { .. } => {
                let rest = v.strip_prefix('+').ok_or_else(bad)?;
                if let Some(p) = rest.strip_suffix('%') {
                    Allowed::Relative(p.trim().parse::<f64>().map_err(|_| bad())? / 100.0)
                } else {
                    Allowed::AbsoluteUs(
                        crate::units::parse_duration(rest)
                            .map_err(|_| bad())?
                            .as_micros() as f64,
                    )
                }
            }
            Subject::Rate { .. } => {
                let pts = |s: &str| {
                    s.strip_suffix("pp")
                        .and_then(|p| p.trim().parse::<f64>().ok())
                        .map(|p| p / 100.0)
                };
                if let Some(r) = v.strip_prefix('+') {
                    Allowed::PointsUp(pts(r).ok_or_else(bad)?)
                } else if let Some(r) = v.strip_prefix('-') {
                    Allowed::PointsDown(pts(r).ok_or_else(bad)?)
                } else {
                    return Err(bad());
                }
            }
        };
        Ok(Tolerance {
            key: key.to_string(),
            value: v.to_string(),
            subject,
            allowed,
        })
    }

    /// The tolerances used when a scenario names none.
    pub fn defaults() -> Vec<Tolerance> {
        [
            ("ttfe p95", "+10%"),
            ("ttfe p99", "+20%"),
            ("ttc p95", "+10%"),
            ("ttc p99", "+20%"),
            ("close_1011 rate", "+0.05pp"),
            ("run_ok rate", "-0.5pp"),
        ]
        .iter()
        .map(|(k, v)| Tolerance::parse(k, v).expect("built-in tolerance"))
        .collect()
    }
}

/// `[baseline]`: the tolerances, each checked as it is read.
pub(super) fn read_baseline(o: &Obj<'_>) -> Option<Vec<Tolerance>> {
    let Some(tbl) = o.obj("baseline") else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value, key_span) in tbl.entries() {
        let Some(v) = value.as_str() else {
            ok = false;
            continue;
        };
        match Tolerance::parse(&key, v) {
            Ok(t) => out.push(t),
            Err(e) => {
                value
                    .ctx
                    .error(key_span.or(value.span.clone()), &value.path, e);
                ok = false;
            }
        }
    }
    tbl.finish();
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_parse() {
        assert_eq!(
            Tolerance::parse("ttfe p95", "+10%").unwrap().allowed,
            Allowed::Relative(0.1)
        );
        assert_eq!(
            Tolerance::parse("ttc p99", "+50ms").unwrap().allowed,
            Allowed::AbsoluteUs(50_000.0)
        );
        assert_eq!(
            Tolerance::parse("run_ok rate", "-0.5pp").unwrap().allowed,
            Allowed::PointsDown(0.005)
        );
        for (k, v) in [
            ("ttfe", "+10%"),
            ("ttfe p95", "10%"),
            ("ttfe median", "+1%"),
            ("close_1011 rate", "+5%"),
        ] {
            assert!(Tolerance::parse(k, v).is_err(), "{k} = {v}");
        }
        assert_eq!(Tolerance::defaults().len(), 6);
    }
}
