//! "Same scenario": two snapshots are comparable when their scenarios have
//! the same `name` and the same hash of journey(s) and profile
//! ([`scenario_hash`], stored in the snapshot as `scenario_hash`; computed
//! from the echo for a snapshot written before it existed). A different
//! target or user count is a warning only.
//!
//! Imports: metrics' own files only.

use serde_json::Value;

/// The parts of a scenario's echo that define what a user does.
const HASHED: [&str; 3] = ["journey", "journeys", "profile"];

/// FNV-1a, 64 bits: a stable hash (no per-process seed), enough to tell
/// two scenario texts apart (not a defence against a forger).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// JSON with object keys sorted at every level, whatever map the JSON
/// library was built with.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&o[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of a scenario echo's journey, journeys and profile parts
/// (canonical JSON, FNV-1a), as 16 hex digits. A step's `tags` are left
/// out: they label its series, they do not change what the users do.
pub fn scenario_hash(echo: &Value) -> String {
    let mut text = String::new();
    for part in HASHED {
        text.push_str(part);
        text.push('=');
        let mut v = echo.get(part).cloned().unwrap_or(Value::Null);
        drop_step_tags(&mut v);
        canonical(&v, &mut text);
        text.push('\n');
    }
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// Removes `tags` from every step (an object with a `step` key), nested
/// steps too.
fn drop_step_tags(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("step") {
                m.remove("tags");
            }
            m.values_mut().for_each(drop_step_tags);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_step_tags),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// What a comparison needs to know of each run to check they are comparable.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub run_id: &'a str,
    pub scenario_name: &'a str,
    /// The stored hash, if the snapshot has one.
    pub scenario_hash: Option<&'a str>,
    pub scenario: &'a Value,
    pub target: &'a str,
    /// The target was an embedded reference server (its port differs every run).
    pub embedded: bool,
    pub users: u64,
}

impl Identity<'_> {
    fn hash(&self) -> String {
        self.scenario_hash
            .map_or_else(|| scenario_hash(self.scenario), str::to_string)
    }
}

/// Whether two runs are comparable: the reasons they are not, and warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparability {
    /// Not the same scenario: `compare` refuses (exit 2) unless forced.
    pub refused: Vec<String>,
    /// Different target or user count: said, not refused.
    pub warnings: Vec<String>,
}

pub fn comparability(base: Identity<'_>, new: Identity<'_>) -> Comparability {
    let mut c = Comparability::default();
    if base.scenario_name != new.scenario_name {
        c.refused.push(format!(
            "different scenarios: the base run {} is `{}`, the new run {} is `{}`",
            base.run_id, base.scenario_name, new.run_id, new.scenario_name
        ));
    } else if base.hash() != new.hash() {
        c.refused.push(format!(
            "scenario `{}` changed its journey or profile between the runs: the base run {} has hash {}, the new run {} has {}",
            base.scenario_name, base.run_id, base.hash(), new.run_id, new.hash()
        ));
    }
    if base.target != new.target && !(base.embedded && new.embedded) {
        c.warnings.push(format!(
            "different targets: {} (base) and {} (new)",
            base.target, new.target
        ));
    }
    if base.users != new.users {
        c.warnings.push(format!(
            "different user counts: {} (base) and {} (new)",
            base.users, new.users
        ));
    }
    c
}
