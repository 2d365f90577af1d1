//! Scenario files (`scenarios/*.toml`, `version = 1`): reading a file into
//! its model ([`Scenario`]).
//!
//! Loading walks the TOML document once, collecting every problem with its
//! file, line, column and key path; a file with any problem yields
//! [`Diagnostics`] and nothing else, so no socket ever opens on a bad file.
//!
//! This file owns loading and parsing, the echo (with its redaction) and
//! `read_scenario`, which calls one reader per TOML table, each in its own
//! file: `target.rs`, `auth.rs`, `data.rs`, `profile.rs`, `server.rs`,
//! `reconnect.rs`, `workload.rs`, `capacity.rs`, `journey.rs` (with
//! `steps.rs`), `thresholds.rs` (and `[drift]`; the default SLOs that join
//! them are `defaults.rs`), `baseline.rs`, `output.rs`, `tags.rs` (`[tags]`
//! and a step's `tags`).
//! The types they build are in `model.rs`; `doc/` is the span-aware TOML
//! reader and its diagnostics; `fills.rs` checks template placeholders.
//!
//! Imports: `protocol`, `auth`, `names`, `units`, `plan` (never `metrics`,
//! `report`, `server`, `engine`, `run` or `cli`).
//!
//! `probe.rs` reads `[[probe]]` and `probe_rules.rs` the `probe.*` keys of
//! `[thresholds]` (the threshold reader leaves them to it).
//!
//! - A new journey step: `model.rs` (a `StepKind` variant: the compiler then
//!   names every match that must handle it, here and in the engine),
//!   `steps.rs` (its reader in `read_step_kind`), and the engine's step runner.
//! - A new threshold kind: `thresholds.rs` (grammar and `Subject`),
//!   `metrics/threshold.rs` (judging it), and `names.rs` if it names new
//!   metrics.
//! - A new server fault class: `protocol/faults.rs` only (`server.rs` here
//!   passes the text through).
//! - A new report format: nothing here.

pub mod baseline;
pub mod defaults;
pub mod doc;
pub mod probe;
pub mod probe_rules;
pub mod target;
pub mod thresholds;

mod auth;
mod capacity;
mod capacity_check;
mod data;
mod fills;
pub mod generator;
pub mod input;
mod journey;
mod limits;
mod model;
mod output;
mod profile;
mod profile_platform;
mod reconnect;
mod server;
mod server_platform;
mod steps;
pub mod tags;
mod tls;
mod workload;

pub use crate::plan::{Arrivals, CapacityPlan, LoadPlan, OpenModel, RampStep, RatePlan, WhenFull};
pub use auth::DEFAULT_SECRET_ENV;
pub use data::{load_data, MAX_DATA_ROWS};
pub use doc::{Diagnostic, Diagnostics};
pub use model::{
    Auth, CapacitySearch, DataRow, DataSelect, DataSet, Journey, Model, Reconnect, Scenario,
    ServerTable, Step, StepKind, Target, TargetTls, Think, TokenSource, Workload, THINK_CAP,
};
pub use output::{check_remote_write_url, default_interval, LiveOutputs};
pub use target::check_ws_url;
pub use workload::pool_plan;

use std::path::Path;
use std::rc::Rc;

use serde_json::Value;

use crate::protocol::{template, Profile};
use doc::{Ctx, Elem, Node, Obj, Source};

/// The scenario file format this chatload reads.
pub const VERSION: u64 = 1;

/// The largest scenario file read: scenarios are written by hand; data rows
/// and tokens have files (and limits) of their own.
pub const MAX_SCENARIO_BYTES: u64 = 4 * 1024 * 1024;

/// What a path that is not a regular file is, for messages.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

