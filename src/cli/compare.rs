//! `chatload compare`: a baseline comparison of two snapshots. Exit 0 (no
//! significant regression, or inconclusive), 1 (a significant regression
//! beyond tolerance), 2 (not the same scenario without `--force`, or usage).
//! Glue: the comparison is `metrics/compare/`.

use std::path::PathBuf;

use clap::Args;

use crate::metrics::compare::CompareVerdict;
use crate::metrics::judge::{compare, CompareError};
use crate::metrics::Snapshot;
use crate::scenario::baseline::Tolerance;

use super::exit;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline run's snapshot.json.
    pub base: PathBuf,
    /// The new run's snapshot.json.
    pub new: PathBuf,
    /// A tolerance, e.g. "ttfe p95=+10%", "close_1011 rate=+0.05pp"; repeatable.
    /// Without any, the defaults are used (see README.md).
    #[arg(long = "tolerance")]
    pub tolerances: Vec<String>,
    /// Output format of the comparison: md or json.
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Compare snapshots of different scenarios (another name, or another
    /// journey or profile) anyway; the output says so.
    #[arg(long)]
    pub force: bool,
}

/// The tolerances given on the command line, or the defaults without any.
fn tolerances(given: &[String]) -> Result<Vec<Tolerance>, String> {
    let mut tolerances = Vec::new();
    for t in given {
        let parsed = t
            .split_once('=')
            .ok_or_else(|| format!("--tolerance `{t}` must be KEY=VALUE, e.g. \"ttfe p95=+10%\""))
            .and_then(|(k, v)| Tolerance::parse(k.trim(), v.trim()))?;
        tolerances.push(parsed);
    }
    if tolerances.is_empty() {
        tolerances = Tolerance::defaults();
    }
    Ok(tolerances)
}

pub fn main(a: CompareArgs) -> u8 {
    let (base, new) = match (Snapshot::read(&a.base), Snapshot::read(&a.new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let tolerances = match tolerances(&a.tolerances) {
        Ok(t) => t,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let c = match compare(&base, &new, &tolerances, a.force) {
        Ok(c) => c,
        Err(e @ CompareError::NotComparable(_)) => {
            say_err!("error: {e} (--force compares them anyway)");
            return exit::USAGE;
        }
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = if a.format == "json" {
        serde_json::to_string_pretty(&c).unwrap_or_default() + "\n"
    } else {
        let mut out = Vec::new();
        let _ = crate::report::markdown::comparison(&c, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    say_raw!("{text}");
    for w in &c.warnings {
        say_err!("warning: {w}");
    }
    match c.verdict() {
        CompareVerdict::Regressed => {
            say_err!("REGRESSED against {}", c.base_run);
            exit::THRESHOLD_FAILED
        }
        CompareVerdict::Inconclusive => {
            say_err!(
                "INCONCLUSIVE against {}: beyond a tolerance, not significantly",
                c.base_run
            );
            exit::PASS
        }
        CompareVerdict::NoRegression => exit::PASS,
    }
}
