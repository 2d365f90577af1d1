//! `chatload validate`: every problem at once, or the load plan.

use std::path::Path;

use crate::scenario::{Scenario, StepKind};

use super::exit;

pub fn main(path: &Path) -> u8 {
    match Scenario::load(path) {
        Err(d) => {
            eprint!("{d}");
            exit::USAGE
        }
        Ok(s) => {
            print!("{}", describe(&s));
            exit::PASS
        }
    }
}

/// What the scenario will do, for people.
pub fn describe(s: &Scenario) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "ok: {} (scenario `{}`)\n",
        s.file.display(),
        s.name
    ));
    o.push_str(&format!(
        "target: {}\n",
        s.target
            .url
            .as_deref()
            .unwrap_or("embedded reference server on 127.0.0.1 (no target given)")
    ));
    let w = &s.workload;
    match (&w.open, &w.capacity) {
        (None, None) => {
            o.push_str(
                "\nload plan (closed model: each user waits for its answer before asking again):\n",
            );
            o.push_str(&w.plan.to_string());
        }
        (Some(m), None) => {
            o.push_str(
                "\nload plan (open model: arrivals at a rate, whatever the answers take):\n",
            );
            o.push_str(&m.to_string());
        }
        (None, Some(c)) => {
            o.push_str("\nload plan (capacity search, closed model: steps of users):\n");
            o.push_str(&c.to_string());
            o.push_str("  as goose's user plan:\n");
            o.push_str(&w.plan.to_string());
        }
        (Some(m), Some(c)) => {
            o.push_str("\nload plan (capacity search, open model: steps of arrival rate):\n");
            o.push_str(&c.to_string());
            o.push_str("  as arrival rates:\n");
            o.push_str(&m.to_string());
        }
    }
    o.push_str(if w.open.is_some() {
        "\njourney (run once per arrival, by a free session of the pool):\n"
    } else {
        "\njourney (repeated by every user):\n"
    });
    for (i, st) in s.journey.iter().enumerate() {
        let what = match &st.kind {
            StepKind::Connect => "connect and wait for ready".to_string(),
            StepKind::Send { message } => format!(
                "send {}",
                message
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("message")
            ),
            StepKind::Await { timeout } => format!(
                "await the run's terminal event (timeout {})",
                humantime::format_duration(*timeout)
            ),
            StepKind::Think { duration } => {
                format!("think {}", humantime::format_duration(*duration))
            }
        };
        o.push_str(&format!("  {:>2}. {:<14} {}\n", i + 1, st.name, what));
    }
    if s.thresholds.is_empty() {
        o.push_str("\nthresholds: none (the run passes unless it is aborted)\n");
    } else {
        o.push_str("\nthresholds:\n");
        for t in &s.thresholds {
            o.push_str(&format!("  {}\n", t.expr));
        }
    }
    o
}
