//! The live page at `/` on the metrics address (beside `/metrics`): one
//! self-contained HTML page (`live_page.html`, inline CSS and script, no
//! external asset) that polls `/live.json` once a second and redraws its
//! numbers and charts. `/live.json` holds the latest [`Figures`] (the
//! progress line's numbers) and the run's closed intervals as series: ttfe
//! p50/p95/p99 and ok/failed runs per second, with `computed_at_ms` (ms
//! since the run began) saying when. One task, ending with the server,
//! computes that document once a second and keeps it serialized; a request
//! is answered with the kept bytes and never reaches the collector, so any
//! number of clients cost the run nothing extra.
//!
//! Imports: `metrics`, `plan`, `names` (and `live_figures.rs`).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{json, Value};

use super::live_figures::{self, Figures};
use crate::metrics::collector::MAX_KEPT_INTERVALS;
use crate::metrics::snapshot::IntervalData;
use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;

const PAGE: &str = include_str!("live_page.html");

/// What the page's requests share: the latest `/live.json`, serialized.
struct Live {
    json: Mutex<Bytes>,
}

/// The routes `/` and `/live.json`, merged into the metrics router.
pub(super) fn router(obs: ObsSender, plan: LoadPlan, t0: Instant) -> axum::Router {
    let first = document(&Figures::default(), &[], 0);
    let live = Arc::new(Live {
        json: Mutex::new(first),
    });
    tokio::spawn(read_every_second(Arc::downgrade(&live), obs, plan, t0));
    axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/live.json",
            get(move || {
                let body = live.json.lock().expect("not poisoned").clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
            }),
        )
}

/// Computes the document once a second, as the progress line reads its
/// figures, until the server (and so every strong reference to `live`) is
/// gone. The series is kept here, a few numbers per interval, from the
/// intervals the collector closed since the last reading: the collector
/// itself keeps the whole list on disk, not in the heap.
async fn read_every_second(live: Weak<Live>, obs: ObsSender, plan: LoadPlan, t0: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prev = (0, Duration::ZERO);
    let mut rows: Vec<Row> = Vec::new();
    let mut seen = 0u64;
    loop {
        tick.tick().await;
        if live.strong_count() == 0 {
            return;
        }
        let elapsed = t0.elapsed();
        let f = live_figures::read(&obs, &plan, t0, prev).await;
        prev = (f.runs_ok, elapsed);
        let closed = obs.intervals_since(seen).await;
        seen = closed.count;
        for i in &closed.recent {
            rows.push(Row::of(i));
            if rows.len() > MAX_KEPT_INTERVALS {
                rows = rows.chunks(2).map(Row::merged).collect();
            }
        }
        let doc = document(&f, &rows, t0.elapsed().as_millis() as u64);
        let Some(l) = live.upgrade() else {
            return;
        };
        *l.json.lock().expect("not poisoned") = doc;
    }
}

/// One closed interval as the page charts it.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Its end, seconds since the run began.
    end_s: f64,
    length_s: f64,
    /// ttfe p50, p95, p99 (µs; `None` without data).
    ttfe: [Option<u64>; 3],
    ok: u64,
    failed: u64,
}

impl Row {
    fn of(i: &IntervalData) -> Row {
        let h = i.histograms.get(names::TTFE);
        let n = |k: &str| i.counters.get(k).copied().unwrap_or(0);
        Row {
            end_s: i.start_s + i.length_s,
            length_s: i.length_s,
            ttfe: [
                h.map(|h| h.p50_us),
                h.map(|h| h.p95_us),
                h.map(|h| h.p99_us),
            ],
            ok: n(names::RUNS_OK),
            failed: n(names::RUNS_FAILED),
        }
    }

    /// Neighbours merged, as a long run's series halves its resolution:
    /// counts add, and each percentile is the higher of the two (the page
    /// keeps no histograms, so a merged percentile is an upper bound).
    fn merged(pair: &[Row]) -> Row {
        let (a, b) = (pair[0], *pair.last().expect("chunks are never empty"));
        if pair.len() == 1 {
            return a;
        }
        Row {
            end_s: b.end_s,
            length_s: a.length_s + b.length_s,
            ttfe: std::array::from_fn(|k| a.ttfe[k].max(b.ttfe[k])),
            ok: a.ok + b.ok,
            failed: a.failed + b.failed,
        }
    }
}

/// `/live.json`: the figures, the closed intervals' series, and when.
fn document(figures: &Figures, rows: &[Row], computed_at_ms: u64) -> Bytes {
    let v = json!({
        "figures": figures,
        "series": series(rows),
        "computed_at_ms": computed_at_ms,
    });
    Bytes::from(serde_json::to_vec(&v).expect("JSON values serialize"))
}

/// Per closed interval: its end (s), ttfe p50/p95/p99 (µs, null without
/// data), ok and failed runs per second.
fn series(rows: &[Row]) -> Value {
    let col = |f: &dyn Fn(&Row) -> Value| -> Value { Value::Array(rows.iter().map(f).collect()) };
    let ttfe = |k: usize| col(&|r| r.ttfe[k].map_or(Value::Null, |v| json!(v)));
    let per_s = |n: fn(&Row) -> u64| col(&|r| json!(n(r) as f64 / r.length_s.max(1e-3)));
    json!({
        "t": col(&|r| json!(r.end_s)),
        "ttfe_p50_us": ttfe(0),
        "ttfe_p95_us": ttfe(1),
        "ttfe_p99_us": ttfe(2),
        "ok_per_s": per_s(|r| r.ok),
        "failed_per_s": per_s(|r| r.failed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many clients at once read the one document of the second (at most
    /// two, when a tick falls among them), byte for byte: none of them
    /// made the server read the collector.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_client_gets_the_one_document_of_the_second() {
        let collector = crate::metrics::Collector::start();
        let obs = collector.sender();
        obs.count_n(names::RUNS_OK, 3);
        let plan =
            LoadPlan::from_ramp(&[crate::plan::RampStep::Hold(Duration::from_secs(5))], None);
        let app = router(obs, plan, Instant::now());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = reqwest::Client::new();
        let url = format!("http://{at}/live.json");
        // The first reading holds the count (a condition, polled).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
            if v["figures"]["runs_ok"] == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "no reading: {v}");
            tokio::task::yield_now().await;
        }
        let gets = (0..32).map(|_| {
            let (c, u) = (client.clone(), url.clone());
            tokio::spawn(async move { c.get(u).send().await.unwrap().bytes().await.unwrap() })
        });
        let mut bodies = std::collections::BTreeMap::new();
        for g in gets {
            let b = g.await.unwrap();
            let v: Value = serde_json::from_slice(&b).unwrap();
            let at = v["computed_at_ms"].as_u64().expect("computed_at_ms");
            let prev = bodies.insert(at, b.clone());
            assert!(prev.is_none_or(|p| p == b), "one document per reading");
        }
        assert!(
            (1..=2).contains(&bodies.len()),
            "32 clients read {} documents: {:?}",
            bodies.len(),
            bodies.keys()
        );
        drop(collector);
    }
}
