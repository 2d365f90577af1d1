//! The reference server's declarative fault and limit vocabulary: every way
//! it can break the protocol on purpose (close 1011 at a phase, drop,
//! duplicate or reorder an event, omit a field, leak to another user, ...),
//! its agent capacity and its stalls. Pure data and parsing, shared by
//! `chatload serve` flags and a scenario's `[server]` table; kept in this leaf
//! so `scenario/` can check a fault plan where it is written without
//! importing `server/` (ARCHITECTURE.md: the server shares only protocol,
//! auth and units with the client side).
//!
//! A new fault class: a field of [`FaultPlan`], its arm in `FaultPlan::set`
//! and `Display`; then its draw in `server/faults.rs` and its injection in
//! `server/agent.rs` (a run's script) or `server/ws.rs` (the socket).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Where a 1011 close is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Right after the upgrade, before the ready frame.
    Connect,
    /// At the first message exchange of a connection (instead of its first run).
    FirstExchange,
    /// In the middle of a run, after its first event.
    MidRun,
    /// Shortly after a run completed, while the socket is idle.
    Idle,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::FirstExchange => "first_exchange",
            Phase::MidRun => "mid_run",
            Phase::Idle => "idle",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "connect" => Ok(Phase::Connect),
            "first_exchange" => Ok(Phase::FirstExchange),
            "mid_run" => Ok(Phase::MidRun),
            "idle" => Ok(Phase::Idle),
            other => Err(format!(
                "unknown phase `{other}` (connect, first_exchange, mid_run, idle)"
            )),
        }
    }
}

/// Faults the server injects, each at a rate, drawn from the seeded generator.
/// Every injected fault is counted in the truth counters under `faults.<class>`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FaultPlan {
    /// Close 1011 at a phase, per connection (connect, first_exchange) or per run (mid_run, idle).
    pub close_1011: BTreeMap<Phase, f64>,
    /// Drop the TCP connection mid-run without a close frame (the client sees 1006).
    pub close_1006: f64,
    /// Leave one event of this name out of a run.
    pub drop_event: BTreeMap<String, f64>,
    /// Send one event of this name twice, byte for byte.
    pub duplicate_event: BTreeMap<String, f64>,
    /// Swap a run's first two events.
    pub reorder: f64,
    /// Remove a field (`event.field`) from one event of a run.
    pub omit_field: BTreeMap<String, f64>,
    /// Insert into a run an event carrying another connected user's ids.
    pub leak: f64,
    /// Stop a run after its first event, past any timeout.
    pub stall: f64,
    /// Insert a frame that is not JSON.
    pub malformed: f64,
    /// Insert a binary frame.
    pub binary: f64,
    /// Insert a text frame of `oversized_bytes` bytes.
    pub oversized: f64,
    pub oversized_bytes: usize,
    /// Refuse the upgrade with this HTTP status, per connection attempt.
    pub refuse_upgrade: BTreeMap<u16, f64>,
    /// Answer a thread REST call (`/api/threads...`) with this HTTP status
    /// instead of serving it, per request.
    pub rest_error: BTreeMap<u16, f64>,
    /// Delay the upgrade response.
    pub slow_accept: Option<(Duration, f64)>,
    /// Do not store a run's user message in its thread (history then misses it).
    pub lose_message: f64,
    /// Add another user's message to a history read (`GET .../messages`).
    pub leak_history: f64,
    /// Per connection: answer none of the client's `ping`/`heartbeat` frames
    /// (a hung handler that still holds the socket).
    pub mute_heartbeat: f64,
    /// Per connection, before ready: refuse the token as the platform does
    /// under load (`error_message` with `VALIDATION_FAILED`, then close 1011).
    pub reject_token: f64,
    /// Per socket close: forget to decrement the server's own connection
    /// counts (`active_connections`, `manager.connections` in
    /// `/__chatload/stats`), as a leaking platform does.
    pub leak_connections: f64,
    /// Bytes every completed agent run leaves behind for good (really
    /// allocated and written, so the server's RSS grows); 0: none.
    pub leak_memory: u64,
}

