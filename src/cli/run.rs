//! `chatload run`: resolve overrides and secrets, run, print the summary, exit.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{Secret, EMBEDDED_DEV_SECRET};
use crate::metrics::Snapshot;
use crate::plan::Shard;
use crate::report;
use crate::run::{RunError, RunRequest};
use crate::scenario::Scenario;
use crate::units::parse_duration;

use super::exit;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// WebSocket URL to load (ws:// or wss://); its host must be in target.allow.
    /// Without it (and without target.url in the file) the embedded server is started.
    #[arg(long)]
    pub target: Option<String>,
    /// Peak users: every ramp stage is scaled to it.
    #[arg(long)]
    pub users: Option<u64>,
    /// Length of the hold stage, e.g. 30s, 10m, 2h.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Output folder (default: <output.dir>/<run id>, output.dir defaulting to reports/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed for client-side randomness and the embedded server's fault plan.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run shard I of N (0-based), e.g. 0/3: its share of the users, with
    /// disjoint identities. Merge the shards' snapshots with `chatload merge`.
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Number of shards when the index comes from JOB_COMPLETION_INDEX (a
    /// Kubernetes Indexed Job); ignored with --shard.
    #[arg(long, env = "CHATLOAD_SHARDS")]
    pub shards: Option<u32>,
    /// Start the users at this time (RFC 3339, e.g. 2026-11-25T10:00:00Z), so
    /// that shards on several machines ramp together.
    #[arg(long)]
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Serve live metrics in the Prometheus text format at http://ADDR/metrics
    /// during the run, e.g. 127.0.0.1:9464. The same address serves a live
    /// page for a browser at http://ADDR/ and its figures at /live.json.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Append the finished run's key figures to this SQLite file (created if
    /// missing); `chatload trend FILE` renders them across runs.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// A previous run's snapshot.json to compare with; a regression beyond the
    /// scenario's [baseline] tolerances fails the run (exit 1).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Print only the verdict line and the report folder (no live progress).
    #[arg(long, short)]
    pub quiet: bool,
    /// Tag the run, e.g. --tag testid=nightly-42 (repeatable; wins over the
    /// scenario's [tags]): a label on every live series, kept in the
    /// snapshot, every report and the history.
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = crate::scenario::tags::parse_flag)]
    pub tags: Vec<(String, String)>,
    /// Push the live metrics every interval to this Prometheus remote-write
    /// URL (e.g. http://127.0.0.1:9090/api/v1/write); its host must be
    /// loopback or in target.allow. Same as [output] remote_write.
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// The environment variable whose value is the remote-write requests'
    /// Authorization header (e.g. "Basic dXNlcjpwYXNz" or "Bearer abc");
    /// redacted everywhere. Same as [output] remote_write_auth_env.
    #[arg(long, value_name = "NAME")]
    pub remote_write_auth_env: Option<String>,
    /// Stream one JSON line per finished run to runs.jsonl in the output
    /// folder as the run goes. Same as [output] raw_results = true.
    #[arg(long)]
    pub raw_results: bool,
}

/// Counts SIGINT and SIGTERM for the run in progress (see `crate::run::STOP_SIGNALS`).
/// Installed before goose starts, so goose's own Ctrl-C handler stands aside.
fn install_stop_signals() {
    use std::sync::atomic::Ordering;
    let r = ctrlc::set_handler(|| {
        let n = crate::run::STOP_SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
        // The run acts on the first two within 100 ms; a third means it is stuck.
        if n >= 3 {
            // No stdout_guard::finish: exiting at once must not wait on a
            // stdout reader that stopped reading.
            std::process::exit(i32::from(exit::ABORTED));
        }
    });
    if let Err(e) = r {
        say_err!(
            "warning: cannot handle stop signals ({e}); a killed run keeps its last checkpoint"
        );
    }
}

/// An error message already printed; the exit code to return.
type Exit = u8;

pub async fn main(a: RunArgs) -> u8 {
    install_stop_signals();
    let req = match request(&a) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let res = match crate::run::run(req).await {
        Ok(r) => r,
        Err(RunError::Usage(m)) => {
            say_err!("error: {m}");
            return exit::USAGE;
        }
        Err(RunError::Aborted(m)) => {
            say_err!("aborted: {m}");
            return exit::ABORTED;
        }
    };
    if !a.quiet {
        let mut out = Vec::new();
        let _ = report::console::render(&res.report, &mut out);
        say_raw!("{}", String::from_utf8_lossy(&out));
    }
    for n in &res.snapshot.notes {
        say_err!("{n}");
    }
    for c in &res.report.validity {
        say_err!("invalid: {c}");
    }
    say!(
        "{}: reports in {}",
        res.report.verdict,
        res.out_dir.display()
    );
    res.exit_code()
}

/// The run to perform: the scenario with the flags' overrides, the secret,
/// the shard and the baseline resolved.
fn request(a: &RunArgs) -> Result<RunRequest, Exit> {
    let mut sc = match Scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(d) => {
            say_err_raw!("{d}");
            return Err(exit::USAGE);
        }
    };
    apply_overrides(&mut sc, a).map_err(usage)?;
    let external = a.target.is_some() || sc.target.url.is_some();
    let secret = secret(&sc, external).map_err(usage)?;
    let seed = a.seed.or(sc.seed).unwrap_or(1);
    let shard = shard(a).map_err(usage)?;
    let baseline = baseline(a.baseline.as_deref()).map_err(usage)?;
    Ok(RunRequest {
        scenario: sc,
        target: a.target.clone(),
        secret,
        seed,
        out: a.out.clone(),
        goose_report: true,
        baseline,
        progress: !a.quiet,
        shard,
        start_at: a.start_at,
        metrics_addr: a.metrics_addr,
        history: a.history.clone(),
    })
}

