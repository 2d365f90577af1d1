//! The engine: goose schedules closed-model users; each user holds one socket in
//! its session data and walks the scenario's journey, emitting observations.
//!
//! This is the only module that names goose types. Every journey step is a goose
//! transaction (so goose's own report lists them) and every WebSocket step is
//! also recorded into goose with `record_custom_request_duration`; chatload's
//! HDR recorders, fed through [`ObsSender`], stay the source of truth.
//!
//! goose 0.19 facts this relies on: metrics reset after ramp-up only outside a
//! test plan (we always give it a plan or iterations, and our recorders never
//! reset); users stop only between transactions, so every await has a
//! deadline and every pause (think, back-off, repeat) also ends on the run's stop handle,
//! which the plan's end, a signal, `abort_on_fail` and a capacity search's
//! failing step request; its coordinated-omission mitigation mislabels custom
//! requests (off); one reqwest client per user by default (we share one).
//!
//! A run in flight lives in the user's session from its `send` to its
//! terminal event ([`session::ActiveRun`]); whatever step reads the socket
//! meanwhile (a think, a thread switch, a REST call, a heartbeat) feeds it,
//! and the run is counted ok or failed the moment it ends. A run still in
//! flight when the user stops is awaited to its deadline, never lost.
//!
//! This file owns [`execute`], by phase: build the shared state, build goose's scenarios and
//! attack, start the pacing (open model) or the plan's timer, run, drain.
//! The rooms: `shared.rs` (the configuration, the `Shared` state, the stop
//! handle and small helpers: the bottom of the folder), `steps.rs` (one fn
//! per step kind), `user.rs` (per-user state),
//! `socket.rs` (connect, read, close, reconnect back-off), `raw.rs` (the
//! raw-results records), `connect.rs` (the
//! upgrade handshake and its failure classes), `tokens.rs`, `rest.rs` (REST
//! steps and the history check), `session.rs` (generic Sink/Stream frame
//! logic, unit-tested), `open.rs` (the open model's pool and pacer).
//!
//! May import: `metrics`, `scenario`, `plan`, `protocol`, `auth`, `names`,
//! `units`, `outcome` (never `run`, `report`, `server` or `cli`).
//!
//! A new journey step touches: `scenario/` (its `StepKind` variant), `steps.rs`
//! (or `rest.rs` for a REST step) for its function and the dispatch match.
//! A new recorded metric name: `names.rs` (a unit test there scans this
//! folder's files for literal names).

mod body;
pub mod connect;
pub mod flood;
pub mod identity;
mod idle;
pub mod open;
mod raw;
mod rest;
pub mod session;
mod shared;
mod socket;
pub mod stamp;
mod steps;
mod stop;
mod tls;
mod tokens;
mod user;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::client::GooseClientBuilder;
use goose::prelude::*;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::auth::Minter;
use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;
use crate::scenario::{Model, Step};
pub use body::read_capped;
use shared::Shared;
pub use shared::{
    http_base, http_client, http_client_with, http_error, stop_early, EngineConfig, EngineError,
    StopHandle,
};
use steps::{run_step, serve_arrival};
pub use tls::WsTls;
use user::{session, SessionHandle};

/// Longest wait for the open model's pool to start before pacing begins.
const POOL_START_LIMIT: Duration = Duration::from_secs(60);

/// Open model: after the rate plan ends, journeys in flight get the longest
/// await timeout plus this to finish before they are stopped (k6's
/// `gracefulStop`).
const OPEN_GRACE: Duration = Duration::from_secs(30);

/// The open model's goose plan holds the pool this much past the rate plan;
/// the engine ends it (goose's kill switch) once the last journey is done.
const POOL_SLACK: Duration = Duration::from_secs(3600);

/// How often a stop is repeated to goose until its attack ends.
const KILL_REPEAT: Duration = Duration::from_millis(250);

/// Runs the scenario's users on goose until the load plan ends.
pub async fn execute(cfg: EngineConfig, obs: ObsSender) -> Result<(), EngineError> {
    let plan = cfg.scenario.workload.plan.shard(cfg.shard);
    let shared = build_shared(&cfg, obs, &plan)?;
    let scenarios = build_scenarios(&shared, &cfg)?;
    let attack = build_attack(&cfg, &plan, scenarios, shared.pool.as_ref())?;
    let pacing = start_pacing(&shared, &cfg);
    let result = attack.execute().await;
    finish(&shared, pacing).await;
    shared.identities.report(&shared.obs);
    result?;
    Ok(())
}