impl Scenario {
    /// Loads and validates a scenario file.
    /// Only a regular file (after symlinks) of at most
    /// [`MAX_SCENARIO_BYTES`] is read: a FIFO, a device or a huge file is
    /// refused before it is read.
    pub fn load(path: &Path) -> Result<Scenario, Diagnostics> {
        let file = path.display().to_string();
        let refuse = |why: String| Diagnostics::one(file.clone(), 1, 1, why);
        let meta =
            std::fs::metadata(path).map_err(|e| refuse(format!("cannot read the file: {e}")))?;
        if !meta.is_file() {
            return Err(refuse(format!(
                "not a regular file ({}): a scenario is read from a file",
                file_kind(&meta)
            )));
        }
        if meta.len() > MAX_SCENARIO_BYTES {
            return Err(refuse(format!(
                "the file has {} bytes; a scenario may have at most {MAX_SCENARIO_BYTES} (data rows and tokens go in their own files)",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| refuse(format!("cannot read the file: {e}")))?;
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
                let message = format!("TOML syntax error: {}", e.message().trim());
                return Err(Diagnostics::one(file, line, column, message));
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
        let more = ctx.more();
        match s {
            Some(s) if items.is_empty() => Ok(Scenario { echo, ..s }),
            _ => Err(Diagnostics { file, items, more }),
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
            TokenSource::Mint | TokenSource::File { .. } => Vec::new(),
        };
        names.sort();
        names.dedup();
        names
    }
}

/// `version`: the one this chatload reads.
fn read_version(o: &Obj<'_>) -> Option<u64> {
    o.require("version").and_then(|n| {
        let v = n.as_u64()?;
        if v != VERSION {
            n.error(format!(
                "this chatload reads scenario version {VERSION}, not {v}"
            ));
            return None;
        }
        Some(v)
    })
}

fn read_scenario(o: &Obj<'_>, path: &Path) -> Option<Scenario> {
    let version = read_version(o);
    let name = o.require("name").and_then(|n| {
        let name = n.as_str()?;
        match limits::check_name(name) {
            Ok(()) => Some(name.to_string()),
            Err(e) => {
                n.error(e);
                None
            }
        }
    });
    let description = o.str("description");
    let seed = o.u64("seed");
    // Files named by the scenario are relative to it.
    let base = path.parent().unwrap_or(Path::new("."));
    // First: the caps bound what the other readers read.
    let limits = limits::read_limits(o);
    let max_input = limits
        .as_ref()
        .map_or(limits::Limits::default().max_input_bytes, |l| {
            l.max_input_bytes
        });
    let target = target::read_target(o, base, max_input);
    let profile = profile::read_profile(o);
    let server = server::read_server(o);
    let mut workload = workload::read_workload(o);
    let (data, columns) = data::read_data(o, base, max_input);
    let journey = journey::read_journey(o, &columns, workload.as_ref());
    // Which metric and counter names thresholds may use: the fixed ones and
    // those of this scenario's steps and profile.
    let vocabulary = vocabulary(journey.as_deref(), profile.as_ref());
    let capacity =
        capacity::read_capacity(o, workload.as_ref().and_then(|w| w.open()), &vocabulary);
    capacity::apply(o, workload.as_mut(), capacity.as_ref());
    // The users the tokens of a tokens file must cover (unknown while the
    // workload has errors).
    let peak_users = match (&workload, &capacity) {
        (Some(w), Some(_)) => Some(w.peak_users()),
        _ => None,
    };
    let auth = auth::read_auth(o, base, peak_users, max_input, profile.as_ref());
    let reconnect = reconnect::read_reconnect(o);
    let thresholds = thresholds::read_thresholds(o, &vocabulary).map(|(mut rules, on)| {
        if on {
            let scope = default_scope(journey.as_deref(), capacity.as_ref());
            let extra = defaults::default_slos(&rules, scope);
            rules.extend(extra);
        }
        rules
    });
    let probes = probe::read_probes(o);
    let probe_rules = probe_rules::read_probe_rules(o, probes.as_deref());
    let prompts = read_prompts(o);
    let output = output::read_output(o);
    let tags = tags::read_tags(o);
    let baseline = baseline::read_baseline(o);
    let generator = generator::read_generator(o);
    if let (Some(l), Some(w), Some(n)) = (&limits, &workload, o.get("workload")) {
        for why in w.over_limits(l) {
            n.error(why);
        }
    }
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
        probes: probes?,
        probe_rules: probe_rules?,
        prompts: prompts?,
        output_dir: output.dir,
        interval: output.interval,
        checkpoint: output.checkpoint,
        goose_report: output.goose_report,
        tags: tags?,
        live: output.live?,
        baseline: baseline?,
        limits: limits?,
        generator: generator?,
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

/// Which default SLOs fit the scenario (see [`defaults::default_slos`]):
/// what its journeys record, and whether it is a capacity search. A part
/// that did not load counts as present (the file fails anyway).
fn default_scope(
    journeys: Option<&[Journey]>,
    capacity: Option<&Option<CapacitySearch>>,
) -> defaults::DefaultScope {
    let mut scope = defaults::DefaultScope {
        capacity: matches!(capacity, Some(Some(_))),
        ..Default::default()
    };
    let Some(journeys) = journeys else {
        scope.socket = true;
        scope.runs = true;
        scope.rest = true;
        return scope;
    };
    for j in journeys {
        scope.socket |= Step::uses_socket(&j.steps);
        Step::walk(&j.steps, &mut |s| match &s.kind {
            StepKind::Send { .. } => scope.runs = true,
            StepKind::CreateThread { .. }
            | StepKind::ListThreads
            | StepKind::History
            | StepKind::Http { .. } => scope.rest = true,
            StepKind::Connect
            | StepKind::Await { .. }
            | StepKind::Think { .. }
            | StepKind::SwitchThread { .. }
            | StepKind::Disconnect
            | StepKind::Reconnect
            | StepKind::Repeat { .. } => {}
        });
    }
    scope
}

/// What the scenario records besides the fixed names (see
/// [`crate::names::Vocabulary`]); a part that did not load is unknown.
fn vocabulary(journeys: Option<&[Journey]>, profile: Option<&Profile>) -> crate::names::Vocabulary {
    fn add(s: &Step, v: &mut crate::names::Vocabulary) {
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
            // A repeat block's steps are visited one by one by the walk.
            StepKind::Repeat { .. } | StepKind::Connect | StepKind::Await { .. } => None,
        };
        if let Some(l) = list {
            l.push(s.name.clone());
        }
        // A connect, await or switch_thread step named on purpose records
        // its latency under that name too (the engine uses the same method).
        if let (Some(name), Some(l)) = (s.named_metric(), v.named_steps.as_mut()) {
            l.push(name.to_string());
        }
    }
    let mut v = crate::names::Vocabulary::unknown();
    if let Some(journeys) = journeys {
        v.rest_steps = Some(Vec::new());
        v.timed_steps = Some(Vec::new());
        v.switches_threads = Some(false);
        v.named_steps = Some(Vec::new());
        for j in journeys {
            Step::walk(&j.steps, &mut |s| add(s, &mut v));
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

#[cfg(test)]
mod tests;
