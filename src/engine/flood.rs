//! The per-socket flood limit: what bounds the memory a server can make
//! chatload use by sending frames.
//!
//! Every frame a socket reads becomes a few observations on the way to the
//! collector (`bytes.received`, frame counters, violations with a sample).
//! A socket may send up to [`FLOOD_UNEXPECTED_PER_S`] frames no run
//! expects and [`FLOOD_FRAMES_PER_S`] frames in all in each one-second
//! window; once over either, the window's further frames are dropped at the
//! reader before they become observations (only their number is kept, and counted in
//! `frames.flood` once per window). A socket that goes over the limit in
//! [`FLOOD_SECONDS`] windows (in a row or not) is closed with the protocol
//! error class `flood` (a `violations.flood` too, so the default
//! `violations rate == 0` SLO fails the run). So each socket sends at most
//! `FLOOD_FRAMES_PER_S` frames' observations per second whatever the
//! server does (beyond the unexpected ones), and a flooding server loses its socket after
//! `FLOOD_SECONDS` windows of it. The windows run on reading time: while
//! a reader waits for the collector to catch up (`ObsSender::backpressure`)
//! the clock stops, so a slow collector cannot hide a flood.
//!
//! Atomics (relaxed) so the gate can sit behind a shared reference in
//! `ReadCtx` across awaits; one socket's reader is its only user.
//!
//! May import: `metrics` (observations), `names`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::metrics::ObsSender;

/// Frames no run expects (unparseable, unknown, binary, an agent event
/// while no run is active) a socket may send per one-second window before
/// the rest of the window's frames are dropped as a flood.
pub const FLOOD_UNEXPECTED_PER_S: u64 = 1_000;
/// Frames of any kind a socket may send per one-second window (far above
/// any agent's event stream, even the reference server's at full speed).
pub const FLOOD_FRAMES_PER_S: u64 = 100_000;
/// How long a socket may stay over the limit before it is closed.
pub const FLOOD_SECONDS: u64 = 3;

/// Counter of frames dropped as a flood.
pub const FRAMES_FLOOD: &str = "frames.flood";

/// What to do with a frame just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Judge it as usual.
    Pass,
    /// Drop it unjudged (counted in `frames.flood`).
    Drop,
    /// Drop it and close the socket: a flood.
    Close,
}

/// One socket's flood state.
#[derive(Debug)]
pub struct FloodGate {
    origin: Instant,
    /// Start of the current window, ms since `origin`.
    window_ms: AtomicU64,
    in_window: AtomicU64,
    /// Frames no run expects in the current window.
    unexpected: AtomicU64,
    /// The current window is over a limit.
    dropping: AtomicBool,
    /// Windows in which the socket went over the limit.
    over_windows: AtomicU64,
    /// Time spent waiting for the collector (ms), off the clock.
    paused_ms: AtomicU64,
    /// Dropped frames not counted yet.
    unreported: AtomicU64,
    /// When the last frame the profile answers arrived (µs since `origin`,
    /// plus one; 0: none yet), for `server_ping_gap`. Kept here because this
    /// is the one per-socket state every read path already holds.
    answered_us: AtomicU64,
}

impl Default for FloodGate {
    fn default() -> Self {
        FloodGate {
            origin: Instant::now(),
            window_ms: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            over_windows: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
            paused_ms: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            answered_us: AtomicU64::new(0),
        }
    }
}

