//! Names of metrics and counters every report uses (DESIGN.md "Metrics"),
//! and the one place that knows which names chatload can emit for a
//! scenario ([`check_histogram`], [`check_counter`]): a threshold on a name
//! that is never recorded would judge "no data" (a latency) or 0 (a counter,
//! so `runs.faild count == 0` would pass every gate), so the loader refuses it.
//!
//! A new counter gets a constant here and an entry in [`COUNTERS`] (or a
//! family in [`check_counter`]); a unit test reads the engine's sources and
//! fails on a literal counter or histogram name this module does not know.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// TCP + TLS + HTTP upgrade, until the 101 response.
pub const WS_CONNECT: &str = "ws_connect";
/// Upgrade done until the profile's ready frame.
pub const WS_READY: &str = "ws_ready";
/// Run start to the first agent event of the run.
pub const TTFE: &str = "ttfe";
/// Run start to the terminal event.
pub const TTC: &str = "ttc";
/// Largest gap between consecutive events of a run.
pub const EVENT_GAP_MAX: &str = "event_gap_max";
/// The generator's own lateness at a send: the intended send (the
/// arrival's intended start, the end of a think, or, with no think, the end
/// of the step before) to the write of the message done.
pub const SEND_LAG: &str = "send_lag";
/// The kernel receiving a frame to chatload's task having it in hand
/// (kernel receive stamps only, `engine/stamp.rs`): latencies end at the
/// kernel's time, this is what chatload's own delay would have added.
pub const GENERATOR_DELAY: &str = "generator_delay";
/// Open model: the run's actual send to its first event (service time;
/// `ttfe` counts from the intended start).
pub const TTFE_SERVICE: &str = "ttfe_service";
/// Open model: the run's actual send to its terminal event.
pub const TTC_SERVICE: &str = "ttc_service";
/// A heartbeat ping to its reply.
pub const WS_PING: &str = "ws_ping";
/// A dropped socket (or a first failed connect) to ready again.
pub const RECONNECT_TIME: &str = "reconnect_time";
/// The wait before a reconnect attempt.
pub const RECONNECT_BACKOFF: &str = "reconnect_backoff";
/// The login request of the login token source.
pub const LOGIN: &str = "login";
/// `POST /api/websocket/ticket` of the ticket presentation.
pub const REST_TICKET: &str = "rest_ticket";
/// Between two frames the profile answers on one socket (the server's own
/// application pings: their cadence as the client sees it).
pub const SERVER_PING_GAP: &str = "server_ping_gap";
/// `switch_thread` sent to its confirmation.
pub const THREAD_SWITCH: &str = "thread_switch";

/// A `[[probe]]` read of the target's own numbers, request to answer.
pub const PROBE_LATENCY: &str = "probe_latency";

/// Histograms recorded whatever the journey (some only with a setting:
/// heartbeats, a login source, tickets, the open model, reconnects).
pub const HISTOGRAMS: &[&str] = &[
    WS_CONNECT,
    WS_READY,
    TTFE,
    TTC,
    EVENT_GAP_MAX,
    SEND_LAG,
    WS_PING,
    RECONNECT_TIME,
    RECONNECT_BACKOFF,
    LOGIN,
    REST_TICKET,
    SERVER_PING_GAP,
    PROBE_LATENCY,
    GENERATOR_DELAY,
    TTFE_SERVICE,
    TTC_SERVICE,
];

/// Open model: arrivals the rate plan called for.
pub const STARTS_INTENDED: &str = "starts.intended";
/// Open model: arrivals that found every session busy and were not started.
pub const STARTS_DROPPED: &str = "starts.dropped";
/// Open model: arrivals that waited for a free session (`when_full = "queue"`).
pub const STARTS_LATE: &str = "starts.late";

/// Histogram of the first event of one name, from the run's start.
pub fn event_metric(name: &str) -> Cow<'static, str> {
    static KEPT: Interned = Interned::new();
    KEPT.get(name, |n| format!("event_{n}"))
}

/// The histogram of a journey step's own time (`step.<name>`).
pub fn step_metric(name: &str) -> Cow<'static, str> {
    static KEPT: Interned = Interned::new();
    KEPT.get(name, |n| format!("step.{n}"))
}

