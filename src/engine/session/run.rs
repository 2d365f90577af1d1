//! A run in flight: what the client sent ([`PendingRun`]), what its events
//! showed so far ([`ActiveRun`]: timings and the profile's rule checks, recorded
//! as the events arrive) and how it ended ([`RunOutcome`], [`RunReport`]).
//!
//! May import: `metrics` (observations), `protocol`, `names`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{note_violation, Who};
use crate::metrics::{ObsSender, RunStep};
use crate::names;
use crate::protocol::seq::{SeqCheck, SeqRule};
use crate::protocol::validate::{Identity, RunCheck, Violation};
use crate::protocol::Profile;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Ok,
    /// The agent reported an error (terminal error event).
    AgentError,
    /// No terminal event before the deadline; `events` says how many arrived.
    TimedOut {
        events: u64,
    },
    /// The socket closed during the run.
    Closed {
        code: u16,
    },
    /// A protocol error or a flood ended the socket during the run
    /// (`connections.protocol_error.<class>` names it).
    Broken {
        class: String,
    },
    /// The journey started another run (or ended) before awaiting this one.
    NotAwaited,
}

impl RunOutcome {
    /// The failure class counted under `runs.failed.<class>`.
    pub fn failure_class(&self) -> Option<&'static str> {
        match self {
            RunOutcome::Ok => None,
            RunOutcome::AgentError => Some("agent_error"),
            RunOutcome::TimedOut { events: 0 } => Some("no_response"),
            RunOutcome::TimedOut { .. } => Some("timeout"),
            RunOutcome::Closed { .. } => Some("closed"),
            RunOutcome::Broken { .. } => Some("protocol_error"),
            RunOutcome::NotAwaited => Some("not_awaited"),
        }
    }
}

/// What the client knows about the run it started.
#[derive(Debug, Clone)]
pub struct PendingRun {
    /// The id the client put in the message (`None`: adopted from the first event).
    pub run_id: Option<String>,
    /// The thread the client put in the message (`None`: not checked).
    pub thread_id: Option<String>,
    pub user_id: String,
    /// When the run started: the send in the closed model, the arrival's
    /// intended start in the open model. Every run latency counts from it.
    pub started: Instant,
    /// When the message went out (an `await` timeout counts from it).
    pub sent: Instant,
    /// The capacity step the run belongs to: every figure of it is kept there.
    pub step: RunStep,
}

/// How a run ended and what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub outcome: RunOutcome,
    pub violations: Vec<Violation>,
    /// The run id the run ended with (chosen or adopted).
    pub run_id: Option<String>,
    /// From the run's start to its end.
    pub took: Duration,
    /// `ttc` and `event_gap_max` of a run that ended ok, not yet recorded
    /// (see [`ActiveRun::defer_end_samples`]).
    pub end_samples: Option<(Duration, Duration)>,
    /// The capacity step the run belongs to (its start's).
    pub step: RunStep,
    /// From the run's start to its first event (none: no event came).
    pub first_event: Option<Duration>,
    /// The `send` step that started the run.
    pub send_step: Option<String>,
    /// From the run's start to its terminal event (none: none came).
    pub terminal: Option<Duration>,
    /// Open model: from the intended start to the actual send (service
    /// times are the run's latencies less this); zero in the closed model.
    pub queued: Duration,
}

impl RunReport {
    /// Records the deferred `ttc` and `event_gap_max`, if any.
    pub fn record_end_samples(&mut self, obs: &ObsSender) {
        if let Some((ttc, gap)) = self.end_samples.take() {
            obs.sample_for(self.step, names::TTC, ttc.as_micros() as u64);
            obs.sample_for(self.step, names::EVENT_GAP_MAX, gap.as_micros() as u64);
            if !self.queued.is_zero() {
                let service = ttc.saturating_sub(self.queued);
                obs.sample_for(self.step, names::TTC_SERVICE, service.as_micros() as u64);
            }
        }
    }
}

impl RunReport {
    /// `None` for an ok run; otherwise the class counted under `runs.failed.<class>`:
    /// the ending (timeout, closed, agent_error) first, else the first violation.
    pub fn failure_class(&self) -> Option<&'static str> {
        self.outcome
            .failure_class()
            .or_else(|| self.violations.first().map(|v| v.class))
    }
}

/// Per-run timings, recorded as the events arrive.
#[derive(Debug, Default)]
struct RunTimes {
    events: u64,
    first: Option<Duration>,
    last: Option<Duration>,
    terminal: Option<Duration>,
    gap_max: Duration,
    seen: BTreeSet<String>,
}

/// A run in flight: what the client sent and what its events showed so far.
/// Records `ttfe`, `event_<name>`, `ttc`, `event_gap_max` and event counts as
/// the events arrive, and every violation of the profile's rules.
pub struct ActiveRun {
    pub run: PendingRun,
    times: RunTimes,
    check: RunCheck<'static>,
    /// The profile's `seq` numbering, judged per run (`seq_gap`).
    seq: Option<(&'static SeqRule, SeqCheck)>,
    pub(super) me: Identity,
    violations: Vec<Violation>,
    /// Keep an ok run's `ttc` and `event_gap_max` in its report instead of
    /// recording them at its terminal event.
    defer_end: bool,
    end_samples: Option<(Duration, Duration)>,
    /// The `send` step that started the run (for the raw-results stream).
    pub send_step: Option<String>,
}

impl ActiveRun {
    pub fn new(run: PendingRun, profile: &'static Profile) -> ActiveRun {
        ActiveRun {
            me: Identity {
                user_id: run.user_id.clone(),
                thread_id: run.thread_id.clone(),
                run_id: run.run_id.clone(),
            },
            run,
            times: RunTimes::default(),
            check: RunCheck::new(&profile.rules),
            seq: profile.seq.as_ref().map(|r| (r, SeqCheck::default())),
            violations: Vec::new(),
            defer_end: false,
            end_samples: None,
            send_step: None,
        }
    }

