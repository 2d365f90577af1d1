//! The comparison's calibration on seeded synthetic runs: lognormal
//! latencies recorded into per-interval recorders, each interval slowed or
//! sped by its own factor (a busy machine), so the spread between intervals
//! is real and an independent-samples test would be fooled by it.
//!
//! The calibration tests set every tolerance to `+0%`, so they measure the
//! statistics alone (a tolerance above zero only makes flags rarer).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::resample::{Method, RunData};
use super::same::{comparability, scenario_hash, Identity};
use super::significance::{holm, Settings};
use super::*;
use crate::metrics::recorder::Recorder;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A synthetic run: `k` intervals of `per` ttfe samples, lognormal with
/// median `median_ms` and sigma 0.5, each interval scaled by exp(N(0, 0.05)),
/// every run ok.
fn run(seed: u64, median_ms: f64, k: usize, per: usize) -> RunData {
    run_with(seed, median_ms, k, per, true)
}

/// The same run without counters, its intervals as plain values (what
/// HDR would iterate): the 1,000-pair tests stay fast in a debug build.
fn run_values(seed: u64, median_ms: f64, k: usize, per: usize) -> RunData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut whole = Recorder::default();
    let mut intervals = Vec::with_capacity(k);
    for _ in 0..k {
        let busy = (0.05 * normal(&mut rng)).exp();
        let samples: Vec<(&str, u64)> = (0..per)
            .map(|_| {
                let us = (median_ms * 1000.0 * busy * (0.5 * normal(&mut rng)).exp()) as u64;
                whole.record("ttfe", us);
                ("ttfe", us)
            })
            .collect();
        intervals.push(samples);
    }
    RunData::from_values(&format!("run-{seed}"), whole, intervals)
}

fn run_with(seed: u64, median_ms: f64, k: usize, per: usize, counters: bool) -> RunData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut whole = Recorder::default();
    let intervals: Vec<Recorder> = (0..k)
        .map(|_| {
            let busy = (0.05 * normal(&mut rng)).exp();
            let mut r = Recorder::default();
            for _ in 0..per {
                let us = median_ms * 1000.0 * busy * (0.5 * normal(&mut rng)).exp();
                r.record("ttfe", us as u64);
                whole.record("ttfe", us as u64);
            }
            if counters {
                for rec in [&mut r, &mut whole] {
                    rec.count("runs.started", per as u64);
                    rec.count("runs.ok", per as u64);
                }
            }
            r
        })
        .collect();
    RunData::new(&format!("run-{seed}"), whole, intervals.into_iter())
}

fn zero_tolerances() -> Vec<Tolerance> {
    ["ttfe p50", "ttfe p95", "ttfe p99"]
        .iter()
        .map(|k| Tolerance::parse(k, "+0%").unwrap())
        .collect()
}

/// The share of `pairs` seeded pairs flagged as regressed (on two threads).
fn flagged_share(pairs: u64, slowdown: f64, k: usize, per: usize, resamples: usize) -> f64 {
    let settings = Settings {
        resamples,
        ..Settings::default()
    };
    let tolerances = zero_tolerances();
    let flagged = |i: u64| {
        let base = run_values(2 * i + 1, 20.0, k, per);
        let new = run_values(2 * i + 2, 20.0 * slowdown, k, per);
        compare_runs(&base, &new, &tolerances, &settings).regressed
    };
    let count = |range: std::ops::Range<u64>| range.filter(|i| flagged(*i)).count();
    let half = pairs / 2;
    let flagged = std::thread::scope(|s| {
        let other = s.spawn(|| count(half..pairs));
        count(0..half) + other.join().expect("no panic")
    });
    flagged as f64 / pairs as f64
}

#[test]
fn identical_distributions_are_flagged_at_most_at_one_and_a_half_times_the_nominal_rate() {
    // 1,000 pairs of 20 intervals x 60 samples; 200 resamples keep a debug build fast.
    let share = flagged_share(1000, 1.0, 20, 60, 200);
    eprintln!(
        "identical distributions flagged in {:.1}% of 1000 pairs",
        share * 100.0
    );
    assert!(share <= 1.5 * 0.05, "flagged {share}");
}