/// The state every user shares: the token minter, one HTTP client, the open
/// model's pool, the target's REST base and the drain deadline.
fn build_shared(
    cfg: &EngineConfig,
    obs: ObsSender,
    plan: &LoadPlan,
) -> Result<Arc<Shared>, EngineError> {
    let sc = &cfg.scenario;
    let minter = Minter::new(&cfg.secret, sc.auth.claims.clone(), sc.auth.lifetime);
    let journeys = &sc.journeys;
    let http = shared::http_client(&sc.target, &cfg.target_url, obs.clone())?;
    let tls = tls::WsTls::new(&sc.target.tls, &cfg.target_url).map_err(EngineError::Goose)?;
    let pool = sc.workload.open().map(|m| {
        Arc::new(open::Pool::new(
            cfg.shard.share(m.max_users) as usize,
            cfg.stop.clone(),
        ))
    });
    let http_base = shared::http_base(&tls, &cfg.target_url)?;
    let drain_timeout = journeys
        .iter()
        .flat_map(|j| Step::await_timeouts(&j.steps))
        .max()
        .unwrap_or(Duration::from_secs(30));
    let plan_total = (pool.is_none() && plan.iterations.is_none()).then(|| plan.total());
    Ok(Arc::new(Shared {
        profile: Box::leak(Box::new(sc.profile.clone())),
        drain_timeout,
        plan_total,
        cfg: cfg.clone(),
        minter,
        obs,
        http,
        tls,
        pool,
        http_base,
        next_row: std::sync::atomic::AtomicUsize::new(0),
        checks_history: sc.journeys.iter().any(|j| Step::reads_history(&j.steps)),
        identities: Default::default(),
        start_barrier: (sc.workload.start_together && sc.workload.open().is_none())
            .then(|| tokio::sync::Barrier::new(plan.peak_users().max(1) as usize)),
    }))
}

/// A journey's `start` makes the user's session (and in the open model
/// opens the socket when that journey uses one).
fn start_transaction(shared: &Arc<Shared>, uses_socket: bool) -> Transaction {
    let shared = shared.clone();
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = shared.clone();
        Box::pin(async move {
            let mut s = shared.new_session(user.weighted_users_index);
            if let Some(pool) = &shared.pool {
                // Pre-allocated sessions: a pool user whose journey uses
                // the socket opens it before pacing starts, so no
                // arrival's latency holds a connect it did not ask for.
                // (A failure is counted; its first arrival tries again.)
                if uses_socket {
                    let _ = shared.connect(&mut s).await;
                }
                user.set_session_data(SessionHandle(Arc::new(Mutex::new(s))));
                open::join(pool);
            } else {
                user.set_session_data(SessionHandle(Arc::new(Mutex::new(s))));
                if let Some(b) = &shared.start_barrier {
                    // Every user waits for the last one (or a stop).
                    tokio::select! {
                        _ = b.wait() => {}
                        _ = shared.cfg.stop.wait() => {}
                    }
                }
            }
            Ok(())
        })
    }))
    .set_name("start")
    .set_on_start()
}

/// The closed model's mark at the top of each iteration of a journey.
fn iteration_transaction() -> Transaction {
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        Box::pin(async move {
            if let Some(h) = session(user) {
                let mut s = h.0.lock().await;
                s.iteration += 1;
                s.unavailable.clear();
            }
            Ok(())
        })
    }))
    .set_name("iteration")
}

/// A journey's `stop`: what arrived since the last step still counts, a run
/// in flight is awaited, and the socket closes.
fn stop_transaction(shared: &Arc<Shared>) -> Transaction {
    let shared = shared.clone();
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = shared.clone();
        Box::pin(async move {
            if let Some(h) = session(user) {
                let mut s = h.0.lock().await;
                // What arrived since the last step (an idle close, late
                // events) still counts, and a run in flight is awaited.
                shared.drain(&mut s).await;
                shared.finish_pending(&mut s).await;
                if s.ws.is_some() {
                    shared.obs.count("connections.closed_by_client");
                    shared.close_socket(&mut s, "load test done").await;
                }
            }
            Ok(())
        })
    }))
    .set_name("stop")
    .set_on_stop()
}

/// Open model: one transaction serves one arrival, running every step
/// (each still recorded under its own name).
fn arrival_transaction(shared: &Arc<Shared>, steps: &[Step]) -> Transaction {
    let shared = shared.clone();
    let steps = Arc::new(steps.to_vec());
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = shared.clone();
        let steps = steps.clone();
        Box::pin(async move { serve_arrival(&shared, &steps, user).await })
    }))
    .set_name("arrival")
}

