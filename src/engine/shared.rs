//! What every user shares: the engine's configuration, the `Shared` state
//! (its methods live in the rooms that use them: socket, tokens, rest,
//! user), the stop handle, and the small helpers every room uses. The bottom
//! of `engine/`: it imports no other engine file but `open`, `session` and `tls`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::prelude::*;

use super::{open, tls};
use crate::auth::{Minter, Secret};
use crate::metrics::ObsSender;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("goose refused the configuration: {0}")]
    Goose(String),
}

impl From<GooseError> for EngineError {
    fn from(e: GooseError) -> Self {
        EngineError::Goose(format!("{e:?}"))
    }
}

/// Everything the engine needs, resolved from a scenario and the command line.
#[derive(Clone)]
pub struct EngineConfig {
    pub scenario: crate::scenario::Scenario,
    /// The WebSocket URL to load.
    pub target_url: String,
    pub secret: Secret,
    pub seed: u64,
    /// Where goose writes its own HTML report (None: no goose report).
    pub goose_report: Option<PathBuf>,
    /// This process's slice of the users (`0/1` when not sharded).
    pub shard: crate::plan::Shard,
    /// Set to the instant the load plan's clock starts (goose starting the
    /// closed model's users; the open model's pool ready and pacing).
    pub started: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
    /// Tokens read from `auth.tokens_file` (file source only).
    pub tokens: Option<Arc<Vec<Secret>>>,
    /// The run's stop request (see [`stop_early`]).
    pub stop: StopHandle,
    /// One record per finished run, for the raw-results stream (`raw.rs`).
    pub raw: Option<crate::metrics::raw::RawSink>,
}

/// Shared by every user.
pub(super) struct Shared {
    pub(super) cfg: EngineConfig,
    /// The scenario's profile for the whole process: a run in flight keeps
    /// its checker (which borrows the rules) across steps. Leaked once per
    /// `execute`, a few KiB.
    pub(super) profile: &'static crate::protocol::Profile,
    /// How long a run still in flight when its user stops is awaited: the
    /// longest `await` timeout of the scenario.
    pub(super) drain_timeout: Duration,
    /// The load plan's length (`None`: iterations, or the open model, whose
    /// pacer ends the plan).
    pub(super) plan_total: Option<Duration>,
    pub(super) minter: Minter,
    pub(super) obs: ObsSender,
    /// One HTTP client for every user (tickets, REST): clones share one pool.
    pub(super) http: reqwest::Client,
    /// The TLS settings of `wss://` sockets (and the name HTTP calls to the
    /// target's host present).
    pub(super) tls: tls::WsTls,
    /// The open model's session pool (None in the closed model).
    pub(super) pool: Option<Arc<open::Pool>>,
    /// `http(s)://host:port` of the target, for its REST API.
    pub(super) http_base: String,
    /// The next data row for `select = "round_robin"` (shared by every user).
    pub(super) next_row: std::sync::atomic::AtomicUsize,
    /// Some journey reads thread histories, so sent messages are remembered.
    pub(super) checks_history: bool,
    /// Which users the server knows as the same user (`identity.rs`).
    pub(super) identities: super::identity::Identities,
    /// `start = "together"`: every closed-model user of this process waits
    /// here before its journey, so all begin at one instant.
    pub(super) start_barrier: Option<tokio::sync::Barrier>,
}

/// Asks every user to stop after its current step (goose's kill switch):
/// thinks, back-offs and repeat blocks end, later steps do nothing, and runs
/// in flight are awaited to their deadline. Used by stop signals,
/// `abort_on_fail` and a capacity search's failing step.
pub fn stop_early(stop: &StopHandle, reason: &str) {
    stop.request();
    goose::trigger_killswitch(reason);
}

/// The run's stop request, made by `run/` (one per run, no static): set by
/// [`stop_early`] and when the load plan's time is up. The open model's
/// pacer issues no more arrivals, and every pause ends.
pub type StopHandle = Arc<super::stop::StopSignal>;

/// How long a step waits, once the users are asked to stop, for goose to stop
/// its user (see [`steps::run_step`]).
pub(super) const STOPPING_PAUSE: Duration = Duration::from_millis(50);