impl FloodGate {
    /// Judges one frame read at `now`.
    pub fn frame(&self, now: Instant, obs: &ObsSender) -> Gate {
        let ms = (now.saturating_duration_since(self.origin).as_millis() as u64)
            .saturating_sub(self.paused_ms.load(Relaxed));
        if ms >= self.window_ms.load(Relaxed) + 1000 {
            self.window_ms.store(ms, Relaxed);
            self.in_window.store(0, Relaxed);
            self.unexpected.store(0, Relaxed);
            self.dropping.store(false, Relaxed);
            self.flush(obs);
        }
        let n = self.in_window.fetch_add(1, Relaxed) + 1;
        if n <= FLOOD_FRAMES_PER_S && self.unexpected.load(Relaxed) <= FLOOD_UNEXPECTED_PER_S {
            return Gate::Pass;
        }
        self.unreported.fetch_add(1, Relaxed);
        if !self.dropping.swap(true, Relaxed)
            && self.over_windows.fetch_add(1, Relaxed) + 1 >= FLOOD_SECONDS
        {
            self.flush(obs);
            return Gate::Close;
        }
        Gate::Drop
    }

    /// A frame the profile answers (a server's application ping) arrived:
    /// the time since the previous one on this socket, if any.
    pub fn answered(&self) -> Option<std::time::Duration> {
        let now = self.origin.elapsed().as_micros() as u64 + 1;
        let prev = self.answered_us.swap(now, Relaxed);
        (prev > 0).then(|| std::time::Duration::from_micros(now.saturating_sub(prev)))
    }

    /// The frame just passed was one no run expects.
    pub fn unexpected(&self) {
        self.unexpected.fetch_add(1, Relaxed);
    }

    /// The reader waited this long for the collector: off the clock.
    pub fn paused(&self, waited: std::time::Duration) {
        self.paused_ms.fetch_add(waited.as_millis() as u64, Relaxed);
    }

    /// Counts the dropped frames not counted yet.
    pub fn flush(&self, obs: &ObsSender) {
        let n = self.unreported.swap(0, Relaxed);
        if n > 0 {
            obs.count_n(FRAMES_FLOOD, n);
        }
    }

    /// A new socket: a fresh state.
    pub fn reset(&mut self) {
        *self = FloodGate::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_socket_over_the_limit_drops_then_closes() {
        let c = crate::metrics::Collector::start();
        let obs = c.sender();
        let g = FloodGate::default();
        let t0 = g.origin;
        for i in 0..FLOOD_FRAMES_PER_S {
            assert_eq!(g.frame(t0, &obs), Gate::Pass, "{i}");
        }
        assert_eq!(g.frame(t0, &obs), Gate::Drop);
        // Still over in every window until FLOOD_SECONDS have passed.
        let mut last = Gate::Drop;
        for s in 1..=FLOOD_SECONDS {
            let at = t0 + Duration::from_secs(s);
            for _ in 0..=FLOOD_FRAMES_PER_S {
                last = g.frame(at, &obs);
            }
        }
        assert_eq!(last, Gate::Close);
        // Quiet windows in between do not reset the count.
        let g = FloodGate::default();
        let t0 = g.origin;
        let mut last = Gate::Pass;
        for s in 0..FLOOD_SECONDS {
            let at = t0 + Duration::from_secs(2 * s);
            assert_eq!(g.frame(at + Duration::from_secs(1), &obs), Gate::Pass);
            for _ in 0..FLOOD_FRAMES_PER_S {
                last = g.frame(at + Duration::from_millis(1500), &obs);
            }
        }
        assert_eq!(last, Gate::Close);
        // Frames no run expects: over their own, lower limit.
        let g = FloodGate::default();
        let t0 = g.origin;
        for _ in 0..=FLOOD_UNEXPECTED_PER_S {
            assert_eq!(g.frame(t0, &obs), Gate::Pass);
            g.unexpected();
        }
        assert_eq!(g.frame(t0, &obs), Gate::Drop);
        assert_eq!(g.frame(t0 + Duration::from_secs(1), &obs), Gate::Pass);
        // Under the limit, never.
        let g = FloodGate::default();
        let t0 = g.origin;
        for s in 0..10 * FLOOD_SECONDS {
            for _ in 0..FLOOD_FRAMES_PER_S {
                assert_eq!(g.frame(t0 + Duration::from_secs(s), &obs), Gate::Pass);
            }
        }
    }
}
