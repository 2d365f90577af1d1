//! What a run shows while it runs: the live progress line on stderr and the
//! `/metrics` endpoint (Prometheus text, `--metrics-addr`).
//!
//! Imports: `metrics`, `scenario`, `names`, `units`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::RunError;
use crate::metrics::families::Live;
use crate::metrics::prometheus::Format;
use crate::metrics::ObsSender;
use crate::names;
use crate::plan::{LoadPlan, OpenModel};

/// A live line on stderr: elapsed/total, users, runs/s, ttfe p95 of the last
/// interval, 1011 closes and failed runs. Only started on a terminal.
pub(super) async fn live_progress(
    obs: ObsSender,
    plan: LoadPlan,
    open: Option<OpenModel>,
    t0: Instant,
) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
    );
    let total = plan.total().as_secs();
    let mut last = (0u64, Duration::ZERO);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rec = obs.peek().await;
        let ttfe = obs
            .last_interval()
            .await
            .and_then(|i| i.histograms.get(names::TTFE).map(|h| h.p95_us))
            .map_or_else(|| "-".to_string(), |v| crate::units::format_us(v as f64));
        let ok = rec.counter(names::RUNS_OK);
        let elapsed = t0.elapsed();
        let load = match &open {
            // Open model: the rate asked for now, and arrivals the pool could not take.
            Some(m) => format!(
                "rate {}  dropped {}  late {}",
                m.show_rate(m.rate.rate_at(elapsed.as_secs_f64())),
                rec.counter(names::STARTS_DROPPED),
                rec.counter(names::STARTS_LATE)
            ),
            None => format!(
                "users {}/{}",
                super::live_figures::connected(&rec),
                plan.users_at(elapsed)
            ),
        };
        bar.set_message(format!(
            "{}s/{}s  {load}  runs/s {}  ttfe p95 {}  1011s {}  failed {}",
            elapsed.as_secs(),
            total,
            super::live_figures::per_s(ok - last.0, elapsed.saturating_sub(last.1)).round(),
            ttfe,
            rec.counter("closes.1011"),
            rec.counter(names::RUNS_FAILED)
        ));
        bar.tick();
        last = (ok, elapsed);
    }
}

/// The labels of the live series: the run's tags and the steps' tags.
#[derive(Debug, Clone, Default)]
pub(super) struct LiveLabels {
    pub tags: BTreeMap<String, String>,
    pub step_tags: BTreeMap<String, BTreeMap<String, String>>,
    /// The latest `[[probe]]` readings (`probe.rs`).
    pub probe_values: super::probe::LatestValues,
}

/// The `/metrics` router: the running totals and the users the plan has
/// now, as OpenMetrics or Prometheus text by the `Accept` header.
fn metrics_router(
    obs: ObsSender,
    plan: LoadPlan,
    t0: Instant,
    labels: Arc<LiveLabels>,
) -> axum::Router {
    // The live page: `/` and `/live.json` (live_page.rs).
    let page = super::live_page::router(obs.clone(), plan.clone(), t0);
    axum::Router::new().merge(page).route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let obs = obs.clone();
            let labels = labels.clone();
            let users = plan.users_at(t0.elapsed());
            let format = Format::from_accept(
                headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            async move {
                let rec = obs.peek().await;
                let probes = super::probe::latest(&labels.probe_values);
                let live = Live {
                    rec: &rec,
                    users,
                    probes: &probes,
                    step_tags: &labels.step_tags,
                };
                let body = crate::metrics::prometheus::render(live, &labels.tags, format);
                (
                    [(axum::http::header::CONTENT_TYPE, format.content_type())],
                    body,
                )
            }
        }),
    )
}

/// Serves `/metrics` on `addr` until the task is aborted. Refused (a usage
/// error) when the address cannot be bound.
pub(super) async fn serve_metrics(
    addr: SocketAddr,
    obs: ObsSender,
    plan: LoadPlan,
    t0: Instant,
    labels: Arc<LiveLabels>,
) -> Result<JoinHandle<()>, RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RunError::Usage(format!("cannot serve metrics on {addr}: {e}")))?;
    let app = metrics_router(obs, plan, t0, labels);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}
