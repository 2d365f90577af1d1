//! Scenario files (`scenarios/*.toml`, `version = 1`): the file model, its
//! validation and the load plan.
//!
//! Loading walks the TOML document once, collecting every problem with its
//! file, line, column and key path; a file with any problem yields
//! [`Diagnostics`] and nothing else, so no socket ever opens on a bad file.

pub mod baseline;
pub mod doc;
pub mod target;
pub mod thresholds;

pub use target::check_ws_url;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Presentation;
use crate::protocol::dialect::{Envelope, Naming, ReadyStyle};
use crate::protocol::faults::FaultPlan;
use crate::protocol::{template, Profile};
use crate::scenario::thresholds::Threshold;

use crate::plan;
pub use crate::plan::{Arrivals, CapacityPlan, LoadPlan, OpenModel, RampStep, RatePlan, WhenFull};
use crate::scenario::thresholds::DriftSpec;
use doc::{Ctx, Elem, Node, Obj, Source};
pub use doc::{Diagnostic, Diagnostics};

/// The scenario file format this chatload reads.
pub const VERSION: u64 = 1;

/// Default name of the environment variable holding the HS256 signing key.
pub const DEFAULT_SECRET_ENV: &str = "CHATLOAD_JWT_SECRET";

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
    pub prompts: Vec<String>,
    pub output_dir: PathBuf,
    /// Length of the intervals of over-time data.
    pub interval: Duration,
    /// How often `snapshot.json` is rewritten during the run.
    pub checkpoint: Duration,
    /// Allowed worsening against a baseline, by metric statistic or rate.
    pub baseline: Vec<crate::scenario::baseline::Tolerance>,
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

/// Most rows a data file may hold (the rows stay in memory).
pub const MAX_DATA_ROWS: usize = 1_000_000;

/// Reads a `.csv` (a header row names the columns) or `.jsonl` (one object of
/// scalars per line) file into rows.
pub fn load_data(path: &Path) -> Result<(Vec<String>, Vec<DataRow>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "csv" => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(text.as_bytes());
            columns = r
                .headers()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            if let Some(c) = columns
                .iter()
                .enumerate()
                .find_map(|(i, c)| columns[..i].contains(c).then_some(c))
            {
                return Err(format!(
                    "{}: column `{c}` appears twice in the header row",
                    path.display()
                ));
            }
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| format!("{}: row {}: {e}", path.display(), i + 2))?;
                rows.push(
                    columns
                        .iter()
                        .cloned()
                        .zip(rec.iter().map(str::to_string))
                        .collect(),
                );
                if rows.len() > MAX_DATA_ROWS {
                    return Err(format!(
                        "{}: more than {MAX_DATA_ROWS} rows",
                        path.display()
                    ));
                }
            }
        }
        "jsonl" | "ndjson" => {
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let JsonRow(m) = serde_json::from_str(line)
                    .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
                let mut row = std::collections::BTreeMap::new();
                for (k, v) in m {
                    if row.contains_key(&k) {
                        return Err(format!(
                            "{}: line {}: `{k}` appears twice",
                            path.display(),
                            i + 1
                        ));
                    }
                    let text = match v {
                        Value::String(s) => s,
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        other => {
                            return Err(format!(
                                "{}: line {}: `{k}` is {other}, not a string, number or boolean",
                                path.display(),
                                i + 1
                            ))
                        }
                    };
                    if !columns.contains(&k) {
                        columns.push(k.clone());
                    }
                    row.insert(k, text);
                }
                rows.push(row);
                if rows.len() > MAX_DATA_ROWS {
                    return Err(format!(
                        "{}: more than {MAX_DATA_ROWS} rows",
                        path.display()
                    ));
                }
            }
            // Every row needs every column a template may use.
            for (i, row) in rows.iter().enumerate() {
                if let Some(c) = columns.iter().find(|c| !row.contains_key(*c)) {
                    return Err(format!("{}: row {} has no `{c}`", path.display(), i + 1));
                }
            }
        }
        _ => {
            return Err(format!(
                "{}: a data file ends in .csv or .jsonl",
                path.display()
            ))
        }
    }
    if rows.is_empty() {
        return Err(format!("{} has no rows", path.display()));
    }
    if let Some(bad) = columns
        .iter()
        .find(|c| c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    {
        return Err(format!(
            "{}: column `{bad}` cannot be a placeholder (letters, digits and _ only)",
            path.display()
        ));
    }
    if let Some(c) = columns
        .iter()
        .find(|c| template::VARIABLES.contains(&c.as_str()) && c.as_str() != "prompt")
    {
        return Err(format!(
            "{}: column `{c}` would hide the built-in {{{{{c}}}}}; rename it",
            path.display()
        ));
    }
    Ok((columns, rows))
}

/// One JSON-lines object with its keys in order, duplicates kept (a JSON map
/// would keep only the last of two equal keys).
struct JsonRow(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for JsonRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonRow;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<JsonRow, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(JsonRow(v))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// `[data]`: the rows, and the columns templates may use (unknown when the
/// file did not load, so its placeholders add no follow-on errors).
fn read_data(o: &Obj<'_>, base: &Path) -> (Option<Option<DataSet>>, Columns) {
    let Some(n) = o.get("data") else {
        return (Some(None), Columns::Known(Vec::new()));
    };
    let Some(t) = n.as_obj() else {
        return (None, Columns::Unknown);
    };
    let mut ok = true;
    let select = match t.get("select") {
        None => DataSelect::PerUser,
        Some(n) => match n.as_str() {
            Some("per_user") => DataSelect::PerUser,
            Some("round_robin") => DataSelect::RoundRobin,
            Some(other) => {
                n.error(format!(
                    "unknown select `{other}` (expected per_user or round_robin)"
                ));
                ok = false;
                DataSelect::PerUser
            }
            None => {
                ok = false;
                DataSelect::PerUser
            }
        },
    };
    let file = t.require("file");
    let loaded = file.as_ref().and_then(|n| {
        let f = n.as_str()?;
        match load_data(&base.join(f)) {
            Ok(x) => Some(x),
            Err(e) => {
                n.error(e);
                None
            }
        }
    });
    t.finish();
    let Some((columns, rows)) = loaded else {
        return (None, Columns::Unknown);
    };
    let known = Columns::Known(columns.clone());
    let set = ok.then_some(Some(DataSet {
        rows,
        columns,
        select,
    }));
    (set, known)
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
    pub stall: Option<crate::protocol::faults::Stall>,
    pub login_lifetime: Duration,
    pub heartbeat: Option<Duration>,
    pub enforce_token_expiry: bool,
}

#[derive(Debug, Clone)]
pub struct Workload {
    /// The goose users: the closed model's users, or the open model's session pool.
    pub plan: LoadPlan,
    /// The open model (arrival rates), when `model = "open"`.
    pub open: Option<OpenModel>,
    /// A capacity search, when the scenario has `[capacity]`.
    pub capacity: Option<CapacitySearch>,
    /// A stop signal is a normal end (thresholds judged as usual) rather than an abort.
    pub on_signal_ends: bool,
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
    /// steps (`{{name}}`).
    Http {
        method: String,
        path: String,
        body: Option<Value>,
        expect: Vec<u16>,
        capture: Vec<(String, String)>,
    },
    /// Run `steps` `times` times, or until `for` has passed.
    Repeat {
        times: Option<u64>,
        for_: Option<Duration>,
        steps: Vec<Step>,
    },
}

impl Scenario {
    /// Loads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
            file: path.display().to_string(),
            items: vec![Diagnostic {
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Scenario::parse(path, text)
    }

    /// Validates scenario text; `path` is used in messages and to resolve relative paths.
    pub fn parse(path: &Path, text: String) -> Result<Scenario, Diagnostics> {
        let file = path.display().to_string();
        let src = Rc::new(Source::new(text));
        let doc = match toml_edit::ImDocument::parse(src.text()) {
            Ok(d) => d,
            Err(e) => {
                let (line, column) = src.line_col(e.span().map_or(0, |s| s.start));
                return Err(Diagnostics {
                    file,
                    items: vec![Diagnostic {
                        line,
                        column,
                        path: String::new(),
                        message: format!("TOML syntax error: {}", e.message().trim()),
                    }],
                });
            }
        };
        let ctx = Ctx::new(src.clone());
        let root_item = doc.as_item();
        let root = Node {
            ctx: ctx.clone(),
            path: String::new(),
            item: Elem::Item(root_item),
            span: Some(0..0),
        };
        doc::refuse_non_finite(&ctx, "", root.item, root.span.clone());
        let mut echo = root.to_json_lossy();
        redact_echo(&mut echo);
        let obj = root.as_obj().expect("a document is a table");
        let s = read_scenario(&obj, path);
        obj.finish();
        let items = ctx.take();
        match s {
            Some(s) if items.is_empty() => Ok(Scenario { echo, ..s }),
            _ => Err(Diagnostics { file, items }),
        }
    }
}

/// What replaces a secret-bearing value in the scenario's echo.
pub const REDACTED: &str = "<redacted>";

/// The echo goes into `snapshot.json` and every report: the login body (and
/// its headers, should it ever have some) may hold a password, so each string
/// under them is replaced.
fn redact_echo(echo: &mut Value) {
    fn strings(v: &mut Value) {
        match v {
            Value::String(s) => *s = REDACTED.to_string(),
            Value::Array(a) => a.iter_mut().for_each(strings),
            Value::Object(m) => m.values_mut().for_each(strings),
            _ => {}
        }
    }
    if let Some(login) = echo
        .pointer_mut("/auth/login")
        .and_then(Value::as_object_mut)
    {
        for key in ["body", "headers"] {
            if let Some(v) = login.get_mut(key) {
                strings(v);
            }
        }
    }
}

impl Scenario {
    /// Every environment variable the scenario's templates read
    /// (`{{env.NAME}}` in `[auth.login] body`), sorted, each once.
    pub fn env_placeholders(&self) -> Vec<String> {
        let mut names = match &self.auth.source {
            TokenSource::Login { body, .. } => template::env_names(body),
            _ => Vec::new(),
        };
        names.sort();
        names.dedup();
        names
    }
}

fn read_scenario(o: &Obj<'_>, path: &Path) -> Option<Scenario> {
    let version = o.require("version").and_then(|n| {
        let v = n.as_u64()?;
        if v != VERSION {
            n.error(format!(
                "this chatload reads scenario version {VERSION}, not {v}"
            ));
            return None;
        }
        Some(v)
    });
    let name = o
        .require("name")
        .and_then(|n| n.as_str().map(str::to_string));
    let description = o.str("description");
    let seed = o.u64("seed");
    // Files named by the scenario are relative to it.
    let base = path.parent().unwrap_or(Path::new("."));
    let target = read_target(o);
    let profile = read_profile(o);
    let server = read_server(o);
    let mut workload = read_workload(o);
    let (data, columns) = read_data(o, base);
    let journey = read_journey(o, &columns, workload.as_ref());
    // Which metric and counter names thresholds may use: the fixed ones and
    // those of this scenario's steps and profile.
    let vocabulary = vocabulary(journey.as_deref(), profile.as_ref());
    let capacity = read_capacity(
        o,
        workload.as_ref().and_then(|w| w.open.as_ref()),
        &vocabulary,
    );
    if let (Some(w), Some(Some(cap))) = (workload.as_mut(), capacity.as_ref()) {
        match &mut w.open {
            Some(m) => {
                m.rate = cap.plan.rate_plan();
                w.plan = pool_plan(m.max_users, &m.rate);
            }
            None => w.plan = cap.plan.closed_plan(),
        }
        w.capacity = Some(cap.clone());
    }
    if o.get("capacity").is_some() {
        if let Some(t) = o.obj("thresholds") {
            t.error("a capacity search is judged step by step by [capacity.slo]; [thresholds] would judge the whole search, including the step meant to break: move these rules to [capacity.slo]");
            t.skip_rest();
        }
    }
    // The users the tokens of a tokens file must cover (unknown while the
    // workload has errors).
    let peak_users = match (&workload, &capacity) {
        (Some(w), Some(_)) => Some(match &w.open {
            Some(m) => m.max_users,
            None => w.plan.peak_users(),
        }),
        _ => None,
    };
    let auth = read_auth(o, base, peak_users);
    let reconnect = read_reconnect(o);
    let thresholds = read_thresholds(o, &vocabulary);
    let prompts = read_prompts(o);
    let mut interval = Duration::from_secs(5);
    let mut checkpoint = Duration::from_secs(60);
    let output_dir = match o.obj("output") {
        Some(out) => {
            let d = out.str("dir").map(PathBuf::from);
            if let Some(n) = out.get("interval") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(100) => interval = d,
                    Some(_) => n.error("must be at least 100ms"),
                    None => {}
                }
            }
            if let Some(n) = out.get("checkpoint") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(200) => checkpoint = d,
                    Some(_) => n.error("must be at least 200ms"),
                    None => {}
                }
            }
            out.finish();
            d.unwrap_or_else(|| PathBuf::from("reports"))
        }
        None => PathBuf::from("reports"),
    };
    let baseline = read_baseline(o);
    let _ = (version, path);
    Some(Scenario {
        file: path.to_path_buf(),
        name: name?,
        description,
        seed,
        target: target?,
        auth: auth?,
        reconnect: reconnect?,
        data: data?,
        profile: profile?,
        server: server?,
        workload: {
            capacity?;
            workload?
        },
        journeys: journey?,
        thresholds: thresholds?,
        prompts: prompts?,
        output_dir,
        interval,
        checkpoint,
        baseline: baseline?,
        echo: Value::Null,
    })
}