/// Every fault class [`FaultPlan::set`] knows, in the order README lists them.
pub const KNOWN_FAULTS: &[&str] = &[
    "close_1011",
    "close_1006",
    "drop_event",
    "duplicate_event",
    "reorder",
    "omit_field",
    "leak",
    "stall",
    "malformed",
    "binary",
    "oversized",
    "refuse_upgrade",
    "slow_accept",
    "lose_message",
    "leak_history",
    "mute_heartbeat",
    "reject_token",
    "rest_error",
    "leak_connections",
    "leak_memory",
];

/// The most a run may leak with `leak_memory` (a typo of a unit should not
/// take the machine's memory).
pub const LEAK_MEMORY_MAX: u64 = 1 << 30;

fn parse_leak_memory(value: &str) -> Result<u64, String> {
    let bytes = crate::units::parse_bytes(value)
        .map_err(|e| format!("leak_memory takes a size per run, e.g. leak_memory=256KiB: {e}"))?;
    if bytes > LEAK_MEMORY_MAX {
        return Err(format!("leak_memory `{value}` is more than 1GiB per run"));
    }
    Ok(bytes)
}

fn split_arg<'a>(name: &str, value: &'a str) -> Result<(&'a str, &'a str), String> {
    value
        .rsplit_once(':')
        .ok_or_else(|| format!("fault `{name}` takes ARG:RATE, e.g. {name}=agent_thinking:1%"))
}

impl FaultPlan {
    /// Parses comma-separated entries, e.g.
    /// `close_1011=0.5%@first_exchange,drop_event=agent_thinking:1%,omit_field=tool_completed.results:2%`.
    pub fn parse(s: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                format!("fault `{part}` must be written name=value, e.g. close_1011=0.5%")
            })?;
            plan.set(name.trim(), value.trim())?;
        }
        Ok(plan)
    }

    /// Sets one fault from its name and value text.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "close_1011" => {
                let (rate, phase) = match value.split_once('@') {
                    Some((r, p)) => (r, p.trim().parse::<Phase>()?),
                    None => (value, Phase::FirstExchange),
                };
                self.close_1011.insert(phase, parse_rate(rate.trim())?);
            }
            "close_1006" => self.close_1006 = parse_rate(value)?,
            "reorder" => self.reorder = parse_rate(value)?,
            "leak" => self.leak = parse_rate(value)?,
            "stall" => self.stall = parse_rate(value)?,
            "lose_message" => self.lose_message = parse_rate(value)?,
            "leak_history" => self.leak_history = parse_rate(value)?,
            "mute_heartbeat" => self.mute_heartbeat = parse_rate(value)?,
            "reject_token" => self.reject_token = parse_rate(value)?,
            "leak_connections" => self.leak_connections = parse_rate(value)?,
            "leak_memory" => self.leak_memory = parse_leak_memory(value)?,
            "malformed" => self.malformed = parse_rate(value)?,
            "binary" => self.binary = parse_rate(value)?,
            "oversized" => {
                let (size, rate) = match value.rsplit_once(':') {
                    Some((b, r)) => (
                        b.trim().parse::<usize>().map_err(|_| {
                            format!("oversized size `{b}` is not a number of bytes")
                        })?,
                        r,
                    ),
                    None => (256 * 1024, value),
                };
                self.oversized = parse_rate(rate)?;
                self.oversized_bytes = size;
            }
            "drop_event" | "duplicate_event" | "omit_field" => {
                let (arg, rate) = split_arg(name, value)?;
                if name == "omit_field" && !arg.contains('.') {
                    return Err(format!("omit_field takes EVENT.FIELD:RATE, not `{value}`"));
                }
                let map = match name {
                    "drop_event" => &mut self.drop_event,
                    "duplicate_event" => &mut self.duplicate_event,
                    _ => &mut self.omit_field,
                };
                map.insert(arg.trim().to_string(), parse_rate(rate)?);
            }
            "refuse_upgrade" | "rest_error" => {
                let (status, rate) = split_arg(name, value)?;
                let status: u16 = status
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name} status `{status}` is not an HTTP status"))?;
                if !(400..600).contains(&status) {
                    return Err(format!("{name} status {status} must be 4xx or 5xx"));
                }
                let map = if name == "rest_error" {
                    &mut self.rest_error
                } else {
                    &mut self.refuse_upgrade
                };
                map.insert(status, parse_rate(rate)?);
            }
            "slow_accept" => {
                let (delay, rate) = split_arg(name, value)?;
                let d = crate::units::parse_duration(delay)?;
                self.slow_accept = Some((d, parse_rate(rate)?));
            }
            other => {
                return Err(format!(
                    "unknown fault `{other}` (known: {})",
                    KNOWN_FAULTS.join(", ")
                ))
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self
            == FaultPlan {
                oversized_bytes: self.oversized_bytes,
                ..FaultPlan::default()
            }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let pct = |r: f64| format!("{}%", r * 100.0);
        let mut parts = Vec::new();
        for (p, r) in &self.close_1011 {
            parts.push(format!("close_1011={}@{}", pct(*r), p.name()));
        }
        for (name, r) in [
            ("close_1006", self.close_1006),
            ("reorder", self.reorder),
            ("leak", self.leak),
            ("stall", self.stall),
            ("malformed", self.malformed),
            ("binary", self.binary),
            ("lose_message", self.lose_message),
            ("leak_history", self.leak_history),
            ("mute_heartbeat", self.mute_heartbeat),
            ("reject_token", self.reject_token),
            ("leak_connections", self.leak_connections),
        ] {
            if r > 0.0 {
                parts.push(format!("{name}={}", pct(r)));
            }
        }
        if self.oversized > 0.0 {
            parts.push(format!(
                "oversized={}:{}",
                self.oversized_bytes,
                pct(self.oversized)
            ));
        }
        for (name, map) in [
            ("drop_event", &self.drop_event),
            ("duplicate_event", &self.duplicate_event),
            ("omit_field", &self.omit_field),
        ] {
            for (k, r) in map {
                parts.push(format!("{name}={k}:{}", pct(*r)));
            }
        }
        for (st, r) in &self.refuse_upgrade {
            parts.push(format!("refuse_upgrade={st}:{}", pct(*r)));
        }
        for (st, r) in &self.rest_error {
            parts.push(format!("rest_error={st}:{}", pct(*r)));
        }
        if let Some((d, r)) = self.slow_accept {
            parts.push(format!("slow_accept={}ms:{}", d.as_millis(), pct(r)));
        }
        if self.leak_memory > 0 {
            parts.push(format!("leak_memory={}", self.leak_memory));
        }
        f.write_str(&parts.join(","))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().map(|v| v / 100.0)
    } else {
        s.parse::<f64>()
    }
    .map_err(|_| format!("`{s}` is not a rate; write e.g. 0.5% or 0.005"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("rate `{s}` must be between 0% and 100%"));
    }
    Ok(v)
}

