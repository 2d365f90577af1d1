//! The scenario's model: the types a loaded scenario is made of
//! ([`Scenario`], [`Target`], [`Auth`], [`TokenSource`], [`DataSet`],
//! [`Reconnect`], [`ServerTable`], [`Workload`], [`CapacitySearch`],
//! [`Journey`], [`Think`], [`Step`], [`StepKind`]), with the methods that
//! walk a journey's step tree ([`Step::walk`] and the questions built on it:
//! every engine or report question about "any step, inside repeat blocks
//! too" goes through it). Plain data: the readers of the other files build
//! them. Imports only `protocol`, `auth`, `plan` and
//! `scenario::thresholds`/`baseline`.
//!
//! Matches over this file's enums list every variant (no `_ =>`), so a new
//! step kind is a compile error wherever it must be handled.
#![warn(clippy::wildcard_enum_match_arm)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Presentation;
use crate::plan::{CapacityPlan, LoadPlan, OpenModel};
use crate::protocol::dialect::{Envelope, Naming, ReadyStyle};
use crate::protocol::faults::FaultPlan;
use crate::protocol::Profile;

use super::thresholds::Threshold;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub target: Target,
    pub auth: Auth,
    pub profile: Profile,
    pub server: ServerTable,
    pub workload: Workload,
    /// Reconnect policy after unexpected closes and failed connects.
    pub reconnect: Reconnect,
    /// Rows of variables from `[data] file`.
    pub data: Option<DataSet>,
    /// The journeys users walk: one (`[[journey]]`) or a weighted mix (`[[journeys]]`).
    pub journeys: Vec<Journey>,
    pub thresholds: Vec<Threshold>,
    /// `[[probe]]`: the target's own numbers, and their rules (`probe.*` keys).
    pub probes: Vec<super::probe::Probe>,
    pub probe_rules: Vec<super::probe_rules::ProbeRule>,
    pub prompts: Vec<String>,
    pub output_dir: PathBuf,
    /// Length of the intervals of over-time data; `None` when `[output]
    /// interval` is not written: the run picks it from its length
    /// (`Scenario::interval_or_default`, so a 12 s run still draws a curve).
    pub interval: Option<Duration>,
    /// How often `snapshot.json` is rewritten during the run.
    pub checkpoint: Duration,
    /// Whether goose writes `goose-report.html` (`[output] goose_report`).
    pub goose_report: bool,
    /// Allowed worsening against a baseline, by metric statistic or rate.
    pub baseline: Vec<super::baseline::Tolerance>,
    /// Caps on users, arrival rate and plan length (`[limits]`).
    pub limits: super::limits::Limits,
    /// `[generator]`: receive stamps and the validity rule on chatload's own delay.
    pub generator: super::generator::Generator,
    /// The run's tags (`[tags]`, then `--tag`): labels of every live series,
    /// kept in the snapshot and every report (`tags.rs`).
    pub tags: std::collections::BTreeMap<String, String>,
    /// Live outputs beyond the reports (`[output]`: progress lines,
    /// remote write, the raw-results stream).
    pub live: super::output::LiveOutputs,
    /// The file's content as JSON, for the snapshot (the file never holds secret values).
    pub echo: Value,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// `None`: start the embedded reference server.
    pub url: Option<String>,
    /// Host patterns a target may have (`*.staging.example.com`, `127.0.0.1`).
    pub allow: Vec<String>,
    pub connect_timeout: Duration,
    pub ready_timeout: Duration,
    /// Follow HTTP redirects of the login call and REST/`http` steps, each
    /// hop checked against `allow` (default: follow none).
    pub follow_redirects: bool,
    /// Abort (exit 3) when the first connects all fail and none is ready
    /// (`target.fail_fast`, on unless set to false).
    pub fail_fast: bool,
    /// TLS settings of `wss://` and `https://` calls (`scenario/tls.rs`).
    pub tls: TargetTls,
}

