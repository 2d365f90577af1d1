//! Interval files, written as the run goes: `intervals.hlog` (HdrHistogram
//! interval log: one histogram per metric per interval, tagged by metric,
//! values in microseconds, readable by HdrHistogram's own tools) and
//! `intervals.counters.jsonl` (one JSON line of counter deltas per interval).
//! Both are appended and flushed at every interval, so a killed run keeps all
//! but the interval in progress; [`recover`] rebuilds the run from them.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use super::collector::Interval;
use super::Recorder;

pub const HLOG: &str = "intervals.hlog";
pub const COUNTERS: &str = "intervals.counters.jsonl";

/// The two interval files of a run, open for appending.
pub struct IntervalFiles {
    hlog: File,
    counters: File,
}

impl IntervalFiles {
    /// Creates both files in `dir` and writes the log's header.
    pub fn create(dir: &Path, start: SystemTime) -> io::Result<IntervalFiles> {
        let mut hlog = File::create(dir.join(HLOG))?;
        let counters = File::create(dir.join(COUNTERS))?;
        let mut header = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("chatload interval log: one histogram per metric per interval, tagged by metric; values in microseconds")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut header, &mut ser)?;
        header.extend_from_slice(b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n");
        hlog.write_all(&header)?;
        hlog.flush()?;
        Ok(IntervalFiles { hlog, counters })
    }

    /// Appends one interval to both files and flushes them.
    pub fn append(&mut self, i: &Interval) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        {
            let mut w = IntervalLogWriterBuilder::new().begin_log_with(&mut buf, &mut ser)?;
            for (metric, h) in i.rec.histograms.iter().filter(|(_, h)| !h.is_empty()) {
                let Some(tag) = Tag::new(metric) else {
                    continue;
                };
                w.write_histogram(
                    h,
                    Duration::from_secs_f64(i.start_s),
                    Duration::from_secs_f64(i.length_s),
                    Some(tag),
                )
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            }
        }
        self.hlog.write_all(&buf)?;
        self.hlog.flush()?;
        // Times in milliseconds, as the interval log writes them, so both files name an interval alike.
        let ms = |v: f64| (v * 1000.0).round() / 1000.0;
        let mut line = serde_json::json!({"start_s": ms(i.start_s), "length_s": ms(i.length_s), "counters": i.rec.counters});
        // Counter names can hold a server's text (an unknown frame type).
        crate::auth::redact::redact_json(&mut line);
        self.counters.write_all(format!("{line}\n").as_bytes())?;
        self.counters.flush()
    }
}

/// The interval starting at `start_s` (to the millisecond both files write), added if new.
fn interval_at(intervals: &mut Vec<Interval>, start_s: f64, length_s: f64) -> &mut Interval {
    match intervals
        .iter()
        .position(|i| (i.start_s - start_s).abs() < 6e-4)
    {
        Some(i) => &mut intervals[i],
        None => {
            intervals.push(Interval {
                start_s,
                length_s,
                rec: Recorder::default(),
            });
            intervals.last_mut().expect("just pushed")
        }
    }
}

