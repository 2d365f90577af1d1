//! `[generator]`: how chatload times what it receives and when its own
//! delay makes a run INVALID (issue 17, DESIGN.md "Validity").
//!
//! Imports: `units` and the other `scenario` files.

use std::time::Duration;

use super::doc::Obj;

/// `generator_delay` p99 above this share of `ttfe` p50 ...
pub const DEFAULT_DELAY_SHARE: f64 = 0.25;
/// ... and above this makes the run INVALID (both must hold). Generous on
/// purpose: a debug build's test suite on two shared cores, beside two
/// compiles, reached a p99 of 12 ms on runs whose load was offered as
/// planned; a generator 25 ms late at p99 is late by any measure.
pub const DEFAULT_DELAY_FLOOR: Duration = Duration::from_millis(25);

/// The generator's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// Frames are timed by the kernel's receive stamps (`SO_TIMESTAMPNS`);
    /// `false`: when chatload's task reads them (the user-space stamps of
    /// earlier versions).
    pub kernel_timestamps: bool,
    /// The validity rule on chatload's own delay: `generator_delay` p99
    /// above `share` of `ttfe` p50 and above `floor`; `None`: off.
    pub max_delay: Option<DelayLimit>,
}

/// See [`Generator::max_delay`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayLimit {
    pub share: f64,
    pub floor: Duration,
}

impl Default for Generator {
    fn default() -> Self {
        Generator {
            kernel_timestamps: true,
            max_delay: Some(DelayLimit {
                share: DEFAULT_DELAY_SHARE,
                floor: DEFAULT_DELAY_FLOOR,
            }),
        }
    }
}

/// `[generator]`: every key optional.
pub(super) fn read_generator(o: &Obj<'_>) -> Option<Generator> {
    let mut g = Generator::default();
    let Some(tbl) = o.obj("generator") else {
        return Some(g);
    };
    let mut ok = true;
    if let Some(n) = tbl.get("kernel_timestamps") {
        match n.as_bool() {
            Some(b) => g.kernel_timestamps = b,
            None => ok = false,
        }
    }
    let mut limit = g.max_delay.expect("on by default");
    let mut off = false;
    if let Some(n) = tbl.get("max_delay_share") {
        match n.as_str() {
            Some("off") => off = true,
            Some(s) => match crate::units::parse_percent(s) {
                Ok(v) if v > 0.0 => limit.share = v,
                Ok(_) => {
                    n.error("must be above 0% (or \"off\")");
                    ok = false;
                }
                Err(e) => {
                    n.error(format!("{e} (write a percent such as \"25%\", or \"off\")"));
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("max_delay_floor") {
        match n.as_duration() {
            Some(d) => limit.floor = d,
            None => ok = false,
        }
    }
    g.max_delay = (!off).then_some(limit);
    tbl.finish();
    ok.then_some(g)
}