/// `prompts`: at least one (a run draws one; an empty list has nothing to draw).
fn read_prompts(o: &Obj<'_>) -> Option<Vec<String>> {
    let Some(n) = o.get("prompts") else {
        return Some(vec![
            "Summarise the last quarter's cloud spend and suggest three savings.".to_string(),
        ]);
    };
    let items = n.as_array()?;
    if items.is_empty() {
        n.error("needs at least one prompt: each run draws one for `{{prompt}}`");
        return None;
    }
    let prompts: Vec<String> = items
        .iter()
        .filter_map(|i| i.as_str().map(str::to_string))
        .collect();
    (prompts.len() == items.len()).then_some(prompts)
}

/// What the scenario records besides the fixed names (see
/// [`crate::names::Vocabulary`]); a part that did not load is unknown.
fn vocabulary(journeys: Option<&[Journey]>, profile: Option<&Profile>) -> crate::names::Vocabulary {
    fn walk(steps: &[Step], v: &mut crate::names::Vocabulary) {
        for s in steps {
            let list = match &s.kind {
                StepKind::CreateThread { .. }
                | StepKind::ListThreads
                | StepKind::History
                | StepKind::Http { .. } => v.rest_steps.as_mut(),
                StepKind::Send { .. }
                | StepKind::Think { .. }
                | StepKind::Disconnect
                | StepKind::Reconnect => v.timed_steps.as_mut(),
                StepKind::SwitchThread { .. } => {
                    v.switches_threads = Some(true);
                    None
                }
                StepKind::Repeat { steps, .. } => {
                    walk(steps, v);
                    None
                }
                StepKind::Connect | StepKind::Await { .. } => None,
            };
            if let Some(l) = list {
                l.push(s.name.clone());
            }
        }
    }
    let mut v = crate::names::Vocabulary::unknown();
    if let Some(journeys) = journeys {
        v.rest_steps = Some(Vec::new());
        v.timed_steps = Some(Vec::new());
        v.switches_threads = Some(false);
        for j in journeys {
            walk(&j.steps, &mut v);
        }
    }
    if let Some(p) = profile {
        v.events = Some(
            p.agent_events
                .iter()
                .chain(&p.terminal_ok)
                .chain(&p.terminal_error)
                .cloned()
                .collect(),
        );
    }
    v
}

/// The columns of `[data]`, for placeholders.
#[derive(Debug, Clone, PartialEq)]
enum Columns {
    /// No `[data]`, or its file loaded with these columns.
    Known(Vec<String>),
    /// `[data]` is given but its file did not load (already reported): a
    /// name that may be one of its columns is not reported as unknown.
    Unknown,
}

/// Where [data] columns do not apply.
static NO_COLUMNS: Columns = Columns::Known(Vec::new());

/// Built-in variables filled outside a run (login, heartbeats, handshake,
/// thread switches, http steps): `{{run}}` and `{{prompt}}` are empty there.
const SESSION_VARIABLES: [&str; 3] = ["user", "thread", "iteration"];

/// Where a template is rendered, and what is filled there.
struct Fills<'a> {
    /// For messages: "a `send` message", "an `http` step".
    place: &'a str,
    /// The built-in variables filled here.
    builtins: &'a [&'a str],
    /// Other names filled here: captured variables (and, where `columns`
    /// apply, the [data] columns, passed in `columns`).
    names: &'a [String],
    columns: &'a Columns,
    /// Whether [data] columns are filled here.
    columns_apply: bool,
    /// Whether `{{env.NAME}}` is filled here.
    env: bool,
}

impl Fills<'_> {
    fn known(&self) -> String {
        let mut v: Vec<String> = self
            .builtins
            .iter()
            .map(|b| format!("{{{{{b}}}}}"))
            .collect();
        v.extend(self.names.iter().map(|b| format!("{{{{{b}}}}}")));
        if self.columns_apply {
            if let Columns::Known(c) = self.columns {
                v.extend(c.iter().map(|b| format!("{{{{{b}}}}}")));
            }
        }
        v.join(", ")
    }

    /// What is wrong with one placeholder here, if anything.
    fn problem(&self, t: &template::Token) -> Option<String> {
        use template::Token;
        let place = self.place;
        match t {
            Token::Unterminated(rest) => Some(format!(
                "unterminated placeholder `{{{{{rest}`: close it with `}}}}`"
            )),
            Token::Env(name) if !self.env => Some(format!(
                "`{{{{env.{name}}}}}` is not filled in {place}: environment placeholders are read in [auth.login] body only"
            )),
            Token::Env(name) if !template::is_env_name(name) => Some(format!(
                "`{{{{env.{name}}}}}`: an environment variable name is A-Z, 0-9 and _"
            )),
            Token::Env(_) => None,
            Token::Var(v) => {
                let column = matches!(self.columns, Columns::Known(c) if c.contains(v));
                if self.builtins.contains(&v.as_str())
                    || self.names.contains(v)
                    || (self.columns_apply && column)
                {
                    return None;
                }
                if self.columns_apply && *self.columns == Columns::Unknown {
                    // Perhaps a column of the data file that did not load.
                    return None;
                }
                let known = self.known();
                Some(if template::VARIABLES.contains(&v.as_str()) {
                    format!("`{{{{{v}}}}}` is empty in {place}, which fills {known}")
                } else if column {
                    format!("`{{{{{v}}}}}` is a [data] column; {place} does not fill those (it fills {known})")
                } else if self.columns_apply {
                    format!("unknown placeholder `{{{{{v}}}}}` (known: {known}; a [data] file adds its columns)")
                } else {
                    format!("unknown placeholder `{{{{{v}}}}}` ({place} fills {known})")
                })
            }
        }
    }
}

/// Checks every placeholder of every string in `n`, each problem reported at
/// its string's own key path.
fn check_template(n: &Node<'_>, fills: &Fills<'_>) -> bool {
    let mut ok = true;
    doc::for_each_string(n, &mut |node, text| {
        for t in template::tokens(text) {
            if let Some(why) = fills.problem(&t) {
                node.error(why);
                ok = false;
            }
        }
    });
    ok
}

/// Values sent as written: a placeholder there would go out verbatim.
fn refuse_placeholders(n: &Node<'_>, what: &str) -> bool {
    let mut ok = true;
    doc::for_each_string(n, &mut |node, text| {
        if text.contains("{{") {
            node.error(format!(
                "{what} is sent as written: placeholders are not filled here"
            ));
            ok = false;
        }
    });
    ok
}

fn read_target(o: &Obj<'_>) -> Option<Target> {
    let mut t = Target {
        url: None,
        allow: Vec::new(),
        connect_timeout: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(10),
    };
    let Some(tbl) = o.obj("target") else {
        return Some(t);
    };
    if let Some(n) = tbl.get("url") {
        if let Some(u) = n.as_str() {
            match check_ws_url(u) {
                Ok(()) => t.url = Some(u.to_string()),
                Err(e) => n.error(e),
            }
        }
    }
    if let Some(a) = tbl.str_list("allow") {
        t.allow = a;
    }
    if let Some(d) = tbl.duration("connect_timeout") {
        t.connect_timeout = d;
    }
    if let Some(d) = tbl.duration("ready_timeout") {
        t.ready_timeout = d;
    }
    tbl.finish();
    Some(t)
}