/// Closed model: one transaction per journey step.
fn step_transaction(shared: &Arc<Shared>, step: Step) -> Transaction {
    let shared = shared.clone();
    let name = step.name.clone();
    let step = Arc::new(step);
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = shared.clone();
        let step = step.clone();
        Box::pin(async move { run_step(&shared, &step, user).await })
    }))
    .set_name(&name)
}

/// One goose scenario per journey, weighted: goose gives each its share of
/// the users. Exact counts are split across shards so that every shard's
/// parts add up to each count (goose gives weights equal to counts exactly).
fn build_scenarios(
    shared: &Arc<Shared>,
    cfg: &EngineConfig,
) -> Result<Vec<goose::goose::Scenario>, EngineError> {
    let journeys = cfg.scenario.journeys.clone();
    let iteration_mark = iteration_transaction();
    let stop = stop_transaction(shared);
    let weights: Vec<usize> = match journeys
        .iter()
        .map(|j| j.count())
        .collect::<Option<Vec<_>>>()
    {
        Some(counts) => cfg
            .shard
            .journey_counts(&counts)
            .into_iter()
            .map(|c| c as usize)
            .collect(),
        None => journeys.iter().map(|j| j.weight).collect(),
    };
    let mut scenarios = Vec::new();
    for (journey, weight) in journeys.into_iter().zip(weights) {
        if weight == 0 {
            // No user of this shard walks it (goose refuses a weight of 0).
            continue;
        }
        let mut scenario = goose::goose::Scenario::new(&journey.name)
            .set_weight(weight)?
            .register_transaction(start_transaction(shared, Step::uses_socket(&journey.steps)));
        if shared.pool.is_some() {
            scenario = scenario.register_transaction(arrival_transaction(shared, &journey.steps));
        } else {
            scenario = scenario.register_transaction(iteration_mark.clone());
            for step in journey.steps {
                scenario = scenario.register_transaction(step_transaction(shared, step));
            }
        }
        scenarios.push(scenario.register_transaction(stop.clone()));
    }
    Ok(scenarios)
}

/// goose's attack: the scenarios, the defaults chatload relies on, the load
/// plan and goose's own report.
fn build_attack(
    cfg: &EngineConfig,
    plan: &LoadPlan,
    scenarios: Vec<goose::goose::Scenario>,
    pool: Option<&Arc<open::Pool>>,
) -> Result<GooseAttack, EngineError> {
    let http_base = cfg.target_url.replacen("ws", "http", 1);
    let mut attack =
        GooseAttack::initialize_with_config(goose::config::GooseConfiguration::default())?
            .set_client_builder_without_cookies(
                GooseClientBuilder::new()
                    .without_cookies()
                    .timeout(Duration::from_secs(30)),
            )?;
    for scenario in scenarios {
        attack = attack.register_scenario(scenario);
    }
    attack = *attack.set_default(GooseDefault::Host, http_base.as_str())?;
    attack = *attack.set_default(
        GooseDefault::CoordinatedOmissionMitigation,
        GooseCoordinatedOmissionMitigation::Disabled,
    )?;
    attack = *attack.set_default(GooseDefault::NoPrintMetrics, true)?;
    attack = *attack.set_default(GooseDefault::Quiet, 1usize)?;
    attack = *attack.set_default(GooseDefault::NoTelnet, true)?;
    attack = set_plan(attack, plan, pool)?;
    if let Some(p) = &cfg.goose_report {
        attack = *attack.set_default(GooseDefault::ReportFile, p.to_string_lossy().as_ref())?;
    }
    Ok(attack)
}

/// The load plan in goose's terms: the open model holds its pool past the
/// rate plan; iterations; or a test plan.
fn set_plan(
    mut attack: GooseAttack,
    plan: &LoadPlan,
    pool: Option<&Arc<open::Pool>>,
) -> Result<GooseAttack, EngineError> {
    match plan.iterations {
        _ if pool.is_some() => {
            let size = pool.as_ref().map_or(0, |p| p.size);
            let hold = plan.total() + POOL_SLACK;
            attack = *attack.set_default(
                GooseDefault::TestPlan,
                format!("{size},0;{size},{};0,0", hold.as_secs()).as_str(),
            )?;
        }
        Some(n) => {
            let users = plan.peak_users() as usize;
            attack = *attack.set_default(GooseDefault::Users, users)?;
            attack = *attack.set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?;
            attack = *attack.set_default(GooseDefault::Iterations, n as usize)?;
        }
        None => {
            attack =
                *attack.set_default(GooseDefault::TestPlan, plan.goose_test_plan().as_str())?;
            // goose 0.19 never resets metrics under a test plan (and refuses
            // `no_reset_metrics` beside one); chatload's own recorders are never reset.
        }
    }
    Ok(attack)
}