/// Rebuilds a killed run from its interval files: the whole run and its intervals.
/// A torn last line (the write in progress when the run died) is skipped.
/// The counters file decides which intervals were whole; a missing
/// `intervals.hlog` (lost, or never written because no interval held a
/// sample) leaves the counters, with no histograms; a missing counters file
/// is an error (nothing says which intervals were whole).
pub fn recover(dir: &Path) -> io::Result<(Recorder, Vec<Interval>)> {
    if !dir.join(COUNTERS).is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{COUNTERS} is missing"),
        ));
    }
    let bytes = match std::fs::read(dir.join(HLOG)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut total = Recorder::default();
    let mut intervals: Vec<Interval> = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let Ok(LogEntry::Interval(h)) = entry else {
            continue;
        };
        let Some(tag) = h.tag() else { continue };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram())
        else {
            continue;
        };
        let Ok(hist) = de.deserialize::<u64, _>(&mut io::Cursor::new(raw)) else {
            continue;
        };
        let start_s = h.start_timestamp().as_secs_f64();
        let length_s = h.duration().as_secs_f64();
        let slot = interval_at(&mut intervals, start_s, length_s);
        let mut mine = super::new_histogram();
        if mine.add(&hist).is_err() {
            continue;
        }
        let metric = tag.as_str().to_string();
        slot.rec
            .histograms
            .entry(metric)
            .or_insert_with(super::new_histogram)
            .add(&mine)
            .ok();
    }
    // The counters line is written after an interval's histograms: an interval
    // is whole only when its counters line is there.
    let mut whole: Vec<f64> = Vec::new();
    if let Ok(f) = File::open(dir.join(COUNTERS)) {
        for line in io::BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let start_s = v["start_s"].as_f64().unwrap_or(0.0);
            let length_s = v["length_s"].as_f64().unwrap_or(0.0);
            let Some(counters) = v["counters"].as_object() else {
                continue;
            };
            let slot = interval_at(&mut intervals, start_s, length_s);
            for (k, n) in counters {
                slot.rec.count(k, n.as_u64().unwrap_or(0));
            }
            whole.push(start_s);
        }
    }
    intervals.retain(|i| whole.iter().any(|w| (w - i.start_s).abs() < 6e-4));
    intervals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for i in &intervals {
        total.merge(&i.rec);
    }
    Ok((total, intervals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_alone_are_recovered_without_the_histogram_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IntervalFiles::create(dir.path(), SystemTime::now()).unwrap();
        let mut r = Recorder::default();
        r.record("ttfe", 1000);
        r.count("runs.ok", 7);
        f.append(&Interval {
            start_s: 0.0,
            length_s: 2.0,
            rec: r,
        })
        .unwrap();
        drop(f);
        std::fs::remove_file(dir.path().join(HLOG)).unwrap();
        let (total, intervals) = recover(dir.path()).unwrap();
        assert_eq!(intervals.len(), 1);
        assert_eq!(total.counter("runs.ok"), 7);
        assert!(total.histograms.values().all(|h| h.is_empty()));
        std::fs::remove_file(dir.path().join(COUNTERS)).unwrap();
        assert!(recover(dir.path()).is_err());
    }

    #[test]
    fn intervals_written_are_recovered_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = IntervalFiles::create(dir.path(), SystemTime::now()).unwrap();
        let mut all = Recorder::default();
        for k in 0..3u64 {
            let mut r = Recorder::default();
            for v in 1..=100u64 {
                r.record("ttfe", v * 100 + k);
                r.record("ttc", v * 1000 + k);
            }
            r.count("runs.ok", 100);
            r.count("closes.1011", k);
            all.merge(&r);
            f.append(&Interval {
                start_s: k as f64 * 2.0,
                length_s: 2.0,
                rec: r,
            })
            .unwrap();
        }
        // A torn last line, as a kill in the middle of a write leaves it, and a
        // whole histogram of an interval whose counters line never came.
        let mut late = Recorder::default();
        late.record("ttfe", 5);
        let mut f2 = IntervalFiles {
            hlog: std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(HLOG))
                .unwrap(),
            counters: std::fs::OpenOptions::new()
                .append(true)
                .open("/dev/null")
                .unwrap(),
        };
        f2.append(&Interval {
            start_s: 6.0,
            length_s: 2.0,
            rec: late,
        })
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HLOG))
            .unwrap()
            .write_all(b"Tag=ttfe,8.000,2.000,1.0,HISTFAAA")
            .unwrap();
        let (total, intervals) = recover(dir.path()).unwrap();
        assert_eq!(intervals.len(), 3);
        assert_eq!(total.histograms["ttfe"], all.histograms["ttfe"]);
        assert_eq!(total.histograms["ttc"], all.histograms["ttc"]);
        assert_eq!(total.counters, all.counters);
        assert_eq!(intervals[2].rec.counter("closes.1011"), 2);
    }
}