/// Most names [`Interned`] keeps per kind; past it a name is built each
/// time it is used (a hostile server's endless new names cost no memory).
const INTERNED_MAX: usize = 1024;

/// Names built from a bounded vocabulary (a profile's event names, a
/// scenario's step names) on the hot path: built once and kept for the
/// process's life, so recording one allocates nothing.
struct Interned(OnceLock<Mutex<HashMap<Box<str>, &'static str>>>);

impl Interned {
    const fn new() -> Self {
        Interned(OnceLock::new())
    }

    fn get(&self, base: &str, build: impl FnOnce(&str) -> String) -> Cow<'static, str> {
        let kept = self.0.get_or_init(Default::default);
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = kept.get(base) {
            return Cow::Borrowed(name);
        }
        let name = build(base);
        if kept.len() >= INTERNED_MAX {
            return Cow::Owned(name);
        }
        let name: &'static str = Box::leak(name.into_boxed_str());
        kept.insert(base.into(), name);
        Cow::Borrowed(name)
    }
}

pub const CONN_ATTEMPTED: &str = "connections.attempted";
pub const CONN_UPGRADED: &str = "connections.upgraded";
pub const CONN_READY: &str = "connections.ready";
pub const CONN_READY_TIMEOUT: &str = "connections.ready_timeout";
/// A ready socket that ended, for whatever reason (open = ready - closed).
pub const CONN_CLOSED: &str = "connections.closed";
pub const CONN_CLOSED_MISSED_HEARTBEAT: &str = "connections.closed_missed_heartbeat";
pub const CONN_CLOSED_BY_CLIENT: &str = "connections.closed_by_client";
pub const RECONNECTS: &str = "reconnects";
pub const RECONNECTS_GAVE_UP: &str = "reconnects.gave_up";
pub const RUNS_STARTED: &str = "runs.started";
pub const RUNS_OK: &str = "runs.ok";
pub const RUNS_FAILED: &str = "runs.failed";
pub const TOKENS_MINTED: &str = "tokens.minted";
pub const TOKENS_FROM_FILE: &str = "tokens.from_file";
pub const TOKENS_LOGIN: &str = "tokens.login";
pub const TOKENS_LOGIN_FAILED: &str = "tokens.login_failed";
pub const TOKENS_LOGIN_NO_TOKEN: &str = "tokens.login_failed.no_token";
/// Login answers larger than the bounded read (1 MiB, `engine/body.rs`).
pub const TOKENS_LOGIN_TOO_LARGE: &str = "tokens.login_failed.too_large";
pub const TOKENS_REFRESHED: &str = "tokens.refreshed";
pub const TOKENS_REJECTED: &str = "tokens.rejected";
pub const TOKENS_EXPIRED: &str = "tokens.expired";
pub const TOKENS_EXPIRED_ON_SOCKET: &str = "tokens.expired_on_socket";
/// Users whose token cannot be renewed (a tokens file) and that the server
/// refused: they connect no more this run.
pub const USERS_PARKED: &str = "users.parked";
pub const TICKETS_ISSUED: &str = "tickets.issued";
pub const TICKETS_FAILED: &str = "tickets.failed";
pub const HEARTBEATS_SENT: &str = "heartbeats.sent";
pub const HEARTBEATS_ANSWERED: &str = "heartbeats.answered";
pub const HEARTBEATS_MISSED: &str = "heartbeats.missed";
pub const THREADS_CREATED: &str = "threads.created";
pub const THREADS_SWITCHED: &str = "threads.switched";
pub const THREADS_SWITCH_TIMEOUT: &str = "threads.switch_timeout";
/// `switch_thread` requests sent (the denominator of `thread_switch_timeout rate`).
pub const THREADS_SWITCH_REQUESTED: &str = "threads.switch_requested";
/// Protocol violations of every class (`violations.<class>` summed).
pub const VIOLATIONS_ALL: &str = "violations";
/// Server frames the profile answers (`[profile.answers]`: the server's
/// own application heartbeats, such as the platform's `ping`).
pub const FRAMES_ANSWERED: &str = "frames.answered";
/// Simulated users whose server identity (the token's `sub`, or for an
/// opaque token the ready frame's user id) another user shares: isolation
/// is not checked between them.
pub const IDENTITIES_SHARED: &str = "identities.shared";
pub const FRAMES_UNKNOWN: &str = "frames.unknown";
pub const FRAMES_UNPARSEABLE: &str = "frames.unparseable";
pub const FRAMES_BINARY: &str = "frames.binary";
pub const FRAMES_BETWEEN_RUNS: &str = "frames.between_runs";
pub const FRAMES_FOREIGN: &str = "frames.foreign";
pub const HANDSHAKES_ANSWERED: &str = "handshakes.answered";
pub const BYTES_SENT: &str = "bytes.sent";
pub const BYTES_RECEIVED: &str = "bytes.received";
/// Steps over 1 ms of the realtime clock against the monotonic one, sampled
/// once an interval (kernel receive stamps are realtime).
pub const CLOCK_JUMPS: &str = "clock.jumps";
pub const HISTORY_MESSAGES_CHECKED: &str = "history.messages_checked";
/// History reads that stopped because the server answered a cursor it had
/// already given (it would page forever).
pub const HISTORY_CURSOR_REPEATED: &str = "history.cursor_repeated";
/// History reads that stopped at the page cap with more pages announced.
pub const HISTORY_PAGES_CAPPED: &str = "history.pages_capped";
pub const PERSISTENCE_MISS: &str = "persistence_miss";
pub const HISTOGRAM_CLAMPED: &str = "histogram.clamped";
/// Redirect hops refused because their host is not in `target.allow`
/// (with `target.follow_redirects = true`).
pub const HTTP_REDIRECTS_REFUSED: &str = "http.redirects.refused";
/// Redirect answers not followed (without `target.follow_redirects`).
pub const HTTP_REDIRECTS_NOT_FOLLOWED: &str = "http.redirects.not_followed";
/// `[[probe]]` reads that found every value.
pub const PROBES_OK: &str = "probes.ok";
/// `[[probe]]` reads that failed (by kind: `probes.failed.<kind>`).
pub const PROBES_FAILED: &str = "probes.failed";
/// Kinds of `probes.failed.<kind>`: no answer in time, no connection, a
/// status that is not 2xx, an answer over 1 MiB, an answer that does not
/// parse, a value not in the answer (or not a number).
pub const PROBE_FAILURES: &[&str] = &[
    "timeout",
    "connect",
    "status",
    "too_large",
    "parse",
    "missing",
];

