//! Whole-run validation: the sequence, required fields, tool pairing, gaps,
//! duplicates and isolation, judged event by event as a run streams in.
//!
//! Each problem is a [`Violation`] with a class (`order`, `missing_field`,
//! `field_type`, `unpaired_tool`, `gap_exceeded`, `duplicate_event`,
//! `cross_user_leak`, `crossed_run`, `unexpected_event`) and a detail. Order
//! and pairing problems of one run are reported once (the first), so one
//! dropped or reordered event is one violation; field, duplicate and isolation
//! problems are reported per event. Imports only its own folder (`protocol/`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Map, Value};

use super::sequence::{Matcher, Sequence, Step};
use super::Event;

/// Type a required field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Number,
    String,
    /// A non-empty string, array or object (or any number or bool).
    NonEmpty,
    Object,
    Array,
    Bool,
}

impl std::str::FromStr for FieldType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "number" => FieldType::Number,
            "string" => FieldType::String,
            "non_empty" => FieldType::NonEmpty,
            "object" => FieldType::Object,
            "array" => FieldType::Array,
            "bool" => FieldType::Bool,
            other => {
                return Err(format!(
                    "unknown field type `{other}` (number, string, non_empty, object, array, bool)"
                ))
            }
        })
    }
}

impl FieldType {
    fn admits(self, v: &Value) -> bool {
        match self {
            FieldType::Number => v.is_number(),
            FieldType::String => v.is_string(),
            FieldType::Object => v.is_object(),
            FieldType::Array => v.is_array(),
            FieldType::Bool => v.is_boolean(),
            FieldType::NonEmpty => match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            },
        }
    }
}

/// One required field: alternative dotted paths in the merged view, and an optional type.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRule {
    pub alternatives: Vec<String>,
    pub kind: Option<FieldType>,
}

impl FieldRule {
    /// Parses `"results|result"` or `"duration:number"`.
    pub fn parse(s: &str) -> Result<FieldRule, String> {
        let (paths, kind) = match s.split_once(':') {
            Some((p, k)) => (p, Some(k.trim().parse::<FieldType>()?)),
            None => (s, None),
        };
        let alternatives: Vec<String> = paths
            .split('|')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if alternatives.is_empty() {
            return Err(format!("`{s}` names no field"));
        }
        Ok(FieldRule { alternatives, kind })
    }

    /// The name used in violation details: the first alternative.
    pub fn name(&self) -> &str {
        &self.alternatives[0]
    }
}

/// Looks up a dotted path in a merged view.
pub fn lookup<'v>(view: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut cur = view.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// What a run must look like.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub sequence: Sequence,
    pub required: BTreeMap<String, Vec<FieldRule>>,
    /// Tool pairing: start and end event names and the fields that identify a tool call.
    pub pairing: Option<Pairing>,
    /// Largest allowed gap between consecutive events of a run.
    pub max_gap: Option<Duration>,
    /// Frames longer than this are `oversized_frame`.
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pairing {
    pub start: String,
    pub end: String,
    /// First present field identifies the call (`tool_call_id`, then `tool_name`).
    pub keys: Vec<String>,
}

/// The default sequence of the platform.
pub const NETRA_SEQUENCE: &str =
    "agent_started agent_thinking* (tool_executing tool_completed)* agent_completed";

impl Rules {
    pub fn netra() -> Rules {
        let rule = |s: &str| FieldRule::parse(s).expect("built-in rule");
        let mut required = BTreeMap::new();
        required.insert("agent_started".to_string(), vec![rule("user_id")]);
        required.insert("agent_thinking".to_string(), vec![rule("reasoning")]);
        required.insert("tool_executing".to_string(), vec![rule("tool_name")]);
        required.insert(
            "tool_completed".to_string(),
            vec![rule("tool_name"), rule("results|result")],
        );
        required.insert(
            "agent_completed".to_string(),
            vec![rule("status"), rule("final_response|result|content")],
        );
        Rules {
            sequence: Sequence::compile(NETRA_SEQUENCE).expect("built-in sequence"),
            required,
            pairing: Some(Pairing {
                start: "tool_executing".into(),
                end: "tool_completed".into(),
                keys: vec!["tool_call_id".into(), "tool_id".into(), "tool_name".into()],
            }),
            max_gap: None,
            max_frame_bytes: 64 * 1024,
        }
    }
}

/// One problem found in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub class: &'static str,
    /// Stable detail for counters, e.g. `tool_completed.results`.
    pub detail: String,
    /// Longer explanation for samples and reports.
    pub message: String,
}

