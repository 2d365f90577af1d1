//! The load plan: every workload becomes one list of stages that `chatload
//! validate` prints and the engine executes.
//!
//! A pure leaf, table-tested: it imports nothing from the crate. One file per
//! plan family: `shard.rs` (splitting a run over machines), `closed.rs`
//! (users through stages), `open.rs` (arrival rates and the pacer),
//! `capacity.rs` (a capacity search's staircase). The scenario reads the
//! files' tables into these; the engine and `run/` execute them.
//!
//! Matches over the plan's enums list every variant (no `_ =>`).
#![warn(clippy::wildcard_enum_match_arm)]

mod capacity;
mod closed;
mod open;
mod shard;

pub use capacity::{arithmetic_levels, CapacityPlan, CapacityStep, ConnectRamp, SearchMode};
pub use closed::{LoadPlan, RampStep, Stage};
pub use open::{
    show_rate, Arrivals, OpenModel, Pace, Pacer, RatePlan, RateStage, RateStep, WhenFull,
    DEFAULT_START_TOLERANCE,
};
pub use shard::Shard;

#[cfg(test)]
mod tests;
