//! Settings of the reference server: envelope, agent behaviour and the fault plan.
//!
//! Pure data plus parsing, shared by `chatload serve` flags and a scenario's
//! `[server]` table.

use std::fmt;
use std::time::Duration;

/// The agent-event envelope the server speaks (PROTOCOL.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `{"type","run_id",...,"payload":{...}}`
    Payload,
    /// `{"type","run_id","user_id",...,"data":{...}}` (the default)
    Data,
    /// everything at the root
    Flat,
    /// `{"type":"system_message"|"agent_progress"|"agent_response_complete","data":{"event":...}}`
    Wrapped,
}

impl std::str::FromStr for Envelope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "payload" => Ok(Envelope::Payload),
            "data" => Ok(Envelope::Data),
            "flat" => Ok(Envelope::Flat),
            "wrapped" => Ok(Envelope::Wrapped),
            other => Err(format!(
                "unknown envelope `{other}` (expected payload, data, flat or wrapped)"
            )),
        }
    }
}

/// Faults the server injects, each at a rate, drawn from the seeded generator.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FaultPlan {
    /// Fraction of agent runs answered with a close 1011 instead of events
    /// (at the run's first message exchange).
    pub close_1011: f64,
}

impl FaultPlan {
    /// Parses `"close_1011=0.5%"` (comma-separated `name=rate` entries).
    pub fn parse(s: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part.split_once('=').ok_or_else(|| {
                format!("fault `{part}` must be written name=rate, e.g. close_1011=0.5%")
            })?;
            let rate = parse_rate(rate.trim())?;
            plan.set(name.trim(), rate)?;
        }
        Ok(plan)
    }

    /// Sets one fault by name.
    pub fn set(&mut self, name: &str, rate: f64) -> Result<(), String> {
        match name {
            "close_1011" => self.close_1011 = rate,
            other => return Err(format!("unknown fault `{other}` (known: close_1011)")),
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.close_1011 == 0.0
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        write!(f, "close_1011={}%", self.close_1011 * 100.0)
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
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

/// Everything that shapes the reference server's behaviour.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerConfig {
    /// Seed of the fault and latency generators: the same seed and the same
    /// sequence of connections replays the same behaviour.
    pub seed: u64,
    #[serde(skip)]
    pub secret: crate::auth::Secret,
    pub envelope: Envelope,
    /// Inclusive range of `agent_thinking` events per run.
    pub thinking: (u32, u32),
    /// Inclusive range of tool pairs (`tool_executing` + `tool_completed`) per run.
    pub tools: (u32, u32),
    /// Uniform delay before each agent event.
    #[serde(with = "duration_pair_ms")]
    pub event_delay: (Duration, Duration),
    pub faults: FaultPlan,
}

impl ServerConfig {
    pub fn new(secret: crate::auth::Secret) -> Self {
        ServerConfig {
            seed: 1,
            secret,
            envelope: Envelope::Data,
            thinking: (1, 2),
            tools: (0, 2),
            event_delay: (Duration::from_millis(5), Duration::from_millis(25)),
            faults: FaultPlan::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_plan_parses_rates() {
        let p = FaultPlan::parse("close_1011=0.5%").unwrap();
        assert!((p.close_1011 - 0.005).abs() < 1e-12);
        let p = FaultPlan::parse("close_1011=0.25").unwrap();
        assert!((p.close_1011 - 0.25).abs() < 1e-12);
        assert!(FaultPlan::parse("close_1011=150%").is_err());
        assert!(FaultPlan::parse("explode=1%").is_err());
        assert!(FaultPlan::parse("close_1011").is_err());
        assert!(FaultPlan::parse("").unwrap().is_empty());
    }
}
