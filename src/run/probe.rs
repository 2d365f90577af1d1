//! Probing the target while the run goes (`[[probe]]`): one task per probe
//! reads its URL every period, takes its values (`probe_read.rs`) and
//! records a [`ProbeSample`] with chatload's own figures of that moment,
//! into the run's [`ProbeSeries`], a line of `probes.jsonl` (written and
//! flushed as it comes, so a killed run keeps it), and the live values for
//! `/metrics`. Each read counts `probes.ok` or `probes.failed.<kind>` and
//! records `probe_latency`; a failed read is never fatal: only a rule can
//! fail the run. After the users are done, `after_close` rules get one more
//! read of every probe once their wait has passed.
//!
//! Only shard 0 probes (a sharded run's merge keeps its series). Requests
//! use the engine's HTTP client: the one redirect rule and allow check, the
//! target's TLS settings.
//!
//! Imports `engine` (the HTTP client), `metrics`, `scenario`, `names`, `auth`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::probe_read::{read_values, ReadError};
use super::RunError;
use crate::auth::Secret;
use crate::metrics::probes::{OwnFigures, ProbeSample, ProbeSeries, PROBES_FILE};
use crate::metrics::ObsSender;
use crate::names;
use crate::plan::LoadPlan;
use crate::scenario::probe::Probe;
use crate::scenario::Scenario;

/// The largest probe answer read (1 MiB); a longer one is `probes.failed.too_large`.
const MAX_ANSWER: usize = 1 << 20;

/// The latest value of every probe value, for `/metrics`: (probe, value) -> number.
pub type LatestValues = Arc<Mutex<BTreeMap<(String, String), f64>>>;

/// The latest readings as (probe, value, number), for the live families.
pub fn latest(values: &LatestValues) -> Vec<(String, String, f64)> {
    values
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((p, v), x)| (p.clone(), v.clone(), *x))
        .collect()
}

/// A probe ready to read: its resolved URL and identity.
struct Ready {
    probe: Probe,
    url: String,
    identity: Option<(String, Secret)>,
}

/// What every probe task shares.
struct Shared {
    http: reqwest::Client,
    obs: ObsSender,
    plan: LoadPlan,
    t0: Instant,
    series: Mutex<ProbeSeries>,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    latest: LatestValues,
    /// The probe rules: bounds are judged on every reading as it comes.
    rules: Vec<crate::scenario::probe_rules::ProbeRule>,
    /// The last reading of chatload's own figures, and when.
    own: Mutex<Option<(Instant, OwnFigures)>>,
}

