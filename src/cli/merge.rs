//! `chatload merge`: merge the snapshots of `run --shard I/N` processes and
//! write the merged reports. Glue: the merge and its judging are `metrics/`.

use std::path::PathBuf;

use clap::Args;

use crate::metrics::Snapshot;
use crate::report::{render, Format, ReportData};

use super::exit;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard snapshots (snapshot.json of each `run --shard I/N`).
    #[arg(required = true)]
    pub snapshots: Vec<PathBuf>,
    /// Folder for the merged snapshot and reports.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn main(a: MergeArgs) -> u8 {
    let mut snaps = Vec::new();
    for p in &a.snapshots {
        match Snapshot::read(p) {
            Ok(s) => snaps.push(s),
            Err(e) => {
                say_err!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    let mut merged = match crate::metrics::merge::merge(&snaps) {
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
    merged
        .notes
        .extend(crate::report::console::auth_note(&merged.counters));
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
