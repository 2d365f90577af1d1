//! Records for the raw-results stream (`metrics/raw.rs`): one per run, at
//! the moment it is counted ok or failed (`Shared::settle`,
//! `release_held`, `fail_held`, a send that failed). Nothing is built when
//! the stream is off.
//!
//! Imports: `metrics`, `session`.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};

use super::session::RunReport;
use super::shared::Shared;
use super::user::UserSession;
use crate::metrics::raw::RawRun;

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Shared {
    /// A run counted ok (`class` None) or failed by `class`.
    pub(super) fn raw_run(&self, user: &str, report: &RunReport, class: Option<&str>) {
        let Some(sink) = &self.cfg.raw else { return };
        sink.emit(RawRun {
            ended_at: now(),
            duration_ms: ms(report.took),
            ttfe_ms: report.first_event.map(ms),
            ttc_ms: report.terminal.map(ms),
            outcome: if class.is_some() { "failed" } else { "ok" },
            class: class.map(str::to_string),
            user: user.to_string(),
            step: report.send_step.clone(),
            run_id: report.run_id.clone(),
        });
    }

    /// A run whose message could not be sent (`send_error`).
    pub(super) fn raw_send_error(&self, s: &UserSession, step: &str, run_id: String) {
        let Some(sink) = &self.cfg.raw else { return };
        sink.emit(RawRun {
            ended_at: now(),
            duration_ms: 0.0,
            ttfe_ms: None,
            ttc_ms: None,
            outcome: "failed",
            class: Some("send_error".into()),
            user: s.user_id.clone(),
            step: Some(step.to_string()),
            run_id: Some(run_id),
        });
    }
}