/// `probes.failed.<kind>`.
pub fn probe_failed(kind: &str) -> String {
    format!("{PROBES_FAILED}.{kind}")
}

/// Every counter with a fixed name. (Families such as `closes.<code>` are
/// in [`check_counter`].)
pub const COUNTERS: &[&str] = &[
    CONN_ATTEMPTED,
    CONN_UPGRADED,
    CONN_READY,
    CONN_READY_TIMEOUT,
    CONN_CLOSED,
    CONN_CLOSED_MISSED_HEARTBEAT,
    CONN_CLOSED_BY_CLIENT,
    RECONNECTS,
    RECONNECTS_GAVE_UP,
    RUNS_STARTED,
    RUNS_OK,
    RUNS_FAILED,
    STARTS_INTENDED,
    STARTS_DROPPED,
    STARTS_LATE,
    TOKENS_MINTED,
    TOKENS_FROM_FILE,
    TOKENS_LOGIN,
    TOKENS_LOGIN_FAILED,
    TOKENS_LOGIN_NO_TOKEN,
    TOKENS_LOGIN_TOO_LARGE,
    TOKENS_REFRESHED,
    TOKENS_REJECTED,
    TOKENS_EXPIRED,
    TOKENS_EXPIRED_ON_SOCKET,
    USERS_PARKED,
    TICKETS_ISSUED,
    TICKETS_FAILED,
    HEARTBEATS_SENT,
    HEARTBEATS_ANSWERED,
    HEARTBEATS_MISSED,
    THREADS_CREATED,
    THREADS_SWITCHED,
    THREADS_SWITCH_TIMEOUT,
    THREADS_SWITCH_REQUESTED,
    VIOLATIONS_ALL,
    FRAMES_ANSWERED,
    IDENTITIES_SHARED,
    FRAMES_UNKNOWN,
    FRAMES_UNPARSEABLE,
    FRAMES_BINARY,
    FRAMES_BETWEEN_RUNS,
    FRAMES_FOREIGN,
    HANDSHAKES_ANSWERED,
    BYTES_SENT,
    BYTES_RECEIVED,
    CLOCK_JUMPS,
    HISTORY_MESSAGES_CHECKED,
    HISTORY_CURSOR_REPEATED,
    HISTORY_PAGES_CAPPED,
    PERSISTENCE_MISS,
    HISTOGRAM_CLAMPED,
    HTTP_REDIRECTS_REFUSED,
    HTTP_REDIRECTS_NOT_FOLLOWED,
    PROBES_OK,
    PROBES_FAILED,
];

