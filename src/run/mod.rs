//! One run, end to end: resolve the target, start the embedded server when there
//! is none, drive the engine, judge thresholds, write the artifacts.
//!
//! The CLI's `run` and the integration tests both call [`run`]; nothing here
//! prints except through the `progress` flag.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use crate::auth::Secret;
use crate::engine::{self, EngineConfig};
use crate::metrics::snapshot::{IntervalData, Snapshot, TargetInfo, ToolInfo, FORMAT_VERSION};
use crate::metrics::{Collector, Recorder};
use crate::names;
use crate::outcome::Verdict;
use crate::report::{self, render, Format, ReportData};
use crate::scenario::Scenario;
use crate::server::{self, Settings};

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

fn new_run_id(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // The time says when; the suffix keeps two runs started in the same second apart.
    format!(
        "{safe}-{}-{:04x}",
        Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u16>()
    )
}

fn server_config(sc: &Scenario, secret: &Secret, seed: u64) -> Settings {
    let mut c = Settings::new(secret.clone());
    c.seed = sc.server.seed.unwrap_or(seed);
    c.envelope = sc.server.envelope;
    c.ready = sc.server.ready;
    c.naming = sc.server.naming.clone();
    c.thinking = sc.server.thinking;
    c.tools = sc.server.tools;
    c.event_delay = sc.server.event_delay;
    c.slowdown_per_minute = sc.server.slowdown_per_minute;
    c.faults = sc.server.faults.clone();
    c.capacity = sc.server.capacity;
    c.stall = sc.server.stall;
    c.login_lifetime = sc.server.login_lifetime;
    c.heartbeat = sc.server.heartbeat;
    c.enforce_expiry = sc.server.enforce_token_expiry;
    c
}

/// Explains a run in which no socket ever became ready.
fn explain_no_ready(rec: &Recorder) -> String {
    let mut parts = Vec::new();
    for (k, v) in &rec.counters {
        if let Some(code) = k.strip_prefix("closes_by_phase.before_ready.") {
            parts.push(format!(
                "{v} closed with {} before ready",
                report::close_label(code)
            ));
        } else if let Some(st) = k.strip_prefix("connections.rejected.") {
            parts.push(format!("{v} upgrades refused with HTTP {st}"));
        } else if let Some(kind) = k.strip_prefix("connections.failed.") {
            parts.push(format!("{v} connects failed ({kind})"));
        } else if let Some(code) = k.strip_prefix("frames.server_error.") {
            parts.push(format!("{v} server error frames `{code}`"));
        }
    }
    let t = rec.counter(names::CONN_READY_TIMEOUT);
    if t > 0 {
        parts.push(format!("{t} ready timeouts"));
    }
    let hint = if rec.counter("closes_by_phase.before_ready.1008") > 0 {
        " — 1008 after an AUTH_FAILED frame means the server rejected the token: check the signing key variable (auth.secret_env) and the claims"
    } else {
        ""
    };
    format!(
        "aborted: no connection became ready ({} attempted: {}){hint}",
        rec.counter(names::CONN_ATTEMPTED),
        if parts.is_empty() {
            "no details".to_string()
        } else {
            parts.join(", ")
        }
    )
}

/// Stop signals (SIGINT, SIGTERM) received by this process; the CLI's handler
/// counts them, the run in progress drains on the first and flushes and exits
/// on the second.
pub static STOP_SIGNALS: AtomicU32 = AtomicU32::new(0);

const CHECKPOINT_NOTE: &str =
    "incomplete: this is a checkpoint of a run in progress (or of a run that was killed); render it with `chatload report`";

/// Writes a file so that a reader (or a crash) sees either the old or the new
/// content, never a torn one: temp file, fsync, rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A snapshot of `template` filled with recorded data.
fn fill(
    template: &Snapshot,
    rec: &Recorder,
    intervals: &[IntervalData],
    elapsed: Duration,
) -> Snapshot {
    let mut s = template.clone();
    s.histograms = Snapshot::histograms_from(rec);
    s.counters = rec.counters.clone();
    s.samples = rec.samples.clone();
    s.intervals = intervals.to_vec();
    s.duration_s = elapsed.as_secs_f64();
    s.ended_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    s
}

