//! The generator's memory over a compressed soak, counted by the allocator.
//!
//! This test binary holds this one test, so every byte its counting allocator
//! sees is the run's (the reference server runs in a separate process: its
//! in-memory threads and messages grow by design). Live heap bytes, unlike
//! RSS, do not move with the allocator's arenas and fragmentation: the RSS of
//! a flat run wanders by about 8% from minute to minute here, and a 5% rule
//! on RSS medians failed once in CI on a run that did not grow. The 5% rule on
//! live bytes measured 1.1% on a clean tree; with a leak of 64 bytes per run
//! put into the engine, it measured 8.8% and failed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// The binary's allocator (mimalloc), counting live bytes (`chatload::heap`).
#[global_allocator]
static ALLOCATOR: chatload::heap::Counting = chatload::heap::Counting;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One sample: seconds since the run started, live heap bytes, RSS in KiB.
type Sample = (f64, i64, u64);

/// The lowest value of quarter `from` (0-based) and of the last quarter of `v`.
fn quarter_floors(v: &[f64], from: usize) -> (f64, f64) {
    let q = v.len() / 4;
    let floor = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    (
        floor(&v[from * q..(from + 1) * q]),
        floor(&v[v.len() - q..]),
    )
}

/// A compressed soak: 200 users for two minutes (about 180 runs a second)
/// against a separate server process. Between the first and the last quarter
/// after warm-up, the floor of live heap bytes may not grow by 5%, nor RSS's
/// floor by 50% (a guard against fragmentation that runs away, which live
/// bytes do not see; RSS's floor moved by up to 13% on flat runs).
/// Floors, because a checkpoint (every 10 s here) briefly builds its JSON and
/// bursts of frames come and go: those lift single samples, memory that is
/// kept lifts the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_memory_stays_flat_over_a_compressed_soak() {
    soak(115, "10s", 0).await;
}

/// The same for 10 minutes (about 110,000 runs), with 5-minute intervals so
/// that kept intervals (about 13 KiB each) do not count as growth, to tell a
/// leak too slow for the 2-minute test from the allocator's own growth:
/// `cargo test --test memory -- --ignored --nocapture` (alone: the counter
/// sees the whole process). It compares the third quarter with the last,
/// and still fails when the step below falls inside the third quarter: a
/// second run stepped by 0.75 MiB at 370 s and failed at 6.7%, flat before
/// (+40 KiB from 20 to 290 s) and after (+60 KiB in 230 s). Judging a run
/// with one such step needs a rule that looks past steps; not built yet.
/// Its first run, judged on the first quarter, failed at 7.7% on one step of
/// 0.76 MiB at 220 s (the live heap was flat at 11.26 MiB before it, and grew
/// by 0.11 MiB in the 370 s after it, 70 KiB of that the 5-minute interval
/// closing). That is most likely a metric recorded for the first time: its
/// histograms (about 184 KiB each at 1 µs to 1 h, 3 digits) are allocated
/// whole, in the run's and the interval's recorders. A leak grows in every
/// quarter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10 minutes"]
async fn generator_memory_stays_flat_over_a_long_soak() {
    soak(600, "5m", 2).await;
}

/// Ramps 200 users over 10 s, holds them `hold_s` seconds with intervals of
/// `interval`, and judges the steady part, from 20 s to 5 s before the end:
/// the floor of quarter `from` against that of the last.
async fn soak(hold_s: u64, interval: &str, from: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = serve_process("");
    let scenario = parse(&format!(
        r#"
version = 1
name = "soak"
[output]
interval = "{interval}"
checkpoint = "10s"
[workload]
users = 200
ramp = [{{ to = 200, over = "10s" }}, {{ hold = "{hold_s}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "1s"
"#
    ));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples: Vec<Sample> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push((
                    t0.elapsed().as_secs_f64(),
                    chatload::heap::live_bytes() as i64,
                    rss_kib(),
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        })
    };
    let req = request(
        scenario,
        Some(format!("ws://127.0.0.1:{port}/ws")),
        SECRET,
        dir.path().join("out"),
    );
    let result = chatload::run::run(req).await;
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    server.stop();
    let r = result.unwrap_or_else(|e| panic!("the soak failed: {e}"));
    assert!(
        r.snapshot.counters["runs.ok"] > 10_000,
        "{}",
        r.snapshot.counters["runs.ok"]
    );
    assert_eq!(
        r.snapshot.counters.get("runs.failed").copied().unwrap_or(0),
        0
    );

    // Warm-up: the ramp (10 s) and the first interval after it. Each closed
    // interval is kept (compressed, about 9 KiB here, up to 720 of them):
    // growth by design, which 10 s intervals keep to about 1% over the test.
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|(t, _, _)| *t >= 20.0 && *t <= (hold_s + 5) as f64)
        .collect();
    assert!(steady.len() >= 150, "too few samples: {samples:?}");
    let heap: Vec<f64> = steady.iter().map(|s| s.1 as f64).collect();
    let rss: Vec<f64> = steady.iter().map(|s| s.2 as f64).collect();
    let (h0, h1) = quarter_floors(&heap, from);
    let (r0, r1) = quarter_floors(&rss, from);
    let (heap_growth, rss_growth) = ((h1 - h0) / h0, (r1 - r0) / r0);
    eprintln!(
        "live heap floor: quarter {} {:.0} KiB, last quarter {:.0} KiB, growth {:.2}%; \
         RSS floor: {r0:.0} KiB, {r1:.0} KiB, growth {:.2}%; runs ok {}",
        from + 1,
        h0 / 1024.0,
        h1 / 1024.0,
        heap_growth * 100.0,
        rss_growth * 100.0,
        r.snapshot.counters["runs.ok"]
    );
    let every_10s: Vec<_> = samples.iter().step_by(20).collect();
    assert!(
        heap_growth < 0.05,
        "live heap grew {:.1}%: {every_10s:?}",
        heap_growth * 100.0
    );
    assert!(
        rss_growth < 0.50,
        "RSS grew {:.1}%: {every_10s:?}",
        rss_growth * 100.0
    );
}
