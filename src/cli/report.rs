//! `chatload report`: re-render a snapshot offline, or (`--recover`) rebuild
//! a killed run from its interval files first. Glue: recovering and judging
//! are `metrics/judge.rs`, rendering is `report/`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::metrics::Snapshot;
use crate::report::ReportData;
use crate::report::{render, Format};

use super::{emit, exit};

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

/// `report --recover DIR`: writes every report of the recovered run to
/// `DIR/recovered`, then renders the chosen format.
fn recover(a: &ReportArgs) -> u8 {
    let snap = match crate::metrics::judge::recover(&a.snapshot) {
        Ok(s) => s,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let out = a.snapshot.join("recovered");
    let data = ReportData::from_snapshot(&snap);
    if let Err(e) = write_all(&out, &data, &snap) {
        say_err!("error: cannot write {}: {e}", out.display());
        return exit::USAGE;
    }
    say_err!("recovered snapshot and reports in {}", out.display());
    emit(&render(&data, &snap, a.format), a.out.as_deref())
}

/// Every format into `out` (created).
fn write_all(out: &Path, data: &ReportData, snap: &Snapshot) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            Format::ALL.iter().try_for_each(|f| {
                std::fs::write(out.join(f.file_name()), render(data, snap, *f))
                    .map_err(|e| e.to_string())
            })
        })
}

pub fn report(a: ReportArgs) -> u8 {
    if a.recover {
        return recover(&a);
    }
    let snap = match Snapshot::read(&a.snapshot) {
        Ok(s) => s,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let data = ReportData::from_snapshot(&snap);
    emit(&render(&data, &snap, a.format), a.out.as_deref())
}