/// The agent's capacity: at most `runs` agent runs are served at once; up to
/// `queue` more wait for a free slot (their latency grows), and a run that
/// finds the queue full is refused with a 1011 close, as an overloaded
/// platform does. Makes the knee of a capacity search a known quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    pub runs: usize,
    pub queue: usize,
}

impl std::str::FromStr for Capacity {
    type Err = String;
    /// `RUNS` or `RUNS/QUEUE`, e.g. `8/32`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (r, q) = s.split_once('/').unwrap_or((s, "0"));
        let num = |t: &str, what: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("capacity `{s}`: {what} `{t}` is not a whole number (RUNS or RUNS/QUEUE, e.g. 8/32)"))
        };
        let c = Capacity {
            runs: num(r, "runs")?,
            queue: num(q, "queue")?,
        };
        if c.runs == 0 {
            return Err(format!("capacity `{s}`: runs must be at least 1"));
        }
        Ok(c)
    }
}

/// A periodic stall, like a stop-the-world pause: from `every` after the
/// server started, and again every `every`, no agent event leaves the server
/// for `length`; events due inside the window wait until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stall {
    #[serde(serialize_with = "ms")]
    pub every: Duration,
    #[serde(serialize_with = "ms")]
    pub length: Duration,
}

/// Serializes a duration as whole milliseconds (the server settings echo).
pub fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Stall {
    /// When `since_start` falls inside a stall window: that window's number
    /// (1, 2, ...) and the time left in it.
    pub fn inside(&self, since_start: Duration) -> Option<(u64, Duration)> {
        let every = self.every.as_nanos();
        if every == 0 {
            return None;
        }
        let t = since_start.as_nanos();
        let k = t / every;
        let into = t - k * every;
        (k >= 1 && into < self.length.as_nanos())
            .then(|| (k as u64, self.length - Duration::from_nanos(into as u64)))
    }
}

