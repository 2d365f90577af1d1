//! Live metrics for Grafana: `--metrics-addr` serves the running totals in the
//! Prometheus/OpenMetrics text format at `/metrics`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `chatload_users` | gauge | planned users now |
//! | `chatload_sockets_open` | gauge | ready sockets not yet closed |
//! | `chatload_runs_total` | counter | `outcome` = ok, failed |
//! | `chatload_runs_failed_total` | counter | `class` |
//! | `chatload_closes_total` | counter | `code` |
//! | `chatload_violations_total` | counter | `class` |
//! | `chatload_events_total` | counter | `name` |
//! | `chatload_latency_seconds` | gauge | `metric` (ttfe, ttc, ws_connect, ...), `quantile` (0.5, 0.95, 0.99): whole run so far |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Recorder;
use crate::names;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Class {
    class: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    name: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Quantile {
    metric: String,
    quantile: String,
}

/// The exposition of everything recorded so far.
pub fn render(rec: &Recorder, users: u64) -> String {
    let mut reg = Registry::default();
    let g_users = Gauge::<i64>::default();
    g_users.set(users as i64);
    reg.register("chatload_users", "Users the load plan wants now", g_users);
    let ready = rec.counter(names::CONN_READY);
    // Every ready socket that ended, whoever ended it (closes before ready,
    // which `closes.*` also counts, never were open).
    let closed = rec.counter(names::CONN_CLOSED);
    let open = Gauge::<i64>::default();
    open.set(ready.saturating_sub(closed) as i64);
    reg.register(
        "chatload_sockets_open",
        "Ready sockets not yet closed",
        open,
    );

    let runs = Family::<Outcome, Counter>::default();
    runs.get_or_create(&Outcome {
        outcome: "ok".into(),
    })
    .inc_by(rec.counter(names::RUNS_OK));
    runs.get_or_create(&Outcome {
        outcome: "failed".into(),
    })
    .inc_by(rec.counter(names::RUNS_FAILED));
    reg.register("chatload_runs", "Agent runs by outcome", runs);
    register_by_class(&mut reg, rec);
    register_latency(&mut reg, rec);
    let mut out = String::new();
    encode(&mut out, &reg).expect("encoding into a String cannot fail");
    // Label values can hold a server's text (event names): redacted per scrape.
    crate::auth::redact::redact(&out)
}

/// The counter families by class, code or name (failed runs, closes,
/// violations, events).
fn register_by_class(reg: &mut Registry, rec: &Recorder) {
    let by = |prefix: &str| -> Vec<(String, u64)> {
        rec.counters
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .filter(|rest| !rest.contains('.'))
                    .map(|rest| (rest.to_string(), *v))
            })
            .collect()
    };
    let failed = Family::<Class, Counter>::default();
    for (class, n) in by("runs.failed.") {
        failed.get_or_create(&Class { class }).inc_by(n);
    }
    reg.register("chatload_runs_failed", "Failed runs by class", failed);
    let closes = Family::<Code, Counter>::default();
    for (code, n) in by("closes.") {
        closes.get_or_create(&Code { code }).inc_by(n);
    }
    reg.register(
        "chatload_closes",
        "WebSocket closes seen by the client, by code (1006: no close frame)",
        closes,
    );
    let violations = Family::<Class, Counter>::default();
    for (class, n) in by("violations.") {
        violations.get_or_create(&Class { class }).inc_by(n);
    }
    reg.register(
        "chatload_violations",
        "Protocol violations by class",
        violations,
    );
    let events = Family::<Name, Counter>::default();
    for (name, n) in by("events.") {
        events.get_or_create(&Name { name }).inc_by(n);
    }
    reg.register("chatload_events", "Agent events received, by name", events);
}

/// Latency quantiles of every recorded metric, in seconds.
fn register_latency(reg: &mut Registry, rec: &Recorder) {
    let lat = Family::<Quantile, Gauge<f64, AtomicU64>>::default();
    for (metric, h) in &rec.histograms {
        if h.is_empty() {
            continue;
        }
        for q in [0.5, 0.95, 0.99] {
            lat.get_or_create(&Quantile {
                metric: metric.clone(),
                quantile: q.to_string(),
            })
            .set(h.value_at_quantile(q) as f64 / 1e6);
        }
    }
    reg.register(
        "chatload_latency_seconds",
        "Latency quantiles of the run so far, by metric",
        lat,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_holds_every_family() {
        let mut r = Recorder::default();
        r.record("ttfe", 12_000);
        r.count("runs.ok", 5);
        r.count("runs.failed", 1);
        r.count("runs.failed.timeout", 1);
        r.count("closes.1011", 1);
        r.count("connections.ready", 3);
        r.count("connections.closed", 1);
        // A close before ready never was an open socket.
        r.count("closes.1008", 1);
        let text = render(&r, 3);
        for want in [
            "chatload_users 3",
            "chatload_sockets_open 2",
            "chatload_runs_total{outcome=\"ok\"} 5",
            "chatload_runs_failed_total{class=\"timeout\"} 1",
            "chatload_closes_total{code=\"1011\"} 1",
            "chatload_latency_seconds{metric=\"ttfe\",quantile=\"0.95\"} 0.012",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing `{want}` in\n{text}");
        }
    }
}
