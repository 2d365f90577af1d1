//! `chatload report` (re-render a snapshot offline) and `chatload compare`
//! (a baseline comparison of two snapshots).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::metrics::compare::compare;
use crate::metrics::Snapshot;
use crate::report::ReportData;
use crate::report::{render, Format};
use crate::scenario::baseline::Tolerance;

use super::exit;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A snapshot.json written by `chatload run` (with --recover: the run's folder).
    pub snapshot: PathBuf,
    /// Rebuild a killed run from its folder's interval files (intervals.hlog and
    /// intervals.counters.jsonl), write the recovered snapshot and every report
    /// to <folder>/recovered, then render the chosen format.
    #[arg(long)]
    pub recover: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

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

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard snapshots (snapshot.json of each `run --shard I/N`).
    #[arg(required = true)]
    pub snapshots: Vec<PathBuf>,
    /// Folder for the merged snapshot and reports.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn merge_cmd(a: MergeArgs) -> u8 {
    let mut snaps = Vec::new();
    for p in &a.snapshots {
        match load(p) {
            Ok(s) => snaps.push(s),
            Err(e) => {
                say_err!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    let merged = match crate::metrics::merge::merge(&snaps) {
        Ok(m) => m,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        say_err!("error: cannot create {}: {e}", a.out.display());
        return exit::USAGE;
    }
    let data = ReportData::from_snapshot(&merged);
    for format in Format::ALL {
        let p = a.out.join(format.file_name());
        if let Err(e) = std::fs::write(&p, render(&data, &merged, format)) {
            say_err!("error: cannot write {}: {e}", p.display());
            return exit::ABORTED;
        }
    }
    let _ = crate::report::console::render(&data, &mut std::io::stdout().lock());
    for n in &merged.notes {
        say_err!("{n}");
    }
    say!("{}: merged reports in {}", data.verdict, a.out.display());
    merged.verdict.exit_code()
}

#[derive(Args, Debug)]
pub struct TrendArgs {
    /// A history file written by `run --history`.
    pub history: PathBuf,
    /// Only runs of this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// md or html.
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn trend_cmd(a: TrendArgs) -> u8 {
    let rows = match crate::report::history::load(&a.history, a.scenario.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = match a.format.as_str() {
        "md" => crate::report::history::render_md(&rows),
        "html" => crate::report::history::render_html(&rows),
        other => {
            say_err!("error: unknown format `{other}` (md or html)");
            return exit::USAGE;
        }
    };
    emit(text.as_bytes(), a.out.as_deref())
}

fn load(p: &Path) -> Result<Snapshot, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Snapshot::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))
}

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

fn recover(dir: &Path) -> Result<Snapshot, String> {
    let (total, intervals) = crate::metrics::interval_log::recover(dir)
        .map_err(|e| format!("cannot read the interval files in {}: {e}", dir.display()))?;
    // The first checkpoint is written before any user starts: it holds the run's identity.
    let mut s = load(&dir.join("snapshot.json"))?;
    let thresholds = crate::metrics::merge::thresholds_from_echo(&s.scenario)?;
    s.histograms = Snapshot::histograms_from(&total);
    s.counters = total.counters.clone();
    s.intervals = intervals
        .iter()
        .map(crate::metrics::snapshot::IntervalData::from_interval)
        .collect();
    s.thresholds = crate::metrics::threshold::judge_all(&thresholds, &total, &s.intervals);
    s.duration_s = intervals.last().map_or(0.0, |i| i.start_s + i.length_s);
    s.verdict = crate::outcome::Verdict::Incomplete;
    s.notes = vec![format!(
        "incomplete: recovered from the interval files of a run that did not finish ({} intervals, the first {:.1} s); the interval in progress when it stopped is lost",
        intervals.len(),
        s.duration_s
    )];
    Ok(s)
}

pub fn report(a: ReportArgs) -> u8 {
    if a.recover {
        let snap = match recover(&a.snapshot) {
            Ok(s) => s,
            Err(e) => {
                say_err!("error: {e}");
                return exit::USAGE;
            }
        };
        let out = a.snapshot.join("recovered");
        let data = ReportData::from_snapshot(&snap);
        let written = std::fs::create_dir_all(&out)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                Format::ALL.iter().try_for_each(|f| {
                    std::fs::write(out.join(f.file_name()), render(&data, &snap, *f))
                        .map_err(|e| e.to_string())
                })
            });
        if let Err(e) = written {
            say_err!("error: cannot write {}: {e}", out.display());
            return exit::USAGE;
        }
        say_err!("recovered snapshot and reports in {}", out.display());
        return emit(&render(&data, &snap, a.format), a.out.as_deref());
    }
    let snap = match load(&a.snapshot) {
        Ok(s) => s,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let data = ReportData::from_snapshot(&snap);
    emit(&render(&data, &snap, a.format), a.out.as_deref())
}

pub fn compare_cmd(a: CompareArgs) -> u8 {
    let (base, new) = match (load(&a.base), load(&a.new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut tolerances = Vec::new();
    for t in &a.tolerances {
        let parsed = t
            .split_once('=')
            .ok_or_else(|| format!("--tolerance `{t}` must be KEY=VALUE, e.g. \"ttfe p95=+10%\""))
            .and_then(|(k, v)| Tolerance::parse(k.trim(), v.trim()));
        match parsed {
            Ok(t) => tolerances.push(t),
            Err(e) => {
                say_err!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    if tolerances.is_empty() {
        tolerances = Tolerance::defaults();
    }
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