/// `target.ca_file`, `target.tls_server_name`, `target.insecure`.
#[derive(Debug, Clone, Default)]
pub struct TargetTls {
    /// `target.ca_file` as written (relative to the scenario).
    pub ca_file: Option<String>,
    /// The PEM certificates of `ca_file`, read while the scenario loaded
    /// (added to the system's trust roots).
    pub ca_pem: Option<std::sync::Arc<Vec<u8>>>,
    /// The name presented (SNI, HTTP `Host`) and verified instead of the
    /// URL's host; the connection still goes to the URL's address.
    pub server_name: Option<String>,
    /// Certificates are not verified (`target.insecure = true`): printed in
    /// every report.
    pub insecure: bool,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub secret_env: String,
    pub lifetime: Duration,
    pub claims: Map<String, Value>,
    pub present: Vec<Presentation>,
    pub user_prefix: String,
    /// Reconnect with a fresh token when the current one expires within this.
    pub refresh_margin: Duration,
    /// `refresh_margin = "off"`: tokens are used until the server refuses
    /// them (to test how a target treats sockets that outlive their token).
    pub refresh: bool,
    /// Where tokens come from.
    pub source: TokenSource,
    /// The tokens of a tokens file, read once while the scenario loaded.
    pub file_tokens: Option<std::sync::Arc<Vec<crate::auth::Secret>>>,
}

/// Where a user's tokens come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// chatload mints HS256 tokens with the signing key (`secret_env`).
    Mint,
    /// One token per line of a file, assigned to users in order; `reuse`
    /// lets users share them when there are fewer tokens than users.
    File { path: PathBuf, reuse: bool },
    /// `POST` a body to a login endpoint and take the token from its JSON.
    Login {
        /// A path on the target's host (`/auth/dev/login`) or a full URL.
        url: String,
        body: Value,
        /// Dotted path of the token in the response (`access_token`).
        token_field: String,
    },
}

/// One row of a data file: column name -> value.
pub type DataRow = std::collections::BTreeMap<String, String>;

/// Variables from a data file: each row maps column names to values.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSet {
    pub rows: Vec<DataRow>,
    pub columns: Vec<String>,
    pub select: DataSelect,
}

/// Which row a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSelect {
    /// User N always uses row N (wrapping around).
    PerUser,
    /// Every run takes the next row, across all users.
    RoundRobin,
}

/// Reconnecting after an unexpected close or a failed connect: exponential
/// back-off with jitter, up to a number of attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Each delay is scaled by a random factor in `1 ± jitter`.
    pub jitter: f64,
    /// Failed attempts in a row after which the user gives up.
    pub attempts: u32,
    /// A socket up this long (or one that served a run or answered a
    /// heartbeat) proved itself: losing it later starts the back-off afresh,
    /// losing it sooner counts as a failed attempt.
    pub min_uptime: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            attempts: 10,
            min_uptime: Duration::from_secs(5),
        }
    }
}

