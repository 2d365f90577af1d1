//! Unit tests of the collector.

use super::*;

#[tokio::test]
async fn rare_histograms_are_ready_and_unreported_until_sampled() {
    let c = Collector::start();
    let s = c.sender();
    s.sample("ttfe", 10);
    let mid = c.peek().await;
    assert!(mid.histograms[crate::names::RECONNECT_TIME].is_empty());
    let snap = super::super::encoding::histograms_of(&mid);
    assert!(!snap.contains_key(crate::names::RECONNECT_TIME), "{snap:?}");
    s.sample(crate::names::RECONNECT_TIME, 5);
    let out = c.finish().await;
    assert_eq!(out.total.histograms[crate::names::RECONNECT_TIME].len(), 1);
    let last = out.intervals.last().unwrap();
    assert!(last.histograms.contains_key(crate::names::RECONNECT_TIME));
    assert!(!last
        .histograms
        .contains_key(crate::names::RECONNECT_BACKOFF));
}

#[tokio::test]
async fn everything_emitted_before_finish_is_kept() {
    let c = Collector::start();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = c.sender();
        tasks.push(tokio::spawn(async move {
            for i in 0..500u64 {
                s.sample("ttfe", t * 1000 + i + 1);
                s.count("runs.ok");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mid = c.peek().await;
    assert_eq!(mid.counter("runs.ok"), 4000);
    let out = c.finish().await;
    assert_eq!(out.total.counter("runs.ok"), 4000);
    assert_eq!(out.total.histograms["ttfe"].len(), 4000);
    // The intervals add up to the whole.
    let mut sum = Recorder::default();
    for i in &out.intervals {
        sum.merge(&i.to_recorder());
    }
    assert_eq!(sum.counter("runs.ok"), 4000);
    assert_eq!(sum.histograms["ttfe"].len(), 4000);
}

#[tokio::test]
async fn phases_keep_only_what_was_emitted_inside_them() {
    let c = Collector::start();
    let s = c.sender();
    s.count("runs.ok");
    s.phase(Some(1));
    s.count("runs.ok");
    s.sample("ttc", 5);
    s.phase(None);
    s.count("runs.ok");
    s.phase(Some(2));
    s.count("runs.ok");
    s.count("runs.ok");
    assert_eq!(s.peek_phase(1).await.counter("runs.ok"), 1);
    assert_eq!(s.peek_phase(2).await.counter("runs.ok"), 2);
    let out = c.finish().await;
    assert_eq!(out.total.counter("runs.ok"), 5);
    assert_eq!(out.phases[&1].histograms["ttc"].len(), 1);
    assert_eq!(out.phases.len(), 2);
}

/// A run's figures go to the step whose measured window was open when
/// it started, however late they come; a run started outside every
/// window (a warm-up) is in no step.
#[tokio::test]
async fn a_run_belongs_to_the_step_it_started_in() {
    let c = Collector::start();
    let s = c.sender();
    s.phase(Some(1));
    s.measure(Some(1));
    let first = s.run_step();
    assert_eq!(first, RunStep(Some(1)));
    s.count_for(first, "runs.started");
    s.phase(Some(2));
    s.measure(None);
    let warm = s.run_step();
    assert_eq!(warm, RunStep(None));
    s.count_for(warm, "runs.started");
    s.count("connections.upgraded");
    s.measure(Some(2));
    s.count_for(first, "runs.ok");
    s.sample_for(first, "ttc", 7);
    s.count_for(warm, "runs.ok");
    assert_eq!(s.peek_phase(1).await.counter("runs.started"), 1);
    let one = s.peek_phase(1).await;
    assert_eq!(
        (one.counter("runs.ok"), one.histograms["ttc"].len()),
        (1, 1)
    );
    let two = s.peek_phase(2).await;
    assert_eq!(two.counter("runs.started") + two.counter("runs.ok"), 0);
    assert_eq!(two.counter("connections.upgraded"), 1);
    assert_eq!(c.finish().await.total.counter("runs.ok"), 2);
}

#[test]
fn roll_up_halves_the_intervals_exactly() {
    let ivs: Vec<IntervalData> = (0..5)
        .map(|k| {
            let mut r = Recorder::default();
            r.record("ttfe", 1000 * (k + 1));
            r.count("runs.ok", k + 1);
            IntervalData::from_interval(&Interval {
                start_s: k as f64,
                length_s: 1.0,
                rec: r,
            })
        })
        .collect();
    let up = roll_up(&ivs);
    assert_eq!(up.len(), 3);
    assert_eq!((up[0].start_s, up[0].length_s), (0.0, 2.0));
    assert_eq!(up[0].counters["runs.ok"], 3);
    assert_eq!(up[0].histograms["ttfe"].count, 2);
    assert_eq!(up[2].counters["runs.ok"], 5);
}

#[tokio::test(start_paused = true)]
async fn observations_fall_into_their_interval() {
    let c = Collector::with_interval(std::time::Duration::from_secs(1));
    let s = c.sender();
    s.count("runs.ok");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    s.count("runs.ok");
    s.count("runs.ok");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let out = c.finish().await;
    let per: Vec<u64> = out
        .intervals
        .iter()
        .map(|i| i.counters.get("runs.ok").copied().unwrap_or(0))
        .collect();
    assert_eq!(per, vec![1, 2]);
    assert!((out.intervals[1].start_s - 1.0).abs() < 1e-6);
}
