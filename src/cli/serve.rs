//! `chatload serve`: the reference server on its own, until Ctrl-C; prints its
//! truth counters on exit.

use std::net::SocketAddr;

use clap::Args;

use crate::auth::{Secret, EMBEDDED_DEV_SECRET};
use crate::protocol::platform::Preset;
use crate::server::{self, Envelope, FaultPlan, ReadyStyle, Settings};

/// `--profile NAME`: a built-in preset's name.
fn preset_name(name: &str) -> Result<String, String> {
    preset(name).map(|_| name.to_string())
}

/// `N` or `MIN-MAX` (MIN <= MAX).
fn count_range(v: &str) -> Result<(u32, u32), String> {
    let (a, b) = v.split_once('-').unwrap_or((v, v));
    let n = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| format!("`{v}`: write N or MIN-MAX, e.g. 1 or 0-2"))
    };
    match (n(a)?, n(b)?) {
        (a, b) if a <= b => Ok((a, b)),
        _ => Err(format!("`{v}`: MIN must not be above MAX")),
    }
}

/// `D` or `MIN-MAX` durations (MIN <= MAX), e.g. `0ms` or `5ms-25ms`.
fn delay_range(v: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (a, b) = v.split_once('-').unwrap_or((v, v));
    let d = |x: &str| {
        humantime::parse_duration(x.trim())
            .map_err(|_| format!("`{v}`: write D or MIN-MAX, e.g. 0ms or 5ms-25ms"))
    };
    match (d(a)?, d(b)?) {
        (a, b) if a <= b => Ok((a, b)),
        _ => Err(format!("`{v}`: MIN must not be above MAX")),
    }
}

fn preset(name: &str) -> Result<Preset, String> {
    crate::protocol::platform::preset(name).ok_or_else(|| crate::protocol::platform::unknown(name))
}

use super::exit;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Seed of the fault and latency generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Speak one protocol generation: netra (the default),
    /// netra-start-agent or netra-agent-request (envelope, ready frames,
    /// heartbeats and platform options; the flags below override it).
    #[arg(long, default_value = "netra", value_parser = preset_name)]
    pub profile: String,
    /// Agent-event envelope: payload, data, flat or wrapped (default: the profile's).
    #[arg(long)]
    pub envelope: Option<Envelope>,
    /// Ready generation: connection_established, system_message or handshake
    /// (default: the profile's).
    #[arg(long)]
    pub ready: Option<ReadyStyle>,
    /// Refuse tokens that carry any `aud` claim (instead of requiring one).
    #[arg(long)]
    pub refuse_aud: bool,
    /// The largest `limit` of the history and thread-list calls; above it
    /// the answer is 422 (default: the profile's; none clamps to 1000).
    #[arg(long)]
    pub limit_max: Option<usize>,
    /// Every login issues a token for this one user (as a dev login does).
    #[arg(long)]
    pub login_as: Option<String>,
    /// Every socket is this one user, whatever its token says (a server
    /// that ignores the token's identity).
    #[arg(long, value_name = "USER")]
    pub socket_as: Option<String>,
    /// Number each run's events `seq` = 1, 2, ...
    #[arg(long)]
    pub seq: bool,
    /// `agent_thinking` events per run, N or MIN-MAX (default 1-2).
    #[arg(long, value_name = "N|MIN-MAX", value_parser = count_range)]
    pub thinking: Option<(u32, u32)>,
    /// Tool pairs (`tool_executing` + `tool_completed`) per run, N or
    /// MIN-MAX (default 0-2).
    #[arg(long, value_name = "N|MIN-MAX", value_parser = count_range)]
    pub tools: Option<(u32, u32)>,
    /// Delay before each agent event, D or MIN-MAX, uniform (default
    /// 5ms-25ms); `0ms` sends a run's events at once (a generator at full speed).
    #[arg(long, value_name = "D|MIN-MAX", value_parser = delay_range)]
    pub event_delay: Option<(std::time::Duration, std::time::Duration)>,
    /// Fault plan, e.g. "close_1011=0.5%@first_exchange,drop_event=agent_started:1%"
    /// (every class is listed in README.md).
    #[arg(long, default_value = "", value_parser = FaultPlan::parse)]
    pub faults: FaultPlan,
    /// Agent capacity, RUNS or RUNS/QUEUE: at most RUNS agent runs at once,
    /// QUEUE more wait, and a run finding the queue full is closed with 1011.
    #[arg(long)]
    pub capacity: Option<server::Capacity>,
    /// Connect limit, N/s (e.g. 20/s): new sockets beyond N within one second
    /// get an auth-failure frame (VALIDATION_FAILED) and close 1011 before ready.
    #[arg(long)]
    pub connect_limit: Option<crate::protocol::connect_limit::ConnectLimit>,
    /// Periodic stall, EVERY/LENGTH (e.g. 10s/1s): no agent event is sent for
    /// LENGTH once every EVERY.
    #[arg(long)]
    pub stall: Option<server::Stall>,
    /// Lifetime of tokens from `POST /auth/dev/login`, e.g. 20s.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_lifetime: std::time::Duration,
    /// Send a `ping` frame on every socket this often, e.g. 25s (default: the profile's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat: Option<std::time::Duration>,
    /// Close a socket (1008) when the token it connected with expires.
    #[arg(long)]
    pub enforce_token_expiry: bool,
    /// Environment variable holding the HS256 key; when unset the embedded dev key is used.
    #[arg(long, default_value = "CHATLOAD_JWT_SECRET")]
    pub secret_env: String,
}

