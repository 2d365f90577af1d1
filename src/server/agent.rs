//! The simulated agent: draws a run's shape from the seeded generator and
//! streams its events in the configured envelope.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::config::{Envelope, ServerConfig};

/// One frame for the connection task to send.
pub struct Outgoing {
    pub name: String,
    pub frame: Value,
    /// The run's terminal event.
    pub last: bool,
}

/// Correlation ids of a run.
#[derive(Debug, Clone)]
pub struct RunIds {
    pub run_id: String,
    pub thread_id: String,
    pub user_id: String,
}

impl RunIds {
    /// Takes the client's `run_id` (or `turn_id`) and `thread_id` when given.
    pub fn from_request(payload: &Map<String, Value>, user: &str, conn: &str, seq: u64) -> RunIds {
        let text = |k: &str| {
            payload
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        RunIds {
            run_id: text("run_id")
                .or_else(|| text("turn_id"))
                .unwrap_or_else(|| format!("run-{conn}-{seq}")),
            thread_id: text("thread_id").unwrap_or_else(|| format!("thread-{user}")),
            user_id: user.to_string(),
        }
    }
}

/// The shape of one run, drawn up front so a seed replays it.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub thinking: u32,
    pub tools: u32,
    /// One delay per event, in order.
    pub delays: Vec<Duration>,
}

impl RunPlan {
    pub fn draw(c: &ServerConfig, rng: &mut ChaCha8Rng) -> RunPlan {
        let thinking = rng.random_range(c.thinking.0..=c.thinking.1);
        let tools = rng.random_range(c.tools.0..=c.tools.1);
        let n = 2 + thinking + 2 * tools;
        let (lo, hi) = (
            c.event_delay.0.as_micros() as u64,
            c.event_delay.1.as_micros() as u64,
        );
        let delays = (0..n)
            .map(|_| Duration::from_micros(rng.random_range(lo..=hi)))
            .collect();
        RunPlan {
            thinking,
            tools,
            delays,
        }
    }

    /// Event names in order, with their fields.
    pub fn events(&self, ids: &RunIds) -> Vec<(String, Map<String, Value>)> {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        let mut out = vec![(
            "agent_started".to_string(),
            obj(
                json!({"agent_name": "chatload-reference-agent", "user_id": ids.user_id, "thread_id": ids.thread_id}),
            ),
        )];
        for i in 0..self.thinking {
            out.push((
                "agent_thinking".into(),
                obj(json!({"reasoning": format!("step {} of the plan", i + 1)})),
            ));
        }
        for i in 0..self.tools {
            let tool = format!("tool_{}", i + 1);
            out.push((
                "tool_executing".into(),
                obj(json!({"tool_name": tool, "parameters": {"query": "spend"}})),
            ));
            out.push((
                "tool_completed".into(),
                obj(json!({"tool_name": tool, "results": {"rows": 3}, "duration": 12.5})),
            ));
        }
        out.push((
            "agent_completed".into(),
            obj(json!({"status": "success", "final_response": "Here is the summary you asked for."})),
        ));
        out
    }
}

pub fn epoch_float() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds one event frame in an envelope (PROTOCOL.md section 4).
pub fn frame(envelope: Envelope, name: &str, ids: &RunIds, fields: &Map<String, Value>) -> Value {
    let mut root = Map::new();
    match envelope {
        Envelope::Payload => {
            root.insert("type".into(), name.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("agent_name".into(), "chatload-reference-agent".into());
            root.insert("timestamp".into(), iso_now().into());
            let mut p = fields.clone();
            p.insert("user_id".into(), ids.user_id.clone().into());
            p.insert("thread_id".into(), ids.thread_id.clone().into());
            root.insert("payload".into(), Value::Object(p));
        }
        Envelope::Data => {
            root.insert("type".into(), name.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("user_id".into(), ids.user_id.clone().into());
            root.insert("agent_name".into(), "chatload-reference-agent".into());
            root.insert("timestamp".into(), iso_now().into());
            for k in ["tool_name", "results"] {
                if let Some(v) = fields.get(k) {
                    root.insert(k.into(), v.clone());
                }
            }
            let mut d = fields.clone();
            d.insert("thread_id".into(), ids.thread_id.clone().into());
            d.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("data".into(), Value::Object(d));
        }
        Envelope::Flat => {
            root.insert("type".into(), name.into());
            root.insert("critical".into(), true.into());
            root.insert("run_id".into(), ids.run_id.clone().into());
            root.insert("thread_id".into(), ids.thread_id.clone().into());
            root.insert("user_id".into(), ids.user_id.clone().into());
            root.insert("timestamp".into(), iso_now().into());
            root.extend(fields.clone());
        }
        Envelope::Wrapped => {
            let t = match name {
                "agent_started" => "system_message",
                "agent_completed" => "agent_response_complete",
                _ => "agent_progress",
            };
            root.insert("type".into(), t.into());
            let mut d = fields.clone();
            d.insert("event".into(), name.into());
            d.insert("turn_id".into(), ids.run_id.clone().into());
            d.insert("user_id".into(), ids.user_id.clone().into());
            // The wrapped generation carried no thread_id and no run_id.
            d.remove("thread_id");
            if name == "agent_completed" {
                if let Some(v) = d.remove("final_response") {
                    d.insert("content".into(), v);
                }
            }
            root.insert("data".into(), Value::Object(d));
            root.insert("timestamp".into(), epoch_float().into());
        }
    }
    Value::Object(root)
}

/// Streams a run's events, each after its delay. Ends early when the connection is gone.
pub async fn run(envelope: Envelope, ids: RunIds, plan: RunPlan, out: mpsc::Sender<Outgoing>) {
    let events = plan.events(&ids);
    let n = events.len();
    for (i, (name, fields)) in events.into_iter().enumerate() {
        tokio::time::sleep(plan.delays.get(i).copied().unwrap_or_default()).await;
        let f = frame(envelope, &name, &ids, &fields);
        if out
            .send(Outgoing {
                name,
                frame: f,
                last: i + 1 == n,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, Profile};
    use rand::SeedableRng;

    #[test]
    fn every_envelope_decodes_under_netra_with_its_ids() {
        let ids = RunIds {
            run_id: "r1".into(),
            thread_id: "t1".into(),
            user_id: "u1".into(),
        };
        let plan = RunPlan {
            thinking: 1,
            tools: 1,
            delays: vec![],
        };
        let p = Profile::netra();
        for env in [
            Envelope::Payload,
            Envelope::Data,
            Envelope::Flat,
            Envelope::Wrapped,
        ] {
            let names: Vec<String> = plan
                .events(&ids)
                .iter()
                .map(
                    |(n, f)| match p.decode(&frame(env, n, &ids, f).to_string()) {
                        Frame::Agent(e) => {
                            assert_eq!(e.run_id.as_deref(), Some("r1"), "{env:?} {n}");
                            assert_eq!(e.user_id.as_deref(), Some("u1"), "{env:?} {n}");
                            e.name
                        }
                        other => panic!("{env:?} {n}: {other:?}"),
                    },
                )
                .collect();
            assert_eq!(
                names,
                [
                    "agent_started",
                    "agent_thinking",
                    "tool_executing",
                    "tool_completed",
                    "agent_completed"
                ],
                "{env:?}"
            );
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_runs() {
        let c = ServerConfig::new(crate::auth::Secret::new("k"));
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let (x, y) = (RunPlan::draw(&c, &mut a), RunPlan::draw(&c, &mut b));
            assert_eq!(
                (x.thinking, x.tools, x.delays),
                (y.thinking, y.tools, y.delays)
            );
        }
    }
}