/// Starts the plan's clock: the open model's pacer (once its pool is up),
/// or the closed model's timer that ends a timed plan on time.
fn start_pacing(shared: &Arc<Shared>, cfg: &EngineConfig) -> Option<JoinHandle<()>> {
    let sc = &cfg.scenario;
    match (&shared.pool, &sc.workload.model) {
        (Some(pool), Model::Open(model)) => Some(pace_open(shared, cfg, pool, model)),
        (None, Model::Open(_)) | (Some(_), Model::Closed) | (None, Model::Closed) => {
            let now = Instant::now();
            let _ = cfg.started.send(Some(now));
            // A timed plan ends on time: users in a long think or repeat block
            // stop with it instead of holding goose's end.
            let stop = cfg.stop.clone();
            shared.plan_total.map(|total| {
                tokio::spawn(async move {
                    let reason = if stop.sleep_until(now + total).await {
                        "the load plan ended"
                    } else {
                        "the run was stopped early"
                    };
                    // goose clears its kill switch when its attack starts, so
                    // a stop asked for before that (a safety limit, fail
                    // fast, a signal) is repeated until goose ends (then this
                    // task is aborted); a repeat after the first changes nothing.
                    loop {
                        stop_early(&stop, reason);
                        tokio::time::sleep(KILL_REPEAT).await;
                    }
                })
            })
        }
    }
}

/// The open model's pacer task: arrivals at the rate plan's pace, then the
/// grace for journeys in flight, then goose's end.
fn pace_open(
    shared: &Arc<Shared>,
    cfg: &EngineConfig,
    pool: &Arc<open::Pool>,
    model: &crate::plan::OpenModel,
) -> JoinHandle<()> {
    let drain_timeout = shared.drain_timeout;
    let pacer = crate::plan::Pacer::new(
        model.rate.shard(cfg.shard),
        model.arrivals,
        cfg.seed,
        cfg.shard,
    );
    let (pool, obs, started) = (pool.clone(), shared.obs.clone(), cfg.started.clone());
    let stop = cfg.stop.clone();
    let when_full = model.when_full;
    let total = model.rate.total();
    let grace = drain_timeout + OPEN_GRACE;
    tokio::spawn(async move {
        open::wait_for_pool(&pool, POOL_START_LIMIT).await;
        let epoch = tokio::time::Instant::now();
        let _ = started.send(Some(epoch.into_std()));
        open::pace(pacer, when_full, pool.clone(), obs.clone(), epoch).await;
        // The plan's clock runs out before the end (a capacity search
        // judges its last step on a whole window); then, as k6's
        // gracefulStop, every arrival already issued (a `queue`
        // backlog too) gets `grace` to finish its journey.
        if stop.sleep_until((epoch + total).into_std()).await {
            open::drain(&pool, grace).await;
        }
        // Past the grace (or on a stop): journeys stop after their
        // current step, their runs in flight are awaited, and arrivals
        // no session took never started.
        stop.request();
        let left = pool.rx.drain().count() as u64;
        if left > 0 {
            obs.count_n(names::STARTS_DROPPED, left);
        }
        open::drain(&pool, drain_timeout + Duration::from_secs(5)).await;
        goose::trigger_killswitch("open model: the rate plan ended and every journey finished");
    })
}

/// After goose returns: the pacer is stopped and awaited (or the plan timer
/// aborted), and arrivals no session took are counted.
async fn finish(shared: &Shared, pacing: Option<JoinHandle<()>>) {
    let pool = &shared.pool;
    if let Some(p) = pacing {
        if let Some(pool) = pool {
            pool.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = p.await;
        } else {
            // The plan timer of a run that ended first (iterations, a stop).
            p.abort();
        }
    }
    // Arrivals no session took before the users stopped were not started.
    if let Some(pool) = pool {
        let left = pool.rx.drain().count() as u64;
        if left > 0 {
            shared.obs.count_n(names::STARTS_DROPPED, left);
        }
    }
}
