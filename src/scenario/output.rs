//! `[output]`: where reports go, and how often over-time data and the
//! snapshot are written. Imports only the `doc` readers.

use std::path::PathBuf;
use std::time::Duration;

use super::doc::Obj;

/// `[output]` as read (defaults where not written).
pub(super) struct Output {
    pub(super) dir: PathBuf,
    pub(super) interval: Option<Duration>,
    pub(super) checkpoint: Duration,
}

pub(super) fn read_output(o: &Obj<'_>) -> Output {
    let mut interval = None;
    let mut checkpoint = Duration::from_secs(60);
    let output_dir = match o.obj("output") {
        Some(out) => {
            let d = out.str("dir").map(PathBuf::from);
            if let Some(n) = out.get("interval") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(100) => interval = Some(d),
                    Some(_) => n.error("must be at least 100ms"),
                    None => {}
                }
            }
            if let Some(n) = out.get("checkpoint") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(200) => checkpoint = d,
                    Some(_) => n.error("must be at least 200ms"),
                    None => {}
                }
            }
            out.finish();
            d.unwrap_or_else(|| PathBuf::from("reports"))
        }
        None => PathBuf::from("reports"),
    };
    Output {
        dir: output_dir,
        interval,
        checkpoint,
    }
}
