//! The live metric families, built once from a running [`Recorder`] and
//! shared by both live outputs: `/metrics` (`prometheus.rs` encodes them
//! with `prometheus-client`) and Prometheus remote write (`run/remote_write.rs`
//! flattens them into samples). One list, so a scrape and a push never
//! disagree on a name, a label or a value.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `chatload_users` | gauge | planned users now |
//! | `chatload_sockets_open` | gauge | ready sockets not yet closed |
//! | `chatload_runs_total` | counter | `outcome` = ok, failed |
//! | `chatload_runs_failed_total` | counter | `class`: every class of `names::RUN_FAILURES` and `names::VIOLATIONS` from the start |
//! | `chatload_closes_total` | counter | `code`: 1000, 1001, 1006, 1008, 1011 from the start, others when seen |
//! | `chatload_violations_total` | counter | `class`: every class of `names::VIOLATIONS` from the start |
//! | `chatload_connect_failures_total` | counter | `kind`: every kind of `names::CONNECT_FAILURES` from the start |
//! | `chatload_events_total` | counter | `name` |
//! | `chatload_generator_events_total` | counter | `kind` = starts_dropped, starts_late, histogram_clamped, local_error: the load generator's own trouble |
//! | `chatload_latency_seconds` | histogram | `metric` (ttfe, ttc, ws_connect, ws_ready from the start; others when recorded) and a step's tags |
//!
//! The run's tags label every series (the caller adds them); a step's tags
//! label the latency series of the metric that step records.
//!
//! Imports: `recorder`, `buckets`, `names`.

use std::collections::BTreeMap;

use super::buckets::Buckets;
use super::Recorder;
use crate::names;

/// Label pairs, in order.
pub type Labels = Vec<(String, String)>;

/// Close codes shown from the start (others appear when seen).
pub const CLOSE_CODES: &[&str] = &["1000", "1001", "1006", "1008", "1011"];
/// Latency metrics shown from the start, empty until recorded.
pub const LATENCY_FROM_START: &[&str] =
    &[names::WS_CONNECT, names::WS_READY, names::TTFE, names::TTC];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Its samples are named `<name>_total`.
    Counter,
    /// Its samples are `<name>_bucket`, `_sum`, `_count`.
    Histogram,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Buckets(Buckets),
}

/// One metric family.
#[derive(Debug, Clone)]
pub struct Family {
    /// Without the `_total` of a counter.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub rows: Vec<(Labels, Value)>,
}

/// What the live outputs show besides the recorder.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    pub rec: &'a Recorder,
    /// The users the plan wants now.
    pub users: u64,
    /// Tags of the steps that record a metric, by metric name.
    pub step_tags: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The latest reading of every `[[probe]]` value: (probe, value, number).
    pub probes: &'a [(String, String, f64)],
}

fn one(k: &str, v: impl Into<String>) -> Labels {
    vec![(k.to_string(), v.into())]
}

fn number(n: u64) -> Value {
    Value::Number(n as f64)
}

/// Counter values under `prefix` (one level deep), with `fixed` present at 0.
fn by_prefix(rec: &Recorder, prefix: &str, fixed: &[&str]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = fixed.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, v) in &rec.counters {
        if let Some(rest) = k.strip_prefix(prefix).filter(|r| !r.contains('.')) {
            *out.entry(rest.to_string()).or_insert(0) += v;
        }
    }
    out
}

fn counter_family(
    name: &'static str,
    help: &'static str,
    label: &str,
    values: BTreeMap<String, u64>,
) -> Family {
    Family {
        name,
        help,
        kind: Kind::Counter,
        rows: values
            .into_iter()
            .map(|(k, v)| (one(label, k), number(v)))
            .collect(),
    }
}

/// Every family, in a fixed order.
pub fn families(live: Live<'_>) -> Vec<Family> {
    let rec = live.rec;
    let ready = rec.counter(names::CONN_READY);
    // Every ready socket that ended, whoever ended it (closes before ready,
    // which `closes.*` also counts, never were open).
    let closed = rec.counter(names::CONN_CLOSED);
    let failures: Vec<&str> = names::RUN_FAILURES
        .iter()
        .chain(names::VIOLATIONS)
        .copied()
        .collect();
    let mut out = vec![
        Family {
            name: "chatload_users",
            help: "Users the load plan wants now",
            kind: Kind::Gauge,
            rows: vec![(Vec::new(), number(live.users))],
        },
        Family {
            name: "chatload_sockets_open",
            help: "Ready sockets not yet closed",
            kind: Kind::Gauge,
            rows: vec![(Vec::new(), number(ready.saturating_sub(closed)))],
        },
        Family {
            name: "chatload_runs",
            help: "Agent runs by outcome",
            kind: Kind::Counter,
            rows: vec![
                (one("outcome", "ok"), number(rec.counter(names::RUNS_OK))),
                (
                    one("outcome", "failed"),
                    number(rec.counter(names::RUNS_FAILED)),
                ),
            ],
        },
        counter_family(
            "chatload_runs_failed",
            "Failed runs by class",
            "class",
            by_prefix(rec, "runs.failed.", &failures),
        ),
        counter_family(
            "chatload_closes",
            "WebSocket closes seen by the client, by code (1006: no close frame)",
            "code",
            by_prefix(rec, "closes.", CLOSE_CODES),
        ),
        counter_family(
            "chatload_violations",
            "Protocol violations by class",
            "class",
            by_prefix(rec, "violations.", names::VIOLATIONS),
        ),
        counter_family(
            "chatload_connect_failures",
            "Connects that failed below HTTP, by kind",
            "kind",
            by_prefix(rec, "connections.failed.", names::CONNECT_FAILURES),
        ),
        counter_family(
            "chatload_events",
            "Agent events received, by name",
            "name",
            by_prefix(rec, "events.", &[]),
        ),
        generator(rec),
    ];
    out.push(latency(live));
    out.extend(probes(live));
    out
}