impl Reconnect {
    /// The wait before attempt number `failures + 1` (after `failures` failed
    /// ones in a row); `u` in [0, 1) draws the jitter.
    pub fn delay(&self, failures: u32, u: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let base = self.initial.as_secs_f64()
            * self
                .multiplier
                .powi(failures.saturating_sub(1).min(60) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let factor = 1.0 + self.jitter * (2.0 * u - 1.0);
        Duration::from_secs_f64((capped * factor).max(0.0))
    }
}

/// The `[server]` table as written: plain data for the embedded reference
/// server (ignored with an external target). `run/` applies it to
/// `server::Settings`; `scenario/` never imports `server/`.
#[derive(Debug, Clone)]
pub struct ServerTable {
    pub seed: Option<u64>,
    pub envelope: Envelope,
    pub ready: ReadyStyle,
    pub naming: Naming,
    pub thinking: (u32, u32),
    pub tools: (u32, u32),
    pub event_delay: (Duration, Duration),
    pub slowdown_per_minute: f64,
    pub faults: FaultPlan,
    pub capacity: Option<crate::protocol::faults::Capacity>,
    /// New sockets admitted per second (`connect_limit = "20/s"`).
    pub connect_limit: Option<crate::protocol::connect_limit::ConnectLimit>,
    pub stall: Option<crate::protocol::faults::Stall>,
    pub login_lifetime: Duration,
    pub heartbeat: Option<Duration>,
    pub enforce_token_expiry: bool,
    /// `profile` (a preset) and the platform options over it.
    pub platform: crate::protocol::platform::PlatformOptions,
}

/// The workload model, decided once when the file is read (oha's
/// `WorkMode`): every part that behaves differently per model matches on it.
#[derive(Debug, Clone)]
pub enum Model {
    /// `model = "closed"`: the plan's users loop their journeys.
    Closed,
    /// `model = "open"`: arrivals on a schedule, each served by one of the
    /// plan's users (the session pool).
    Open(OpenModel),
}

impl Model {
    /// The open model's schedule, `None` in the closed model.
    pub fn open(&self) -> Option<&OpenModel> {
        match self {
            Model::Open(m) => Some(m),
            Model::Closed => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    /// The goose users: the closed model's users, or the open model's session pool.
    pub plan: LoadPlan,
    /// Closed or open, with the open model's arrival schedule.
    pub model: Model,
    /// A capacity search, when the scenario has `[capacity]`.
    pub capacity: Option<CapacitySearch>,
    /// A stop signal is a normal end (thresholds judged as usual) rather than an abort.
    pub on_signal_ends: bool,
    /// `start = "together"`: the closed model's users of one process wait
    /// for each other and begin their journeys at one instant.
    pub start_together: bool,
}

impl Workload {
    /// The open model's schedule, `None` in the closed model.
    pub fn open(&self) -> Option<&OpenModel> {
        self.model.open()
    }

    /// Every cap of `[limits]` the workload breaks, with why.
    pub fn over_limits(&self, l: &super::limits::Limits) -> Vec<String> {
        let w = self;
        let mut why = Vec::new();
        if let Err(e) = l.check_users(w.peak_users()) {
            why.push(e);
        }
        let length = match w.open() {
            Some(m) => m.rate.total(),
            None => w.plan.total(),
        };
        if let Err(e) = l.check_duration(length) {
            why.push(e);
        }
        if let Some(m) = w.open() {
            let peak = m.rate.peak_rate();
            if peak > l.max_rate {
                why.push(format!(
                    "a peak of {peak} arrivals per second is over the limit of {}: raise [limits] max_rate if that is meant",
                    l.max_rate
                ));
            }
        }
        why
    }

    /// The most goose users the plan runs at once: the closed model's peak
    /// users, or the open model's session pool.
    pub fn peak_users(&self) -> u64 {
        match &self.model {
            Model::Open(m) => m.max_users,
            Model::Closed => self.plan.peak_users(),
        }
    }
}

/// A capacity search: the pure step plan (`plan/`) and the rules that define
/// "the step held".
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySearch {
    pub plan: CapacityPlan,
    pub slo: Vec<Threshold>,
}

impl std::fmt::Display for CapacitySearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.plan)?;
        let slo: Vec<&str> = self.slo.iter().map(|t| t.expr.as_str()).collect();
        writeln!(f, "  a step holds when: {}", slo.join("; "))?;
        if let Some(t) = self.plan.target {
            writeln!(
                f,
                "  target load {}: the report gives the headroom of the knee against it",
                self.plan.show_load(t)
            )?;
        }
        Ok(())
    }
}

/// A named journey: its steps and its share of the users.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub name: String,
    /// Relative weight in the mix (goose scenario weight).
    pub weight: usize,
    /// The weight is an exact user count (`users = N` in the mix).
    pub exact: bool,
    pub steps: Vec<Step>,
}

impl Journey {
    /// How many users walk it, when the mix gives exact counts.
    pub fn count(&self) -> Option<u64> {
        self.exact.then_some(self.weight as u64)
    }
}