fn read_auth(o: &Obj<'_>, base: &Path, peak_users: Option<u64>) -> Option<Auth> {
    let claims = crate::auth::netra_claims();
    let mut a = Auth {
        secret_env: DEFAULT_SECRET_ENV.into(),
        lifetime: Duration::from_secs(30 * 60),
        claims,
        present: vec![Presentation::SubprotocolJwt],
        user_prefix: "chatload-user-".into(),
        refresh_margin: Duration::from_secs(60),
        refresh: true,
        source: TokenSource::Mint,
    };
    let Some(tbl) = o.obj("auth") else {
        return Some(a);
    };
    let mut ok = true;
    // `None`: an unknown mode (reported); the keys of a mode are then not judged.
    let mode: Option<&str> = match tbl.get("mode") {
        None => Some("mint"),
        Some(n) => match n.as_str() {
            Some(m @ ("mint" | "file" | "login")) => Some(m),
            Some(m) => {
                n.error(format!(
                    "unknown auth mode `{m}` (expected mint, file or login)"
                ));
                None
            }
            None => None,
        },
    };
    ok &= mode.is_some();
    let tokens_file = tbl.get("tokens_file");
    let reuse_node = tbl.get("reuse_tokens");
    let reuse = match &reuse_node {
        None => Some(false),
        Some(n) => n.as_bool(),
    };
    ok &= reuse.is_some();
    match mode {
        Some("file") => match tokens_file.as_ref() {
            Some(n) => match n.as_str() {
                Some(f) => {
                    let count = read_tokens_count(n, &base.join(f));
                    match (count, reuse, peak_users) {
                        (None, ..) => ok = false,
                        (Some(have), Some(false), Some(users)) if (have as u64) < users => {
                            n.error(format!(
                                "the tokens file {f} has {have} tokens for {users} users; add tokens, or set auth.reuse_tokens = true to let users share them"
                            ));
                            ok = false;
                        }
                        _ => {}
                    }
                    // Kept as written: `run` reads it again relative to the scenario.
                    a.source = TokenSource::File {
                        path: PathBuf::from(f),
                        reuse: reuse.unwrap_or(false),
                    };
                }
                None => ok = false,
            },
            None => {
                tbl.ctx().error(
                    tbl.node.span.clone(),
                    &tbl.child_path("tokens_file"),
                    "required with mode = \"file\": a file with one token per line",
                );
                ok = false;
            }
        },
        Some(m) => {
            if let Some(n) = &tokens_file {
                n.error("`tokens_file` is only read with mode = \"file\"");
                ok = false;
            }
            if let Some(n) = &reuse_node {
                n.error("`reuse_tokens` is only read with mode = \"file\"");
                ok = false;
            }
            if m == "login" {
                match read_login(&tbl) {
                    Some(source) => a.source = source,
                    None => ok = false,
                }
            }
        }
        None => {}
    }
    // One error for a login table another mode never reads (its keys are not
    // reported one by one).
    if let Some(l) = tbl.get("login") {
        if mode.is_some_and(|m| m != "login") {
            l.error("[auth.login] is only read with mode = \"login\"");
            ok = false;
        }
    }
    if let Some(n) = tbl.get("algorithm") {
        if let Some(m) = n.as_str() {
            if m != "HS256" {
                n.error(format!(
                    "algorithm `{m}` is not supported (supported: HS256)"
                ));
                ok = false;
            }
        }
    }
    if let Some(n) = tbl.get("secret_env") {
        if let Some(s) = n.as_str() {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                n.error("must be the name of an environment variable (letters, digits, _)");
                ok = false;
            } else {
                a.secret_env = s.to_string();
            }
        }
    }
    if let Some(n) = tbl.get("secret") {
        n.error("secrets never go in a scenario file: put the key in an environment variable and name it with `secret_env`");
        ok = false;
    }
    let lifetime = tbl.get("lifetime");
    let mut times_ok = true;
    if let Some(n) = &lifetime {
        match n.as_duration() {
            Some(d) => a.lifetime = d,
            None => times_ok = false,
        }
    }
    if let Some(n) = tbl.get("claims") {
        if let Some(c) = n.as_obj() {
            for (k, v, _) in c.entries() {
                if ["sub", "iat", "exp", "jti"].contains(&k.as_str()) {
                    v.error(format!(
                        "`{k}` is set per token by chatload and cannot be templated"
                    ));
                    ok = false;
                    continue;
                }
                // The minter replaces the exact text `{{user}}`, nothing else.
                doc::for_each_string(&v, &mut |node, text| {
                    if text.replace("{{user}}", "").contains("{{") {
                        node.error("claims fill only `{{user}}`, written exactly so");
                        ok = false;
                    }
                });
                if let Some(j) = v.to_json() {
                    a.claims.insert(k, j);
                }
            }
            c.finish();
        }
    }
    if let Some(n) = tbl.get("present") {
        if let Some(items) = n.as_array() {
            let mut v = Vec::new();
            let mut good = true;
            for item in &items {
                if let Some(s) = item.as_str() {
                    match s.parse::<Presentation>() {
                        Ok(p) => v.push(p),
                        Err(e) => {
                            item.error(e);
                            good = false;
                        }
                    }
                } else {
                    good = false;
                }
            }
            if items.is_empty() {
                n.error("needs at least one presentation");
                good = false;
            }
            ok &= good;
            a.present = v;
        }
    }
    if let Some(p) = tbl.str("user_prefix") {
        a.user_prefix = p;
    }
    let margin = tbl.get("refresh_margin");
    if let Some(n) = &margin {
        if n.item.as_str() == Some("off") {
            a.refresh = false;
            a.refresh_margin = Duration::ZERO;
        } else {
            match n.as_duration() {
                Some(d) => a.refresh_margin = d,
                None => times_ok = false,
            }
        }
    }
    if times_ok && a.refresh_margin >= a.lifetime {
        let why = format!(
            "refresh_margin ({}) must be shorter than the token lifetime ({})",
            humantime::format_duration(a.refresh_margin),
            humantime::format_duration(a.lifetime)
        );
        match margin.as_ref().or(lifetime.as_ref()) {
            Some(n) => n.error(why),
            None => tbl.error(why),
        }
        ok = false;
    }
    tbl.finish();
    ok.then_some(a)
}

/// Counts the tokens of a tokens file (one per line; blank lines and `#`
/// comments skipped, as `run` reads it). Never shows a token.
fn read_tokens_count(n: &Node<'_>, path: &Path) -> Option<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            n.error(format!(
                "cannot read the tokens file {}: {e}",
                path.display()
            ));
            return None;
        }
    };
    let count = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    if count == 0 {
        n.error(format!(
            "the tokens file {} has no tokens (one per line; blank lines and # comments are skipped)",
            path.display()
        ));
        return None;
    }
    Some(count)
}

