//! The live page at `/` on the metrics address (beside `/metrics`): one
//! self-contained HTML page (`live_page.html`, inline CSS and script, no
//! external asset) that polls `/live.json` once a second and redraws its
//! numbers and charts. `/live.json` holds the latest [`Figures`] (the
//! progress line's numbers, read once a second by a task that ends with the
//! server) and the run's closed intervals as series: ttfe p50/p95/p99 and
//! ok/failed runs per second.
//!
//! Imports: `metrics`, `plan`, `names` (and `live_figures.rs`).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{json, Value};

use super::live_figures::{self, Figures};
use crate::metrics::snapshot::IntervalData;
use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;

const PAGE: &str = include_str!("live_page.html");

/// What the page's requests share: the collector and the latest figures.
struct Live {
    obs: ObsSender,
    figures: Mutex<Figures>,
}

/// The routes `/` and `/live.json`, merged into the metrics router.
pub(super) fn router(obs: ObsSender, plan: LoadPlan, t0: Instant) -> axum::Router {
    let live = Arc::new(Live {
        obs,
        figures: Mutex::new(Figures::default()),
    });
    tokio::spawn(read_every_second(Arc::downgrade(&live), plan, t0));
    axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/live.json",
            get(move || {
                let live = live.clone();
                async move { axum::Json(snapshot(&live).await).into_response() }
            }),
        )
}

/// Reads the figures once a second, as the progress line does, until the
/// server (and so every strong reference to `live`) is gone.
async fn read_every_second(live: Weak<Live>, plan: LoadPlan, t0: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut prev_ok = 0;
    loop {
        tick.tick().await;
        let Some(l) = live.upgrade() else {
            return;
        };
        let f = live_figures::read(&l.obs, &plan, t0, prev_ok).await;
        prev_ok = f.runs_ok;
        *l.figures.lock().expect("not poisoned") = f;
    }
}

/// The latest figures and the closed intervals' series.
async fn snapshot(live: &Live) -> Value {
    let figures = live.figures.lock().expect("not poisoned").clone();
    let intervals = live.obs.peek_all().await.intervals;
    json!({ "figures": figures, "series": series(&intervals) })
}

/// Per closed interval: its end (s), ttfe p50/p95/p99 (µs, null without
/// data), ok and failed runs per second.
fn series(intervals: &[IntervalData]) -> Value {
    let col = |f: &dyn Fn(&IntervalData) -> Value| -> Value {
        Value::Array(intervals.iter().map(f).collect())
    };
    let ttfe = |q: fn(&crate::metrics::snapshot::HistogramData) -> u64| {
        col(&|i| {
            i.histograms
                .get(names::TTFE)
                .map_or(Value::Null, |h| json!(q(h)))
        })
    };
    let per_s = |k: &'static str| {
        col(&move |i| {
            let n = i.counters.get(k).copied().unwrap_or(0) as f64;
            json!(n / i.length_s.max(1e-3))
        })
    };
    json!({
        "t": col(&|i| json!(i.start_s + i.length_s)),
        "ttfe_p50_us": ttfe(|h| h.p50_us),
        "ttfe_p95_us": ttfe(|h| h.p95_us),
        "ttfe_p99_us": ttfe(|h| h.p99_us),
        "ok_per_s": per_s(names::RUNS_OK),
        "failed_per_s": per_s(names::RUNS_FAILED),
    })
}