/// Phases of `closes_by_phase.<phase>.<code>`.
pub const CLOSE_PHASES: &[&str] = &["before_ready", "first_exchange", "during_run", "idle"];

/// Kinds of `connections.failed.<kind>` (a connect that failed below HTTP;
/// `local`: on this machine, also counted by errno below).
pub const CONNECT_FAILURES: &[&str] = &["refused", "io", "tls", "timeout", "protocol", "local"];

/// Errnos of `connections.local_error.<errno>`: this machine ran out of fds
/// or ports (the run is INVALID, see `metrics/validity.rs`).
pub const LOCAL_ERRNOS: &[&str] = &["emfile", "enfile", "eaddrnotavail", "eaddrinuse"];

/// Classes of `violations.<class>` (protocol/validate.rs, engine/session.rs,
/// the history check).
pub const VIOLATIONS: &[&str] = &[
    "order",
    "unpaired_tool",
    "missing_field",
    "field_type",
    "duplicate_event",
    "duplicate_terminal",
    "late_event",
    "cross_user_leak",
    "cross_user_history",
    "crossed_run",
    "gap_exceeded",
    "unexpected_event",
    "unparseable_frame",
    "binary_frame",
    "oversized_frame",
    "flood",
    "seq_gap",
    "identity_mismatch",
];

/// Fixed classes of `connections.protocol_error.<class>` (`engine/wire.rs`;
/// the families `http_status_<code>`, `tls_<kind>` and `io_<kind>` come on
/// top).
pub const PROTOCOL_ERRORS: &[&str] = &[
    "frame_too_large",
    "invalid_utf8",
    "reserved_bits",
    "bad_opcode",
    "bad_frame",
    "bad_accept_key",
    "subprotocol_refused",
    "bad_handshake",
    "flood",
    "other",
];

fn is_protocol_error(class: &str) -> bool {
    PROTOCOL_ERRORS.contains(&class)
        || class.strip_prefix("http_status_").is_some_and(is_status)
        || ["tls_", "io_"]
            .iter()
            .any(|p| class.strip_prefix(p).is_some_and(|k| !k.is_empty()))
}

/// Classes of `runs.failed.<class>` besides the violation classes (a run
/// with a violation fails by the first one's class).
pub const RUN_FAILURES: &[&str] = &[
    "timeout",
    "no_response",
    "closed",
    "protocol_error",
    "agent_error",
    "send_error",
    "not_awaited",
];

/// What a scenario records beyond the fixed names: its steps and its
/// profile's events. `None` when that part of the file did not load: names
/// that depend on it are then accepted, so a broken journey does not add a
/// follow-on error to every threshold.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// REST steps (`create_thread`, `list_threads`, `history`, `http`): a
    /// histogram `<name>` and counters `rest.<name>.<status|failed|capture_missing>`.
    pub rest_steps: Option<Vec<String>>,
    /// Steps timed as `step.<name>` (`send`, `think`, `disconnect`, `reconnect`).
    pub timed_steps: Option<Vec<String>>,
    /// Whether a journey has a `switch_thread` step (`thread_switch`).
    pub switches_threads: Option<bool>,
    /// Named `connect`/`await`/`switch_thread` steps: `<name>` (`Step::named_metric`).
    pub named_steps: Option<Vec<String>>,
    /// Agent events of the profile (`events.<name>`, `event_<name>`).
    pub events: Option<Vec<String>>,
}

