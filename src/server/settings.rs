//! The reference server's one settings type. `chatload serve` flags fill it
//! (`cli/serve.rs`) and `run/` applies a scenario's plain `[server]` table to
//! it, so `server/` never imports `scenario/`. The fault and dialect
//! vocabularies are protocol leaves (`protocol/faults.rs`,
//! `protocol/dialect.rs`).

use std::time::Duration;

pub use crate::protocol::dialect::{Envelope, Naming, ReadyStyle};
pub use crate::protocol::faults::{Capacity, FaultPlan, Phase, Stall};

/// Everything that shapes the reference server's behaviour.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Seed of the fault and latency generators: the same seed and the same
    /// sequence of connections replays the same behaviour.
    pub seed: u64,
    #[serde(skip)]
    pub secret: crate::auth::Secret,
    pub envelope: Envelope,
    pub ready: ReadyStyle,
    pub naming: Naming,
    /// Inclusive range of `agent_thinking` events per run.
    pub thinking: (u32, u32),
    /// Inclusive range of tool pairs (`tool_executing` + `tool_completed`) per run.
    pub tools: (u32, u32),
    /// Uniform delay before each agent event.
    #[serde(with = "duration_pair_ms")]
    pub event_delay: (Duration, Duration),
    /// Gradual slowdown: event delays grow by this factor per minute of uptime
    /// (0.5 = 50% slower after one minute), for drift tests.
    pub slowdown_per_minute: f64,
    pub faults: FaultPlan,
    /// How many agent runs the server serves at once (None: unlimited).
    pub capacity: Option<Capacity>,
    /// New sockets admitted per second (None: unlimited; `connect_limit.rs`).
    pub connect_limit: Option<crate::protocol::connect_limit::ConnectLimit>,
    /// A periodic stall of every agent run (None: never).
    pub stall: Option<Stall>,
    /// Lifetime of tokens from the login endpoint (`POST /auth/dev/login`).
    #[serde(serialize_with = "crate::protocol::faults::ms")]
    pub login_lifetime: Duration,
    /// The server's own `ping` frames, every this often (None: never).
    pub heartbeat: Option<Duration>,
    /// Close a socket (1008) when the token it connected with expires.
    pub enforce_expiry: bool,
    /// Behaviours of real platforms (`protocol::platform`; presets set them).
    pub platform: crate::protocol::platform::PlatformOptions,
}

impl Settings {
    pub fn new(secret: crate::auth::Secret) -> Self {
        Settings {
            seed: 1,
            secret,
            envelope: Envelope::Data,
            ready: ReadyStyle::Established,
            naming: Naming::default(),
            thinking: (1, 2),
            tools: (0, 2),
            event_delay: (Duration::from_millis(5), Duration::from_millis(25)),
            slowdown_per_minute: 0.0,
            faults: FaultPlan::default(),
            capacity: None,
            connect_limit: None,
            stall: None,
            login_lifetime: Duration::from_secs(900),
            heartbeat: None,
            enforce_expiry: false,
            platform: Default::default(),
        }
    }
}

mod duration_pair_ms {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(
        v: &(Duration, Duration),
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::Serialize;
        (v.0.as_millis() as u64, v.1.as_millis() as u64).serialize(s)
    }
}