#[test]
fn a_twenty_percent_slowdown_at_n_1000_is_flagged_in_99_percent_of_pairs() {
    let share = flagged_share(300, 1.2, 20, 60, 200);
    eprintln!(
        "a 20% slowdown flagged in {:.1}% of 300 pairs",
        share * 100.0
    );
    assert!(share >= 0.99, "flagged {share}");
}

#[test]
#[ignore = "about 2 minutes: cargo test --lib metrics::compare -- --ignored"]
fn calibration_at_full_resamples() {
    let fp = flagged_share(1000, 1.0, 20, 60, 1000);
    let power = flagged_share(1000, 1.2, 20, 60, 1000);
    eprintln!(
        "1000 resamples: identical {:.1}%, 20% slower {:.1}%",
        fp * 100.0,
        power * 100.0
    );
    assert!(fp <= 0.075 && power >= 0.99);
}

#[test]
fn a_percentile_on_too_few_samples_is_insufficient_data_and_never_flagged() {
    // 500 samples per run: p99 needs 1,000; p50 (20) and p95 (200) are judged.
    let (base, new) = (run(1, 20.0, 10, 50), run(2, 60.0, 10, 50));
    let c = compare_runs(&base, &new, &zero_tolerances(), &Settings::default());
    let row = |n: &str| c.rows.iter().find(|r| r.name == n).unwrap();
    assert_eq!(row("ttfe p99").status(), RowStatus::InsufficientData);
    assert!(
        row("ttfe p99").detail.contains("needs 1000"),
        "{:?}",
        row("ttfe p99")
    );
    assert_eq!(row("ttfe p95").status(), RowStatus::Regressed);
    assert_eq!(row("ttfe p50").status(), RowStatus::Regressed);
    assert_eq!(samples_needed(0.5), 20);
    assert_eq!(samples_needed(0.95), 200);
    assert_eq!(samples_needed(0.99), 1000);
    // Rows come regressions first.
    assert_eq!(c.rows[0].status(), RowStatus::Regressed);
    assert_eq!(c.verdict(), CompareVerdict::Regressed);
}

#[test]
fn a_change_beyond_tolerance_that_noise_explains_is_inconclusive() {
    // 40 samples per run: p50 is judged, and a 10% change is well inside the noise.
    let (base, new) = (run(5, 20.0, 8, 5), run(6, 22.0, 8, 5));
    let tol = [Tolerance::parse("ttfe p50", "+0%").unwrap()];
    let c = compare_runs(&base, &new, &tol, &Settings::default());
    let p50 = c.rows.iter().find(|r| r.name == "ttfe p50").unwrap();
    if p50.new > p50.base {
        assert_eq!(p50.status(), RowStatus::Inconclusive, "{p50:?}");
        assert_eq!(c.verdict(), CompareVerdict::Inconclusive);
        assert!(!c.regressed);
    }
    assert!(p50.interval.is_some() && p50.interval_text.starts_with('['));
}

#[test]
fn runs_with_few_intervals_fall_back_to_independent_samples() {
    let tol = zero_tolerances();
    let (base, same) = (run(11, 20.0, 1, 2000), run(12, 20.0, 1, 2000));
    assert_eq!(base.method, Method::Samples);
    let slow = run(13, 24.0, 1, 2000);
    assert!(compare_runs(&base, &slow, &tol, &Settings::default()).regressed);
    let c = compare_runs(&base, &same, &tol, &Settings::default());
    assert!(c.method.contains("independent samples"), "{}", c.method);
    assert_eq!(run(1, 20.0, 5, 10).method, Method::Intervals);
    assert_eq!(run(1, 20.0, 4, 10).method, Method::Samples);
}