pub async fn main(a: ServeArgs) -> u8 {
    let secret = match std::env::var(&a.secret_env) {
        Ok(s) if !s.is_empty() => Secret::new(s),
        _ => {
            say_err!(
                "note: ${} is unset; using the embedded server's documented dev key",
                a.secret_env
            );
            Secret::new(EMBEDDED_DEV_SECRET)
        }
    };
    let Ok(profile) = preset(&a.profile) else {
        return exit::USAGE;
    };
    let mut cfg = Settings::new(secret);
    cfg.seed = a.seed;
    cfg.envelope = a.envelope.unwrap_or(profile.envelope);
    cfg.ready = a.ready.unwrap_or(profile.ready);
    cfg.platform = profile.options.clone();
    cfg.platform.refuse_aud |= a.refuse_aud;
    cfg.platform.seq |= a.seq;
    if a.limit_max.is_some() {
        cfg.platform.history_limit_max = a.limit_max;
    }
    if a.login_as.is_some() {
        cfg.platform.login_identity = a.login_as.clone();
    }
    if a.socket_as.is_some() {
        cfg.platform.socket_identity = a.socket_as.clone();
    }
    cfg.thinking = a.thinking.unwrap_or(cfg.thinking);
    cfg.tools = a.tools.unwrap_or(cfg.tools);
    cfg.event_delay = a.event_delay.unwrap_or(cfg.event_delay);
    cfg.faults = a.faults;
    cfg.capacity = a.capacity;
    cfg.connect_limit = a.connect_limit;
    cfg.stall = a.stall;
    cfg.login_lifetime = a.login_lifetime;
    cfg.heartbeat = a.heartbeat.or(profile.heartbeat);
    cfg.enforce_expiry = a.enforce_token_expiry;
    let srv = match server::spawn(cfg, a.addr).await {
        Ok(s) => s,
        Err(e) => {
            say_err!("error: cannot listen on {}: {e}", a.addr);
            return exit::USAGE;
        }
    };
    say_err!(
        "reference server on {} (WebSocket {}; truth at {}/__chatload/truth); Ctrl-C stops it",
        srv.addr,
        srv.ws_url(),
        srv.http_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    let truth = srv.truth();
    srv.shutdown().await;
    say!(
        "{}",
        serde_json::to_string_pretty(&truth).unwrap_or_default()
    );
    exit::PASS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ranges_take_one_value_or_min_max_and_refuse_the_rest() {
        assert_eq!(count_range("1"), Ok((1, 1)));
        assert_eq!(count_range("0-2"), Ok((0, 2)));
        assert!(count_range("2-1").unwrap_err().contains("MIN"));
        assert!(count_range("x").unwrap_err().contains("N or MIN-MAX"));
        assert_eq!(delay_range("0ms"), Ok((Duration::ZERO, Duration::ZERO)));
        assert_eq!(
            delay_range("5ms-25ms"),
            Ok((Duration::from_millis(5), Duration::from_millis(25)))
        );
        assert!(delay_range("25ms-5ms").unwrap_err().contains("MIN"));
        assert!(delay_range("soon").unwrap_err().contains("D or MIN-MAX"));
    }
}
