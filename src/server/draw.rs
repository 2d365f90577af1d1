//! The seeded-draw primitives every fault decision is made with: a stable
//! seed from bytes, one draw at a rate, and the close_1011 draw of a phase.
//! Imports only `settings`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::settings::{FaultPlan, Phase};

/// A seed from the plan's seed and some bytes (FNV-1a: stable across builds).
pub fn stable_seed(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// One seeded draw at `rate`; a zero rate draws nothing (so adding a fault
/// class at rate 0 leaves every other draw where it was).
pub fn draw(rng: &mut ChaCha8Rng, rate: f64) -> bool {
    rate > 0.0 && rng.random::<f64>() < rate
}

/// Whether a close_1011 at `phase` is drawn.
pub fn close_1011(faults: &FaultPlan, phase: Phase, rng: &mut ChaCha8Rng) -> bool {
    draw(rng, faults.close_1011.get(&phase).copied().unwrap_or(0.0))
}
