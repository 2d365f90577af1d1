//! chatload: load and soak tests for chat platforms whose users talk to AI
//! agents over authenticated WebSockets.
//!
//! Data flows one way:
//!
//! ```text
//! scenario (file) -> plan -> engine (goose users, sockets) -> observations -> metrics -> report
//!                                           reference server (separate; shares protocol and auth)
//! ```

/// `eprintln!` that does not panic when stderr is closed (its reader went
/// away: `2>&1 | head`, a CI log that stopped reading): a run still writes
/// every report, and a second stop signal still exits.
macro_rules! say_err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", $crate::auth::redact::redact(&format!($($t)*)));
    }};
}

/// `eprint!` that does not panic when stderr is closed.
macro_rules! say_err_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), "{}", $crate::auth::redact::redact(&format!($($t)*)));
    }};
}

/// `println!` that does not panic when stdout is closed (`| head`).
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = $crate::stdout_guard::write_out(
            format!("{}\n", $crate::auth::redact::redact(&format!($($t)*))).as_bytes(),
        );
    }};
}

/// `print!` that does not panic when stdout is closed.
macro_rules! say_raw {
    ($($t:tt)*) => {{
        let _ = $crate::stdout_guard::write_out(
            $crate::auth::redact::redact(&format!($($t)*)).as_bytes(),
        );
    }};
}

pub mod auth;
pub mod cli;
pub mod engine;
pub mod heap;
pub mod metrics;
pub mod names;
pub mod outcome;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stdout_guard;
pub mod units;
