//! Property tests: the frame decoder, the sequence compiler and matcher, the
//! run validator and the scenario loader take arbitrary input without
//! panicking, and classify every outcome.

use std::time::Duration;

use chatload::protocol::sequence::{Sequence, Step};
use chatload::protocol::validate::{check_isolation, Identity, Rules, RunCheck, NETRA_SEQUENCE};
use chatload::protocol::{Frame, Profile};
use proptest::prelude::*;

const NAMES: [&str; 9] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
    "agent_error",
    "partial_result",
    "surprise",
    "system_message",
];

const CLASSES: [&str; 11] = [
    "order",
    "missing_field",
    "field_type",
    "unpaired_tool",
    "gap_exceeded",
    "duplicate_event",
    "cross_user_leak",
    "crossed_run",
    "late_event",
    "unexpected_event",
    "oversized_frame",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-z_]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                "[a-z_]{1,8}|type|data|payload|event|run_id|user_id",
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame with a known or unknown type and arbitrary fields in any envelope.
fn frame() -> impl Strategy<Value = String> {
    (
        prop::sample::select(NAMES.to_vec()),
        json_value(),
        json_value(),
        0..3u8,
    )
        .prop_map(|(name, data, payload, shape)| {
            let mut root = serde_json::Map::new();
            root.insert("type".into(), name.into());
            match shape {
                0 => {
                    root.insert("data".into(), data);
                }
                1 => {
                    root.insert("payload".into(), payload);
                }
                _ => {
                    root.insert(
                        "data".into(),
                        serde_json::json!({"event": name, "payload": payload}),
                    );
                }
            }
            serde_json::Value::Object(root).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_decoder_classifies_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Profile::netra().decode(&text);
    }

    #[test]
    fn the_decoder_classifies_arbitrary_frames(f in frame()) {
        match Profile::netra().decode(&f) {
            Frame::Agent(e) => prop_assert!(!e.name.is_empty()),
            Frame::Unparseable => prop_assert!(false, "a JSON object with a type is never unparseable: {}", f),
            _ => {}
        }
    }

    #[test]
    fn the_sequence_compiler_refuses_or_compiles_anything(src in "[a-z_ ()|*+?]{0,40}") {
        match Sequence::compile(&src) {
            Ok(seq) => {
                let mut m = seq.matcher();
                for name in src.split(|c: char| !c.is_alphanumeric() && c != '_') {
                    let _ = m.feed(name);
                }
            }
            Err(e) => prop_assert!(e.position <= src.chars().count()),
        }
    }

    #[test]
    fn the_matcher_accepts_every_stream_the_grammar_makes(thinking in 0..6usize, tools in 0..5usize) {
        let seq = Sequence::compile(NETRA_SEQUENCE).unwrap();
        let mut m = seq.matcher();
        let mut stream = vec!["agent_started"];
        stream.extend(std::iter::repeat_n("agent_thinking", thinking));
        for _ in 0..tools {
            stream.extend(["tool_executing", "tool_completed"]);
        }
        stream.push("agent_completed");
        for e in &stream {
            prop_assert_eq!(m.feed(e), Step::Accepted);
        }
        prop_assert!(m.is_complete());
    }

    #[test]
    fn the_matcher_reports_a_position_inside_the_stream(events in prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..30)) {
        let seq = Sequence::compile(NETRA_SEQUENCE).unwrap();
        let mut m = seq.matcher();
        let mut fed = 0;
        for e in &events {
            match m.feed(e) {
                Step::Violation { position, expected } => {
                    prop_assert!(position <= fed);
                    prop_assert!(!expected.is_empty());
                    fed += 1;
                }
                Step::Accepted => fed += 1,
                Step::NotMentioned => {}
            }
        }
    }

    #[test]
    fn the_run_validator_classifies_any_order_of_events(frames in prop::collection::vec(frame(), 0..25)) {
        let rules = Rules::netra();
        let mut check = RunCheck::new(&rules);
        let me = Identity { user_id: "u".into(), thread_id: None, run_id: Some("r".into()) };
        let p = Profile::netra();
        let mut shape_problems = 0;
        for (i, f) in frames.iter().enumerate() {
            if let Frame::Agent(ev) = p.decode(f) {
                let _ = check_isolation(&ev, &me, &[]);
                for v in check.on_event(&ev, f, Duration::from_millis(i as u64)) {
                    prop_assert!(CLASSES.contains(&v.class), "unknown class {}", v.class);
                    shape_problems += usize::from(v.class == "order" || v.class == "unpaired_tool");
                }
            }
        }
        for v in check.on_end() {
            prop_assert!(CLASSES.contains(&v.class));
            shape_problems += usize::from(v.class == "order" || v.class == "unpaired_tool");
        }
        // One order or pairing problem per run at most.
        prop_assert!(shape_problems <= 1);
    }

    #[test]
    fn the_scenario_loader_never_panics(text in "[a-z_=\\[\\]{}\",. 0-9\n#]{0,300}") {
        let _ = chatload::scenario::Scenario::parse(std::path::Path::new("fuzz.toml"), text);
    }
}
