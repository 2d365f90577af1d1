//! The command line: one file per subcommand (`run`, `serve`, `validate`,
//! `report` with `--recover`, `compare`, `merge`, `trend`). Glue only:
//! parse flags, call the module that does the work, turn errors into exit
//! codes (`outcome::exit`). May import every module; nothing imports `cli`.

pub mod compare;
pub mod merge;
pub mod report;
pub mod run;
pub mod serve;
pub mod trend;
pub mod validate;

use std::path::Path;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes live in the `outcome` leaf; the subcommands use them from here.
pub use crate::outcome::exit;

const AFTER_HELP: &str = "\
Examples:
  chatload run scenarios/smoke.toml
      Runs the smoke scenario against the embedded reference server.
  chatload run scenarios/release-gate.toml --target wss://staging.example.com/ws --out reports/rc1
      Runs against a staging target (its host must be in the scenario's target.allow).
  chatload validate scenarios/release-gate.toml
      Checks a scenario and prints its load plan; sends nothing.
  chatload report reports/<run-id>/snapshot.json --format html --out report.html
      Re-renders a past run's report offline (md, html, json, junit).
  chatload compare reports/<last-release>/snapshot.json reports/<this-run>/snapshot.json
      Compares two runs; exit 1 on a regression beyond the tolerances.
  chatload serve --addr 127.0.0.1:8080 --faults close_1011=0.5%
      Runs the reference server on its own.

  chatload run s.toml --shard 0/3 --start-at 2026-11-25T10:00:00Z --out shard-0   (and 1/3, 2/3)
  chatload merge shard-*/snapshot.json --out merged
      Runs a scenario as three shards and merges them exactly.

Exit codes: 0 pass, 1 a threshold failed, 2 usage or scenario error (nothing was sent),
3 aborted (signal, target unreachable or rejecting every connection) or a partial merge.
Secrets (the JWT signing key) come from the environment variable the scenario names
(auth.secret_env, default CHATLOAD_JWT_SECRET), never from a flag.";

#[derive(Parser, Debug)]
#[command(name = "chatload", version, about = "Load and soak tests for chat platforms whose users talk to AI agents over authenticated WebSockets", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario and write its reports.
    #[command(
        after_help = "Without --target (and without target.url in the file) chatload starts its embedded reference server on 127.0.0.1 and runs against it."
    )]
    Run(run::RunArgs),
    /// Run the reference server.
    Serve(Box<serve::ServeArgs>),
    /// Re-render a run's report from its snapshot.json, offline.
    Report(report::ReportArgs),
    /// Compare a run with a baseline run; exit 1 on a regression.
    Compare(compare::CompareArgs),
    /// Merge the snapshots of `run --shard I/N` processes exactly and judge the whole.
    Merge(merge::MergeArgs),
    /// Render the key figures of every run recorded with `run --history`.
    Trend(trend::TrendArgs),
    /// Check a scenario file and print its load plan; sends nothing.
    Validate {
        /// The scenario file.
        scenario: PathBuf,
    },
}

/// Parses the command line and runs it; never panics on bad input.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say_err!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ABORTED);
        }
    };
    let code = match cli.command {
        Command::Run(args) => {
            crate::stdout_guard::install();
            rt.block_on(run::main(args))
        }
        Command::Serve(args) => rt.block_on(serve::main(*args)),
        Command::Validate { scenario } => validate::main(&scenario),
        Command::Report(args) => report::report(args),
        Command::Compare(args) => compare::main(args),
        Command::Merge(args) => merge::main(args),
        Command::Trend(args) => trend::main(args),
    };
    // Users or server tasks still winding down must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    crate::stdout_guard::finish();
    ExitCode::from(code)
}

/// Writes `bytes` to `out`, or to standard output without it.
fn emit(bytes: &[u8], out: Option<&Path>) -> u8 {
    use std::io::Write;
    let r = match out {
        Some(p) => {
            std::fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| e.to_string()),
    };
    match r {
        Ok(()) => exit::PASS,
        Err(e) => {
            say_err!("error: {e}");
            exit::USAGE
        }
    }
}