impl Violation {
    pub fn new(class: &'static str, detail: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            class,
            detail: detail.into(),
            message: message.into(),
        }
    }
}

/// Whose run this is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    /// Known when the client chose the thread; otherwise not checked.
    pub thread_id: Option<String>,
    /// Known when the client chose the run id; otherwise adopted from the run's first event.
    pub run_id: Option<String>,
}

/// What to do with an event after the isolation check.
#[derive(Debug, Clone, PartialEq)]
pub enum Belongs {
    /// It is this run's event.
    Mine,
    /// It is not this run's: counted, then left out of the run.
    Foreign(Violation),
}

/// Isolation: an event that carries ids must carry the receiver's own. A run
/// whose id the client did not choose adopts the first id it sees from its own
/// user (`me.run_id` is then `None` until adopted by the caller).
pub fn check_isolation(ev: &Event, me: &Identity, earlier_runs: &[String]) -> Belongs {
    if let Some(u) = &ev.user_id {
        if *u != me.user_id {
            return Belongs::Foreign(Violation::new(
                "cross_user_leak",
                ev.name.clone(),
                format!(
                    "`{}` of user `{u}` (run {}) reached user `{}`",
                    ev.name,
                    ev.run_id.as_deref().unwrap_or("?"),
                    me.user_id
                ),
            ));
        }
    }
    if let (Some(r), Some(mine)) = (&ev.run_id, &me.run_id) {
        if r != mine {
            if earlier_runs.iter().any(|e| e == r) {
                return Belongs::Foreign(Violation::new(
                    "late_event",
                    ev.name.clone(),
                    format!(
                        "`{}` of run {r} arrived after that run ended (now in run {mine})",
                        ev.name
                    ),
                ));
            }
            return Belongs::Foreign(Violation::new(
                "crossed_run",
                ev.name.clone(),
                format!("`{}` of run {r}, which this socket never started, arrived in run {mine} of user `{}`", ev.name, me.user_id),
            ));
        }
    }
    if let (Some(t), Some(mine)) = (&ev.thread_id, &me.thread_id) {
        if t != mine {
            return Belongs::Foreign(Violation::new(
                "crossed_run",
                ev.name.clone(),
                format!(
                    "`{}` for thread {t} arrived in run {} on thread {mine}",
                    ev.name,
                    me.run_id.as_deref().unwrap_or("?")
                ),
            ));
        }
    }
    Belongs::Mine
}

