//! Taking a probe's values out of its answer: JSON by pointer, Prometheus
//! text by metric name and labels (parsed with `prometheus-parse`). Pure.
//!
//! Imports `scenario::probe` (the selectors).

use std::collections::BTreeMap;

use crate::scenario::probe::{ProbeFormat, ProbeValue, Selector};

/// Why an answer gave no values, or some values are missing.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ReadError {
    /// The answer is not JSON / not Prometheus text.
    Parse(String),
    /// These values were not in it (or not numbers); the others were read.
    Missing(Vec<String>),
}

/// A JSON value as a number: numbers, booleans (1/0) and numeric strings.
fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn prometheus_number(v: &prometheus_parse::Value) -> Option<f64> {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => Some(*x).filter(|x| x.is_finite()),
        prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => None,
    }
}

/// The values of `wanted` found in `body`, and the error, if any.
pub(super) fn read_values(
    format: ProbeFormat,
    body: &str,
    wanted: &[ProbeValue],
) -> (BTreeMap<String, f64>, Option<ReadError>) {
    let mut found = BTreeMap::new();
    match format {
        ProbeFormat::Json => {
            let doc: serde_json::Value = match serde_json::from_str(body) {
                Ok(d) => d,
                Err(e) => return (found, Some(ReadError::Parse(format!("not JSON: {e}")))),
            };
            for w in wanted {
                let Selector::Pointer(p) = &w.select else {
                    continue;
                };
                if let Some(x) = doc.pointer(p).and_then(json_number) {
                    found.insert(w.name.clone(), x);
                }
            }
        }
        ProbeFormat::Prometheus => {
            let lines = body.lines().map(|l| Ok(l.to_string()));
            let scrape = match prometheus_parse::Scrape::parse(lines) {
                Ok(s) => s,
                Err(e) => {
                    return (
                        found,
                        Some(ReadError::Parse(format!("not Prometheus text: {e}"))),
                    )
                }
            };
            if scrape.samples.is_empty() && !body.trim().is_empty() {
                let why = "no Prometheus samples in the answer (not the text exposition format?)";
                return (found, Some(ReadError::Parse(why.into())));
            }
            for w in wanted {
                let Selector::Metric { name, labels } = &w.select else {
                    continue;
                };
                let matching: Vec<f64> = scrape
                    .samples
                    .iter()
                    .filter(|s| &s.metric == name)
                    .filter(|s| {
                        labels
                            .iter()
                            .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
                    })
                    .filter_map(|s| prometheus_number(&s.value))
                    .collect();
                // A sum that overflows (two samples of 1e308) is no number.
                let sum: f64 = matching.iter().sum();
                if !matching.is_empty() && sum.is_finite() {
                    found.insert(w.name.clone(), sum);
                }
            }
        }
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !found.contains_key(&w.name))
        .map(|w| w.name.clone())
        .collect();
    let err = (!missing.is_empty()).then_some(ReadError::Missing(missing));
    (found, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::probe::parse_metric_selector;

    fn value(name: &str, select: Selector) -> ProbeValue {
        ProbeValue {
            name: name.into(),
            select,
        }
    }

    #[test]
    fn json_by_pointer() {
        let body = r#"{"active_connections": 87, "manager": {"connections": "202"}, "up": true}"#;
        let wanted = [
            value("a", Selector::Pointer("/active_connections".into())),
            value("m", Selector::Pointer("/manager/connections".into())),
            value("up", Selector::Pointer("/up".into())),
            value("gone", Selector::Pointer("/nope".into())),
        ];
        let (v, err) = read_values(ProbeFormat::Json, body, &wanted);
        assert_eq!(v["a"], 87.0);
        assert_eq!(v["m"], 202.0);
        assert_eq!(v["up"], 1.0);
        assert_eq!(err, Some(ReadError::Missing(vec!["gone".into()])));
        let (_, err) = read_values(ProbeFormat::Json, "<html>", &wanted);
        assert!(matches!(err, Some(ReadError::Parse(_))));
        let (_, err) = read_values(
            ProbeFormat::Prometheus,
            "<html><body>hi</body></html>",
            &wanted,
        );
        assert!(matches!(err, Some(ReadError::Parse(_))), "{err:?}");
    }

    #[test]
    fn prometheus_by_name_and_labels() {
        let body = "# HELP conns Connections.\n# TYPE conns gauge\nconns{state=\"open\"} 12\nconns{state=\"active\"} 15\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 3.5e+07\n";
        let wanted = [
            value(
                "open",
                parse_metric_selector(r#"conns{state="open"}"#).unwrap(),
            ),
            value("all", parse_metric_selector("conns").unwrap()),
            value(
                "rss",
                parse_metric_selector("process_resident_memory_bytes").unwrap(),
            ),
        ];
        let (v, err) = read_values(ProbeFormat::Prometheus, body, &wanted);
        assert_eq!(err, None);
        assert_eq!(v["open"], 12.0);
        assert_eq!(v["all"], 27.0);
        assert_eq!(v["rss"], 35_000_000.0);
        // Two samples of 1e308 sum to infinity: no number, so missing.
        let huge = "x{a=\"1\"} 1e308\nx{a=\"2\"} 1e308\n";
        let wanted = [value("x", parse_metric_selector("x").unwrap())];
        let (v, err) = read_values(ProbeFormat::Prometheus, huge, &wanted);
        assert!(v.is_empty());
        assert_eq!(err, Some(ReadError::Missing(vec!["x".into()])));
    }
}
