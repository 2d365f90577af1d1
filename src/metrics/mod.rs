//! Observations, HDR recorders, the mergeable snapshot, and judging it.
//!
//! The engine hands plain [`Observation`]s to a collector; the collector owns one
//! [`Recorder`] (per-metric HDR histograms in microseconds plus counters by
//! name) and everything chatload reports is computed from it. Recorders and
//! snapshots merge by addition, so shards and intervals combine exactly.
//!
//! Files: `recorder.rs` (Recorder, Observation: the bottom), `encoding.rs`
//! (stored histograms and intervals, the format version), `collector.rs` (the observation channel, intervals), `snapshot.rs`
//! (`snapshot.json`), `interval_log.rs` (interval files a killed run is
//! recovered from), `interval_store.rs` (the closed intervals of a run,
//! spilled to files while it runs), `threshold.rs` (one rule on recorded data), `judge.rs`
//! (the one judge of a snapshot: rules, capacity, verdict; used by run,
//! merge and `report --recover`), `merge.rs` (shards), `capacity.rs` (a
//! capacity search's judged steps and knee; one step in `capacity_step.rs`,
//! its figures and the connect/auth and agent-run capacities apart in
//! `capacity_sides.rs`), `compare/` (baselines: a noise-aware
//! comparison of two runs, and whether they are the same scenario),
//! `families.rs` (the live metric families, shared by `/metrics` and
//! remote write), `buckets.rs` (classic histogram buckets off the HDR
//! recorders), `prometheus.rs` (live metrics text), `validity.rs` (whether the run is
//! valid: the causes of INVALID), `offered.rs` (offered vs achieved, per
//! phase of the plan).
//!
//! A new threshold kind touches `scenario/thresholds.rs` (grammar, a
//! `Subject` variant), `metrics/threshold.rs` (judging it on a recorder and
//! over drift windows) and, only if it needs inputs beyond the recorded data,
//! `metrics/judge.rs`.
//!
//! Imports: `scenario`, `plan`, `protocol`, `auth`, `names`, `units`,
//! `outcome`; never `report`, `engine`, `run` or `cli`.

pub mod buckets;
pub mod capacity;
pub mod capacity_sides;
pub mod capacity_step;
pub mod collector;
pub mod compare;
pub mod encoding;
pub mod families;
pub mod interval_log;
pub mod interval_store;
pub mod judge;
pub mod merge;
pub mod offered;
pub use crate::names;
pub mod probes;
pub mod prometheus;
pub mod raw;
pub mod recorder;
pub mod snapshot;
pub mod threshold;
pub mod validity;

pub use collector::{Collector, ObsSender, RunStep};
pub use recorder::{
    new_histogram, FailureReason, Observation, OffendingFrame, Recorder, MAX_US, SAMPLES_MAX,
    SAMPLES_PER_CLASS, SAMPLE_FRAME_BYTES, SIGFIG,
};
pub use snapshot::Snapshot;