/// How long a `think` step pauses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    Constant(Duration),
    /// Uniform between the two.
    Uniform(Duration, Duration),
    /// Exponential with this mean (memoryless gaps, like Poisson users).
    Exponential(Duration),
    /// Log-normal: `median` and the sigma of the underlying normal (long tails
    /// of people reading an answer).
    LogNormal {
        median: Duration,
        sigma: f64,
    },
}

/// Longest pause a distribution may draw, as a multiple of its typical value
/// (an unbounded draw would park a user for the rest of the run).
pub const THINK_CAP: f64 = 20.0;

impl Think {
    /// One pause, drawn from `rng`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        let secs = |d: &Duration| d.as_secs_f64();
        let v = match self {
            Think::Constant(d) => return *d,
            Think::Uniform(a, b) => secs(a) + (secs(b) - secs(a)) * rng.random::<f64>(),
            Think::Exponential(mean) => {
                let u: f64 = rng.random();
                (-(1.0 - u).ln() * secs(mean)).min(THINK_CAP * secs(mean))
            }
            Think::LogNormal { median, sigma } => {
                // Box-Muller: a standard normal from two uniforms.
                let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (secs(median) * (sigma * z).exp()).min(THINK_CAP * secs(median))
            }
        };
        Duration::from_secs_f64(v.max(0.0))
    }

    /// The mean pause (for plans and docs).
    pub fn mean(&self) -> Duration {
        let v = match self {
            Think::Constant(d) => d.as_secs_f64(),
            Think::Uniform(a, b) => (a.as_secs_f64() + b.as_secs_f64()) / 2.0,
            Think::Exponential(m) => m.as_secs_f64(),
            Think::LogNormal { median, sigma } => {
                median.as_secs_f64() * (sigma * sigma / 2.0).exp()
            }
        };
        Duration::from_secs_f64(v)
    }
}

/// One journey step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Metric and goose transaction name.
    pub name: String,
    pub kind: StepKind,
    /// The step's own tags (`tags = { k = "v" }`): labels of the latency
    /// series of the metric it records, and of its raw-results lines.
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Open the socket (if not open) and wait for the ready frame.
    Connect,
    /// Send a message built from a template; starts an agent run.
    Send { message: Value },
    /// Wait for the current run's terminal event.
    Await { timeout: Duration },
    /// Pause for a drawn time.
    Think { think: Think },
    /// `POST /api/threads`; the new thread becomes the user's current thread.
    CreateThread { title: Option<String> },
    /// `GET /api/threads`.
    ListThreads,
    /// `GET /api/threads/{current}/messages`: checks that every message this
    /// user sent there (in a run that completed) is stored, and that no
    /// message belongs to another user.
    History,
    /// Switch the socket to the user's next thread (round robin over the
    /// threads it created) and wait for the profile's confirmation.
    SwitchThread { timeout: Duration },
    /// Close the socket normally.
    Disconnect,
    /// Close the socket (if open) and open it again, waiting for ready.
    Reconnect,
    /// A REST call on the target's host with the user's token: `path` and
    /// `body` are templates; a status outside `expect` fails the step;
    /// `capture` copies JSON fields of the answer into variables for later
    /// steps (`{{name}}`); `persist` names the body field holding a message
    /// this call stores in the current thread (checked by `history`).
    Http {
        method: String,
        path: String,
        body: Option<Value>,
        expect: Vec<u16>,
        capture: Vec<(String, String)>,
        persist: Option<String>,
    },
    /// Run `steps` `times` times, or until `for` has passed.
    Repeat {
        times: Option<u64>,
        for_: Option<Duration>,
        steps: Vec<Step>,
    },
}

impl Step {
    /// Calls `f` with every step of `steps` in order, depth first: a repeat
    /// block, then the steps inside it (at any depth).
    pub fn walk<'a>(steps: &'a [Step], f: &mut impl FnMut(&'a Step)) {
        for s in steps {
            f(s);
            Step::walk(s.kind.children(), f);
        }
    }

    /// Whether any step (inside repeat blocks too) uses the socket.
    pub fn uses_socket(steps: &[Step]) -> bool {
        let mut any = false;
        Step::walk(steps, &mut |s| any |= s.kind.on_socket());
        any
    }

