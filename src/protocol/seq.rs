//! `seq` numbering: a server that numbers its events (1, 2, ... within each
//! run) lets a profile say so (`[profile] seq = { field = "seq" }`), and a
//! dropped event is then caught whatever the run's length: each jump is one
//! `seq_gap` violation. Imports only its own folder (the view lookup and
//! [`Violation`]).

use super::validate::{lookup, Violation};
use super::Event;

/// Where a run's events carry their number, and the first one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRule {
    /// Dotted path in the merged view (`seq`).
    pub field: String,
    /// The first event's number (1); `None`: whatever the first one says.
    pub first: Option<u64>,
}

/// One run's numbering so far.
#[derive(Debug, Clone, Default)]
pub struct SeqCheck {
    last: Option<u64>,
}

impl SeqCheck {
    /// Judges one event of the run: a number that is not the last one plus
    /// one (or, for the first event, not `first`) is a gap; an event without
    /// a number is not judged (its required fields say whether it must have one).
    pub fn on_event(&mut self, rule: &SeqRule, ev: &Event) -> Option<Violation> {
        let n = lookup(&ev.view, &rule.field)?.as_u64()?;
        let prev = self.last;
        let expected = match prev {
            Some(p) => Some(p + 1),
            None => rule.first,
        };
        self.last = Some(n);
        let want = expected?;
        (n != want).then(|| {
            Violation::new(
                "seq_gap",
                ev.name.clone(),
                format!(
                    "`{}` has {} = {n}, expected {want} ({})",
                    ev.name,
                    rule.field,
                    why(n, want, prev)
                ),
            )
        })
    }
}

/// Why `n` is not the `want`ed number: events missing before it, the
/// previous number repeated, or a number that goes back.
fn why(n: u64, want: u64, prev: Option<u64>) -> String {
    match prev {
        Some(p) if n == p => "repeated: the previous event had this number too".into(),
        Some(p) if n < p => format!("out of order: back from {p}"),
        None if n < want => format!("out of order: below the first number {want}"),
        _ => {
            let missing = n - want;
            format!(
                "{missing} event{} missing before it",
                if missing == 1 { "" } else { "s" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(n: u64) -> Event {
        Event {
            name: "agent_thinking".into(),
            run_id: None,
            thread_id: None,
            user_id: None,
            view: json!({ "seq": n }).as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn each_jump_is_one_gap_and_a_run_counted_from_one() {
        let rule = SeqRule {
            field: "seq".into(),
            first: Some(1),
        };
        let cases: [(&[u64], usize); 5] = [
            (&[1, 2, 3, 4], 0),
            (&[1, 3, 4], 1),
            (&[2, 3], 1),
            (&[1, 3, 5, 6], 2),
            (&[1, 2, 2], 1),
        ];
        for (seq, gaps) in cases {
            let mut c = SeqCheck::default();
            let found: Vec<Violation> = seq
                .iter()
                .filter_map(|n| c.on_event(&rule, &ev(*n)))
                .collect();
            assert_eq!(found.len(), gaps, "{seq:?}: {found:?}");
            assert!(found.iter().all(|v| v.class == "seq_gap"));
        }
        let loose = SeqRule {
            field: "seq".into(),
            first: None,
        };
        let mut c = SeqCheck::default();
        assert!(c.on_event(&loose, &ev(7)).is_none());
        assert!(c.on_event(&loose, &ev(8)).is_none());
    }

    #[test]
    fn a_repeat_or_a_step_back_is_named_not_counted_as_missing_events() {
        let rule = SeqRule {
            field: "seq".into(),
            first: Some(1),
        };
        let cases: [(&[u64], &str); 4] = [
            (&[1, 2, 2], "repeated"),
            (&[1, 2, 3, 1], "out of order: back from 3"),
            (&[0], "out of order: below the first number 1"),
            (&[1, 4], "2 events missing before it"),
        ];
        for (seq, says) in cases {
            let mut c = SeqCheck::default();
            let found: Vec<Violation> = seq
                .iter()
                .filter_map(|n| c.on_event(&rule, &ev(*n)))
                .collect();
            assert_eq!(found.len(), 1, "{seq:?}: {found:?}");
            let m = &found[0].message;
            assert!(m.contains(says), "{seq:?}: {m}");
            assert!(
                says.contains("missing") || !m.contains("missing"),
                "{seq:?}: {m}"
            );
        }
    }
}