/// Prints a usage error; its exit code.
fn usage(message: String) -> Exit {
    say_err!("error: {message}");
    exit::USAGE
}

/// `--users` and `--duration`: they reshape a closed-model plan only.
fn apply_overrides(sc: &mut Scenario, a: &RunArgs) -> Result<(), String> {
    if (a.users.is_some() || a.duration.is_some())
        && (sc.workload.open().is_some() || sc.workload.capacity.is_some())
    {
        return Err(format!(
            "--users and --duration reshape a closed-model plan; this scenario's load comes from {} (edit it there)",
            if sc.workload.capacity.is_some() { "[capacity]" } else { "workload.rate / workload.ramp and workload.max_users" }
        ));
    }
    if let Some(u) = a.users {
        if u == 0 {
            return Err("--users must be at least 1".into());
        }
        let counts: Option<u64> = sc.journeys.iter().map(|j| j.count()).sum();
        if let Some(total) = counts.filter(|t| *t != u) {
            return Err(format!(
                "--users {u}: the journeys give exact user counts that add up to {total}; change them in the scenario (or give the journeys `share`s)"
            ));
        }
        sc.workload.plan = sc.workload.plan.with_users(u);
    }
    if let Some(d) = a.duration {
        if sc.workload.plan.iterations.is_some() {
            return Err(
                "--duration cannot be used with a scenario that sets workload.iterations".into(),
            );
        }
        if d.subsec_nanos() != 0 || d.is_zero() {
            return Err(
                "--duration must be whole seconds, at least 1s (a plan of 0 s would never end)"
                    .into(),
            );
        }
        sc.workload.plan = sc.workload.plan.with_hold(d);
    }
    let step_tags = sc.step_tags();
    for (k, _) in &a.tags {
        if step_tags.values().any(|t| t.contains_key(k)) {
            return Err(format!(
                "--tag {}",
                crate::scenario::tags::clash(k, "--tag")
            ));
        }
    }
    sc.tags.extend(a.tags.iter().cloned());
    if let Some(u) = &a.remote_write {
        crate::scenario::check_remote_write_url(u).map_err(|e| format!("--remote-write {e}"))?;
        sc.live.remote_write = Some(u.clone());
    }
    if let Some(n) = &a.remote_write_auth_env {
        sc.live.remote_write_auth_env = Some(n.clone());
    }
    sc.live.raw_results |= a.raw_results;
    // The scenario's caps hold for the overridden plan too.
    let over = sc.workload.over_limits(&sc.limits);
    if !over.is_empty() {
        return Err(over.join("; "));
    }
    Ok(())
}

/// The signing key, from the variable the scenario names; the embedded
/// server's documented dev key when there is no external target. Only a run
/// that mints its tokens needs one: a login or tokens-file run against an
/// external target runs without it (an empty key that signs nothing), and
/// a key that is set is still taken, so the redactor knows it.
fn secret(sc: &Scenario, external: bool) -> Result<Secret, String> {
    let mints = matches!(sc.auth.source, crate::scenario::TokenSource::Mint);
    match std::env::var(&sc.auth.secret_env) {
        Ok(s) if !s.is_empty() => Ok(Secret::new(s)),
        _ if external && !mints => Ok(Secret::default()),
        _ if !external => Ok(Secret::new(EMBEDDED_DEV_SECRET)),
        _ => Err(format!(
            "the signing key variable ${} is not set; export it before loading an external target (it is never read from a flag or the file)",
            sc.auth.secret_env
        )),
    }
}

/// `--shard I/N`, or `--shards N` with the index in JOB_COMPLETION_INDEX.
fn shard(a: &RunArgs) -> Result<Shard, String> {
    match (a.shard, a.shards) {
        (Some(s), _) => Ok(s),
        (None, Some(n)) => {
            let index = std::env::var("JOB_COMPLETION_INDEX")
                .ok()
                .and_then(|v| v.parse::<u32>().ok());
            match index.map(|i| Shard::parse(&format!("{i}/{n}"))) {
                Some(r) => r,
                None => Err(
                    "--shards needs the shard index in JOB_COMPLETION_INDEX (or use --shard I/N)"
                        .into(),
                ),
            }
        }
        (None, None) => Ok(Shard::default()),
    }
}

/// `--baseline FILE`, read; refused before the run when its format defines
/// the close rates differently from this run's (1.0 beside 1.1).
fn baseline(path: Option<&std::path::Path>) -> Result<Option<Snapshot>, String> {
    let Some(p) = path else { return Ok(None) };
    let this = crate::metrics::snapshot::FORMAT_VERSION;
    std::fs::read_to_string(p)
        .map_err(|e| e.to_string())
        .and_then(|t| Snapshot::from_json(&t).map_err(|e| e.to_string()))
        .and_then(|s| {
            crate::metrics::snapshot::same_definitions(&s.format_version, this)
                .map(|()| s)
                .map_err(|e| e.to_string())
        })
        .map(Some)
        .map_err(|e| format!("cannot read the baseline {}: {e}", p.display()))
}
