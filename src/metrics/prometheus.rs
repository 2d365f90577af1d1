//! Live metrics for Grafana: `--metrics-addr` serves the running totals at
//! `/metrics`, the families of `families.rs` (help text on each, classic
//! bucketed latency histograms) encoded with `prometheus-client`, the run's
//! tags as labels on every series.
//!
//! Two formats, by the scraper's `Accept` header: OpenMetrics 1.0 (what
//! Prometheus asks for) or the Prometheus text format 0.0.4 (plain `curl`,
//! `promtool check metrics`). The second is the first with counter
//! descriptors named `<name>_total`, no `# UNIT` and no `# EOF`: the two
//! formats differ only there for these families.
//!
//! Imports: `families`, `buckets`, `recorder`, `auth::redact`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::families::{families, Family, Kind, Live, Value};

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text004,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it, else text 0.0.4.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text004,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A family as `prometheus-client` encodes it.
#[derive(Debug)]
struct Encoded(Family);

impl EncodeMetric for Encoded {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0.rows {
            let mut e = encoder.encode_family(labels)?;
            match (self.0.kind, value) {
                // Every gauge and counter here counts whole things.
                (Kind::Gauge, Value::Number(n)) if n.fract() == 0.0 && n.abs() < 9e15 => {
                    e.encode_gauge(&(*n as i64))?
                }
                // A probe's reading may have a fraction.
                (Kind::Gauge, Value::Number(n)) => e.encode_gauge(n)?,
                (Kind::Counter, Value::Number(n)) => {
                    e.encode_counter::<NoLabelSet, _, f64>(&(*n as u64), None)?
                }
                (Kind::Histogram, Value::Buckets(b)) => {
                    e.encode_histogram::<NoLabelSet>(b.sum_s, b.count, &b.per_bucket(), None)?
                }
                (Kind::Gauge | Kind::Counter, Value::Buckets(_))
                | (Kind::Histogram, Value::Number(_)) => return Err(std::fmt::Error),
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        match self.0.kind {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
            Kind::Histogram => MetricType::Histogram,
        }
    }
}

/// The exposition of everything recorded so far, labelled with `tags`.
pub fn render(live: Live<'_>, tags: &BTreeMap<String, String>, format: Format) -> String {
    let labels = tags
        .iter()
        .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())));
    let mut reg = Registry::with_labels(labels);
    let fams = families(live);
    let counters: Vec<&'static str> = fams
        .iter()
        .filter(|f| f.kind == Kind::Counter)
        .map(|f| f.name)
        .collect();
    for f in fams {
        reg.register(f.name, f.help, Encoded(f));
    }
    let mut out = String::new();
    encode(&mut out, &reg).expect("encoding into a String cannot fail");
    if format == Format::Text004 {
        out = text_004(&out, &counters);
    }
    // Label values can hold a server's text (event names): redacted per scrape.
    crate::auth::redact::redact(&out)
}

/// OpenMetrics text as Prometheus text 0.0.4 (see the module header).
fn text_004(open: &str, counters: &[&str]) -> String {
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;

    fn text(r: &Recorder, format: Format) -> String {
        let none = BTreeMap::new();
        let tags = BTreeMap::from([("testid".to_string(), "nightly-7".to_string())]);
        render(
            Live {
                rec: r,
                users: 3,
                step_tags: &none,
                probes: &[],
            },
            &tags,
            format,
        )
    }

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
        let text = text(&r, Format::OpenMetrics);
        for want in [
            "chatload_users{testid=\"nightly-7\"} 3",
            "chatload_sockets_open{testid=\"nightly-7\"} 2",
            "chatload_runs_total{testid=\"nightly-7\",outcome=\"ok\"} 5",
            "chatload_runs_failed_total{testid=\"nightly-7\",class=\"timeout\"} 1",
            "chatload_runs_failed_total{testid=\"nightly-7\",class=\"flood\"} 0",
            "chatload_closes_total{testid=\"nightly-7\",code=\"1011\"} 1",
            "chatload_closes_total{testid=\"nightly-7\",code=\"1001\"} 0",
            "# TYPE chatload_latency_seconds histogram",
            "chatload_latency_seconds_bucket{testid=\"nightly-7\",le=\"0.01\",metric=\"ttfe\"} 0",
            "chatload_latency_seconds_bucket{testid=\"nightly-7\",le=\"0.025\",metric=\"ttfe\"} 1",
            "chatload_latency_seconds_count{testid=\"nightly-7\",metric=\"ttc\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing `{want}` in\n{text}");
        }
    }

    #[test]
    fn text_004_names_counter_descriptors_with_total_and_has_no_eof() {
        let mut r = Recorder::default();
        r.count("runs.ok", 2);
        let t = text(&r, Format::Text004);
        assert!(t.contains("# TYPE chatload_runs_total counter\n"), "{t}");
        assert!(
            t.contains("# HELP chatload_runs_total Agent runs by outcome."),
            "{t}"
        );
        assert!(t.contains("# TYPE chatload_users gauge\n"), "{t}");
        assert!(!t.contains("# EOF"), "{t}");
        assert_eq!(Format::from_accept(None), Format::Text004);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
