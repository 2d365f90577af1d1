//! The live outputs of a run, started and stopped together: `/metrics`
//! (`live.rs`), the progress line (`live.rs` on a terminal, `progress.rs`
//! off one), Prometheus remote write (`remote_write.rs`) and the
//! raw-results stream (`raw_results.rs`). A bad metrics address or output
//! folder is refused here, before the users start.
//!
//! Imports: `metrics`, `scenario`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::outputs::Outputs;
use super::raw_results::{RawSummary, RawWriter};
use super::remote_write::{RemoteWriter, RunLabels};
use super::{live, RunError, RunRequest};
use crate::metrics::Collector;

/// The running live outputs.
pub(super) struct LiveOutputs {
    metrics_server: Option<JoinHandle<()>>,
    progress: Option<JoinHandle<()>>,
    remote: Option<RemoteWriter>,
    /// The raw-results stream, when asked for (the engine takes its sink).
    pub raw: Option<RawWriter>,
    /// The latest `[[probe]]` readings, shown on `/metrics`.
    pub probe_values: super::probe::LatestValues,
}

/// How the live outputs ended.
pub(super) struct LiveEnded {
    pub remote_write_failures: u64,
    pub raw: Option<RawSummary>,
}

impl LiveOutputs {
    /// Starts every live output the run asks for.
    pub async fn start(
        req: &RunRequest,
        collector: &Collector,
        out: &Outputs,
        t0: Instant,
    ) -> Result<LiveOutputs, RunError> {
        let sc = &req.scenario;
        let plan = sc.workload.plan.shard(req.shard);
        let probe_values = super::probe::LatestValues::default();
        let metrics_server = match req.metrics_addr {
            None => None,
            Some(addr) => {
                let labels = Arc::new(live::LiveLabels {
                    tags: sc.tags.clone(),
                    step_tags: sc.metric_tags(),
                    probe_values: probe_values.clone(),
                });
                let obs = collector.sender();
                Some(live::serve_metrics(addr, obs, plan.clone(), t0, labels).await?)
            }
        };
        let raw = if sc.live.raw_results {
            Some(RawWriter::start(&out.dir, sc.tags.clone(), sc.step_tags())?)
        } else {
            None
        };
        let progress = req.progress.then(|| {
            if std::io::stderr().is_terminal() {
                tokio::spawn(live::live_progress(
                    collector.sender(),
                    sc.workload.plan.clone(),
                    sc.workload.open().cloned(),
                    t0,
                ))
            } else {
                let every = sc.live.progress_every.unwrap_or(sc.interval_or_default());
                let obs = collector.sender();
                tokio::spawn(super::progress::plain_progress(
                    obs,
                    plan.clone(),
                    t0,
                    every,
                ))
            }
        });
        let remote = sc.live.remote_write.clone().map(|url| {
            let run = RunLabels {
                run_id: out.run_id.clone(),
                scenario: sc.name.clone(),
                tags: sc.tags.clone(),
                step_tags: sc.metric_tags(),
                probe_values: probe_values.clone(),
            };
            let auth = sc
                .live
                .remote_write_auth_env
                .as_ref()
                .and_then(|n| std::env::var(n).ok());
            RemoteWriter::start(
                url,
                auth,
                collector.sender(),
                plan,
                t0,
                sc.interval_or_default(),
                run,
            )
        });
        Ok(LiveOutputs {
            metrics_server,
            progress,
            remote,
            raw,
            probe_values,
        })
    }

    /// Stops them once the engine ended: the raw stream writes what is
    /// queued, remote write pushes the last values and the end marker.
    pub async fn stop(self) -> LiveEnded {
        if let Some(p) = self.progress {
            p.abort();
            let _ = p.await;
        }
        let raw = match self.raw {
            Some(w) => Some(w.finish().await),
            None => None,
        };
        let remote_write_failures = match self.remote {
            Some(r) => r.finish().await,
            None => 0,
        };
        if let Some(m) = self.metrics_server {
            m.abort();
            let _ = m.await;
        }
        LiveEnded {
            remote_write_failures,
            raw,
        }
    }
}