/// `[auth.login]` of mode = "login" (every key has a default).
fn read_login(tbl: &Obj<'_>) -> Option<TokenSource> {
    let default_body = || serde_json::json!({"user_id": "{{user}}", "email": "{{user}}@loadtest.chatload.invalid"});
    let mut source = TokenSource::Login {
        url: "/auth/dev/login".into(),
        body: default_body(),
        token_field: "access_token".into(),
    };
    let Some(n) = tbl.get("login") else {
        return Some(source);
    };
    let l = n.as_obj()?;
    let mut ok = true;
    let TokenSource::Login {
        url,
        body,
        token_field,
    } = &mut source
    else {
        unreachable!("built as a login source above")
    };
    if let Some(n) = l.get("url") {
        match n.as_str() {
            Some(u)
                if u.starts_with('/') || u.starts_with("http://") || u.starts_with("https://") =>
            {
                ok &= refuse_placeholders(&n, "the login url");
                *url = u.to_string()
            }
            Some(_) => {
                n.error("a path on the target's host (/auth/dev/login) or an http(s) URL");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = l.get("body") {
        if n.item.as_table_like_pub().is_none() {
            n.error("must be a table (the JSON object to POST)");
            ok = false;
        } else {
            let fills = Fills {
                place: "[auth.login] body",
                builtins: &SESSION_VARIABLES,
                names: &[],
                columns: &NO_COLUMNS,
                columns_apply: false,
                env: true,
            };
            ok &= check_template(&n, &fills);
            match n.to_json() {
                Some(v) => *body = v,
                None => ok = false,
            }
        }
    }
    if let Some(t) = l.get("token") {
        match t.as_str() {
            Some(f) if !f.is_empty() => *token_field = f.to_string(),
            Some(_) => {
                t.error("a dotted path of the token in the login answer, e.g. \"access_token\"");
                ok = false;
            }
            None => ok = false,
        }
    }
    l.finish();
    ok.then_some(source)
}

fn read_reconnect(o: &Obj<'_>) -> Option<Reconnect> {
    let mut r = Reconnect::default();
    let Some(t) = o.obj("reconnect") else {
        return Some(r);
    };
    let mut ok = true;
    let initial = t.get("initial");
    let max = t.get("max");
    // Compared only when both read (a bad one would compare its default).
    let mut compare = true;
    if let Some(n) = &initial {
        match n.as_duration() {
            Some(d) => r.initial = d,
            None => compare = false,
        }
    }
    if let Some(n) = &max {
        match n.as_duration() {
            Some(d) => r.max = d,
            None => compare = false,
        }
    }
    ok &= compare;
    if let Some(n) = t.get("multiplier") {
        match f64_where(&n, |m| m >= 1.0, "must be at least 1") {
            Some(m) => r.multiplier = m,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("jitter") {
        let share = |j: f64| (0.0..=1.0).contains(&j);
        match f64_where(&n, share, "must be between 0 and 1 (a share of the delay)") {
            Some(j) => r.jitter = j,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("attempts") {
        match positive_u64(&n) {
            Some(a) => r.attempts = a.min(u64::from(u32::MAX)) as u32,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("min_uptime") {
        match n.as_duration() {
            Some(d) => r.min_uptime = d,
            None => ok = false,
        }
    }
    if compare && r.initial > r.max {
        let (i, m) = (
            humantime::format_duration(r.initial),
            humantime::format_duration(r.max),
        );
        match (&initial, &max) {
            (Some(n), _) => n.error(format!("`initial` ({i}) must not exceed `max` ({m})")),
            (None, Some(n)) => n.error(format!(
                "`max` ({m}) must be at least `initial` ({i} unless set)"
            )),
            (None, None) => unreachable!("the defaults are ordered"),
        }
        ok = false;
    }
    t.finish();
    ok.then_some(r)
}

fn read_profile(o: &Obj<'_>) -> Option<Profile> {
    let Some(tbl) = o.obj("profile") else {
        return Some(Profile::netra());
    };
    let mut ok = true;
    let mut p = Profile::netra();
    if let Some(n) = tbl.get("base") {
        if let Some(b) = n.as_str() {
            match Profile::builtin(b) {
                Some(base) => p = base,
                None => {
                    n.error(format!("unknown profile base `{b}` (built in: netra)"));
                    ok = false;
                }
            }
        }
    }
    if let Some(v) = tbl.str("type_field") {
        p.type_field = v;
    }
    if let Some(v) = tbl.str_list("wrapper_types") {
        p.wrapper_types = v;
    }
    if let Some(v) = tbl.str("wrapper_event_field") {
        p.wrapper_event_field = v;
    }
    if let Some(a) = tbl.obj("aliases") {
        for (k, v, _) in a.entries() {
            if let Some(t) = v.as_str() {
                p.aliases.insert(k, t.to_string());
            }
        }
        a.finish();
    }
    for (key, field) in [
        ("run_id_fields", &mut p.run_id_fields),
        ("thread_id_fields", &mut p.thread_id_fields),
        ("user_id_fields", &mut p.user_id_fields),
        ("ready", &mut p.ready),
        ("agent_events", &mut p.agent_events),
        ("terminal_ok", &mut p.terminal_ok),
        ("terminal_error", &mut p.terminal_error),
        ("ignore", &mut p.ignore),
        ("error_frames", &mut p.error_frames),
    ] {
        if let Some(v) = tbl.str_list(key) {
            *field = v;
        }
    }
    if let Some(a) = tbl.obj("answers") {
        for (k, v, _) in a.entries() {
            match v.to_json() {
                Some(j) if j.is_object() => {
                    ok &= refuse_placeholders(&v, "an answer");
                    p.answers.insert(k, j);
                }
                Some(_) => {
                    v.error("must be a table (the reply message)");
                    ok = false;
                }
                None => ok = false,
            }
        }
        a.finish();
    }
    // Templates sent outside a run: the user, its thread and iteration are filled.
    let session_fills = |place| Fills {
        place,
        builtins: &SESSION_VARIABLES,
        names: &[],
        columns: &NO_COLUMNS,
        columns_apply: false,
        env: false,
    };
    if let Some(n) = tbl.get("handshake") {
        if n.item_str() == Some("none") {
            p.handshake = None;
        } else if n.item.as_table_like_pub().is_some() {
            let h = n.as_obj().expect("checked to be a table");
            let on = h.require("on").and_then(|x| x.as_str().map(str::to_string));
            let reply = h.require("reply").and_then(|x| {
                if x.item.as_table_like_pub().is_none() {
                    x.error("must be a table (the JSON object to send)");
                    return None;
                }
                let good = check_template(&x, &session_fills("the handshake reply"));
                x.to_json().filter(|_| good)
            });
            h.finish();
            match (on, reply) {
                (Some(on), Some(reply)) => {
                    p.handshake = Some(crate::protocol::Handshake { on, reply })
                }
                _ => ok = false,
            }
        } else {
            n.error("expected a table { on, reply } or \"none\"");
            ok = false;
        }
    }
    if let Some(n) = tbl.get("heartbeat") {
        if n.item_str() == Some("none") {
            p.heartbeat = None;
        } else if n.item.as_table_like_pub().is_some() {
            let h = n.as_obj().expect("checked to be a table");
            let mut hb = p.heartbeat.clone().unwrap_or(crate::protocol::Heartbeat {
                every: Duration::from_secs(15),
                message: serde_json::json!({"type": "ping"}),
                reply: "pong".into(),
                timeout: Duration::from_secs(45),
            });
            let every = h.get("every");
            let timeout = h.get("timeout");
            let mut times_ok = true;
            if let Some(e) = &every {
                match e.as_duration() {
                    Some(d) if d < Duration::from_millis(100) => {
                        e.error("must be at least 100ms");
                        times_ok = false;
                    }
                    Some(d) => hb.every = d,
                    None => times_ok = false,
                }
            }
            if let Some(t) = &timeout {
                match t.as_duration() {
                    Some(d) => hb.timeout = d,
                    None => times_ok = false,
                }
            }
            ok &= times_ok;
            if let Some(m) = h.get("message") {
                if m.item.as_table_like_pub().is_some() {
                    ok &= check_template(&m, &session_fills("a heartbeat message"));
                    match m.to_json() {
                        Some(v) => hb.message = v,
                        None => ok = false,
                    }
                } else {
                    m.error("must be a table (the JSON object to send)");
                    ok = false;
                }
            }
            if let Some(r) = h.str("reply") {
                hb.reply = r;
            }
            if times_ok && hb.timeout < hb.every {
                let why = format!(
                    "`timeout` ({}) must be at least `every` ({}): a ping needs time to be answered",
                    humantime::format_duration(hb.timeout),
                    humantime::format_duration(hb.every)
                );
                match timeout.as_ref().or(every.as_ref()) {
                    Some(n) => n.error(why),
                    None => h.error(why),
                }
                ok = false;
            }
            h.finish();
            p.heartbeat = Some(hb);
        } else {
            n.error("expected a table { every, message, reply, timeout } or \"none\"");
            ok = false;
        }
    }
    if let Some(sw) = tbl.obj("switch_thread") {
        if let Some(m) = sw.get("message") {
            if m.item.as_table_like_pub().is_some() {
                ok &= check_template(&m, &session_fills("the switch_thread message"));
                match m.to_json() {
                    Some(v) => p.switch_thread.message = v,
                    None => ok = false,
                }
            } else {
                m.error("must be a table (the JSON object to send)");
                ok = false;
            }
        }
        if let Some(r) = sw.get("reply") {
            match r.as_str() {
                Some("none") => p.switch_thread.reply = None,
                Some(t) => p.switch_thread.reply = Some(t.to_string()),
                None => ok = false,
            }
        }
        if let Some(path) = sw.str("messages") {
            p.switch_thread.messages_path = path;
        }
        sw.finish();
    }
    let sequence = tbl.get("sequence");
    let mut sequence_ok = true;
    if let Some(n) = &sequence {
        match n.as_str() {
            Some(text) => match crate::protocol::sequence::Sequence::compile(text) {
                Ok(seq) => p.rules.sequence = seq,
                Err(e) => {
                    n.error(format!("sequence: {e}"));
                    sequence_ok = false;
                }
            },
            None => sequence_ok = false,
        }
    }
    ok &= sequence_ok;
    if let Some(r) = tbl.obj("required") {
        // A table given here replaces the base's required fields entirely.
        p.rules.required.clear();
        for (event, v, _) in r.entries() {
            let mut rules = Vec::new();
            for item in v.as_array().unwrap_or_default() {
                if let Some(text) = item.as_str() {
                    match crate::protocol::validate::FieldRule::parse(text) {
                        Ok(rule) => rules.push(rule),
                        Err(e) => {
                            item.error(e);
                            ok = false;
                        }
                    }
                }
            }
            p.rules.required.insert(event, rules);
        }
        r.finish();
    }
    if let Some(n) = tbl.get("pairing") {
        if n.item_str() == Some("none") {
            p.rules.pairing = None;
        } else if let Some(pt) = n.as_obj() {
            let start = pt
                .require("start")
                .and_then(|x| x.as_str().map(str::to_string));
            let end = pt
                .require("end")
                .and_then(|x| x.as_str().map(str::to_string));
            let keys = pt.str_list("keys").unwrap_or_else(|| {
                vec!["tool_call_id".into(), "tool_id".into(), "tool_name".into()]
            });
            pt.finish();
            match (start, end) {
                (Some(start), Some(end)) => {
                    p.rules.pairing = Some(crate::protocol::validate::Pairing { start, end, keys })
                }
                _ => ok = false,
            }
        } else {
            ok = false;
        }
    }
    if let Some(d) = tbl.duration("max_gap") {
        p.rules.max_gap = Some(d);
    }
    if let Some(n) = tbl.u64("max_frame_bytes") {
        p.rules.max_frame_bytes = n as usize;
    }
    // Terminal events must be reachable: each must appear in the sequence
    // (for a sequence that did not compile, in its text as written: the base's
    // sequence, still in place, is not the one meant).
    let written = sequence
        .as_ref()
        .and_then(|n| n.item_str())
        .filter(|_| !sequence_ok);
    for t in &p.terminal_ok {
        let mentioned = match written {
            Some(text) => text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == t),
            None => p.rules.sequence.mentions(t),
        };
        if !mentioned {
            let why = format!(
                "terminal event `{t}` does not appear in the sequence `{}`",
                written.unwrap_or(p.rules.sequence.source())
            );
            match tbl.get("terminal_ok").or_else(|| sequence.clone()) {
                Some(n) => n.error(why),
                None => tbl.error(why),
            }
            ok = false;
        }
    }
    tbl.finish();
    ok.then_some(p)
}

fn read_range_u32(n: &Node<'_>) -> Option<(u32, u32)> {
    let items = n.as_array()?;
    if items.len() != 2 {
        n.error("must be [min, max]");
        return None;
    }
    let a = items[0].as_u64()? as u32;
    let b = items[1].as_u64()? as u32;
    if a > b {
        n.error("min must not exceed max");
        return None;
    }
    Some((a, b))
}

fn read_server(o: &Obj<'_>) -> Option<ServerTable> {
    let mut s = ServerTable {
        seed: None,
        envelope: Envelope::Data,
        ready: ReadyStyle::Established,
        naming: Naming::default(),
        thinking: (1, 2),
        tools: (0, 2),
        event_delay: (Duration::from_millis(5), Duration::from_millis(25)),
        slowdown_per_minute: 0.0,
        faults: FaultPlan::default(),
        capacity: None,
        stall: None,
        login_lifetime: Duration::from_secs(900),
        heartbeat: None,
        enforce_token_expiry: false,
    };
    let Some(tbl) = o.obj("server") else {
        return Some(s);
    };
    let mut ok = true;
    s.seed = tbl.u64("seed");
    if let Some(n) = tbl.get("envelope") {
        ok &= n.parse_into(&mut s.envelope);
    }
    if let Some(n) = tbl.get("ready") {
        ok &= n.parse_into(&mut s.ready);
    }
    if let Some(nm) = tbl.obj("naming") {
        if let Some(t) = nm.str("type_field") {
            s.naming.type_field = t;
        }
        if let Some(t) = nm.str("run_id_field") {
            s.naming.run_id_field = t;
        }
        if let Some(ev) = nm.obj("events") {
            for (k, v, _) in ev.entries() {
                if let Some(t) = v.as_str() {
                    s.naming.events.insert(k, t.to_string());
                }
            }
            ev.finish();
        }
        nm.finish();
    }
    if let Some(n) = tbl.get("slowdown_per_minute") {
        match f64_where(&n, |v| v >= 0.0, "must not be negative") {
            Some(v) => s.slowdown_per_minute = v,
            None => ok = false,
        }
    }
    if let Some(c) = tbl.obj("capacity") {
        let runs = c.require("runs").and_then(|n| {
            let v = n.as_u64()?;
            if v == 0 {
                n.error("must be at least 1");
                return None;
            }
            Some(v as usize)
        });
        let queue = c.u64("queue").unwrap_or(0) as usize;
        c.finish();
        match runs {
            Some(runs) => s.capacity = Some(crate::protocol::faults::Capacity { runs, queue }),
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("login_lifetime") {
        match n.as_duration() {
            Some(d) if d >= Duration::from_secs(1) => s.login_lifetime = d,
            Some(_) => {
                n.error("must be at least 1s (tokens carry whole seconds)");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("heartbeat") {
        match n.as_duration() {
            Some(d) if !d.is_zero() => s.heartbeat = Some(d),
            Some(_) => {
                n.error("must be longer than zero");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(b) = tbl.bool("enforce_token_expiry") {
        s.enforce_token_expiry = b;
    }
    if let Some(st) = tbl.obj("stall") {
        let every = st.require("every").and_then(|n| n.as_duration());
        let for_node = st.require("for");
        let length = for_node.as_ref().and_then(|n| n.as_duration());
        match (every, length, &for_node) {
            (Some(every), Some(length), Some(n)) if length >= every || length.is_zero() => {
                n.error(if length.is_zero() {
                    "must be longer than zero (a stall of 0s stalls nothing)"
                } else {
                    "the stall must be shorter than its period (`every`)"
                });
                ok = false;
            }
            (Some(every), Some(length), _) => {
                s.stall = Some(crate::protocol::faults::Stall { every, length })
            }
            _ => ok = false,
        }
        st.finish();
    }
    if let Some(n) = tbl.get("thinking") {
        match read_range_u32(&n) {
            Some(r) => s.thinking = r,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("tools") {
        match read_range_u32(&n) {
            Some(r) => s.tools = r,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("event_delay") {
        let pair = n.as_array().and_then(|items| {
            if items.len() != 2 {
                n.error("must be [min, max], e.g. [\"5ms\", \"25ms\"]");
                return None;
            }
            let (a, b) = (items[0].as_duration()?, items[1].as_duration()?);
            if a > b {
                n.error("min must not exceed max");
                return None;
            }
            Some((a, b))
        });
        match pair {
            Some(p) => s.event_delay = p,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("faults") {
        if let Some(text) = n.item_str() {
            match FaultPlan::parse(text) {
                Ok(f) => s.faults = f,
                Err(e) => {
                    n.error(e);
                    ok = false;
                }
            }
        } else if let Some(f) = n.as_obj() {
            for (k, v, _) in f.entries() {
                // A value is one setting ("0.5%@idle", "agent_thinking:1%") or a list of them.
                let texts: Vec<Node<'_>> = if v.item_str().is_some() {
                    vec![v.clone()]
                } else {
                    v.as_array().unwrap_or_default()
                };
                for t in texts {
                    let Some(text) = t.as_str() else {
                        ok = false;
                        continue;
                    };
                    if let Err(e) = s.faults.set(&k, text) {
                        t.error(e);
                        ok = false;
                    }
                }
            }
            f.finish();
        } else {
            ok = false;
        }
    }
    tbl.finish();
    ok.then_some(s)
}

/// A number that must satisfy `valid`; otherwise `why` is reported at the key.
fn f64_where(n: &Node<'_>, valid: impl Fn(f64) -> bool, why: &str) -> Option<f64> {
    let v = n.as_f64()?;
    if !valid(v) {
        n.error(why.to_string());
        return None;
    }
    Some(v)
}

fn positive_u64(n: &Node<'_>) -> Option<u64> {
    let u = n.as_u64()?;
    if u == 0 {
        n.error("must be at least 1");
        return None;
    }
    Some(u)
}

fn non_negative_f64(n: &Node<'_>) -> Option<f64> {
    let v = n.as_f64()?;
    if !(v >= 0.0 && v.is_finite()) {
        n.error("must be a number of at least 0");
        return None;
    }
    Some(v)
}

fn read_workload(o: &Obj<'_>) -> Option<Workload> {
    let tbl = o.require("workload")?.as_obj()?;
    // For errors about the whole plan, judged after the table is finished.
    let table = tbl.node.clone();
    let mut ok = true;
    let mut open = false;
    if let Some(n) = tbl.get("model") {
        match n.as_str() {
            Some("closed") => {}
            Some("open") => open = true,
            Some(m) => {
                n.error(format!(
                    "unknown workload model `{m}` (expected closed or open)"
                ));
                ok = false;
            }
            None => ok = false,
        }
    }
    let capacity_mode = o.get("capacity").is_some();
    let on_signal_ends = match tbl.get("on_signal") {
        None => false,
        Some(n) => match n.as_str() {
            Some("abort") => false,
            Some("end") => true,
            Some(other) => {
                n.error(format!("`{other}` is not abort or end"));
                ok = false;
                false
            }
            None => {
                ok = false;
                false
            }
        },
    };
    // Keys that only one model (or only a fixed plan) reads.
    let refuse = |key: &str, why: &str| {
        if let Some(n) = tbl.get(key) {
            n.error(why.to_string());
            false
        } else {
            true
        }
    };
    if capacity_mode {
        for key in ["ramp", "duration", "iterations", "rate"] {
            ok &= refuse(
                key,
                "a capacity search takes its steps from [capacity]; remove this key",
            );
        }
    }
    let time_unit = match tbl.get("time_unit") {
        None => Duration::from_secs(1),
        Some(n) => match n.as_duration() {
            Some(d) if !open => {
                let _ = d;
                n.error("time_unit is for the open model's rates (model = \"open\")");
                ok = false;
                Duration::from_secs(1)
            }
            Some(d) if d.is_zero() => {
                n.error("must be longer than zero");
                ok = false;
                Duration::from_secs(1)
            }
            Some(d) => d,
            None => {
                ok = false;
                Duration::from_secs(1)
            }
        },
    };
    let per_s = |v: f64| v / time_unit.as_secs_f64();
    let duration_node = tbl.get("duration").filter(|_| !capacity_mode);
    let duration = match &duration_node {
        None => None,
        Some(n) => match n.as_duration().and_then(|d| whole_seconds(n, d)) {
            // A hold of 0 s holds nothing (and a plan of 0 s never ends).
            Some(d) if d.is_zero() => {
                n.error("must be longer than zero");
                ok = false;
                None
            }
            Some(d) => Some(d),
            None => {
                ok = false;
                None
            }
        },
    };
    let ramp_node = tbl.get("ramp").filter(|_| !capacity_mode);

    if open {
        ok &= refuse(
            "users",
            "the open model's pool is `max_users`; its load is `rate` (arrivals per time_unit)",
        );
        ok &= refuse(
            "iterations",
            "iterations belong to the closed model; the open model runs for its rate plan",
        );
        let max_users = tbl.require("max_users").and_then(|n| positive_u64(&n));
        let mut arrivals = Arrivals::Constant;
        if let Some(n) = tbl.get("arrivals") {
            ok &= n.parse_into(&mut arrivals);
        }
        let mut when_full = WhenFull::Drop;
        if let Some(n) = tbl.get("when_full") {
            ok &= n.parse_into(&mut when_full);
        }
        let rate_node = tbl.get("rate").filter(|_| !capacity_mode);
        let rate = match &rate_node {
            None => None,
            Some(n) => {
                let r = non_negative_f64(n);
                ok &= r.is_some();
                r
            }
        };
        let mut steps: Vec<plan::RateStep> = Vec::new();
        if let Some(n) = &ramp_node {
            match read_ramp(n, non_negative_f64) {
                Some(r) => steps = r.into_iter().map(|(to, d)| (to.map(per_s), d)).collect(),
                None => ok = false,
            }
        }
        // Only when neither is written: a bad `rate` was reported as such.
        if !capacity_mode && rate_node.is_none() && ramp_node.is_none() {
            tbl.error("the open model needs `rate` (arrivals per time_unit), held for `duration`, or a `ramp` of rates");
            ok = false;
        }
        tbl.finish();
        let max_users = max_users?;
        if !ok {
            return None;
        }
        if !capacity_mode {
            if steps.is_empty() {
                steps.push((None, duration.unwrap_or(Duration::from_secs(30))));
            } else if let Some(d) = duration {
                steps.push((None, d));
            }
        }
        let rate_plan = RatePlan::from_steps(per_s(rate.unwrap_or(0.0)), &steps);
        if !capacity_mode {
            // Where the plan is written: the ramp, else the rate.
            let at = ramp_node.as_ref().or(rate_node.as_ref());
            let total = rate_plan.total();
            let why = if total.is_zero() {
                Some("the rate plan lasts 0 s: give the ramp a `{ hold = \"1m\" }` step or set `duration`")
            } else if rate_plan.expected(total.as_secs_f64()) <= 0.0 {
                Some("every stage has rate 0: the plan has no arrivals, so the run would measure nothing")
            } else {
                None
            };
            if let Some(why) = why {
                match at {
                    Some(n) => n.error(why),
                    None => table.error(why),
                }
                return None;
            }
        }
        let model = OpenModel {
            rate: rate_plan,
            arrivals,
            max_users,
            when_full,
            time_unit,
        };
        return Some(Workload {
            plan: pool_plan(max_users, &model.rate),
            open: Some(model),
            capacity: None,
            on_signal_ends,
        });
    }

    for key in ["max_users", "arrivals", "when_full", "rate"] {
        ok &= refuse(key, "this key belongs to the open model (model = \"open\")");
    }
    let users = if capacity_mode {
        ok &= refuse(
            "users",
            "a capacity search sets the users of each step from [capacity] (start, step, max)",
        );
        None
    } else {
        tbl.require("users").and_then(|n| positive_u64(&n))
    };
    let iterations = tbl.get("iterations").and_then(|n| positive_u64(&n));
    let mut steps = Vec::new();
    if let Some(n) = &ramp_node {
        if iterations.is_some() {
            n.error(
                "`ramp` and `iterations` exclude each other: iterations start every user at once",
            );
            ok = false;
        }
        let to_users = |n: &Node<'_>| {
            let to = n.as_u64()?;
            if users.is_some_and(|u| to > u) {
                n.error(format!("ramps to {to} users, above `workload.users`"));
                return None;
            }
            Some(to)
        };
        match read_ramp(n, to_users) {
            Some(r) => steps.extend(r.into_iter().map(|(to, over)| match to {
                Some(to) => RampStep::To { to, over },
                None => RampStep::Hold(over),
            })),
            None => ok = false,
        }
    }
    tbl.finish();
    if !ok {
        return None;
    }
    if capacity_mode {
        // The staircase is filled in from [capacity] by the caller.
        return Some(Workload {
            plan: LoadPlan {
                stages: Vec::new(),
                iterations: None,
            },
            open: None,
            capacity: None,
            on_signal_ends,
        });
    }
    let users = users?;
    if steps.is_empty() && iterations.is_none() {
        // Default shape: everyone at once, then hold for `duration` (default 30 s).
        steps.push(RampStep::To {
            to: users,
            over: Duration::ZERO,
        });
        steps.push(RampStep::Hold(duration.unwrap_or(Duration::from_secs(30))));
    } else if let Some(d) = duration {
        if iterations.is_none() {
            steps.push(RampStep::Hold(d));
        }
    }
    if iterations.is_some() {
        steps = vec![RampStep::To {
            to: users,
            over: Duration::ZERO,
        }];
    }
    let plan = LoadPlan::from_ramp(&steps, iterations);
    if iterations.is_none() {
        // goose 0.19 never ends a plan of 0 s, and a plan of 0 users runs nothing.
        let why = if plan.total().is_zero() {
            Some("the plan lasts 0 s (goose would never end it): give the ramp a `{ hold = \"1m\" }` step or set `duration`")
        } else if plan.peak_users() == 0 {
            Some("the plan never starts a user: every stage has 0 users")
        } else {
            None
        };
        if let Some(why) = why {
            match &ramp_node {
                Some(n) => n.error(why),
                None => table.error(why),
            }
            return None;
        }
    }
    Some(Workload {
        plan,
        open: None,
        capacity: None,
        on_signal_ends,
    })
}

/// The goose users of the open model: the whole pool starts at once and
/// stays for the rate plan (the engine ends it when the last journey is done).
pub fn pool_plan(max_users: u64, rate: &RatePlan) -> LoadPlan {
    LoadPlan::from_ramp(
        &[
            RampStep::To {
                to: max_users,
                over: Duration::ZERO,
            },
            RampStep::Hold(rate.total()),
        ],
        None,
    )
}

/// `[capacity]`: the steps, the SLOs that define "holds", and the target.
fn read_capacity(
    o: &Obj<'_>,
    open: Option<&OpenModel>,
    vocabulary: &crate::names::Vocabulary,
) -> Option<Option<CapacitySearch>> {
    let Some(tbl) = o.obj("capacity") else {
        return Some(None);
    };
    let mut ok = true;
    let unit = open.map(|m| m.time_unit);
    // Whole users unless the model is open (also when the workload has errors).
    let open_model = open.is_some() || workload_model(o) == Some("open");
    let per_s = |v: f64| unit.map_or(v, |u| v / u.as_secs_f64());
    let load = |key: &str, required: bool| -> Option<f64> {
        let n = if required {
            tbl.require(key)?
        } else {
            tbl.get(key)?
        };
        let v = non_negative_f64(&n)?;
        if !open_model && v.fract() != 0.0 {
            n.error("the closed model steps whole users");
            return None;
        }
        Some(per_s(v))
    };
    let start = load("start", true);
    let step = load("step", true);
    let max = load("max", true);
    let target = load("target", false);
    let step_duration = tbl.require("step_duration").and_then(|n| {
        let d = n.as_duration().and_then(|d| whole_seconds(&n, d))?;
        if d.is_zero() {
            n.error("must be longer than zero: a step of 0 s measures nothing and the search never ends");
            return None;
        }
        Some(d)
    });
    let warmup = match tbl.get("warmup") {
        None => Some(Duration::ZERO),
        Some(n) => n.as_duration().and_then(|d| whole_seconds(&n, d)),
    };
    let slo = match tbl.get("slo") {
        Some(n) => n.as_obj().and_then(|rules| {
            if rules.entries().is_empty() {
                rules.error("needs at least one rule, such as \"ttc p95\" = \"< 2s\": the rules define a step that holds");
                return None;
            }
            read_rules(rules, None, vocabulary)
        }),
        None => {
            tbl.ctx().error(
                tbl.node.span.clone(),
                &tbl.child_path("slo"),
                "required key is missing: a table of rules such as \"ttc p95\" = \"< 2s\" that define a step that holds",
            );
            None
        }
    };
    if let (Some(n), Some(s)) = (tbl.get("start"), start) {
        if s <= 0.0 {
            n.error(if open_model {
                "must be above 0: a step at rate 0 has no runs, so it measures no data"
            } else {
                "must be at least 1: a step of 0 users has no runs, so it measures no data"
            });
            ok = false;
        }
    }
    if let (Some(n), Some(s)) = (tbl.get("step"), step) {
        if s <= 0.0 {
            n.error("must be above 0");
            ok = false;
        }
    }
    if let (Some(n), Some(s), Some(m)) = (tbl.get("max"), start, max) {
        if m < s {
            n.error("must be at least `start`");
            ok = false;
        }
    }
    if let (Some(n), Some(d), Some(w)) = (tbl.get("warmup"), step_duration, warmup) {
        if w >= d {
            n.error("must be shorter than `step_duration` (the rest of the step is measured)");
            ok = false;
        }
    }
    if let (Some(n), Some(s), Some(st), Some(m)) = (tbl.get("max"), start, step, max) {
        if st > 0.0 && (m - s) / st > 1000.0 {
            n.error("more than 1000 steps: raise `step` or lower `max`");
            ok = false;
        }
    }
    tbl.finish();
    if !ok {
        return None;
    }
    Some(Some(CapacitySearch {
        plan: CapacityPlan {
            start: start?,
            step: step?,
            max: max?,
            step_duration: step_duration?,
            warmup: warmup?,
            target,
            rate_unit: unit,
        },
        slo: slo?,
    }))
}

/// `workload.model` as written, read without reporting anything (the
/// workload reader reports its problems).
fn workload_model<'a>(o: &Obj<'a>) -> Option<&'a str> {
    o.get("workload")?
        .item
        .as_table_like_pub()?
        .get("model")?
        .as_str()
}

/// A `ramp` list: `{ to, over }` (`to` read by `read_to`) or `{ hold }`, as
/// `(Some(to), over)` and `(None, hold)`; every mistake is reported.
fn read_ramp<T>(
    n: &Node<'_>,
    read_to: impl Fn(&Node<'_>) -> Option<T>,
) -> Option<Vec<(Option<T>, Duration)>> {
    let mut steps = Vec::new();
    let mut ok = true;
    for item in n.as_array()? {
        let Some(st) = item.as_obj() else {
            ok = false;
            continue;
        };
        if let Some(h) = st.get("hold") {
            if st.get("to").is_some() || st.get("over").is_some() {
                st.error("a ramp step is either { to, over } or { hold }");
                ok = false;
            }
            match h.as_duration().and_then(|d| whole_seconds(&h, d)) {
                Some(d) if d.is_zero() => {
                    h.error("must be longer than zero (a hold of 0 s holds nothing)");
                    ok = false;
                }
                Some(d) => steps.push((None, d)),
                None => ok = false,
            }
        } else {
            let to = st.require("to").and_then(|n| read_to(&n));
            let over = st
                .require("over")
                .and_then(|n| n.as_duration().and_then(|d| whole_seconds(&n, d)));
            match (to, over) {
                (Some(to), Some(over)) => steps.push((Some(to), over)),
                _ => ok = false,
            }
        }
        st.finish();
    }
    ok.then_some(steps)
}

fn whole_seconds(n: &Node<'_>, d: Duration) -> Option<Duration> {
    if d.subsec_nanos() != 0 {
        n.error("workload durations are whole seconds (goose's test plan resolution)");
        return None;
    }
    Some(d)
}

/// The journeys: `[[journey]]` (one) or `[[journeys]]` (a weighted mix, each
/// with `name`, `weight` and `[[journeys.steps]]`).
fn read_journey(
    o: &Obj<'_>,
    columns: &Columns,
    workload: Option<&Workload>,
) -> Option<Vec<Journey>> {
    // Variables captured by `http` steps may be used by any step's template.
    let mut captures: Vec<String> = Vec::new();
    for key in ["journey", "journeys"] {
        if let Some(v) = o.get(key).and_then(|n| n.item.to_json_quiet()) {
            capture_names(&v, &mut captures);
        }
    }
    let fills = StepFills {
        columns,
        captures: &captures,
    };
    // A closed-model user repeats its journey (unless it runs it once), so an
    // await early in a journey can wait for the run of a later send.
    let repeats = workload.is_none_or(|w| w.open.is_none() && w.plan.iterations != Some(1));
    let capacity_mode = o.get("capacity").is_some();
    match (o.get("journey"), o.get("journeys")) {
        (Some(_), Some(n)) => {
            n.error("use either [[journey]] (one journey) or [[journeys]] (a mix), not both");
            None
        }
        (None, None) => {
            o.require("journey");
            None
        }
        (Some(n), None) => {
            let steps = read_steps(&n, 0, &fills)?;
            if !check_awaits(&n, repeats) {
                return None;
            }
            Some(vec![Journey {
                name: "journey".into(),
                weight: 1,
                exact: false,
                steps,
            }])
        }
        (None, Some(n)) => read_mix(
            &n,
            &fills,
            workload.filter(|_| !capacity_mode),
            capacity_mode,
            repeats,
        ),
    }
}

/// `[[journeys]]`: each journey's share of the users is a `weight`, a `share`
/// (the shares add up to 100%) or an exact count of `users` (adding up to the
/// users); one kind for every journey.
fn read_mix(
    n: &Node<'_>,
    fills: &StepFills<'_>,
    workload: Option<&Workload>,
    capacity_mode: bool,
    repeats: bool,
) -> Option<Vec<Journey>> {
    let mut out = Vec::new();
    let mut ok = true;
    let items = n.as_array()?;
    // Per journey: which of weight/share/users it gives (`None`: the default
    // weight), and its weight when it parsed.
    let mut kinds: Vec<Option<&'static str>> = Vec::new();
    let mut weights: Vec<Option<usize>> = Vec::new();
    for item in &items {
        let Some(j) = item.as_obj() else {
            ok = false;
            continue;
        };
        let name = j
            .require("name")
            .and_then(|x| x.as_str().map(str::to_string));
        let given: Vec<&'static str> = ["weight", "share", "users"]
            .into_iter()
            .filter(|k| j.get(k).is_some())
            .collect();
        if let [first, second, ..] = given[..] {
            if let Some(extra) = j.get(second) {
                extra.error(format!(
                    "a journey has one of `weight`, `share` (\"70%\") or `users` (a count), not both `{first}` and `{second}`"
                ));
            }
            ok = false;
        }
        let kind = given.first().copied();
        let weight = match kind {
            None => Some(1),
            Some("share") => j.get("share").and_then(|n| {
                let f = n.as_fraction()?;
                // Shares in hundredths of a percent, as goose weights.
                let w = (f * 10_000.0).round() as usize;
                if w == 0 {
                    n.error("must be above 0%");
                    return None;
                }
                Some(w)
            }),
            Some("users") => j
                .get("users")
                .and_then(|n| positive_u64(&n))
                .map(|u| u as usize),
            Some(_) => j
                .get("weight")
                .and_then(|w| positive_u64(&w))
                .map(|w| w as usize),
        };
        kinds.push(kind);
        weights.push(weight);
        let steps = j.require("steps").and_then(|s| {
            let steps = read_steps(&s, 0, fills)?;
            check_awaits(&s, repeats).then_some(steps)
        });
        if let Some(nm) = &name {
            if out.iter().any(|x: &Journey| &x.name == nm) {
                if let Some(n) = j.get("name") {
                    n.error(format!("journey name `{nm}` is used twice"));
                }
                ok = false;
            }
        }
        j.finish();
        match (name, weight, steps) {
            (Some(name), Some(weight), Some(steps)) => out.push(Journey {
                name,
                weight,
                exact: kind == Some("users"),
                steps,
            }),
            _ => ok = false,
        }
    }
    if items.is_empty() {
        n.error("needs at least one journey");
        return None;
    }
    if kinds.len() != items.len() {
        return None;
    }
    // The mix is judged only when every journey gave its part.
    let all_parsed = weights.iter().all(Option::is_some);
    let count = |k: &str| kinds.iter().filter(|x| **x == Some(k)).count();
    let (shares, counts) = (count("share"), count("users"));
    if counts > 0 && counts != kinds.len() {
        n.error("give `users` to every journey or to none (mixing counts with weights or shares is ambiguous)");
        ok = false;
    } else if shares > 0 && shares != kinds.len() {
        n.error("give `share` to every journey or to none (a share beside a weight is ambiguous)");
        ok = false;
    } else if shares > 0 && all_parsed {
        let total: usize = weights.iter().flatten().sum();
        if total != 10_000 {
            n.error(format!(
                "the journeys' shares add up to {}%, not 100%",
                total as f64 / 100.0
            ));
            ok = false;
        }
    } else if counts > 0 && all_parsed {
        let total: usize = weights.iter().flatten().sum();
        let total = total as u64;
        // `None`: the workload's problems are reported by its reader.
        let why = match workload {
            _ if capacity_mode => Some("a capacity search changes the users at every step: give the journeys `weight` or `share`, not `users`".to_string()),
            Some(Workload { open: Some(m), .. }) if m.max_users != total => Some(format!("the journeys' `users` add up to {total}: set workload.max_users = {total} (the open model's session pool) so every journey gets exactly its count")),
            Some(w) if w.open.is_none() && w.plan.peak_users() != total => Some(format!("the journeys' `users` add up to {total}: set workload.users = {total} so every journey gets exactly its count")),
            _ => None,
        };
        if let Some(why) = why {
            n.error(why);
            ok = false;
        }
    }
    ok.then_some(out)
}

/// What step templates may use: the [data] columns and captured variables.
struct StepFills<'a> {
    columns: &'a Columns,
    captures: &'a [String],
}

/// Every `await` must have a `send` before it on some path, or it has no run
/// to wait for (and, waiting for nothing, the user would spin through its
/// journey). A repeat block that runs more than once, and the journey itself
/// when `repeats`, lets a send later in the block come before an await
/// earlier in it. Each such await is reported at its step.
fn check_awaits(steps: &Node<'_>, repeats: bool) -> bool {
    fn kind<'a>(n: &Node<'a>) -> Option<&'a str> {
        n.item.as_table_like_pub()?.get("step")?.as_str()
    }
    fn inner<'a>(n: &Node<'a>) -> Vec<Node<'a>> {
        let Some(t) = n.item.as_table_like_pub() else {
            return Vec::new();
        };
        let Some((k, item)) = t.get_key_value("steps") else {
            return Vec::new();
        };
        let node = Node {
            ctx: n.ctx.clone(),
            path: doc::join_path(&n.path, "steps"),
            item: Elem::Item(item),
            span: item.span().or_else(|| k.span()),
        };
        quiet_array(&node)
    }
    fn has_send(items: &[Node<'_>]) -> bool {
        items.iter().any(|n| match kind(n) {
            Some("send") => true,
            Some("repeat") => has_send(&inner(n)),
            _ => false,
        })
    }
    /// Whether a repeat block may run its steps more than once.
    fn loops(n: &Node<'_>) -> bool {
        let t = n.item.as_table_like_pub();
        let times = t.and_then(|t| t.get("times")).and_then(|i| i.as_integer());
        let for_ = t.and_then(|t| t.get("for")).is_some();
        for_ || times.is_none_or(|k| k > 1)
    }
    fn walk(items: &[Node<'_>], looping: bool, mut sent: bool, ok: &mut bool) -> bool {
        if looping && has_send(items) {
            sent = true;
        }
        for n in items {
            match kind(n) {
                Some("send") => sent = true,
                Some("await") if !sent => {
                    n.error("this `await` has no `send` before it (in its journey, or in a repeat block around it): there is no run to wait for");
                    *ok = false;
                }
                Some("repeat") => sent |= walk(&inner(n), loops(n), sent, ok),
                _ => {}
            }
        }
        sent
    }
    let mut ok = true;
    walk(&quiet_array(steps), repeats, false, &mut ok);
    ok
}

/// The elements of an array (of tables), read without reporting anything.
fn quiet_array<'a>(n: &Node<'a>) -> Vec<Node<'a>> {
    if n.item.value_is_array() {
        n.as_array().unwrap_or_default()
    } else {
        Vec::new()
    }
}

fn read_think(st: &Obj<'_>) -> Option<Think> {
    let d = |key: &str| st.get(key).map(|n| n.as_duration());
    let given: Vec<&str> = ["duration", "uniform", "exponential", "lognormal"]
        .into_iter()
        .filter(|k| st.get(k).is_some())
        .collect();
    if given.len() != 1 {
        st.error("a think step has exactly one of: duration = \"2s\" (constant), uniform = [\"1s\", \"5s\"], exponential = \"2s\" (mean), lognormal = { median = \"2s\", sigma = 0.5 }");
        return None;
    }
    match given[0] {
        "duration" => d("duration")?.map(Think::Constant),
        "exponential" => d("exponential")?.map(Think::Exponential),
        "uniform" => {
            let n = st.get("uniform")?;
            let items = n.as_array()?;
            if items.len() != 2 {
                n.error("must be [min, max], e.g. [\"1s\", \"5s\"]");
                return None;
            }
            let (a, b) = (items[0].as_duration()?, items[1].as_duration()?);
            if a > b {
                n.error("min must not exceed max");
                return None;
            }
            Some(Think::Uniform(a, b))
        }
        _ => {
            let l = st.obj("lognormal")?;
            let median = l.require("median").and_then(|n| n.as_duration());
            let sigma = l.require("sigma").and_then(|n| non_negative_f64(&n));
            l.finish();
            Some(Think::LogNormal {
                median: median?,
                sigma: sigma?,
            })
        }
    }
}

/// Deepest nesting of `repeat` blocks.
const MAX_REPEAT_DEPTH: usize = 3;

fn read_steps(n: &Node<'_>, depth: usize, fills: &StepFills<'_>) -> Option<Vec<Step>> {
    let items = n.as_array()?;
    let mut steps = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(st) = item.as_obj() else {
            ok = false;
            continue;
        };
        let kind_name = st
            .require("step")
            .and_then(|n| n.as_str().map(str::to_string));
        let name = st.str("name");
        let kind = match kind_name.as_deref() {
            Some("connect") => Some(StepKind::Connect),
            Some("send") => st.require("message").and_then(|m| {
                if m.item.as_table_like_pub().is_none() {
                    m.error("must be a table (the JSON object to send)");
                    return None;
                }
                let send = Fills {
                    place: "a `send` message",
                    builtins: &template::VARIABLES,
                    names: fills.captures,
                    columns: fills.columns,
                    columns_apply: true,
                    env: false,
                };
                let good = check_template(&m, &send);
                let v = m.to_json()?;
                good.then_some(StepKind::Send { message: v })
            }),
            Some("await") => positive_duration(
                &st,
                "timeout",
                Duration::from_secs(30),
                "every await needs a deadline",
            )
            .map(|timeout| StepKind::Await { timeout }),
            Some("think") => read_think(&st).map(|think| StepKind::Think { think }),
            Some("create_thread") => {
                let title = st.get("title");
                let good = title
                    .as_ref()
                    .is_none_or(|t| refuse_placeholders(t, "a thread title"));
                let title = title.and_then(|t| t.as_str().map(str::to_string));
                good.then_some(StepKind::CreateThread { title })
            }
            Some("list_threads") => Some(StepKind::ListThreads),
            Some("history") => Some(StepKind::History),
            Some("switch_thread") => positive_duration(
                &st,
                "timeout",
                Duration::from_secs(10),
                "the switch needs a deadline",
            )
            .map(|timeout| StepKind::SwitchThread { timeout }),
            Some("http") => read_http(&st, fills),
            Some("disconnect") => Some(StepKind::Disconnect),
            Some("reconnect") => Some(StepKind::Reconnect),
            Some("repeat") => {
                let times_node = st.get("times");
                let for_node = st.get("for");
                let times = times_node.as_ref().and_then(positive_u64);
                let for_ = for_node.as_ref().and_then(|n| {
                    let d = n.as_duration()?;
                    if d.is_zero() {
                        n.error("must be longer than zero");
                        return None;
                    }
                    Some(d)
                });
                let mut good = times.is_some() || for_.is_some();
                match (&times_node, &for_node) {
                    (Some(_), Some(f)) => {
                        f.error("a repeat step has exactly one of `times = N` or `for = \"30s\"`, not both");
                        good = false;
                    }
                    (None, None) => {
                        st.ctx().error(
                            st.node.span.clone(),
                            &st.child_path("times"),
                            "a repeat step needs `times = N` or `for = \"30s\"`",
                        );
                    }
                    _ => {}
                }
                // Reported once, at the first block too deep; the steps
                // inside are still checked.
                if depth == MAX_REPEAT_DEPTH {
                    st.error(format!(
                        "repeat blocks nest at most {MAX_REPEAT_DEPTH} deep"
                    ));
                }
                let inner = st
                    .require("steps")
                    .and_then(|i| read_steps(&i, depth + 1, fills));
                match inner {
                    Some(steps) if good && depth < MAX_REPEAT_DEPTH => {
                        Some(StepKind::Repeat { times, for_, steps })
                    }
                    _ => None,
                }
            }
            Some(other) => {
                if let Some(n) = st.get("step") {
                    n.error(format!(
                        "unknown step `{other}` (known: connect, send, await, think, create_thread, list_threads, history, switch_thread, disconnect, reconnect, repeat, http)"
                    ));
                }
                st.skip_rest();
                None
            }
            None => None,
        };
        st.finish();
        match kind {
            Some(kind) => {
                let default = match &kind {
                    StepKind::SwitchThread { .. } => "thread_switch".to_string(),
                    _ => kind_name.clone().unwrap_or_default(),
                };
                let name = name.unwrap_or(default);
                steps.push(Step { name, kind });
            }
            None => ok = false,
        }
    }
    if ok && steps.is_empty() {
        n.error("needs at least one step");
        ok = false;
    }
    ok.then_some(steps)
}

/// A deadline `key` of a step, `default` when not written; zero is refused.
fn positive_duration(st: &Obj<'_>, key: &str, default: Duration, why: &str) -> Option<Duration> {
    let Some(n) = st.get(key) else {
        return Some(default);
    };
    let d = n.as_duration()?;
    if d.is_zero() {
        n.error(format!("must be above zero: {why}"));
        return None;
    }
    Some(d)
}

/// HTTP methods an `http` step may use.
const HTTP_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// A generic `http` step.
fn read_http(st: &Obj<'_>, fills: &StepFills<'_>) -> Option<StepKind> {
    let mut ok = true;
    let method = match st.get("method") {
        None => Some("GET".to_string()),
        Some(n) => n.as_str().and_then(|m| {
            let m = m.to_ascii_uppercase();
            if HTTP_METHODS.contains(&m.as_str()) {
                Some(m)
            } else {
                n.error(format!(
                    "unknown method `{m}` ({})",
                    HTTP_METHODS.join(", ")
                ));
                None
            }
        }),
    };
    // Filled in an http step: the session's variables, the [data] row the
    // user's last run took (or its own row), and captured ones (not the
    // run's own id).
    let http = Fills {
        place: "an `http` step",
        builtins: &SESSION_VARIABLES,
        names: fills.captures,
        columns: fills.columns,
        columns_apply: true,
        env: false,
    };
    let path = st.require("path").and_then(|n| {
        let p = n.as_str()?.to_string();
        if !p.starts_with('/') {
            n.error("a path on the target's host, starting with /");
            return None;
        }
        check_template(&n, &http).then_some(p)
    });
    let body = match st.get("body") {
        None => Some(None),
        Some(b) => {
            let good = check_template(&b, &http);
            b.to_json().filter(|_| good).map(Some)
        }
    };
    let expect = match st.get("expect") {
        None => Some(vec![200, 201, 204]),
        Some(n) if n.item.as_integer().is_some() => http_status(&n).map(|c| vec![c]),
        Some(n) => match n.item.value_is_array() {
            true => {
                let items = n.as_array().unwrap_or_default();
                if items.is_empty() {
                    n.error("needs at least one HTTP status, e.g. [200, 201]");
                    None
                } else {
                    let codes: Vec<Option<u16>> = items.iter().map(http_status).collect();
                    codes.into_iter().collect()
                }
            }
            false => {
                n.error("expected an HTTP status or a list of them, e.g. 200 or [200, 201]");
                None
            }
        },
    };
    let mut capture = Vec::new();
    if let Some(c) = st.obj("capture") {
        for (var, v, _) in c.entries() {
            if let Some(p) = v.as_str() {
                if !is_capture_name(&var) {
                    v.error(format!(
                        "`{var}` cannot be a variable name (letters, digits and _; not a built-in)"
                    ));
                    ok = false;
                } else {
                    capture.push((var, p.to_string()));
                }
            } else {
                ok = false;
            }
        }
        c.finish();
    }
    match (method, path, body, expect) {
        (Some(method), Some(path), Some(body), Some(expect)) if ok => Some(StepKind::Http {
            method,
            path,
            body,
            expect,
            capture,
        }),
        _ => None,
    }
}

/// A name an `http` step may capture into: letters, digits and _, not a built-in.
fn is_capture_name(var: &str) -> bool {
    !var.is_empty()
        && var
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !template::VARIABLES.contains(&var)
}

/// One HTTP status (100 to 599), checked before it is narrowed to 16 bits.
fn http_status(n: &Node<'_>) -> Option<u16> {
    match n.item.as_integer() {
        Some(c) if (100..=599).contains(&c) => Some(c as u16),
        Some(c) => {
            n.error(format!("`{c}` is not an HTTP status (100 to 599)"));
            None
        }
        None => {
            n.error(format!(
                "expected an HTTP status (an integer), found {}",
                n.item.type_name_pub()
            ));
            None
        }
    }
}

/// Every key of every `capture` table in a journey (as JSON), recursively.
fn capture_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| capture_names(x, out)),
        Value::Object(m) => {
            if let Some(Value::Object(c)) = m.get("capture") {
                // Only names a capture may take (the others are refused there).
                for k in c.keys() {
                    if is_capture_name(k) && !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
            m.values().for_each(|x| capture_names(x, out));
        }
        _ => {}
    }
}

fn read_baseline(o: &Obj<'_>) -> Option<Vec<crate::scenario::baseline::Tolerance>> {
    let Some(tbl) = o.obj("baseline") else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value, key_span) in tbl.entries() {
        let Some(v) = value.as_str() else {
            ok = false;
            continue;
        };
        match crate::scenario::baseline::Tolerance::parse(&key, v) {
            Ok(t) => out.push(t),
            Err(e) => {
                value
                    .ctx
                    .error(key_span.or(value.span.clone()), &value.path, e);
                ok = false;
            }
        }
    }
    tbl.finish();
    ok.then_some(out)
}

/// `[drift]`: which intervals drift rules compare.
fn read_drift(o: &Obj<'_>) -> crate::scenario::thresholds::DriftSpec {
    let mut spec = crate::scenario::thresholds::DriftSpec::default();
    if let Some(t) = o.obj("drift") {
        if let Some(d) = t.duration("warmup") {
            spec.warmup = d;
        }
        if let Some(n) = t.get("window") {
            if let Some(w) = n.as_fraction() {
                if w > 0.0 && w <= 0.5 {
                    spec.window = w;
                } else {
                    n.error("must be above 0% and at most 50%");
                }
            }
        }
        t.finish();
    }
    spec
}

fn read_thresholds(o: &Obj<'_>, vocabulary: &crate::names::Vocabulary) -> Option<Vec<Threshold>> {
    let drift = read_drift(o);
    let Some(tbl) = o.obj("thresholds") else {
        return Some(Vec::new());
    };
    read_rules(tbl, Some(drift), vocabulary)
}

/// A table of rules: `"ttfe p95" = "< 2s"` or `{ rule, abort_on_fail, grace }`;
/// `drift` is `None` where drift rules make no sense (capacity SLOs). A rule
/// on a name the scenario never records is refused (see
/// [`crate::names`]).
fn read_rules(
    tbl: Obj<'_>,
    drift: Option<DriftSpec>,
    vocabulary: &crate::names::Vocabulary,
) -> Option<Vec<Threshold>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (key, value, key_span) in tbl.entries() {
        // Either "< 2s" or { rule = "< 2s", abort_on_fail = true, grace = "30s" }.
        let (rule, abort, grace) = if let Some(v) = value.item_str() {
            (Some(v.to_string()), false, Duration::ZERO)
        } else if value.item.as_table_like_pub().is_some() {
            let t = value.as_obj().expect("checked to be a table");
            let rule = t
                .require("rule")
                .and_then(|r| r.as_str().map(str::to_string));
            let abort = t.bool("abort_on_fail").unwrap_or(false);
            let grace = t.duration("grace").unwrap_or(Duration::ZERO);
            t.finish();
            (rule, abort, grace)
        } else {
            value.error("expected a string such as \"< 2s\", or a table { rule = \"< 2s\", abort_on_fail = true, grace = \"30s\" }");
            ok = false;
            continue;
        };
        let Some(rule) = rule else {
            ok = false;
            continue;
        };
        let parsed = match drift {
            Some(spec) => Threshold::parse_with_drift(&key, &rule, spec),
            None if key.split_whitespace().nth(2) == Some("drift") => Err(
                "a capacity step is judged on its own data: drift rules (start against end of a run) do not apply; remove `drift`".to_string(),
            ),
            None => Threshold::parse(&key, &rule),
        }
        .and_then(|t| t.check_names(vocabulary).map(|()| t));
        match parsed {
            Ok(mut t) => {
                if drift.is_none() && (abort || grace > Duration::ZERO) {
                    value.error(
                        "capacity SLOs are judged per step: abort_on_fail and grace do not apply",
                    );
                    ok = false;
                }
                t.abort_on_fail = abort;
                t.grace = grace;
                out.push(t)
            }
            Err(e) => {
                value
                    .ctx
                    .error(key_span.or(value.span.clone()), &value.path, e);
                ok = false;
            }
        }
    }
    tbl.finish();
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, Diagnostics> {
        Scenario::parse(Path::new("t.toml"), text.to_string())
    }

    const GOOD: &str = r#"
version = 1
name = "t"
[workload]
users = 5
ramp = [{ to = 5, over = "2s" }, { hold = "10s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "5s"
[[journey]]
step = "think"
duration = "100ms"
[thresholds]
"ttfe p95" = "< 2s"
"close_1011 rate" = "< 0.1%"
"#;

    #[test]
    fn a_good_file_loads_with_its_plan() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "t");
        assert_eq!(s.journeys[0].steps.len(), 4);
        assert_eq!(s.thresholds.len(), 2);
        assert_eq!(s.workload.plan.goose_test_plan(), "5,2;5,10;0,0");
        assert!(s.target.url.is_none());
        assert_eq!(s.echo["workload"]["users"], 5);
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_position() {
        let bad = GOOD
            .replace("users = 5", "users = \"five\"")
            .replace("timeout = \"5s\"", "timeout = \"soon\"")
            .replace(
                "\"ttfe p95\" = \"< 2s\"",
                "\"ttfe p95\" = \"< 2s\"\nbogus = 3",
            )
            .replace("[workload]", "[workload]\ncolour = \"red\"");
        let err = parse(&bad).unwrap_err();
        let msgs: Vec<String> = err
            .items
            .iter()
            .map(|d| format!("{}:{} {} {}", d.line, d.column, d.path, d.message))
            .collect();
        assert_eq!(err.items.len(), 4, "{msgs:#?}");
        let find = |p: &str| {
            err.items
                .iter()
                .find(|d| d.path == p)
                .unwrap_or_else(|| panic!("no error at {p}: {msgs:#?}"))
        };
        assert_eq!(find("workload.colour").line, 5);
        assert_eq!(find("workload.users").line, 6);
        assert_eq!(find("workload.users").column, 9);
        assert!(find("journey[2].timeout").message.contains("soon"));
        assert!(
            find("thresholds.bogus").message.contains("string"),
            "{msgs:#?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("version = 1\nname = \n").unwrap_err();
        assert_eq!(err.items.len(), 1);
        assert_eq!(err.items[0].line, 2);
    }

    #[test]
    fn secrets_in_the_file_are_refused() {
        let err =
            parse(&GOOD.replace("[workload]", "[auth]\nsecret = \"abc\"\n[workload]")).unwrap_err();
        assert!(err.items[0].message.contains("environment variable"));
    }

    #[test]
    fn unknown_placeholders_and_steps_are_refused() {
        let err = parse(
            &GOOD
                .replace("{{prompt}}", "{{promt}}")
                .replace("step = \"think\"", "step = \"nap\""),
        )
        .unwrap_err();
        assert_eq!(err.items.len(), 2, "{err}");
        assert!(err.to_string().contains("{{promt}}"));
        assert!(err.to_string().contains("unknown step `nap`"));
    }

    /// A password in the login body never reaches the echo (snapshot.json and
    /// every report show it); `{{env.NAME}}` placeholders are listed for `run`.
    #[test]
    fn the_login_body_is_redacted_in_the_echo_and_its_env_names_are_listed() {
        let s = parse(&GOOD.replace(
            "[workload]",
            "[auth]\nmode = \"login\"\n[auth.login]\nbody = { user = \"{{user}}\", password = \"hunter2\", key = \"{{env.LOGIN_KEY}}\", nested = { list = [\"x\", 3], pin = \"{{env.LOGIN_PIN}}\" }, again = \"{{env.LOGIN_KEY}}\" }\n[workload]",
        ))
        .unwrap();
        let body = &s.echo["auth"]["login"]["body"];
        assert_eq!(
            body,
            &serde_json::json!({"user": REDACTED, "password": REDACTED, "key": REDACTED, "nested": {"list": [REDACTED, 3], "pin": REDACTED}, "again": REDACTED})
        );
        assert!(!s.echo.to_string().contains("hunter2"));
        // What is sent keeps the values.
        let TokenSource::Login { body, .. } = &s.auth.source else {
            panic!("a login source")
        };
        assert_eq!(body["password"], "hunter2");
        assert_eq!(s.env_placeholders(), ["LOGIN_KEY", "LOGIN_PIN"]);
        // Only the login body is redacted, and a scenario without one reads no env.
        let plain = parse(GOOD).unwrap();
        assert_eq!(plain.echo["journey"][1]["message"]["type"], "start_agent");
        assert!(plain.env_placeholders().is_empty());
    }

    #[test]
    fn iterations_start_everyone_at_once() {
        let s = parse(&GOOD.replace(
            "ramp = [{ to = 5, over = \"2s\" }, { hold = \"10s\" }]",
            "iterations = 3",
        ))
        .unwrap();
        assert_eq!(s.workload.plan.iterations, Some(3));
        assert_eq!(s.workload.plan.peak_users(), 5);
    }
}
