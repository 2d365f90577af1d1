//! `chatload validate`: every problem at once, or the load plan.

use std::path::Path;

use crate::scenario::{Scenario, StepKind};

use super::exit;

pub fn main(path: &Path) -> u8 {
    match Scenario::load(path) {
        Err(d) => {
            say_err_raw!("{d}");
            exit::USAGE
        }
        Ok(s) => {
            // The secrets `run` would hold are learned first, so a tag or
            // header that carries one prints as `<redacted>`, as in `run`.
            crate::run::preflight::learn_for_output(&s);
            let refused = crate::run::preflight::refusals(&s);
            if !refused.is_empty() {
                say_err!("{}: `run` would refuse this scenario:", s.file.display());
                for why in refused {
                    say_err!("  {why}");
                }
                return exit::USAGE;
            }
            say_raw!("{}", describe(&s));
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
    let tls = &s.target.tls;
    if tls.insecure {
        o.push_str("  INSECURE: TLS certificates will not be verified (target.insecure = true)\n");
    }
    if let Some(n) = &tls.server_name {
        o.push_str(&format!("  TLS server name {n} (SNI and Host)\n"));
    }
    if let Some(f) = &tls.ca_file {
        o.push_str(&format!("  CA file {f} added to the trust roots\n"));
    }
    if !s.tags.is_empty() {
        let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        o.push_str(&format!("tags: {}\n", tags.join(" ")));
    }
    if let Some(u) = &s.live.remote_write {
        o.push_str(&format!(
            "remote write: every {} to {u}\n",
            crate::units::format_us(s.interval_or_default().as_micros() as f64)
        ));
    }
    let w = &s.workload;
    describe_plan(&mut o, w);
    describe_probes(&mut o, s);
    let total: usize = s.journeys.iter().map(|j| j.weight).sum();
    for j in &s.journeys {
        let who = if w.open().is_some() {
            "run once per arrival, by a free session of the pool"
        } else {
            "repeated by every user"
        };
        if s.journeys.len() == 1 {
            o.push_str(&format!("\njourney ({who}):\n"));
        } else {
            o.push_str(&format!(
                "\njourney `{}`: weight {} ({:.0}% of the users; {who}):\n",
                j.name,
                j.weight,
                j.weight as f64 * 100.0 / total.max(1) as f64
            ));
        }
        describe_steps(&mut o, &j.steps, 1);
    }
    describe_verdict(&mut o, s);
    o
}

/// The load plan, by model.
fn describe_plan(o: &mut String, w: &crate::scenario::Workload) {
    match (w.open(), &w.capacity) {
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
}

/// The probes, and the time the after_close rules add after the users.
fn describe_probes(o: &mut String, s: &Scenario) {
    if s.probes.is_empty() {
        return;
    }
    o.push_str(
        "
probes (the target's own numbers, read during the run):
",
    );
    for p in &s.probes {
        let every = crate::units::format_us(p.period(s.interval_or_default()).as_micros() as f64);
        let values: Vec<String> = p
            .values
            .iter()
            .map(|v| format!("probe.{}", v.name))
            .collect();
        o.push_str(&format!(
            "  `{}`: GET {} every {every}: {}\n",
            p.name,
            p.url,
            values.join(", ")
        ));
    }
    if let Some(w) = crate::scenario::probe_rules::ProbeRule::after_close_wait(&s.probe_rules) {
        o.push_str(&format!(
            "  after the users are done: +{} to read every probe once more (after_close rules), plus up to {} for the slowest answer\n",
            crate::units::format_us(w.as_micros() as f64),
            crate::units::format_us(
                s.probes.iter().map(|p| p.timeout).max().unwrap_or_default().as_micros() as f64
            )
        ));
    }
    for r in &s.probe_rules {
        o.push_str(&format!("  rule: {}\n", r.expr));
    }
}

/// What judges the run: the thresholds, or a capacity search's SLOs.
fn describe_verdict(o: &mut String, s: &Scenario) {
    if let Some(c) = &s.workload.capacity {
        // A capacity search has no [thresholds]: its SLOs judge each step.
        o.push_str(
            "\nverdict: by the knee of the search, judged step by step on [capacity.slo]:\n",
        );
        for t in &c.slo {
            o.push_str(&format!("  {}\n", t.expr));
        }
        o.push_str(&match c.plan.target {
            Some(t) => format!(
                "  the run passes when some step held and the knee reaches the target {}\n",
                c.plan.show_load(t)
            ),
            None => "  the run passes when some step held\n".to_string(),
        });
    } else if s.thresholds.is_empty() {
        o.push_str("\nthresholds: none, and the default SLOs are off: the run is not judged (it passes unless it is aborted or invalid)\n");
    } else {
        o.push_str("\nthresholds:\n");
        for t in &s.thresholds {
            let mark = if t.default { " (default)" } else { "" };
            o.push_str(&format!("  {}{mark}\n", t.expr));
        }
    }
}

/// A think step, for people.
fn think_text(think: &crate::scenario::Think) -> String {
    use crate::scenario::Think;
    match think {
        Think::Constant(d) => format!("think {}", humantime::format_duration(*d)),
        Think::Uniform(a, b) => format!(
            "think uniform {} to {}",
            humantime::format_duration(*a),
            humantime::format_duration(*b)
        ),
        Think::Exponential(m) => {
            format!("think exponential, mean {}", humantime::format_duration(*m))
        }
        Think::LogNormal { median, sigma } => format!(
            "think log-normal, median {}, sigma {sigma}",
            humantime::format_duration(*median)
        ),
    }
}

fn describe_steps(o: &mut String, steps: &[crate::scenario::Step], depth: usize) {
    let pad = "  ".repeat(depth);
    for (i, st) in steps.iter().enumerate() {
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
            StepKind::Think { think } => think_text(think),
            StepKind::CreateThread { .. } => {
                "POST /api/threads; the new thread becomes current".into()
            }
            StepKind::ListThreads => "GET /api/threads".into(),
            StepKind::History => {
                "GET the current thread's messages; check persistence and isolation".into()
            }
            StepKind::SwitchThread { timeout } => format!(
                "switch the socket to the next thread and wait for its confirmation (timeout {})",
                humantime::format_duration(*timeout)
            ),
            StepKind::Http {
                method,
                path,
                expect,
                capture,
                persist,
                ..
            } => format!(
                "{method} {path} (expect {}){}{}",
                expect
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                if capture.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; capture {}",
                        capture
                            .iter()
                            .map(|(v, p)| format!("{v} <- {p}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                persist.as_ref().map_or(String::new(), |p| format!(
                    "; stores body.{p} in the thread (checked by history)"
                ))
            ),
            StepKind::Disconnect => "close the socket normally".into(),
            StepKind::Reconnect => "close and reopen the socket, wait for ready".into(),
            StepKind::Repeat { times, for_, .. } => match (times, for_) {
                (Some(n), _) => format!("repeat {n} times:"),
                (_, Some(d)) => format!("repeat for {}:", humantime::format_duration(*d)),
                _ => "repeat:".into(),
            },
        };
        o.push_str(&format!("{pad}{:>2}. {:<14} {}\n", i + 1, st.name, what));
        if let StepKind::Repeat { steps, .. } = &st.kind {
            describe_steps(o, steps, depth + 2);
        }
    }
}
