//! `chatload compare`: a baseline comparison of two snapshots; exit 1 on a
//! regression beyond the tolerances. Glue: the comparison is `metrics/compare.rs`.

use std::path::PathBuf;

use clap::Args;

use crate::metrics::judge::compare;
use crate::metrics::Snapshot;
use crate::report::ReportData;
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
    let c = match compare(&base, &new, &tolerances) {
        Ok(c) => c,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = if a.format == "json" {
        serde_json::to_string_pretty(&c).unwrap_or_default() + "\n"
    } else {
        let mut snap = new.clone();
        snap.baseline = Some(c.clone());
        let mut out = Vec::new();
        let _ = crate::report::markdown::render(&ReportData::from_snapshot(&snap), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    say_raw!("{text}");
    if c.regressed {
        say_err!("REGRESSED against {}", c.base_run);
        exit::THRESHOLD_FAILED
    } else {
        exit::PASS
    }
}
