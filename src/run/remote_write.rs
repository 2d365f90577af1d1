//! Prometheus remote write (`--remote-write URL`, `[output] remote_write`):
//! every interval, the live families (`metrics/families.rs`, the same as
//! `/metrics`) as one `WriteRequest` (protobuf, Snappy block-compressed,
//! remote-write 1.0 headers), each series labelled with the run's tags.
//! Run markers a dashboard can show: `chatload_run_marker{event="start"}`
//! when the users start and `{event="end"}` after the last push, both with
//! `run_id`, `scenario` and the tags.
//!
//! The endpoint's host must be loopback or in `target.allow` (the one URL
//! allow check, `scenario/target.rs`). A failed push is counted and said
//! once on stderr; it never stops the run (the reports are the record).
//!
//! Imports: `metrics`, `scenario`, `plan`, `auth::redact`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::families::{families, Kind, Live, Value};
use crate::metrics::ObsSender;
use crate::plan::LoadPlan;
use crate::scenario::Scenario;

/// `prometheus.WriteRequest` (remote write 1.0).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The remote-write host against `target.allow` (loopback always passes).
pub(super) fn check_host(sc: &Scenario) -> Result<(), String> {
    let Some(url) = &sc.live.remote_write else {
        return Ok(());
    };
    if let Some(name) = &sc.live.remote_write_auth_env {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => crate::auth::redact::learn(&v),
            _ => {
                return Err(format!(
                    "remote_write_auth_env names ${name}, which is not set (its value is the remote-write Authorization header)"
                ))
            }
        }
    }
    let host = crate::scenario::target::host_of(url);
    if crate::scenario::target::host_allowed(&host, &sc.target.allow) {
        return Ok(());
    }
    Err(format!(
        "the remote-write host `{host}` is not in the scenario's target.allow list; add it there to push metrics to it"
    ))
}

/// One series: sorted labels (with `__name__`) and a value. Label values
/// can hold a server's text (event names): redacted like `/metrics`.
fn series(name: String, labels: Vec<(String, String)>, value: f64, ts: i64) -> TimeSeries {
    let mut all: BTreeMap<String, String> = labels
        .into_iter()
        .map(|(k, v)| (k, crate::auth::redact::redact(&v)))
        .collect();
    all.insert("__name__".into(), name);
    TimeSeries {
        labels: all
            .into_iter()
            .map(|(name, value)| Label { name, value })
            .collect(),
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
    }
}

/// Every live series at `ts`, labelled with `tags`.
pub fn write_request(live: Live<'_>, tags: &BTreeMap<String, String>, ts: i64) -> WriteRequest {
    let mut out = Vec::new();
    let with = |labels: &[(String, String)], extra: Option<(&str, String)>| {
        let mut l: Vec<(String, String)> = tags.clone().into_iter().collect();
        l.extend(labels.iter().cloned());
        l.extend(extra.map(|(k, v)| (k.to_string(), v)));
        l
    };
    for f in families(live) {
        for (labels, value) in &f.rows {
            match (f.kind, value) {
                (Kind::Gauge, Value::Number(n)) => {
                    out.push(series(f.name.to_string(), with(labels, None), *n, ts))
                }
                (Kind::Counter, Value::Number(n)) => out.push(series(
                    format!("{}_total", f.name),
                    with(labels, None),
                    *n,
                    ts,
                )),
                (Kind::Histogram, Value::Buckets(b)) => {
                    for (le, c) in &b.cumulative {
                        let le = if le.is_infinite() {
                            "+Inf".to_string()
                        } else {
                            le.to_string()
                        };
                        let l = with(labels, Some(("le", le)));
                        out.push(series(format!("{}_bucket", f.name), l, *c as f64, ts));
                    }
                    out.push(series(
                        format!("{}_sum", f.name),
                        with(labels, None),
                        b.sum_s,
                        ts,
                    ));
                    let count = b.count as f64;
                    out.push(series(
                        format!("{}_count", f.name),
                        with(labels, None),
                        count,
                        ts,
                    ));
                }
                (Kind::Gauge | Kind::Counter, Value::Buckets(_))
                | (Kind::Histogram, Value::Number(_)) => {}
            }
        }
    }
    WriteRequest { timeseries: out }
}