    /// The engine counts an ok run only once nothing can fail it any more
    /// (a straggler of it may still arrive: see `Shared::settle`); its
    /// `ttc` and `event_gap_max` are recorded then too, so every recorded
    /// `ttc` belongs to a counted run, in checkpoints as at the end.
    pub fn defer_end_samples(mut self) -> ActiveRun {
        self.defer_end = true;
        self
    }

    /// Open model: the intended start to the actual send.
    fn queued(&self) -> Duration {
        self.run.sent.saturating_duration_since(self.run.started)
    }

    /// Events of this run so far.
    pub fn events(&self) -> u64 {
        self.times.events
    }

    /// Ends the run with `outcome`.
    pub fn finish(self, outcome: RunOutcome) -> RunReport {
        let queued = self.queued();
        RunReport {
            outcome,
            violations: self.violations,
            run_id: self.me.run_id,
            took: self.run.started.elapsed(),
            end_samples: self.end_samples,
            step: self.run.step,
            first_event: self.times.first,
            send_step: self.send_step,
            terminal: self.times.terminal,
            queued,
        }
    }

    pub(super) fn violated(&mut self, obs: &ObsSender, v: Violation, raw: &str) {
        note_violation(
            obs,
            &v,
            raw,
            &Who {
                user_id: &self.me.user_id,
                run_id: self.me.run_id.as_deref(),
            },
        );
        // Every violation is counted (above); the run keeps the first few
        // (its failure class is the first one's): a server sending
        // thousands of bad frames during one run must not grow it.
        if self.violations.len() < VIOLATIONS_KEPT_PER_RUN {
            self.violations.push(v);
        }
    }

    /// Judges one of this run's events; the outcome when it was terminal.
    pub(super) fn on_event(
        &mut self,
        ev: &crate::protocol::Event,
        text: &str,
        profile: &Profile,
        obs: &ObsSender,
        rx: Instant,
    ) -> Option<RunOutcome> {
        if self.me.run_id.is_none() {
            self.me.run_id = ev.run_id.clone();
        }
        // From the (intended) start to the frame's receive time.
        let at = rx.saturating_duration_since(self.run.started);
        let t = &mut self.times;
        let step = self.run.step;
        obs.count_for(step, names::events(&ev.name));
        t.events += 1;
        if t.first.is_none() {
            t.first = Some(at);
            obs.sample_for(step, names::TTFE, at.as_micros() as u64);
            let queued = self.run.sent.saturating_duration_since(self.run.started);
            if !queued.is_zero() {
                let service = at.saturating_sub(queued);
                obs.sample_for(step, names::TTFE_SERVICE, service.as_micros() as u64);
            }
        }
        if let Some(prev) = t.last {
            t.gap_max = t.gap_max.max(at.saturating_sub(prev));
        }
        t.last = Some(at);
        if t.seen.insert(ev.name.clone()) {
            obs.sample_for(step, names::event_metric(&ev.name), at.as_micros() as u64);
        }
        for v in self.check.on_event(ev, text, at) {
            self.violated(obs, v, text);
        }
        if let Some(v) = self.seq.as_mut().and_then(|(r, c)| c.on_event(r, ev)) {
            self.violated(obs, v, text);
        }
        let ok = profile.terminal(&ev.name)?;
        self.times.terminal = Some(at);
        if ok {
            for v in self.check.on_end() {
                self.violated(obs, v, text);
            }
        }
        let gap = self.times.gap_max;
        if ok && self.defer_end && self.violations.is_empty() {
            self.end_samples = Some((at, gap));
        } else {
            obs.sample_for(step, names::TTC, at.as_micros() as u64);
            obs.sample_for(step, names::EVENT_GAP_MAX, gap.as_micros() as u64);
            let queued = self.queued();
            if !queued.is_zero() {
                let service = at.saturating_sub(queued);
                obs.sample_for(step, names::TTC_SERVICE, service.as_micros() as u64);
            }
        }
        Some(if ok {
            RunOutcome::Ok
        } else {
            RunOutcome::AgentError
        })
    }
}

/// Violations a run keeps in its report (all are counted).
pub const VIOLATIONS_KEPT_PER_RUN: usize = 16;

/// Runs of the current socket remembered for classifying late events.
pub const EARLIER_RUNS_KEPT: usize = 8;

/// Remembers a finished run's id (bounded, newest last; once). Every run
/// that ends is remembered, whatever its outcome: an event of a run that
/// timed out (or was not awaited, or failed) is a `late_event`, not a
/// `crossed_run`.
pub fn remember_run(earlier_runs: &mut Vec<String>, run_id: Option<&str>) {
    if let Some(id) = run_id {
        if earlier_runs.iter().any(|e| e == id) {
            return;
        }
        if earlier_runs.len() == EARLIER_RUNS_KEPT {
            earlier_runs.remove(0);
        }
        earlier_runs.push(id.to_string());
    }
}
