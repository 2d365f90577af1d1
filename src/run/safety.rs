//! The run's safety stops, each ending the run ABORTED (exit 3) with every
//! report written and its reason in the notes:
//! - the generator's memory safety limit (`[limits] max_rss`, by default
//!   half of the machine's memory), rather than taking the machine down;
//! - a write of the run's own files that failed (a full disk, a file size
//!   limit): the intervals written before it are kept, and the run stops
//!   rather than measuring what it can no longer keep.
//!
//! Imports: `engine` (its stop handle).

use std::time::Duration;

use crate::engine;

/// How often the resident memory is read.
const EVERY: Duration = Duration::from_millis(200);

/// The limit in bytes: the scenario's, or half of the machine's memory.
pub(super) fn limit(configured: Option<u64>) -> Option<u64> {
    configured.or_else(|| mem_total().map(|t| t / 2))
}

/// The first write of the run's files that failed, set by whoever failed.
pub(super) type WriteFailure = std::sync::Arc<std::sync::OnceLock<String>>;

/// Watches the resident memory (past `limit`, when there is one) and the
/// run's writes; stops the users and says why at the first that fails.
pub(super) async fn watch(
    limit: Option<u64>,
    writes: WriteFailure,
    stop: engine::StopHandle,
) -> Option<String> {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if let Some(e) = writes.get() {
            let why = format!(
                "aborted: a write of the run's files failed ({e}); the intervals written before it are kept and the users were stopped"
            );
            engine::stop_early(&stop, &why);
            return Some(why);
        }
        let (Some(limit), Some(rss)) = (limit, rss_bytes()) else {
            continue;
        };
        if rss > limit {
            let why = format!(
                "aborted: the generator's memory reached {} MiB, over its safety limit of {} MiB ([limits] max_rss); its users were stopped and every report written",
                rss >> 20,
                limit >> 20
            );
            engine::stop_early(&stop, &why);
            return Some(why);
        }
    }
}

/// This process's resident memory, from `/proc/self/statm`.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The machine's memory, from `/proc/meminfo`.
fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_is_half_the_machine() {
        let total = mem_total().expect("/proc/meminfo");
        assert_eq!(limit(None), Some(total / 2));
        assert_eq!(limit(Some(123)), Some(123));
        assert!(rss_bytes().unwrap() > 0);
    }
}
