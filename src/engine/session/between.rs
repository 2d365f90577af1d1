//! Agent events with no run active: late (a finished run's), a second
//! terminal, foreign, or naming no run at all, and which of them fail the
//! run held on the socket.

use super::{check_isolation, note_violation, Belongs, Identity, ReadCtx, Violation, Who};
use crate::protocol::Profile;

/// A late event that is a terminal one is a `duplicate_terminal`.
pub(super) fn late_or_duplicate(
    ev: &crate::protocol::Event,
    late: Violation,
    profile: &Profile,
) -> Violation {
    if profile.terminal(&ev.name).is_some() {
        Violation::new(
            "duplicate_terminal",
            ev.name.clone(),
            format!("a second `{}` after the run ended", ev.name),
        )
    } else {
        late
    }
}

/// An agent event with no run active: late (a finished run's), a second
/// terminal, foreign, or one that names no run at all. Returns the class
/// when it is the held run's violation (its own id, or no run id at all
/// while a run is held): that run then fails by it.
pub(super) fn between_runs(
    ev: &crate::protocol::Event,
    text: &str,
    profile: &Profile,
    cx: &ReadCtx<'_>,
    earlier_runs: &[String],
) -> Option<&'static str> {
    cx.obs.count("frames.between_runs");
    let me = Identity {
        user_id: cx.user_id.to_string(),
        thread_id: None,
        run_id: Some(String::new()),
    };
    let (v, held) = match check_isolation(ev, &me, earlier_runs) {
        Belongs::Foreign(v) if v.class == "late_event" => (
            late_or_duplicate(ev, v, profile),
            cx.is_held(ev.run_id.as_deref()),
        ),
        Belongs::Foreign(v) => (v, false),
        Belongs::Mine => (
            Violation::new(
                "crossed_run",
                ev.name.clone(),
                format!(
                    "`{}` without a run id arrived while no run was active",
                    ev.name
                ),
            ),
            cx.held.is_some() && ev.run_id.is_none(),
        ),
    };
    // A late event's sample names the run it belongs to.
    let run_id = match (held, cx.held) {
        (true, Some(id)) => id,
        _ if matches!(v.class, "late_event" | "duplicate_terminal") => ev.run_id.as_deref(),
        _ => None,
    };
    let who = Who {
        user_id: cx.user_id,
        run_id,
    };
    note_violation(cx.obs, &v, text, &who);
    held.then_some(v.class)
}