/// `chatload_run_marker{event}` at `ts`.
fn marker(event: &str, run: &RunLabels, ts: i64) -> WriteRequest {
    let mut l: Vec<(String, String)> = run.tags.clone().into_iter().collect();
    l.push(("event".into(), event.into()));
    l.push(("run_id".into(), run.run_id.clone()));
    l.push(("scenario".into(), run.scenario.clone()));
    WriteRequest {
        timeseries: vec![series("chatload_run_marker".into(), l, 1.0, ts)],
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What labels a run's pushes.
#[derive(Debug, Clone)]
pub(super) struct RunLabels {
    pub run_id: String,
    pub scenario: String,
    pub tags: BTreeMap<String, String>,
    pub step_tags: BTreeMap<String, BTreeMap<String, String>>,
    /// The latest `[[probe]]` readings (`probe.rs`), pushed as `chatload_probe_value`.
    pub probe_values: super::probe::LatestValues,
}

/// The pusher's state: the endpoint, and whether a failure was said yet.
struct Pusher {
    http: reqwest::Client,
    url: String,
    /// The `Authorization` header's value (`remote_write_auth_env`).
    auth: Option<String>,
    failed: u64,
}

/// How much of a refusing endpoint's answer is read and quoted.
const ERROR_BODY_MAX: usize = 2048;

/// At most [`ERROR_BODY_MAX`] bytes of an answer, redacted whole, then cut
/// on a character boundary (a secret is never cut in two before redaction).
async fn body_excerpt(mut r: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_MAX {
        match r.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            Ok(None) | Err(_) => break,
        }
    }
    let text = crate::auth::redact::redact(String::from_utf8_lossy(&buf).trim());
    let mut end = text.len().min(ERROR_BODY_MAX / 4);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Pusher {
    /// Sends one request; a failure is said once and counted.
    async fn push(&mut self, req: &WriteRequest) {
        let body = match snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()) {
            Ok(b) => b,
            Err(e) => return self.fail(&e.to_string()),
        };
        let mut req_b = self.http.post(&self.url);
        if let Some(a) = &self.auth {
            req_b = req_b.header("Authorization", a);
        }
        let sent = req_b
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                let status = r.status();
                let text = body_excerpt(r).await;
                self.fail(&format!("HTTP {status}: {text}"));
            }
            Err(e) => self.fail(&e.to_string()),
        }
    }

    fn fail(&mut self, why: &str) {
        if self.failed == 0 {
            say_err!("warning: remote write to {} failed ({why}); the run goes on, later failures are counted", crate::auth::redact::redact(&self.url));
        }
        self.failed += 1;
    }
}

/// The running pusher: [`RemoteWriter::finish`] pushes the last values and
/// the end marker.
pub(super) struct RemoteWriter {
    done: oneshot::Sender<()>,
    task: JoinHandle<u64>,
}

impl RemoteWriter {
    /// Starts pushing every `every`, with the start marker first.
    /// `auth` is the `Authorization` header's value, if any.
    pub fn start(
        url: String,
        auth: Option<String>,
        obs: ObsSender,
        plan: LoadPlan,
        t0: Instant,
        every: Duration,
        run: RunLabels,
    ) -> RemoteWriter {
        let (done, mut done_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut p = Pusher {
                // No redirects: a hop could lead off the allow-listed host
                // (and a 307/308 would re-send the body there).
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                url,
                auth,
                failed: 0,
            };
            // Each push later than the one before: a series never gets two
            // samples at one millisecond (Prometheus refuses the second).
            let mut last_ts = now_ms();
            let mut next_ts = move || {
                last_ts = now_ms().max(last_ts + 1);
                last_ts
            };
            p.push(&marker("start", &run, next_ts())).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut done_rx => true,
                };
                let rec = obs.peek().await;
                let probes = super::probe::latest(&run.probe_values);
                let live = Live {
                    rec: &rec,
                    users: if last { 0 } else { plan.users_at(t0.elapsed()) },
                    step_tags: &run.step_tags,
                    probes: &probes,
                };
                p.push(&write_request(live, &run.tags, next_ts())).await;
                if last {
                    p.push(&marker("end", &run, next_ts())).await;
                    return p.failed;
                }
            }
        });
        RemoteWriter { done, task }
    }

    /// Pushes the final values and the end marker (at most 15 s); the
    /// count of failed pushes.
    pub async fn finish(self) -> u64 {
        let _ = self.done.send(());
        match tokio::time::timeout(Duration::from_secs(15), self.task).await {
            Ok(Ok(failed)) => failed,
            Ok(Err(_)) | Err(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;

    #[test]
    fn every_series_has_sorted_labels_a_name_and_the_tags() {
        let mut rec = Recorder::default();
        rec.record("ttfe", 30_000);
        rec.count("runs.ok", 4);
        let tags = BTreeMap::from([("testid".to_string(), "rw-1".to_string())]);
        let none = BTreeMap::new();
        let req = write_request(
            Live {
                rec: &rec,
                users: 2,
                probes: &[],
                step_tags: &none,
            },
            &tags,
            1_000,
        );
        assert!(req.timeseries.len() > 40);
        for s in &req.timeseries {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted);
            assert!(
                names.contains(&"__name__") && names.contains(&"testid"),
                "{names:?}"
            );
            assert_eq!(s.samples[0].timestamp, 1_000);
        }
        let find = |name: &str, extra: &[(&str, &str)]| {
            req.timeseries
                .iter()
                .find(|s| {
                    s.labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == name)
                        && extra
                            .iter()
                            .all(|(k, v)| s.labels.iter().any(|l| l.name == *k && l.value == *v))
                })
                .map(|s| s.samples[0].value)
        };
        assert_eq!(find("chatload_runs_total", &[("outcome", "ok")]), Some(4.0));
        assert_eq!(
            find(
                "chatload_latency_seconds_bucket",
                &[("metric", "ttfe"), ("le", "0.05")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                "chatload_latency_seconds_bucket",
                &[("metric", "ttfe"), ("le", "0.025")]
            ),
            Some(0.0)
        );
        assert_eq!(
            find(
                "chatload_latency_seconds_bucket",
                &[("metric", "ttfe"), ("le", "+Inf")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find("chatload_closes_total", &[("code", "1006")]),
            Some(0.0)
        );
        // Round trip through the wire format.
        let bytes = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let back =
            WriteRequest::decode(&*snap::raw::Decoder::new().decompress_vec(&bytes).unwrap())
                .unwrap();
        assert_eq!(back, req);
    }
}