/// Judges one run's events as they arrive.
pub struct RunCheck<'r> {
    rules: &'r Rules,
    matcher: Matcher<'r>,
    /// Open tool calls by key.
    open_tools: Vec<String>,
    frames: HashSet<u64>,
    last_at: Option<Duration>,
    /// An order or pairing problem was reported for this run.
    shape_reported: bool,
    gap_reported: bool,
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl<'r> RunCheck<'r> {
    pub fn new(rules: &'r Rules) -> Self {
        RunCheck {
            rules,
            matcher: rules.sequence.matcher(),
            open_tools: Vec::new(),
            frames: HashSet::new(),
            last_at: None,
            shape_reported: false,
            gap_reported: false,
        }
    }

    fn tool_key(&self, p: &Pairing, ev: &Event) -> String {
        p.keys
            .iter()
            .find_map(|k| {
                lookup(&ev.view, k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            })
            .unwrap_or_default()
    }

    fn shape(&mut self, v: Violation, out: &mut Vec<Violation>) {
        if !self.shape_reported {
            self.shape_reported = true;
            out.push(v);
        }
    }

    /// Judges one event of this run, `at` after the run's start; `raw` is the frame text.
    pub fn on_event(&mut self, ev: &Event, raw: &str, at: Duration) -> Vec<Violation> {
        let mut out = Vec::new();
        let critical = self.rules.sequence.mentions(&ev.name);
        if critical && !self.frames.insert(hash(raw)) {
            out.push(Violation::new(
                "duplicate_event",
                ev.name.clone(),
                format!("`{}` arrived twice, byte for byte", ev.name),
            ));
            return out;
        }
        if let (Some(prev), Some(limit)) = (self.last_at, self.rules.max_gap) {
            let gap = at.saturating_sub(prev);
            if gap > limit && !self.gap_reported {
                self.gap_reported = true;
                out.push(Violation::new(
                    "gap_exceeded",
                    ev.name.clone(),
                    format!(
                        "{} ms before `{}` (limit {} ms)",
                        gap.as_millis(),
                        ev.name,
                        limit.as_millis()
                    ),
                ));
            }
        }
        self.last_at = Some(at);
        for rule in self.rules.required.get(&ev.name).into_iter().flatten() {
            let found = rule.alternatives.iter().find_map(|p| lookup(&ev.view, p));
            match (found, rule.kind) {
                (None, _) => out.push(Violation::new(
                    "missing_field",
                    format!("{}.{}", ev.name, rule.name()),
                    format!("`{}` has none of {}", ev.name, rule.alternatives.join(", ")),
                )),
                (Some(v), Some(k)) if !k.admits(v) => out.push(Violation::new(
                    "field_type",
                    format!("{}.{}", ev.name, rule.name()),
                    format!("`{}.{}` is {v}, expected {k:?}", ev.name, rule.name()),
                )),
                _ => {}
            }
        }
        let rules: &'r Rules = self.rules; // borrowed for 'r: not copied per event
        if let Some(p) = &rules.pairing {
            if ev.name == p.start {
                let k = self.tool_key(p, ev);
                self.open_tools.push(k);
            } else if ev.name == p.end {
                let k = self.tool_key(p, ev);
                match self.open_tools.iter().position(|o| *o == k) {
                    Some(i) => {
                        self.open_tools.remove(i);
                    }
                    None => self.shape(
                        Violation::new(
                            "unpaired_tool",
                            ev.name.clone(),
                            format!("`{}` for `{k}` without its `{}`", ev.name, p.start),
                        ),
                        &mut out,
                    ),
                }
            }
        }
        match self.matcher.feed(&ev.name) {
            Step::Accepted => {}
            Step::NotMentioned => {}
            Step::Violation { position, expected } => {
                let pair_problem = self.rules.pairing.as_ref().is_some_and(|p| {
                    ev.name == p.end || (expected.len() == 1 && expected[0] == p.end)
                });
                let v = if pair_problem {
                    let p = self.rules.pairing.as_ref().expect("checked");
                    Violation::new(
                        "unpaired_tool",
                        p.start.clone(),
                        format!(
                            "`{}` at position {position} while `{}` was expected",
                            ev.name,
                            expected.join("|")
                        ),
                    )
                } else {
                    Violation::new(
                        "order",
                        format!("{}_instead_of_{}", ev.name, expected.join("|")),
                        format!(
                            "`{}` at position {position}, expected {}",
                            ev.name,
                            expected.join(" or ")
                        ),
                    )
                };
                self.shape(v, &mut out);
            }
        }
        out
    }

    /// Judges the run's end (after its terminal event).
    pub fn on_end(&mut self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(k) = self.open_tools.first().cloned() {
            let start = self
                .rules
                .pairing
                .as_ref()
                .map_or("tool", |p| p.start.as_str())
                .to_string();
            self.shape(
                Violation::new(
                    "unpaired_tool",
                    start.clone(),
                    format!("`{start}` for `{k}` never completed"),
                ),
                &mut out,
            );
        }
        if !self.matcher.is_complete() {
            let expected = self.matcher.expected().join(" or ");
            self.shape(
                Violation::new(
                    "order",
                    "incomplete",
                    format!("the run ended while {expected} was expected"),
                ),
                &mut out,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, Profile};

    fn ev(json: &str) -> Event {
        match Profile::netra().decode(json) {
            Frame::Agent(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn run(frames: &[&str]) -> Vec<String> {
        let rules = Rules::netra();
        let mut c = RunCheck::new(&rules);
        let mut v = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            v.extend(c.on_event(&ev(f), f, Duration::from_millis(i as u64 * 10)));
        }
        v.extend(c.on_end());
        v.into_iter()
            .map(|v| format!("{} {}", v.class, v.detail))
            .collect()
    }

    const START: &str = r#"{"type":"agent_started","user_id":"u","run_id":"r"}"#;
    const THINK: &str = r#"{"type":"agent_thinking","reasoning":"x","run_id":"r"}"#;
    const EXEC: &str = r#"{"type":"tool_executing","tool_name":"t","run_id":"r"}"#;
    const DONE_TOOL: &str =
        r#"{"type":"tool_completed","tool_name":"t","results":{},"run_id":"r"}"#;
    const END: &str =
        r#"{"type":"agent_completed","status":"ok","final_response":"y","run_id":"r"}"#;

    #[test]
    fn a_clean_run_has_no_violations() {
        assert!(run(&[START, THINK, EXEC, DONE_TOOL, END]).is_empty());
    }

    #[test]
    fn each_fault_is_one_violation_of_its_class() {
        assert_eq!(
            run(&[THINK, END]),
            vec!["order agent_thinking_instead_of_agent_started"]
        );
        assert_eq!(
            run(&[START, EXEC, END]),
            vec!["unpaired_tool tool_executing"]
        );
        assert_eq!(
            run(&[START, DONE_TOOL, END]),
            vec!["unpaired_tool tool_completed"]
        );
        let think2 = r#"{"type":"agent_thinking","reasoning":"more","run_id":"r"}"#;
        assert_eq!(run(&[START, THINK, think2, END]), Vec::<String>::new());
        assert_eq!(
            run(&[START, START, END]),
            vec!["duplicate_event agent_started"]
        );
        assert_eq!(
            run(&[
                START,
                r#"{"type":"tool_executing","run_id":"r"}"#,
                r#"{"type":"tool_completed","tool_name":"t","result":1,"run_id":"r"}"#,
                END
            ]),
            vec![
                "missing_field tool_executing.tool_name",
                "unpaired_tool tool_completed"
            ]
        );
        assert_eq!(
            run(&[
                START,
                EXEC,
                r#"{"type":"tool_completed","tool_name":"t","run_id":"r"}"#,
                END
            ]),
            vec!["missing_field tool_completed.results"]
        );
        assert_eq!(run(&[START]), vec!["order incomplete"]);
    }

    #[test]
    fn gaps_and_types() {
        let mut rules = Rules::netra();
        rules.max_gap = Some(Duration::from_millis(15));
        rules
            .required
            .get_mut("tool_completed")
            .unwrap()
            .push(FieldRule::parse("duration:number").unwrap());
        let mut c = RunCheck::new(&rules);
        let mut v = c.on_event(&ev(START), START, Duration::ZERO);
        v.extend(c.on_event(&ev(EXEC), EXEC, Duration::from_millis(10)));
        let bad = r#"{"type":"tool_completed","tool_name":"t","results":{},"duration":"slow","run_id":"r"}"#;
        v.extend(c.on_event(&ev(bad), bad, Duration::from_millis(40)));
        let names: Vec<_> = v
            .iter()
            .map(|v| format!("{} {}", v.class, v.detail))
            .collect();
        assert_eq!(
            names,
            vec![
                "gap_exceeded tool_completed",
                "field_type tool_completed.duration"
            ]
        );
    }

    #[test]
    fn isolation_names_both_users() {
        let me = Identity {
            user_id: "alice".into(),
            thread_id: Some("t1".into()),
            run_id: Some("r1".into()),
        };
        let leak = ev(r#"{"type":"agent_thinking","user_id":"bob","run_id":"rb","reasoning":"x"}"#);
        match check_isolation(&leak, &me, &[]) {
            Belongs::Foreign(v) => {
                assert_eq!(v.class, "cross_user_leak");
                assert!(
                    v.message.contains("bob") && v.message.contains("alice"),
                    "{}",
                    v.message
                );
            }
            other => panic!("{other:?}"),
        }
        let other_run =
            ev(r#"{"type":"agent_thinking","user_id":"alice","run_id":"r0","reasoning":"x"}"#);
        assert!(
            matches!(check_isolation(&other_run, &me, &["r0".into()]), Belongs::Foreign(v) if v.class == "late_event")
        );
        assert!(
            matches!(check_isolation(&other_run, &me, &[]), Belongs::Foreign(v) if v.class == "crossed_run")
        );
        let mine = ev(
            r#"{"type":"agent_thinking","user_id":"alice","run_id":"r1","thread_id":"t1","reasoning":"x"}"#,
        );
        assert_eq!(check_isolation(&mine, &me, &[]), Belongs::Mine);
        let no_ids = ev(r#"{"type":"agent_thinking","reasoning":"x"}"#);
        assert_eq!(check_isolation(&no_ids, &me, &[]), Belongs::Mine);
    }

    #[test]
    fn field_rules_parse() {
        assert_eq!(
            FieldRule::parse("results|result").unwrap().alternatives,
            vec!["results", "result"]
        );
        assert_eq!(
            FieldRule::parse("duration:number").unwrap().kind,
            Some(FieldType::Number)
        );
        assert!(FieldRule::parse("x:colour").is_err());
        assert!(FieldRule::parse("|").is_err());
    }
}