/// What a checkpoint judges: the thresholds, and a capacity search's steps so far.
struct Judging {
    thresholds: Vec<crate::metrics::threshold::Threshold>,
    /// The plan, whether it is the open model, and the steps judged so far.
    capacity: Option<(crate::scenario::CapacitySearch, bool, StepLog)>,
}

/// Rewrites `snapshot.json` every `period` with everything recorded so far, and
/// acts on stop signals: the first stops the users (they drain), the second
/// writes a last checkpoint and exits at once with code 3.
async fn checkpoint_loop(
    obs: crate::metrics::ObsSender,
    template: Snapshot,
    judging: Judging,
    path: std::path::PathBuf,
    period: Duration,
    t0: Instant,
    signals_at_start: u32,
    stop: engine::StopHandle,
) {
    let Judging {
        thresholds,
        capacity,
    } = judging;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last = Instant::now();
    let mut stopping = false;
    loop {
        tick.tick().await;
        let signals = STOP_SIGNALS
            .load(Ordering::SeqCst)
            .saturating_sub(signals_at_start);
        if signals >= 1 && !stopping {
            stopping = true;
            say_err!("stop signal: users stop after their current step; in-flight runs drain (a second signal exits at once)");
            engine::stop_early(&stop, "stop signal");
        }
        if signals >= 2 || last.elapsed() >= period {
            let all = obs.peek_all().await;
            let mut s = fill(&template, &all.total, &all.intervals, t0.elapsed());
            s.thresholds =
                crate::metrics::threshold::judge_all(&thresholds, &all.total, &all.intervals);
            s.capacity = capacity
                .as_ref()
                .map(|(cap, open, log)| capacity_result(cap, *open, log));
            if signals >= 2 {
                s.notes.push(
                    "aborted: a second stop signal exited at once after this checkpoint".into(),
                );
                let _ = write_atomic(&path, s.to_json().as_bytes());
                say_err!(
                    "second stop signal: exited; {} holds everything recorded",
                    path.display()
                );
                // No stdout_guard::finish: exiting at once must not wait on
                // a stdout reader that stopped reading.
                std::process::exit(i32::from(crate::outcome::exit::ABORTED));
            }
            if let Err(e) = write_atomic(&path, s.to_json().as_bytes()) {
                say_err!("warning: checkpoint {} failed: {e}", path.display());
            }
            last = Instant::now();
        }
    }
}

/// CPU seconds (user + system) this process has used, on Linux.
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

fn generator_health(
    cpu_before: Option<f64>,
    elapsed: Duration,
    rec: &Recorder,
) -> crate::metrics::snapshot::GeneratorHealth {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let cpu_s = process_cpu_s().zip(cpu_before).map(|(a, b)| a - b);
    let send_lag_p99_us = rec
        .histograms
        .get(names::SEND_LAG)
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(0.99));
    let busy = cpu_s.is_some_and(|c| {
        elapsed.as_secs_f64() > 5.0 && c > 0.85 * cores as f64 * elapsed.as_secs_f64()
    });
    let late = send_lag_p99_us.is_some_and(|l| l > 50_000);
    crate::metrics::snapshot::GeneratorHealth {
        cpu_s,
        cores,
        send_lag_p99_us,
        saturated: busy || late,
    }
}