#[test]
fn the_same_snapshots_give_the_same_comparison() {
    let (base, new) = (run(21, 20.0, 12, 100), run(22, 21.0, 12, 100));
    let s = Settings::default();
    let tol = Tolerance::defaults();
    assert_eq!(
        compare_runs(&base, &new, &tol, &s),
        compare_runs(&base, &new, &tol, &s)
    );
}

#[test]
fn many_intervals_are_coalesced_into_blocks() {
    let r = run(3, 20.0, 120, 5);
    assert_eq!(
        (r.method, r.intervals, r.blocks()),
        (Method::Intervals, 120, 40)
    );
}

#[test]
fn holm_adjusts_step_down() {
    let adj = holm(&[0.01, 0.04, 0.03, 0.2]);
    // Sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, made monotone.
    let want = [0.04, 0.09, 0.09, 0.2];
    for (a, w) in adj.iter().zip(want) {
        assert!((a - w).abs() < 1e-12, "{adj:?}");
    }
}

#[test]
fn rows_written_before_statuses_still_read() {
    let old = r#"{"base_run":"a","new_run":"b","regressed":true,"rows":[
        {"name":"ttfe p95","base":1.0,"new":2.0,"base_text":"1µs","new_text":"2µs",
         "delta_text":"+100.0%","tolerance":"+10%","regressed":true}]}"#;
    let c: Comparison = serde_json::from_str(old).unwrap();
    assert_eq!(c.rows[0].status(), RowStatus::Regressed);
    assert_eq!(c.verdict(), CompareVerdict::Regressed);
}

#[test]
fn the_scenario_hash_covers_journey_and_profile_in_any_key_order() {
    let a = serde_json::json!({"name": "x", "journey": [{"step": "connect", "timeout": "5s"}], "profile": {"a": 1, "b": 2}});
    let b = serde_json::json!({"profile": {"b": 2, "a": 1}, "journey": [{"timeout": "5s", "step": "connect"}], "name": "y"});
    let c = serde_json::json!({"name": "x", "journey": [{"step": "connect", "timeout": "6s"}], "profile": {"a": 1, "b": 2}});
    assert_eq!(scenario_hash(&a), scenario_hash(&b));
    assert_ne!(scenario_hash(&a), scenario_hash(&c));
    // A step's tags label series; they do not make another scenario (a
    // message field named `tags` does).
    let tagged = serde_json::json!({"journey": [{"step": "connect", "timeout": "5s", "tags": {"phase": "p"}}], "profile": {"a": 1, "b": 2}});
    assert_eq!(scenario_hash(&a), scenario_hash(&tagged));
    let m = |t: &str| serde_json::json!({"journey": [{"step": "send", "message": {"tags": t}}]});
    assert_ne!(scenario_hash(&m("a")), scenario_hash(&m("b")));
    let id = |name, scenario| Identity {
        run_id: "r",
        scenario_name: name,
        scenario_hash: None,
        scenario,
        target: "ws://t",
        embedded: false,
        users: 10,
    };
    assert!(comparability(id("x", &a), id("x", &b)).refused.is_empty());
    assert_eq!(comparability(id("x", &a), id("x", &c)).refused.len(), 1);
    let names = comparability(id("x", &a), id("z", &a)).refused;
    assert!(
        names[0].contains("`x`") && names[0].contains("`z`"),
        "{names:?}"
    );
    let mut other = id("x", &a);
    other.users = 20;
    assert_eq!(comparability(id("x", &a), other).warnings.len(), 1);
}

#[test]
fn interval_recorders_and_plain_values_give_the_same_comparison() {
    let tol = zero_tolerances();
    let s = Settings::default();
    let (a, b) = (
        run_with(31, 20.0, 8, 150, false),
        run_with(32, 23.0, 8, 150, false),
    );
    let (x, y) = (run_values(31, 20.0, 8, 150), run_values(32, 23.0, 8, 150));
    assert_eq!(
        compare_runs(&a, &b, &tol, &s),
        compare_runs(&x, &y, &tol, &s)
    );
}