impl std::str::FromStr for Stall {
    type Err = String;
    /// `EVERY/LENGTH`, e.g. `10s/1s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (e, l) = s
            .split_once('/')
            .ok_or_else(|| format!("stall `{s}` is not EVERY/LENGTH, e.g. 10s/1s"))?;
        let dur = |t: &str| {
            humantime::parse_duration(t.trim()).map_err(|e| format!("stall `{s}`: `{t}`: {e}"))
        };
        let st = Stall {
            every: dur(e)?,
            length: dur(l)?,
        };
        if st.every.is_zero() || st.length >= st.every {
            return Err(format!(
                "stall `{s}`: the stall must be shorter than its period"
            ));
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_windows_and_capacity_parse() {
        let st: Stall = "10s/1s".parse().unwrap();
        let s = Duration::from_millis;
        // (time since start, inside a window: (window, time left))
        let table = [
            (s(0), None),
            (s(500), None),
            (s(9_999), None),
            (s(10_000), Some((1, s(1000)))),
            (s(10_250), Some((1, s(750)))),
            (s(10_999), Some((1, s(1)))),
            (s(11_000), None),
            (s(25_500), None),
            (s(30_100), Some((3, s(900)))),
        ];
        for (t, want) in table {
            assert_eq!(st.inside(t), want, "at {t:?}");
        }
        assert!("1s/1s".parse::<Stall>().is_err());
        assert!("10s".parse::<Stall>().is_err());
        assert_eq!(
            "8/32".parse::<Capacity>().unwrap(),
            Capacity { runs: 8, queue: 32 }
        );
        assert_eq!("4".parse::<Capacity>().unwrap().queue, 0);
        assert!("0/3".parse::<Capacity>().is_err());
        assert!("x"
            .parse::<Capacity>()
            .unwrap_err()
            .contains("whole number"));
    }

    #[test]
    fn fault_plan_parses_every_class() {
        let p = FaultPlan::parse(
            "close_1011=0.5%@first_exchange,close_1011=1%@idle,drop_event=agent_thinking:1%,omit_field=tool_completed.results:2%,\
             duplicate_event=agent_started:3%,reorder=1%,leak=0.01%,stall=1%,malformed=1%,binary=1%,oversized=100000:1%,\
             refuse_upgrade=503:5%,slow_accept=300ms:10%,close_1006=2%,reject_token=30%,rest_error=500:4%,\
             leak_connections=5%,leak_memory=256KiB",
        )
        .unwrap();
        assert!((p.leak_connections - 0.05).abs() < 1e-12);
        assert_eq!(p.leak_memory, 256 * 1024);
        assert_eq!(
            FaultPlan::parse("leak_memory=1000").unwrap().leak_memory,
            1000
        );
        assert!((p.reject_token - 0.3).abs() < 1e-12);
        assert!((p.close_1011[&Phase::FirstExchange] - 0.005).abs() < 1e-12);
        assert!((p.close_1011[&Phase::Idle] - 0.01).abs() < 1e-12);
        assert!((p.omit_field["tool_completed.results"] - 0.02).abs() < 1e-12);
        assert_eq!(p.oversized_bytes, 100_000);
        assert_eq!(p.slow_accept, Some((Duration::from_millis(300), 0.1)));
        assert!((p.refuse_upgrade[&503] - 0.05).abs() < 1e-12);
        assert!((p.rest_error[&500] - 0.04).abs() < 1e-12);
        // Display writes a plan that parses back to itself.
        assert_eq!(FaultPlan::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn bad_fault_plans_are_explained() {
        for bad in [
            "close_1011=150%",
            "explode=1%",
            "close_1011",
            "close_1011=1%@later",
            "omit_field=results:1%",
            "refuse_upgrade=200:1%",
            "rest_error=200:1%",
            "drop_event=1%",
            "leak_connections=120%",
            "leak_memory=lots",
            "leak_memory=2GiB",
        ] {
            assert!(FaultPlan::parse(bad).is_err(), "{bad}");
        }
        assert!(FaultPlan::parse("").unwrap().is_empty());
        // The unknown-fault message lists every class, the new ones too.
        let e = FaultPlan::parse("explode=1%").unwrap_err();
        for known in KNOWN_FAULTS {
            assert!(e.contains(known), "{e}");
        }
        assert_eq!(
            FaultPlan::parse("close_1011=0.25").unwrap().close_1011[&Phase::FirstExchange],
            0.25
        );
    }
}