/// The open model's arrivals that did not start on time: the target was
/// offered less load than the plan, which no latency figure shows.
fn not_offered_note(rec: &Recorder, open: Option<&crate::scenario::OpenModel>) -> Option<String> {
    let open = open?;
    let intended = rec.counter(names::STARTS_INTENDED);
    let dropped = rec.counter(names::STARTS_DROPPED);
    let late = rec.counter(names::STARTS_LATE);
    if intended == 0 || dropped + late == 0 {
        return None;
    }
    let pct = |n: u64| n as f64 * 100.0 / intended as f64;
    Some(format!(
        "the session pool ({} sessions) was full: {dropped} of {intended} arrivals dropped ({:.1}%) and {late} late ({:.1}%), so the target was offered less than the plan; raise workload.max_users, or gate on \"starts.dropped count\" = \"== 0\"",
        open.max_users,
        pct(dropped),
        pct(late)
    ))
}

/// Judges `abort_on_fail` thresholds on the running data once a second; on the
/// first breach after its grace period, stops the users and says why.
async fn watch_thresholds(
    obs: crate::metrics::ObsSender,
    rules: Vec<crate::metrics::threshold::Threshold>,
    t0: Instant,
    stop: engine::StopHandle,
) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let elapsed = t0.elapsed();
        let rec = obs.peek().await;
        for t in rules.iter().filter(|t| elapsed >= t.grace) {
            if let Some(v) = t.breached_while_running(&rec) {
                let why = format!(
                    "stopped early at {}s: `{}` failed on the running data (measured {}) and has abort_on_fail",
                    elapsed.as_secs(),
                    v.threshold,
                    v.observed_text
                );
                engine::stop_early(&stop, &why);
                return Some(why);
            }
        }
    }
}

/// Completed capacity steps, shared by the controller, checkpoints and the end of the run.
type StepLog = Arc<std::sync::Mutex<Vec<crate::metrics::capacity::StepResult>>>;

/// A capacity search's clock: marks each step's measured part (after its
/// warm-up) as a collector phase, judges the step against the SLOs when it
/// ends, and stops the load at the first step that breaks one. Returns when
/// every step is judged, or when `done` says the engine has ended (a step
/// whose measured window was cut short by a stop is not judged; one that
/// ended as the engine did is).
async fn capacity_controller(
    obs: crate::metrics::ObsSender,
    search: crate::scenario::CapacitySearch,
    open_model: bool,
    mut started: tokio::sync::watch::Receiver<Option<Instant>>,
    log: StepLog,
    mut done: tokio::sync::oneshot::Receiver<()>,
    stop: engine::StopHandle,
) {
    let cap = &search.plan;
    let epoch = loop {
        if let Some(t) = *started.borrow_and_update() {
            break t;
        }
        tokio::select! {
            r = started.changed() => if r.is_err() { return },
            _ = &mut done => return,
        }
    };
    // The engine ends a plan on its clock, so its end and the last step's may
    // land together: a step that was that close to its end is judged.
    const END_SLACK: Duration = Duration::from_millis(250);
    let mut engine_done = false;
    for step in cap.steps() {
        let at = |s: u64| tokio::time::Instant::from_std(epoch + Duration::from_secs(s));
        if engine_done {
            return;
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.measure_s)) => {}
            _ = &mut done => return,
        }
        let total = obs.peek().await;
        let sockets_at_start = total
            .counter(names::CONN_READY)
            .saturating_sub(total.counter(names::CONN_CLOSED));
        obs.phase(Some(step.index));
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(at(step.end_s)) => {}
            _ = &mut done => {
                engine_done = true;
                if tokio::time::Instant::now() + END_SLACK < at(step.end_s) {
                    obs.phase(None);
                    return;
                }
            }
        }
        obs.phase(None);
        let rec = obs.peek_phase(step.index).await;
        let r = crate::metrics::capacity::judge_step(
            &step,
            cap.show_load(step.load),
            &search.slo,
            &rec,
            crate::metrics::capacity::StepContext {
                sockets_at_start,
                open_model,
            },
        );
        let held = r.held;
        let why = r
            .slo
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("`{}` (measured {})", v.threshold, v.observed_text))
            .collect::<Vec<_>>()
            .join(", ");
        log.lock().unwrap_or_else(|e| e.into_inner()).push(r);
        if !held {
            engine::stop_early(
                &stop,
                &format!(
                    "capacity search: step {} ({}) broke {why}",
                    step.index,
                    cap.show_load(step.load)
                ),
            );
            return;
        }
    }
}

