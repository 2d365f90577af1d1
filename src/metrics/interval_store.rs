//! Where the collector keeps a run's closed intervals until a checkpoint or
//! the run's end asks for them all: in memory (a collector with no folder:
//! unit tests, the library), or spilled to two unlinked files in the run's
//! folder, so the generator's heap does not grow with the run's length (a
//! 57-minute soak grew the live heap 39% by keeping them; bench/soak_rss.py).
//!
//! Either way the list read back is exactly the one an in-memory list would
//! hold: intervals pushed in order, rolled up pairwise ([`roll_up`])
//! whenever there are more than `MAX_KEPT_INTERVALS`, each written as its
//! serde JSON line (floats round-trip exactly), so snapshots and reports are
//! byte for byte the same. The files are unlinked as soon as they are
//! created (nothing is left behind by a killed run, and the counter names,
//! unredacted as in memory, never stay on disk); a killed run is recovered
//! from the interval files (`interval_log.rs`), as before.

use std::fs::File;
use std::io::{self, BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::encoding::IntervalData;
use super::recorder::Recorder;

/// Most intervals kept (in the snapshot); beyond it neighbours are merged
/// pairwise, halving the resolution. intervals.hlog keeps them all.
pub const MAX_KEPT_INTERVALS: usize = 720;

/// Rolls intervals up pairwise until at most [`MAX_KEPT_INTERVALS`] remain.
pub fn bounded(mut intervals: Vec<IntervalData>) -> Vec<IntervalData> {
    while intervals.len() > MAX_KEPT_INTERVALS {
        intervals = roll_up(&intervals);
    }
    intervals
}

/// Merges neighbouring intervals pairwise (exact: histograms add, counters sum).
pub fn roll_up(intervals: &[IntervalData]) -> Vec<IntervalData> {
    intervals
        .chunks(2)
        .map(|pair| {
            let mut rec = Recorder::default();
            for i in pair {
                rec.merge(&i.to_recorder());
            }
            let last = pair.last().expect("chunks are never empty");
            IntervalData {
                start_s: pair[0].start_s,
                length_s: last.start_s + last.length_s - pair[0].start_s,
                counters: rec.counters.clone(),
                histograms: super::encoding::histograms_of(&rec),
            }
        })
        .collect()
}

/// The closed intervals of a run, in memory or spilled.
pub struct IntervalStore(Kind);

enum Kind {
    Memory(Vec<IntervalData>),
    Spill(Spill),
}

/// Two files, unlinked: `rolled` holds the list as the last roll-up left it,
/// `tail` the intervals closed since, one JSON line each.
struct Spill {
    dir: PathBuf,
    rolled: File,
    rolled_len: usize,
    tail: File,
    tail_len: usize,
    /// A roll-up failed: the next read falls back to memory.
    broken: bool,
}

impl IntervalStore {
    /// Intervals kept in memory.
    pub fn memory() -> Self {
        IntervalStore(Kind::Memory(Vec::new()))
    }

    /// Intervals spilled to unlinked files in `dir`.
    pub fn spill_in(dir: &Path) -> io::Result<Self> {
        Ok(IntervalStore(Kind::Spill(Spill {
            dir: dir.to_path_buf(),
            rolled: unlinked_file(dir)?,
            rolled_len: 0,
            tail: unlinked_file(dir)?,
            tail_len: 0,
            broken: false,
        })))
    }

    /// Adds the interval that just closed, rolling the list up past
    /// `MAX_KEPT_INTERVALS`. A file that cannot be written turns the store
    /// into an in-memory one holding everything it had (no interval is lost).
    pub fn push(&mut self, data: IntervalData) {
        match &mut self.0 {
            Kind::Memory(list) => {
                list.push(data);
                if list.len() > MAX_KEPT_INTERVALS {
                    *list = roll_up(list);
                }
            }
            Kind::Spill(s) => {
                if let Err(data) = s.push(data) {
                    self.fall_back_to_memory(Some(*data));
                }
            }
        }
    }

    /// Every interval kept, in order (a copy read back from the files when spilled).
    pub fn all(&mut self) -> Vec<IntervalData> {
        match &mut self.0 {
            Kind::Memory(list) => list.clone(),
            Kind::Spill(s) => match s.read_all() {
                Ok(list) => list,
                Err(_) => {
                    self.fall_back_to_memory(None);
                    self.all()
                }
            },
        }
    }

    /// Falls back to memory with what the files still give, plus `extra`.
    fn fall_back_to_memory(&mut self, extra: Option<IntervalData>) {
        let mut list = match &mut self.0 {
            Kind::Memory(list) => std::mem::take(list),
            Kind::Spill(s) => s.read_what_can_be_read(),
        };
        list.extend(extra);
        self.0 = Kind::Memory(Vec::new());
        for d in list {
            self.push(d);
        }
    }
}

impl Spill {
    /// Appends `data` to the tail; rolls up (rewriting `rolled`) when the
    /// list passes `MAX_KEPT_INTERVALS`. On a failed write, hands `data` back.
    fn push(&mut self, data: IntervalData) -> Result<(), Box<IntervalData>> {
        if append_line(&mut self.tail, &data).is_err() {
            return Err(Box::new(data));
        }
        self.tail_len += 1;
        if self.rolled_len + self.tail_len > MAX_KEPT_INTERVALS && self.roll().is_err() {
            // The old files are whole, the tail holds `data`: the next read
            // falls back to memory with all of them.
            self.broken = true;
        }
        Ok(())
    }

    /// Rolls the whole list up into a new `rolled` file and empties the tail.
    fn roll(&mut self) -> io::Result<()> {
        let list = roll_up(&self.read_all()?);
        let mut rolled = unlinked_file(&self.dir)?;
        for d in &list {
            append_line(&mut rolled, d)?;
        }
        // The new list is whole before the tail is emptied.
        self.tail.set_len(0)?;
        self.tail.seek(SeekFrom::Start(0))?;
        self.rolled = rolled;
        self.rolled_len = list.len();
        self.tail_len = 0;
        Ok(())
    }

    fn read_all(&mut self) -> io::Result<Vec<IntervalData>> {
        if self.broken {
            return Err(io::Error::other(
                "a roll-up of the spilled intervals failed",
            ));
        }
        let mut list = read_lines(&mut self.rolled, self.rolled_len, false)?;
        list.extend(read_lines(&mut self.tail, self.tail_len, false)?);
        Ok(list)
    }

    /// Every whole line still readable, in order (a torn last line left out).
    fn read_what_can_be_read(&mut self) -> Vec<IntervalData> {
        let mut list = read_lines(&mut self.rolled, self.rolled_len, true).unwrap_or_default();
        list.extend(read_lines(&mut self.tail, usize::MAX, true).unwrap_or_default());
        list
    }
}

/// A new file in `dir`, open for reading and writing, its name already removed.
fn unlinked_file(dir: &Path) -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".intervals-{}-{n}.spill.jsonl", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Where a file cannot be removed while open, it stays until the run ends.
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

fn append_line(f: &mut File, d: &IntervalData) -> io::Result<()> {
    let mut line = serde_json::to_vec(d).map_err(io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)
}

/// Up to `n` lines of `f` read back from its start (`lenient`: up to the
/// first that does not parse); the write position is left at the end.
fn read_lines(f: &mut File, n: usize, lenient: bool) -> io::Result<Vec<IntervalData>> {
    f.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    let mut reader = io::BufReader::new(&*f);
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        match serde_json::from_str(&line) {
            Ok(d) => out.push(d),
            Err(_) if lenient => break,
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    drop(reader);
    f.seek(SeekFrom::End(0))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(k: u64) -> IntervalData {
        let mut r = Recorder::default();
        r.record("ttfe", 1000 + 37 * k);
        r.record("ttc", 5000 + k * k);
        r.count("runs.ok", k + 1);
        IntervalData {
            start_s: k as f64 * 0.1 + 1.0 / 3.0,
            length_s: 0.1 + k as f64 * 1e-7,
            counters: r.counters.clone(),
            histograms: crate::metrics::encoding::histograms_of(&r),
        }
    }

    /// Spilled or in memory, the list read back is the same, through
    /// roll-ups, and no file is left in the folder.
    #[test]
    fn spilled_intervals_read_back_as_the_memory_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = IntervalStore::memory();
        let mut spill = IntervalStore::spill_in(dir.path()).unwrap();
        for k in 0..(MAX_KEPT_INTERVALS as u64 + 420) {
            mem.push(interval(k));
            spill.push(interval(k));
            if k % 300 == 7 {
                let (a, b) = (spill.all(), mem.all());
                assert_eq!(a.len(), b.len(), "after {k}");
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!(x, y, "after {k}");
                }
            }
        }
        let all = spill.all();
        assert!(matches!(spill.0, Kind::Spill(_)));
        assert_eq!(all, mem.all());
        assert!(all.len() <= MAX_KEPT_INTERVALS);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