impl Vocabulary {
    /// Accepts every name that depends on the scenario.
    pub fn unknown() -> Self {
        Vocabulary::default()
    }

    fn known(list: &Option<Vec<String>>, name: &str) -> bool {
        list.as_ref().is_none_or(|l| l.iter().any(|x| x == name))
    }

    /// Every histogram name this scenario can record (for suggestions).
    fn histograms(&self) -> Vec<String> {
        let mut v: Vec<String> = HISTOGRAMS.iter().map(|s| s.to_string()).collect();
        v.extend(self.rest_steps.iter().flatten().cloned());
        v.extend(self.named_steps.iter().flatten().cloned());
        v.extend(
            self.timed_steps
                .iter()
                .flatten()
                .map(|s| format!("step.{s}")),
        );
        if self.switches_threads != Some(false) {
            v.push(THREAD_SWITCH.into());
        }
        v.extend(
            self.events
                .iter()
                .flatten()
                .map(|e| event_metric(e).into_owned()),
        );
        v
    }

    /// Fixed and scenario counters (for suggestions).
    fn counters(&self) -> Vec<String> {
        let mut v: Vec<String> = COUNTERS.iter().map(|s| s.to_string()).collect();
        v.extend(RUN_FAILURES.iter().chain(VIOLATIONS).map(|c| run_failed(c)));
        v.extend(VIOLATIONS.iter().map(|c| format!("violations.{c}")));
        v.extend(self.events.iter().flatten().map(|e| events(e).into_owned()));
        v.extend(CONNECT_FAILURES.iter().map(|k| conn_failed(k)));
        v.extend(LOCAL_ERRNOS.iter().map(|e| conn_local_error(e)));
        v
    }
}

/// Whether chatload records the histogram `name` for a scenario with `v`.
pub fn check_histogram(name: &str, v: &Vocabulary) -> Result<(), String> {
    let known = HISTOGRAMS.contains(&name)
        || (name == THREAD_SWITCH && v.switches_threads != Some(false))
        || name
            .strip_prefix("event_")
            .is_some_and(|e| Vocabulary::known(&v.events, e))
        || name
            .strip_prefix("step.")
            .is_some_and(|s| Vocabulary::known(&v.timed_steps, s))
        || v.named_steps.as_ref().is_some_and(|l| l.iter().any(|x| x == name))
        // A REST step's name (any plain name while the journey is unknown).
        || v
            .rest_steps
            .as_ref()
            .map_or(!name.contains('.'), |l| l.iter().any(|x| x == name));
    if known {
        return Ok(());
    }
    let why = if name == THREAD_SWITCH {
        " (no journey has a `switch_thread` step)".to_string()
    } else if name.starts_with("event_") {
        " (not an agent event of the profile)".to_string()
    } else if name.starts_with("step.") {
        " (`step.<name>` times the `send`, `think`, `disconnect` and `reconnect` steps by their names)".to_string()
    } else {
        String::new()
    };
    Err(format!(
        "unknown latency metric `{name}`{why}: chatload never records it, so the rule could only judge \"no data\"{}",
        suggest(name, &v.histograms())
    ))
}

/// Whether chatload counts `name` for a scenario with `v`.
pub fn check_counter(name: &str, v: &Vocabulary) -> Result<(), String> {
    if counter_known(name, v) {
        return Ok(());
    }
    Err(format!(
        "unknown counter `{name}`: chatload never counts it, so the rule would judge 0{}",
        suggest(name, &v.counters())
    ))
}

/// Whether `class` is counted in `runs.failed.<class>`.
pub fn is_run_failure(class: &str) -> bool {
    RUN_FAILURES.contains(&class) || VIOLATIONS.contains(&class)
}

fn is_status(s: &str) -> bool {
    s.len() == 3 && s.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c))
}

fn is_close_code(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('+') && s.parse::<u16>().is_ok()
}