/// The capacity section from the steps judged so far.
fn capacity_result(
    search: &crate::scenario::CapacitySearch,
    open: bool,
    log: &StepLog,
) -> crate::metrics::capacity::CapacityResult {
    let cap = &search.plan;
    let steps = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    crate::metrics::capacity::conclude(
        steps,
        cap.steps().len(),
        if open { "arrivals_per_s" } else { "users" },
        &search.slo,
        cap.target.map(|t| (t, cap.show_load(t))),
    )
}

/// A live line on stderr: elapsed/total, users, runs/s, ttfe p95 of the last
/// interval, 1011 closes and failed runs. Only started on a terminal.
async fn live_progress(
    obs: crate::metrics::ObsSender,
    plan: crate::scenario::LoadPlan,
    open: Option<crate::scenario::OpenModel>,
    t0: Instant,
) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
    );
    let total = plan.total().as_secs();
    let mut last_ok = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
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
            None => format!("users {}", plan.users_at(elapsed)),
        };
        bar.set_message(format!(
            "{}s/{}s  {load}  runs/s {}  ttfe p95 {}  1011s {}  failed {}",
            elapsed.as_secs(),
            total,
            ok - last_ok,
            ttfe,
            rec.counter("closes.1011"),
            rec.counter(names::RUNS_FAILED)
        ));
        bar.tick();
        last_ok = ok;
    }
}

/// Reads `auth.tokens_file` (file source): one token per line, blank lines
/// and `#` comments skipped. Refused before any socket opens when there are
/// fewer tokens than users and `reuse_tokens` is off. Tokens are secrets:
/// messages name the file and counts, never a token.
fn load_tokens(sc: &Scenario) -> Result<Option<Arc<Vec<Secret>>>, RunError> {
    let crate::scenario::TokenSource::File { path, reuse } = &sc.auth.source else {
        return Ok(None);
    };
    let path = if path.is_relative() {
        sc.file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(path)
    } else {
        path.clone()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        RunError::Usage(format!(
            "cannot read the tokens file {}: {e}",
            path.display()
        ))
    })?;
    let tokens: Vec<Secret> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect();
    let users = match &sc.workload.open {
        Some(m) => m.max_users,
        None => sc.workload.plan.peak_users(),
    } as usize;
    if tokens.is_empty() {
        return Err(RunError::Usage(format!(
            "the tokens file {} has no tokens",
            path.display()
        )));
    }
    if tokens.len() < users && !reuse {
        return Err(RunError::Usage(format!(
            "the tokens file {} has {} tokens for {users} users; add tokens, or set auth.reuse_tokens = true to let users share them",
            path.display(),
            tokens.len()
        )));
    }
    Ok(Some(Arc::new(tokens)))
}

