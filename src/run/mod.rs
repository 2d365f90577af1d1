//! One run, end to end. [`run`] is a pipeline of named phases:
//!
//! 1. preflight (`preflight.rs`): target and login URLs against
//!    `target.allow`, env placeholders, capacity vs shards, the tokens file;
//!    before any socket.
//! 2. outputs (`outputs.rs`): the run id and output folder.
//! 3. target (`target.rs`): the external URL, or the embedded server with
//!    the scenario's `[server]` table applied to `server::Settings`.
//! 4. clock: wait for `--start-at`, then the interval files and the first
//!    checkpoint (`outputs.rs`).
//! 5. consumers (`consumers.rs`): the live outputs (`live_outputs.rs`:
//!    `/metrics` and the progress line in `live.rs`, plain lines off a
//!    terminal in `progress.rs`, `remote_write.rs`, `raw_results.rs`), the
//!    live page at `/` (`live_page.rs`, `live_figures.rs`), the capacity controller (`capacity.rs`), checkpoints and
//!    stop signals (`checkpoint.rs`), the `abort_on_fail` watcher, fail
//!    fast (`fail_fast.rs`).
//! 6. engine: `engine::execute` drives the users, while `probe.rs` reads the
//!    target's own numbers (`[[probe]]`); after the users, the `after_close`
//!    reads.
//! 7. judge (`ending.rs`): notes on how the run ended, then the one judge
//!    (`metrics/judge.rs`) and the baseline.
//! 8. write (`outputs.rs`): snapshot, samples, history, every report.
//!
//! The CLI's `run` and the integration tests both call [`run`]; nothing here
//! prints except through the `progress` flag and warnings.
//!
//! Imports: `engine`, `report`, `server`, `metrics`, `scenario`, `plan`,
//! `auth`, `names`, `units`, `outcome`; never `cli`.

mod capacity;
mod checkpoint;
mod consumers;
mod ending;
mod fail_fast;
mod generator_health;
mod live;
mod live_figures;
mod live_outputs;
mod live_page;
mod outputs;
pub mod preflight;
mod probe;
mod probe_read;
mod progress;
mod raw_results;
mod remote_write;
mod resources;
mod safety;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::auth::Secret;
use crate::engine::{self, EngineConfig};
use crate::metrics::snapshot::Snapshot;
use crate::metrics::Collector;
use crate::report::ReportData;
use crate::scenario::Scenario;

pub use checkpoint::{write_atomic, STOP_SIGNALS};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Refused before anything was sent (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Could not run at all (exit 3).
    #[error("{0}")]
    Aborted(String),
}

/// A run to perform, fully resolved (the CLI resolves secrets and overrides).
pub struct RunRequest {
    pub scenario: Scenario,
    /// `None`: the scenario's `target.url`, else the embedded server.
    pub target: Option<String>,
    pub secret: Secret,
    pub seed: u64,
    /// Exact output folder; `None`: `<scenario output dir>/<run id>`.
    pub out: Option<PathBuf>,
    /// Write goose's own HTML report too.
    pub goose_report: bool,
    /// A previous run to compare with (regressions fail the run).
    pub baseline: Option<Snapshot>,
    /// Show a live progress line on stderr (only when it is a terminal).
    pub progress: bool,
    /// This process's slice of the users.
    pub shard: crate::plan::Shard,
    /// Wait until this time before starting users (so shards start together).
    pub start_at: Option<chrono::DateTime<Utc>>,
    /// Serve live metrics in the Prometheus text format at `http://ADDR/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Append the finished run to this SQLite history (see `chatload trend`).
    pub history: Option<PathBuf>,
}

/// What a run produced.
pub struct RunResult {
    pub snapshot: Snapshot,
    pub out_dir: PathBuf,
    pub report: ReportData,
}

impl RunResult {
    /// The verdict's exit code (`outcome.rs`).
    pub fn exit_code(&self) -> u8 {
        self.snapshot.verdict.exit_code()
    }
}