/// Socket phase names used in `closes_by_phase.<phase>.<code>`.
pub(super) const PHASE_BEFORE_READY: &str = "before_ready";
pub(super) const PHASE_FIRST_EXCHANGE: &str = "first_exchange";
pub(super) const PHASE_DURING_RUN: &str = "during_run";
pub(super) const PHASE_IDLE: &str = "idle";

/// Far enough ahead to mean "until stopped".
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 86_400)
}
/// The value at a dotted path (`data.messages`).
pub(super) fn at_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(v, |v, k| v.get(k))
}

/// goose keys errors by text; keep them short and stable.
pub(super) fn goose_error(msg: &str) -> String {
    msg.chars().take(120).collect()
}

/// The one HTTP client every user shares (login, tickets, REST and `http`
/// steps). It follows no redirect unless `target.follow_redirects` is set;
/// then every hop's host must pass the one allow check
/// (`scenario::target::host_allowed`), and a refused hop fails the request
/// (counted `http.redirects.refused`) instead of sending anything to it.
/// TLS: `target.ca_file`, `target.insecure` and `target.tls_server_name`
/// (`tls.rs`).
pub fn http_client(
    target: &crate::scenario::Target,
    target_url: &str,
    obs: ObsSender,
) -> Result<reqwest::Client, EngineError> {
    http_client_with(target, target_url, obs, false)
}

/// [`http_client`], and with `same_host` a redirect is followed only to the
/// host it came from: a probe's identity header goes nowhere else.
pub fn http_client_with(
    target: &crate::scenario::Target,
    target_url: &str,
    obs: ObsSender,
    same_host: bool,
) -> Result<reqwest::Client, EngineError> {
    let policy = if target.follow_redirects {
        let allow = target.allow.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            let host = attempt.url().host_str().unwrap_or("").to_string();
            let from = attempt.previous().last().and_then(|u| u.host_str());
            if same_host && from.is_some_and(|f| f != host) {
                obs.count(crate::names::HTTP_REDIRECTS_REFUSED);
                let why = format!(
                    "redirect to {} refused: a probe follows redirects only on its own host (its identity goes nowhere else)",
                    attempt.url()
                );
                attempt.error(why)
            } else if !crate::scenario::target::host_allowed(&host, &allow) {
                obs.count(crate::names::HTTP_REDIRECTS_REFUSED);
                let why = format!(
                    "redirect to {} refused: its host is not in target.allow",
                    attempt.url()
                );
                attempt.error(why)
            } else if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .redirect(policy);
    tls::http(builder, &target.tls, target_url)
        .map_err(EngineError::Goose)?
        .build()
        .map_err(|e| EngineError::Goose(format!("cannot build the HTTP client: {e}")))
}

/// The HTTP base of a ws(s) target (`wss://h:p/ws` -> `https://h:p`), as
/// presented with `target.tls_server_name`: where paths such as the login
/// endpoint's and a probe's go.
pub fn http_base(tls: &super::tls::WsTls, target_url: &str) -> Result<String, EngineError> {
    let mut u = url::Url::parse(target_url)
        .map_err(|e| EngineError::Goose(format!("bad target URL: {e}")))?;
    let scheme = if u.scheme() == "wss" { "https" } else { "http" };
    u.set_path("");
    u.set_query(None);
    let mut b = u.to_string().replacen(u.scheme(), scheme, 1);
    while b.ends_with('/') {
        b.pop();
    }
    Ok(tls.present(&b))
}

/// Hops a followed redirect chain may take.
const MAX_REDIRECTS: usize = 10;

/// A request's error with its causes (a refused redirect hop says which).
pub fn http_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// For an answer that is a redirect chatload did not follow (no
/// `target.follow_redirects`): counts it and says where it pointed.
pub(super) fn unfollowed_redirect(
    obs: &ObsSender,
    status: u16,
    location: Option<&reqwest::header::HeaderValue>,
) -> Option<String> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    obs.count(crate::names::HTTP_REDIRECTS_NOT_FOLLOWED);
    let to = location.and_then(|l| l.to_str().ok()).unwrap_or("?");
    Some(format!(
        "HTTP {status}: a redirect to {to}, not followed (set target.follow_redirects = true to follow redirects to hosts in target.allow)"
    ))
}