/// The running probes.
pub(super) struct Probing {
    shared: Arc<Shared>,
    probes: Arc<Vec<Ready>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The snapshot's empty series with its steady phase, when this process
/// probes (shard 0 of a scenario with probes).
pub(super) fn template(sc: &Scenario, shard: crate::plan::Shard) -> Option<ProbeSeries> {
    if sc.probes.is_empty() || shard.index != 0 {
        return None;
    }
    let drift = crate::metrics::judge::drift_spec_from_echo(&sc.echo).unwrap_or_default();
    let (from, to) = match sc.workload.open() {
        Some(m) => (0.0, m.rate.total().as_secs_f64()),
        // Every user starts at once and runs its iterations: steady from the
        // start to the end, whenever that comes.
        None if sc.workload.plan.iterations.is_some() => (0.0, f64::MAX),
        None => steady_of(&sc.workload.plan),
    };
    Some(ProbeSeries::new(
        from + drift.warmup.as_secs_f64(),
        to,
        drift.window,
    ))
}

/// From the moment the plan first holds its peak to the end of that hold.
fn steady_of(plan: &LoadPlan) -> (f64, f64) {
    let peak = plan.peak_users();
    let mut from = None;
    let mut to = plan.total().as_secs_f64();
    for s in &plan.stages {
        let (start, end) = (s.start_s as f64, (s.start_s + s.length_s) as f64);
        match from {
            None if s.to == peak && s.from == peak => from = Some(start),
            None if s.to == peak => from = Some(end),
            Some(_) if s.to < peak => {
                to = start;
                break;
            }
            _ => {}
        }
    }
    (from.unwrap_or(0.0), to)
}

/// The probes' own checks before any socket: a full URL's host against
/// `target.allow`, every identity variable set (with `env`: `run` checks
/// it, `validate` does not, as for the login body's variables), no bound
/// against one shard's own sockets in a sharded run.
pub(super) fn check(sc: &Scenario, shards: u32, env: bool) -> Result<(), String> {
    for p in &sc.probes {
        if !p.url.starts_with('/') {
            let host = crate::scenario::target::host_of(&p.url);
            if !crate::scenario::target::host_allowed(&host, &sc.target.allow) {
                return Err(format!(
                    "probe `{}`: its host `{host}` is not in the scenario's target.allow list; add it there to probe it",
                    p.name
                ));
            }
        }
        if let Some(var) = p.identity_env.as_ref().filter(|_| env) {
            if std::env::var_os(var).is_none() {
                return Err(format!(
                    "probe `{}` sends its identity from ${var}, which is not set; export it before the run",
                    p.name
                ));
            }
        }
    }
    if shards > 1 {
        if let Some(r) = sc.probe_rules.iter().find(|r| r.uses_own_sockets()) {
            return Err(format!(
                "`{}` compares the target with chatload's sockets_open or runs_in_flight, which in a sharded run only shard 0's users make up; use users_active (the whole plan's), or run it in one process",
                r.expr
            ));
        }
    }
    Ok(())
}

/// Teaches the redactor the probes' identities.
pub(super) fn learn_identities(sc: &Scenario) {
    for var in sc.probes.iter().filter_map(|p| p.identity_env.as_ref()) {
        if let Ok(v) = std::env::var(var) {
            crate::auth::redact::learn(&v);
        }
    }
}

impl Probing {
    /// Starts one task per probe (none: `None`).
    pub(super) fn start(
        sc: &Scenario,
        template: Option<ProbeSeries>,
        target_url: &str,
        obs: ObsSender,
        t0: Instant,
        dir: &Path,
        latest: LatestValues,
    ) -> Result<Option<Probing>, RunError> {
        let Some(series) = template else {
            return Ok(None);
        };
        let engine_err = |e: crate::engine::EngineError| RunError::Usage(e.to_string());
        let tls = crate::engine::WsTls::new(&sc.target.tls, target_url).map_err(RunError::Usage)?;
        let base = crate::engine::http_base(&tls, target_url).map_err(engine_err)?;
        let http = crate::engine::http_client_with(&sc.target, target_url, obs.clone(), true)
            .map_err(engine_err)?;
        let probes: Vec<Ready> = sc
            .probes
            .iter()
            .map(|p| Ready {
                url: if p.url.starts_with('/') {
                    format!("{base}{}", p.url)
                } else {
                    tls.present(&p.url)
                },
                identity: p.identity_env.as_ref().and_then(|var| {
                    let v = std::env::var(var).ok()?;
                    let header = p.header.clone().unwrap_or_else(|| "authorization".into());
                    let v = if p.header.is_some() {
                        v
                    } else {
                        format!("Bearer {v}")
                    };
                    Some((header, Secret::new(v)))
                }),
                probe: p.clone(),
            })
            .collect();
        let file = std::fs::File::create(dir.join(PROBES_FILE))
            .map_err(|e| RunError::Usage(format!("cannot write {PROBES_FILE}: {e}")))?;
        let shared = Arc::new(Shared {
            http,
            obs,
            plan: sc.workload.plan.clone(),
            t0,
            series: Mutex::new(series),
            file: Mutex::new(Some(std::io::BufWriter::new(file))),
            latest,
            rules: sc.probe_rules.clone(),
            own: Mutex::new(None),
        });
        let probes = Arc::new(probes);
        let (stop, stop_rx) = watch::channel(false);
        let interval = sc.interval_or_default();
        let tasks = (0..probes.len())
            .map(|i| {
                let (shared, probes, mut stop_rx) =
                    (shared.clone(), probes.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let p = &probes[i];
                    let every = p.probe.period(interval);
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => read_once(&shared, p, false).await,
                            _ = stop_rx.changed() => break,
                        }
                    }
                })
            })
            .collect();
        Ok(Some(Probing {
            shared,
            probes,
            stop,
            tasks,
        }))
    }

    /// Stops the periodic reads; with `after_close`, waits that long (the
    /// users are done) and reads every probe once more. Returns the series.
    pub(super) async fn finish(self, after_close: Option<Duration>) -> ProbeSeries {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(wait) = after_close {
            tokio::time::sleep(wait).await;
            let reads = self.probes.iter().map(|p| read_once(&self.shared, p, true));
            futures_util::future::join_all(reads).await;
        }
        if let Some(mut f) = self
            .shared
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = f.flush();
        }
        std::mem::take(&mut *self.shared.series.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How long one reading of chatload's own figures serves probes read
/// together (each reading copies the collector's recorder).
const OWN_FRESH: Duration = Duration::from_millis(50);

/// chatload's own figures now (or read less than [`OWN_FRESH`] ago).
/// `users_active`: the users the plan wants now; a plan of iterations
/// starts every user at once, so all of them until the users are done.
async fn own_figures(shared: &Shared, after_close: bool) -> OwnFigures {
    if let Some((at, own)) = *shared.own.lock().unwrap_or_else(|e| e.into_inner()) {
        if at.elapsed() < OWN_FRESH && !after_close {
            return own;
        }
    }
    let rec = shared.obs.peek().await;
    let started = rec.counter(names::RUNS_STARTED);
    let ended = rec.counter(names::RUNS_OK) + rec.counter(names::RUNS_FAILED);
    let users_active = match (after_close, shared.plan.iterations) {
        (true, _) => 0,
        (false, Some(_)) => shared.plan.peak_users(),
        (false, None) => shared.plan.users_at(shared.t0.elapsed()),
    };
    let own = OwnFigures {
        sockets_open: rec
            .counter(names::CONN_READY)
            .saturating_sub(rec.counter(names::CONN_CLOSED)),
        users_active,
        runs_in_flight: started.saturating_sub(ended),
    };
    *shared.own.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), own));
    own
}

