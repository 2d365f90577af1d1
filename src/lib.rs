//! chatload: load and soak tests for chat platforms whose users talk to AI
//! agents over authenticated WebSockets.
//!
//! Data flows one way:
//!
//! ```text
//! scenario (file) -> plan -> engine (goose users, sockets) -> observations -> metrics -> report
//!                                           reference server (separate; shares protocol and auth)
//! ```

pub mod auth;
pub mod cli;
pub mod engine;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod server;