/// Performs one run and writes `snapshot.json`, `report.md` (and goose's report).
pub async fn run(mut req: RunRequest) -> Result<RunResult, RunError> {
    let checked = preflight::check(&req)?;
    // After the preflight: it teaches the redactor the login body's secrets.
    redact_tags(&mut req.scenario);
    let out = outputs::prepare(&req)?;
    let target =
        target::Target::start(checked.external, &req.scenario, &req.secret, req.seed).await?;
    let clock = Clock::start(req.start_at).await;
    let collector = outputs::collector(&req, &out)?;
    let template = outputs::first_checkpoint(&req, &out, &target, clock.started_at)?;
    let mut consumers = consumers::start(&req, &collector, &template, &out, clock.t0).await?;
    let probing = probe::Probing::start(
        &req.scenario,
        template.probes.clone(),
        &target.url,
        collector.sender(),
        clock.t0,
        &out.dir,
        consumers.live.probe_values.clone(),
    )?;
    let engine = drive(
        &req,
        checked.tokens,
        &target,
        &out,
        &mut consumers,
        &collector,
    )
    .await;
    // The users are done; after_close rules read the target once more after their wait.
    let probes = match probing {
        Some(p) => {
            let wait = crate::scenario::probe_rules::ProbeRule::after_close_wait(
                &req.scenario.probe_rules,
            );
            Some(p.finish(wait).await)
        }
        None => None,
    };
    let stopped = consumers.stop().await;
    let collected = collector.finish().await;
    let elapsed = clock.t0.elapsed();
    let ended_at = Utc::now();
    let ended = ending::Ended {
        rec: collected.total,
        intervals: collected.intervals,
        elapsed,
        ended_at,
        server_truth: target.finish().await,
        cpu_before: clock.cpu_before,
        engine,
        stopped,
        probes,
    };
    let snapshot = ending::judge(&req, &template, ended);
    let report = outputs::write(&req, &out, &snapshot)?;
    Ok(RunResult {
        snapshot,
        out_dir: out.dir,
        report,
    })
}

/// Tag values that match a secret are redacted once, before any output
/// (`/metrics`, remote write, the raw stream) sees them.
fn redact_tags(sc: &mut Scenario) {
    let redact = |tags: &mut std::collections::BTreeMap<String, String>| {
        for v in tags.values_mut() {
            *v = crate::auth::redact::redact(v);
        }
    };
    redact(&mut sc.tags);
    for j in &mut sc.journeys {
        crate::scenario::Step::walk_mut(&mut j.steps, &mut |s| redact(&mut s.tags));
    }
}

/// When the users started, by the wall clock, the monotonic clock and the
/// process's CPU time.
struct Clock {
    t0: Instant,
    started_at: chrono::DateTime<Utc>,
    cpu_before: generator_health::CpuStart,
}

impl Clock {
    /// Waits for `start_at` (so shards start together), then starts.
    async fn start(start_at: Option<chrono::DateTime<Utc>>) -> Clock {
        if let Some(at) = start_at {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
        }
        let cpu_before = generator_health::CpuStart::now();
        let started_at = Utc::now();
        Clock {
            t0: Instant::now(),
            started_at,
            cpu_before,
        }
    }
}

/// Drives the users to the end of the plan (or a stop); a shard without
/// users drives none.
async fn drive(
    req: &RunRequest,
    tokens: Option<Arc<Vec<Secret>>>,
    target: &target::Target,
    out: &outputs::Outputs,
    consumers: &mut consumers::Consumers,
    collector: &Collector,
) -> Result<(), engine::EngineError> {
    let started = consumers.started.take().expect("the engine starts once");
    let cfg = EngineConfig {
        scenario: req.scenario.clone(),
        target_url: target.url.clone(),
        secret: req.secret.clone(),
        seed: req.seed,
        goose_report: (req.goose_report && req.scenario.goose_report)
            .then(|| out.dir.join("goose-report.html")),
        shard: req.shard,
        started: Arc::new(started),
        tokens,
        stop: consumers.stop.clone(),
        raw: consumers.live.raw.as_ref().map(|w| w.sink()),
    };
    if req.scenario.workload.plan.shard(req.shard).peak_users() == 0 {
        return Ok(());
    }
    engine::execute(cfg, collector.sender()).await
}