fn counter_known(name: &str, v: &Vocabulary) -> bool {
    if COUNTERS.contains(&name) {
        return true;
    }
    let Some((head, rest)) = name.split_once('.') else {
        return false;
    };
    let free = |s: &str| !s.is_empty();
    match head {
        "closes" | "closes_auth" => is_close_code(rest),
        "closes_by_phase" | "closes_auth_by_phase" => rest
            .split_once('.')
            .is_some_and(|(phase, code)| CLOSE_PHASES.contains(&phase) && is_close_code(code)),
        "connections" => match rest.split_once('.') {
            Some(("rejected", st)) => is_status(st),
            Some(("failed", kind)) => CONNECT_FAILURES.contains(&kind),
            Some(("local_error", errno)) => LOCAL_ERRNOS.contains(&errno),
            Some(("protocol_error", class)) => is_protocol_error(class),
            _ => false,
        },
        "runs" => rest.strip_prefix("failed.").is_some_and(is_run_failure),
        "events" => Vocabulary::known(&v.events, rest),
        "violations" => {
            let (class, detail) = rest.split_once('.').unwrap_or((rest, "x"));
            VIOLATIONS.contains(&class) && free(detail)
        }
        "frames" => rest == "flood" || rest.strip_prefix("server_error.").is_some_and(free),
        "tickets" => rest.strip_prefix("rejected.").is_some_and(is_status),
        "tokens" => match rest.split_once('.') {
            Some(("rejected", phase)) => CLOSE_PHASES.contains(&phase),
            _ => rest.strip_prefix("login_failed.").is_some_and(is_status),
        },
        "threads" => rest.strip_prefix("switch_failed.").is_some_and(free),
        "probes" => rest
            .strip_prefix("failed.")
            .is_some_and(|k| PROBE_FAILURES.contains(&k)),
        "steps" => rest.strip_prefix("skipped.").is_some_and(|s| {
            Vocabulary::known(&v.timed_steps, s) || Vocabulary::known(&v.rest_steps, s)
        }),
        "rest" => rest.rsplit_once('.').is_some_and(|(step, what)| {
            Vocabulary::known(&v.rest_steps, step)
                && (is_status(what) || matches!(what, "failed" | "capture_missing" | "error"))
        }),
        _ => false,
    }
}

/// ` (did you mean `x`?)` for the closest known name, if one is close.
fn suggest(name: &str, known: &[String]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// HTTP status that refused an upgrade.
pub fn conn_rejected(status: u16) -> String {
    format!("connections.rejected.{status}")
}

/// A connection attempt that failed below HTTP (refused, timeout, TLS).
pub fn conn_failed(kind: &str) -> String {
    format!("connections.failed.{kind}")
}

/// A connect that failed on this machine, by errno name (`emfile`, ...).
pub fn conn_local_error(errno: &str) -> String {
    format!("connections.local_error.{errno}")
}

/// A socket ended by a protocol error or a flood, by its class
/// (`engine/wire.rs`: `frame_too_large`, `invalid_utf8`, `flood`, ...).
pub fn protocol_error(class: &str) -> String {
    format!("connections.protocol_error.{class}")
}

/// A close seen by the client, by code (1006 when the socket dropped without one).
pub fn close_code(code: u16) -> String {
    format!("closes.{code}")
}

/// A close by the phase it happened in and its code.
pub fn close_phase(phase: &str, code: u16) -> String {
    format!("closes_by_phase.{phase}.{code}")
}

/// A recognised auth failure (`protocol::AuthFailure`) by socket phase.
pub fn tokens_rejected(phase: &str) -> String {
    format!("tokens.rejected.{phase}")
}

/// The close ending an auth failure (also in `closes.*`): by code, by phase and code.
pub fn close_auth(phase: &str, code: u16) -> [String; 2] {
    [close_code(code), close_phase(phase, code)].map(|n| n.replacen("closes", "closes_auth", 1))
}

/// A failed run by class (`timeout`, `no_response`, `closed`, `agent_error`, ...).
pub fn run_failed(class: &str) -> String {
    format!("runs.failed.{class}")
}

/// Events received of one name (`events.<name>`).
pub fn events(name: &str) -> Cow<'static, str> {
    static KEPT: Interned = Interned::new();
    KEPT.get(name, |n| format!("events.{n}"))
}

#[cfg(test)]
mod tests;