/// One read of one probe: records the sample everywhere it goes. The
/// reading's time and chatload's figures are those of the request's send
/// (a slow answer is not compared with later figures).
async fn read_once(shared: &Shared, p: &Ready, after_close: bool) {
    let own = own_figures(shared, after_close).await;
    let t_s = shared.t0.elapsed().as_secs_f64();
    let sent = Instant::now();
    let (values, failure) = fetch(shared, p).await;
    let latency = sent.elapsed();
    shared
        .obs
        .sample(names::PROBE_LATENCY, latency.as_micros() as u64);
    match &failure {
        None => shared.obs.count(names::PROBES_OK),
        Some((kind, _)) => {
            shared.obs.count(names::PROBES_FAILED);
            shared.obs.count(names::probe_failed(kind));
        }
    }
    {
        let mut latest = shared.latest.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in &values {
            latest.insert((p.probe.name.clone(), k.clone()), *v);
        }
    }
    let sample = ProbeSample {
        t_s,
        probe: p.probe.name.clone(),
        ok: failure.is_none(),
        latency_ms: latency.as_secs_f64() * 1e3,
        error: failure.map(|(_, why)| crate::auth::redact::redact(&why)),
        values,
        own,
        after_close,
    };
    if let Some(f) = shared
        .file
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        if let Ok(line) = serde_json::to_string(&sample) {
            let _ = writeln!(f, "{line}").and_then(|()| f.flush());
        }
    }
    shared
        .series
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sample, &shared.rules);
}

/// The answer's values, or why the read failed (`probes.failed.<kind>`, text).
async fn fetch(
    shared: &Shared,
    p: &Ready,
) -> (BTreeMap<String, f64>, Option<(&'static str, String)>) {
    let mut req = shared.http.get(&p.url).timeout(p.probe.timeout);
    if let Some((h, v)) = &p.identity {
        req = req.header(h.as_str(), v.expose());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return (
                BTreeMap::new(),
                Some(("timeout", format!("no answer within {:?}", p.probe.timeout))),
            )
        }
        Err(e) => {
            return (
                BTreeMap::new(),
                Some(("connect", crate::engine::http_error(&e))),
            )
        }
    };
    let status = resp.status();
    let body = match crate::engine::read_capped(resp, MAX_ANSWER).await {
        Ok((_, true)) => {
            return (
                BTreeMap::new(),
                Some((
                    "too_large",
                    format!("the answer is over {MAX_ANSWER} bytes"),
                )),
            )
        }
        Ok((b, false)) => b,
        Err(e) if e.is_timeout() => {
            return (
                BTreeMap::new(),
                Some((
                    "timeout",
                    format!("no whole answer within {:?}", p.probe.timeout),
                )),
            )
        }
        Err(e) => {
            return (
                BTreeMap::new(),
                Some(("connect", crate::engine::http_error(&e))),
            )
        }
    };
    if !status.is_success() {
        return (
            BTreeMap::new(),
            Some(("status", format!("HTTP {}", status.as_u16()))),
        );
    }
    let text = String::from_utf8_lossy(&body);
    let (values, err) = read_values(p.probe.format, &text, &p.probe.values);
    let failure = err.map(|e| match e {
        ReadError::Parse(why) => ("parse", why),
        ReadError::Missing(names) => (
            "missing",
            format!("not in the answer (or not a number): {}", names.join(", ")),
        ),
    });
    (values, failure)
}
