//! `[reconnect]`: the back-off after unexpected closes and failed connects
//! (the [`Reconnect`] type and its delays are in `model.rs`). Imports only the
//! `doc` readers.

use super::doc::{f64_where, positive_u64, Obj};
use super::model::Reconnect;

pub(super) fn read_reconnect(o: &Obj<'_>) -> Option<Reconnect> {
    let mut r = Reconnect::default();
    let Some(t) = o.obj("reconnect") else {
        return Some(r);
    };
    let mut ok = true;
    let initial = t.get("initial");
    let max = t.get("max");
    // Compared only when both read (a bad one would compare its default).
    let mut compare = true;
    if let Some(n) = &initial {
        match n.as_duration() {
            Some(d) => r.initial = d,
            None => compare = false,
        }
    }
    if let Some(n) = &max {
        match n.as_duration() {
            Some(d) => r.max = d,
            None => compare = false,
        }
    }
    ok &= compare;
    if let Some(n) = t.get("multiplier") {
        match f64_where(&n, |m| m >= 1.0, "must be at least 1") {
            Some(m) => r.multiplier = m,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("jitter") {
        let share = |j: f64| (0.0..=1.0).contains(&j);
        match f64_where(&n, share, "must be between 0 and 1 (a share of the delay)") {
            Some(j) => r.jitter = j,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("attempts") {
        match positive_u64(&n) {
            Some(a) => r.attempts = a.min(u64::from(u32::MAX)) as u32,
            None => ok = false,
        }
    }
    if let Some(n) = t.get("min_uptime") {
        match n.as_duration() {
            Some(d) => r.min_uptime = d,
            None => ok = false,
        }
    }
    if compare && r.initial > r.max {
        let (i, m) = (
            humantime::format_duration(r.initial),
            humantime::format_duration(r.max),
        );
        match (&initial, &max) {
            (Some(n), _) => n.error(format!("`initial` ({i}) must not exceed `max` ({m})")),
            (None, Some(n)) => n.error(format!(
                "`max` ({m}) must be at least `initial` ({i} unless set)"
            )),
            (None, None) => unreachable!("the defaults are ordered"),
        }
        ok = false;
    }
    t.finish();
    ok.then_some(r)
}