/// Performs one run and writes `snapshot.json`, `report.md` (and goose's report).
pub async fn run(req: RunRequest) -> Result<RunResult, RunError> {
    let sc = req.scenario;
    let external = req.target.clone().or_else(|| sc.target.url.clone());
    if let Some(url) = &external {
        crate::scenario::check_ws_url(url).map_err(RunError::Usage)?;
        let host = crate::scenario::target::host_of(url);
        if !crate::scenario::target::host_allowed(&host, &sc.target.allow) {
            return Err(RunError::Usage(format!(
                "target host `{host}` is not in the scenario's target.allow list ({}); add it there to load this target",
                if sc.target.allow.is_empty() { "empty: only loopback is allowed".to_string() } else { sc.target.allow.join(", ") }
            )));
        }
    }
    // A login endpoint given as a full address is loaded too: the same
    // allow list guards it.
    if let crate::scenario::TokenSource::Login { url, .. } = &sc.auth.source {
        if !url.starts_with('/') {
            let host = crate::scenario::target::host_of(url);
            if !crate::scenario::target::host_allowed(&host, &sc.target.allow) {
                return Err(RunError::Usage(format!(
                    "the login endpoint's host `{host}` is not in the scenario's target.allow list; add it there to log users in at it"
                )));
            }
        }
    }
    // `{{env.NAME}}` in the login body: a variable that is not set would log
    // every user in with an empty value. (Its value is never printed.)
    let unset: Vec<String> = sc
        .env_placeholders()
        .into_iter()
        .filter(|n| std::env::var_os(n).is_none())
        .collect();
    if !unset.is_empty() {
        return Err(RunError::Usage(format!(
            "the scenario reads ${} from the environment ({{{{env.NAME}}}} in [auth.login] body), and it is not set; export it before the run",
            unset.join(", $")
        )));
    }
    if sc.workload.capacity.is_some() && req.shard.count > 1 {
        return Err(RunError::Usage(
            "a capacity search runs in one process: the decision to stop at a step needs the whole load's data (remove --shard/--shards, or give this machine more of the load)".into(),
        ));
    }
    let tokens = load_tokens(&sc)?;
    let run_id = new_run_id(&sc.name);
    let out_dir = req
        .out
        .clone()
        .unwrap_or_else(|| sc.output_dir.join(&run_id));
    // Fail on a bad output path in the first second, not after the run.
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        RunError::Usage(format!(
            "cannot create the output folder {}: {e}",
            out_dir.display()
        ))
    })?;
    let snapshot_path = out_dir.join("snapshot.json");

    let embedded = match &external {
        Some(_) => None,
        None => {
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
            let srv = server::spawn(server_config(&sc, &req.secret, req.seed), addr)
                .await
                .map_err(|e| {
                    RunError::Aborted(format!("cannot start the embedded reference server: {e}"))
                })?;
            Some(srv)
        }
    };
    let target_url = match (&external, &embedded) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.ws_url(),
        (None, None) => unreachable!("either a target or the embedded server"),
    };

    if let Some(at) = req.start_at {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
    }
    let cpu_before = process_cpu_s();
    let started_at = Utc::now();
    let t0 = Instant::now();
    let mut files =
        crate::metrics::interval_log::IntervalFiles::create(&out_dir, std::time::SystemTime::now())
            .map_err(|e| {
                RunError::Usage(format!(
                    "cannot write the interval files in {}: {e}",
                    out_dir.display()
                ))
            })?;
    let sink: crate::metrics::collector::IntervalSink = Box::new(move |i| {
        if let Err(e) = files.append(i) {
            say_err!("warning: cannot append to the interval files: {e}");
        }
    });
    let collector = Collector::with_sink(sc.interval, Some(sink));
    let shard_users = sc.workload.plan.shard(req.shard).peak_users();
    let template = Snapshot {
        format_version: FORMAT_VERSION.into(),
        tool: ToolInfo {
            name: "chatload".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        run_id: run_id.clone(),
        scenario_name: sc.name.clone(),
        scenario: sc.echo.clone(),
        seed: req.seed,
        target: TargetInfo {
            url: target_url.clone(),
            embedded: external.is_none(),
        },
        started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ended_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_s: 0.0,
        users: shard_users,
        histograms: Default::default(),
        counters: Default::default(),
        thresholds: Vec::new(),
        verdict: Verdict::Incomplete,
        notes: vec![CHECKPOINT_NOTE.into()],
        samples: Vec::new(),
        baseline: None,
        shard: (req.shard.count > 1).then_some(req.shard),
        generator: None,
        shards: Vec::new(),
        intervals: Vec::new(),
        server_truth: None,
        capacity: None,
    };
    // The first checkpoint doubles as the check that the output folder is writable.
    write_atomic(&snapshot_path, template.to_json().as_bytes())
        .map_err(|e| RunError::Usage(format!("cannot write {}: {e}", snapshot_path.display())))?;
    let signals_at_start = STOP_SIGNALS.load(Ordering::SeqCst);
    let metrics_server = match req.metrics_addr {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| RunError::Usage(format!("cannot serve metrics on {addr}: {e}")))?;
            let obs = collector.sender();
            let plan = sc.workload.plan.shard(req.shard);
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let obs = obs.clone();
                    let users = plan.users_at(t0.elapsed());
                    async move {
                        let body = crate::metrics::prometheus::render(&obs.peek().await, users);
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                    }
                }),
            );
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        }
    };
    let stop: engine::StopHandle = Arc::default();
    let step_log: StepLog = Arc::default();
    let (started_tx, started_rx) = tokio::sync::watch::channel(None);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let capacity = sc
        .workload
        .capacity
        .clone()
        .map(|cap| (cap, sc.workload.open.is_some(), step_log.clone()));
    let controller = capacity.as_ref().map(|(cap, open, log)| {
        tokio::spawn(capacity_controller(
            collector.sender(),
            cap.clone(),
            *open,
            started_rx.clone(),
            log.clone(),
            done_rx,
            stop.clone(),
        ))
    });
    let checkpoints = tokio::spawn(checkpoint_loop(
        collector.sender(),
        template.clone(),
        Judging {
            thresholds: sc.thresholds.clone(),
            capacity: capacity.clone(),
        },
        snapshot_path.clone(),
        sc.checkpoint,
        t0,
        signals_at_start,
        stop.clone(),
    ));
    let cfg = EngineConfig {
        scenario: sc.clone(),
        target_url: target_url.clone(),
        secret: req.secret.clone(),
        seed: req.seed,
        goose_report: req.goose_report.then(|| out_dir.join("goose-report.html")),
        shard: req.shard,
        started: Arc::new(started_tx),
        tokens,
        stop: stop.clone(),
    };
    let progress = (req.progress && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(live_progress(
            collector.sender(),
            sc.workload.plan.clone(),
            sc.workload.open.clone(),
            t0,
        ))
    });
    let aborts: Vec<_> = sc
        .thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .cloned()
        .collect();
    let watcher = (!aborts.is_empty()).then(|| {
        tokio::spawn(watch_thresholds(
            collector.sender(),
            aborts,
            t0,
            stop.clone(),
        ))
    });
    let engine_result = if shard_users == 0 {
        Ok(())
    } else {
        engine::execute(cfg, collector.sender()).await
    };
    let _ = done_tx.send(());
    if let Some(c) = controller {
        let _ = c.await;
    }
    drop(started_rx);
    let aborted_by = match watcher {
        Some(w) => {
            w.abort();
            w.await.ok().flatten()
        }
        None => None,
    };
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    checkpoints.abort();
    let _ = checkpoints.await;
    if let Some(m) = metrics_server {
        m.abort();
        let _ = m.await;
    }
    let signalled = STOP_SIGNALS.load(Ordering::SeqCst) > signals_at_start;
    let collected = collector.finish().await;
    let rec = collected.total;
    let intervals = collected.intervals;
    let elapsed = t0.elapsed();
    let ended_at = Utc::now();

    let server_truth = match embedded {
        Some(srv) => {
            let truth = srv.truth();
            srv.shutdown().await;
            serde_json::to_value(truth).ok()
        }
        None => None,
    };

    let mut notes = Vec::new();
    if shard_users == 0 {
        notes.push(format!(
            "shard {}/{} has no users: the plan's users are fewer than the shards",
            req.shard.index, req.shard.count
        ));
    }
    let generator = generator_health(cpu_before, elapsed, &rec);
    if generator.saturated {
        notes.push(format!(
            "the generator may have been the bottleneck (CPU {:.1} s over {:.0} s on {} cores, send lag p99 {}); results may understate the target",
            generator.cpu_s.unwrap_or(0.0),
            elapsed.as_secs_f64(),
            generator.cores,
            generator.send_lag_p99_us.map_or("n/a".to_string(), |v| crate::units::format_us(v as f64))
        ));
    }
    if let Some(note) = not_offered_note(&rec, sc.workload.open.as_ref()) {
        notes.push(note);
    }
    let mut verdict;
    let thresholds = crate::metrics::threshold::judge_all(&sc.thresholds, &rec, &intervals);
    verdict = Verdict::Pass.fail_if(!thresholds.iter().all(|v| v.passed));
    if let Some(why) = aborted_by {
        notes.push(why);
    }
    let signals = STOP_SIGNALS
        .load(Ordering::SeqCst)
        .saturating_sub(signals_at_start);
    if signals >= 2 {
        // The second signal came while the drain was ending, before the
        // checkpoint loop could act on it: the drain is done, so the reports
        // are written now, which is as fast as exiting.
        notes.push("aborted: a second stop signal arrived as the drain ended; every report holds everything recorded".into());
        verdict = Verdict::Aborted;
    } else if signalled {
        if sc.workload.on_signal_ends {
            notes.push("ended early by a stop signal (workload.on_signal = \"end\": judged as a normal end)".into());
        } else {
            notes.push("aborted: stopped by a signal (SIGINT or SIGTERM); in-flight runs were drained and every report written".into());
            verdict = Verdict::Aborted;
        }
    }
    if let Err(e) = &engine_result {
        notes.push(format!("aborted: {e}"));
        verdict = Verdict::Aborted;
    } else if rec.counter(names::CONN_READY) == 0
        && rec.counter(names::CONN_ATTEMPTED) > 0
        && shard_users > 0
    {
        notes.push(explain_no_ready(&rec));
        verdict = Verdict::Aborted;
    }
    let capacity_section = capacity
        .as_ref()
        .map(|(cap, open, log)| capacity_result(cap, *open, log));
    if let Some(c) = &capacity_section {
        verdict = verdict.fail_if(!c.passed());
    }
    let mut snapshot = fill(&template, &rec, &intervals, elapsed);
    snapshot.capacity = capacity_section;
    snapshot.thresholds = thresholds;
    snapshot.verdict = verdict;
    snapshot.notes = notes;
    snapshot.generator = Some(generator);
    snapshot.server_truth = server_truth;
    snapshot.ended_at = ended_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    if let Some(base) = &req.baseline {
        let tolerances = if sc.baseline.is_empty() {
            crate::scenario::baseline::Tolerance::defaults()
        } else {
            sc.baseline.clone()
        };
        match crate::metrics::compare::compare(base, &snapshot, &tolerances) {
            Ok(c) => {
                snapshot.verdict = snapshot.verdict.fail_if(c.regressed);
                if c.regressed {
                    snapshot
                        .notes
                        .push(format!("regression against baseline {}", c.base_run));
                }
                snapshot.baseline = Some(c);
            }
            Err(e) => snapshot
                .notes
                .push(format!("the baseline could not be compared: {e}")),
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        let p = out_dir.join(name);
        std::fs::write(&p, bytes)
            .map_err(|e| RunError::Aborted(format!("cannot write {}: {e}", p.display())))
    };
    write_atomic(&snapshot_path, snapshot.to_json().as_bytes())
        .map_err(|e| RunError::Aborted(format!("cannot write {}: {e}", snapshot_path.display())))?;
    if !snapshot.samples.is_empty() {
        let lines: String = snapshot
            .samples
            .iter()
            .map(|f| serde_json::to_string(f).expect("a sample serializes") + "\n")
            .collect();
        write("violations.jsonl", lines.as_bytes())?;
    }
    if let Some(h) = &req.history {
        if let Err(e) = crate::report::history::append(h, &snapshot) {
            say_err!("warning: {e}");
        }
    }
    let report = ReportData::from_snapshot(&snapshot);
    // The snapshot (JSON) is written above, with the checkpoints.
    for format in Format::ALL.into_iter().filter(|f| *f != Format::Json) {
        write(format.file_name(), &render(&report, &snapshot, format))?;
    }
    Ok(RunResult {
        snapshot,
        out_dir,
        report,
    })
}