/// The target's own numbers (`[[probe]]`): the latest reading of each
/// value, and the reads by outcome (every failure kind from the start).
/// Absent when the run has no probes.
fn probes(live: Live<'_>) -> Vec<Family> {
    let rec = live.rec;
    if live.probes.is_empty()
        && rec.counter(names::PROBES_OK) + rec.counter(names::PROBES_FAILED) == 0
    {
        return Vec::new();
    }
    let mut reads = by_prefix(rec, "probes.failed.", names::PROBE_FAILURES);
    reads.insert("ok".to_string(), rec.counter(names::PROBES_OK));
    vec![
        Family {
            name: "chatload_probe_value",
            help: "The latest reading of a [[probe]] value: the target's own number",
            kind: Kind::Gauge,
            rows: live
                .probes
                .iter()
                .map(|(p, v, x)| {
                    let labels = vec![
                        ("probe".to_string(), p.clone()),
                        ("value".to_string(), v.clone()),
                    ];
                    (labels, Value::Number(*x))
                })
                .collect(),
        },
        counter_family(
            "chatload_probe_reads",
            "Reads of [[probe]] URLs, by outcome (ok, or the kind of failure)",
            "outcome",
            reads,
        ),
    ]
}

/// The load generator's own trouble: arrivals it could not start (or
/// started late), values beyond the recorders' range, local errors
/// (out of fds or ports).
fn generator(rec: &Recorder) -> Family {
    let local: u64 = by_prefix(rec, "connections.local_error.", &[])
        .values()
        .sum();
    let values = BTreeMap::from([
        (
            "starts_dropped".to_string(),
            rec.counter(names::STARTS_DROPPED),
        ),
        ("starts_late".to_string(), rec.counter(names::STARTS_LATE)),
        (
            "histogram_clamped".to_string(),
            rec.counter(names::HISTOGRAM_CLAMPED),
        ),
        ("local_error".to_string(), local),
    ]);
    counter_family(
        "chatload_generator_events",
        "The load generator's own trouble: arrivals dropped or late, clamped values, local errors",
        "kind",
        values,
    )
}

/// Latency of every recorded metric, as classic buckets.
fn latency(live: Live<'_>) -> Family {
    let mut rows: BTreeMap<&str, Buckets> = LATENCY_FROM_START
        .iter()
        .map(|m| (*m, Buckets::empty()))
        .collect();
    // A histogram allocated ahead (the collector's rare ones) is not a
    // series until it has a sample.
    for (metric, h) in live.rec.histograms.iter().filter(|(_, h)| !h.is_empty()) {
        rows.insert(metric.as_str(), Buckets::of(h));
    }
    Family {
        name: "chatload_latency_seconds",
        help: "Latency of the run so far, by metric (buckets: README.md)",
        kind: Kind::Histogram,
        rows: rows
            .into_iter()
            .map(|(metric, b)| {
                let mut labels = one("metric", metric);
                if let Some(tags) = live.step_tags.get(metric) {
                    labels.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                (labels, Value::Buckets(b))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enumerated_class_and_close_code_is_there_at_zero() {
        let rec = Recorder::default();
        let none = BTreeMap::new();
        let fams = families(Live {
            rec: &rec,
            users: 0,
            step_tags: &none,
            probes: &[],
        });
        let rows = |name: &str| -> Vec<String> {
            fams.iter()
                .find(|f| f.name == name)
                .unwrap()
                .rows
                .iter()
                .map(|(l, v)| {
                    assert!(
                        matches!(v, Value::Number(n) if *n == 0.0),
                        "{name} {l:?} {v:?}"
                    );
                    l[0].1.clone()
                })
                .collect()
        };
        let failed = rows("chatload_runs_failed");
        for c in names::RUN_FAILURES.iter().chain(names::VIOLATIONS) {
            assert!(failed.contains(&c.to_string()), "{c}");
        }
        assert_eq!(rows("chatload_closes"), CLOSE_CODES);
        assert_eq!(rows("chatload_violations").len(), names::VIOLATIONS.len());
        assert_eq!(
            rows("chatload_connect_failures").len(),
            names::CONNECT_FAILURES.len()
        );
    }

    #[test]
    fn a_step_tag_labels_its_metric_only() {
        let mut rec = Recorder::default();
        rec.record("login_flow", 1_000);
        rec.count("closes.4000", 2);
        let tags = BTreeMap::from([(
            "login_flow".to_string(),
            BTreeMap::from([("phase".to_string(), "auth".to_string())]),
        )]);
        let fams = families(Live {
            rec: &rec,
            users: 1,
            probes: &[],
            step_tags: &tags,
        });
        let lat = fams.last().unwrap();
        let step = lat
            .rows
            .iter()
            .find(|(l, _)| l[0].1 == "login_flow")
            .unwrap();
        assert_eq!(step.0[1], ("phase".into(), "auth".into()));
        let ttfe = lat.rows.iter().find(|(l, _)| l[0].1 == "ttfe").unwrap();
        assert_eq!(ttfe.0.len(), 1);
        let closes = fams.iter().find(|f| f.name == "chatload_closes").unwrap();
        assert!(closes
            .rows
            .iter()
            .any(|(l, v)| l[0].1 == "4000" && *v == Value::Number(2.0)));
    }
}