    /// Every `await` timeout in the steps (inside repeat blocks too), in order.
    pub fn await_timeouts(steps: &[Step]) -> Vec<Duration> {
        let mut out = Vec::new();
        Step::walk(steps, &mut |s| {
            if let StepKind::Await { timeout } = &s.kind {
                out.push(*timeout);
            }
        });
        out
    }

    /// The latency a `connect`, `await` or `switch_thread` step given a name
    /// of its own (not its kind's default) records under that name, besides
    /// the shared metric (`ws_connect`, `ttc`, `thread_switch`); `None` for
    /// other steps. The engine records with it and the scenario's metric
    /// vocabulary lists it: one source, so the two cannot drift.
    pub fn named_metric(&self) -> Option<&str> {
        let default = self.kind.default_name();
        (!default.is_empty() && self.name != default).then_some(self.name.as_str())
    }

    /// Whether any step (inside repeat blocks too) reads a thread's messages.
    pub fn reads_history(steps: &[Step]) -> bool {
        let mut any = false;
        Step::walk(steps, &mut |s| any |= s.kind.reads_thread());
        any
    }
}

impl StepKind {
    /// The steps inside this one: a repeat block's, none for the others.
    pub fn children(&self) -> &[Step] {
        match self {
            StepKind::Repeat { steps, .. } => steps,
            StepKind::Connect
            | StepKind::Send { .. }
            | StepKind::Await { .. }
            | StepKind::Think { .. }
            | StepKind::CreateThread { .. }
            | StepKind::ListThreads
            | StepKind::History
            | StepKind::SwitchThread { .. }
            | StepKind::Disconnect
            | StepKind::Reconnect
            | StepKind::Http { .. } => &[],
        }
    }

    /// The default name of a step's kind: a step named otherwise has a metric
    /// of its own besides the shared one (empty for kinds without such a
    /// shared latency metric).
    pub fn default_name(&self) -> &'static str {
        match self {
            StepKind::Connect => "connect",
            StepKind::Await { .. } => "await",
            StepKind::SwitchThread { .. } => "thread_switch",
            StepKind::Send { .. }
            | StepKind::Think { .. }
            | StepKind::CreateThread { .. }
            | StepKind::ListThreads
            | StepKind::History
            | StepKind::Disconnect
            | StepKind::Reconnect
            | StepKind::Http { .. }
            | StepKind::Repeat { .. } => "",
        }
    }

    /// Whether this step itself uses the socket (a repeat block's steps are
    /// asked one by one).
    fn on_socket(&self) -> bool {
        match self {
            StepKind::Connect
            | StepKind::Send { .. }
            | StepKind::SwitchThread { .. }
            | StepKind::Reconnect => true,
            StepKind::Await { .. }
            | StepKind::Think { .. }
            | StepKind::CreateThread { .. }
            | StepKind::ListThreads
            | StepKind::History
            | StepKind::Disconnect
            | StepKind::Http { .. }
            | StepKind::Repeat { .. } => false,
        }
    }

    /// Whether this step itself reads a thread's messages (`history`, and
    /// `switch_thread`, which reads the thread it switches to).
    fn reads_thread(&self) -> bool {
        match self {
            StepKind::History | StepKind::SwitchThread { .. } => true,
            StepKind::Connect
            | StepKind::Send { .. }
            | StepKind::Await { .. }
            | StepKind::Think { .. }
            | StepKind::CreateThread { .. }
            | StepKind::ListThreads
            | StepKind::Disconnect
            | StepKind::Reconnect
            | StepKind::Http { .. }
            | StepKind::Repeat { .. } => false,
        }
    }
}

impl Scenario {
    /// The interval of over-time data: `[output] interval`, or when it is not
    /// written 5 s, or for a run shorter than 150 s its length / 30 in whole
    /// seconds (at least 1 s), so that a short run still draws a curve.
    pub fn interval_or_default(&self) -> Duration {
        self.interval
            .unwrap_or_else(|| super::output::default_interval(self.workload.plan.total()))
    }
}
