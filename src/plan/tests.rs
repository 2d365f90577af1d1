//! The plan files' table tests: shards, closed stages, the pacer, capacity steps.

use super::*;
use std::time::Duration;

fn plan() -> LoadPlan {
    LoadPlan::from_ramp(
        &[
            RampStep::To {
                to: 20,
                over: Duration::from_secs(10),
            },
            RampStep::Hold(Duration::from_secs(30)),
            RampStep::To {
                to: 0,
                over: Duration::from_secs(5),
            },
        ],
        None,
    )
}

#[test]
fn users_over_time() {
    let p = plan();
    let table = [
        (0, 0),
        (5, 10),
        (10, 20),
        (39, 20),
        (40, 20),
        (44, 4),
        (45, 0),
        (100, 0),
    ];
    for (t, want) in table {
        assert_eq!(p.users_at(Duration::from_secs(t)), want, "at {t}s");
    }
    assert_eq!(p.peak_users(), 20);
    assert_eq!(p.total(), Duration::from_secs(45));
}

#[test]
fn journey_counts_split_exactly_across_shards() {
    // (counts, shards) -> each shard's parts
    type Case = (&'static [u64], u32, &'static [&'static [u64]]);
    let table: [Case; 4] = [
        (&[6, 3, 1], 1, &[&[6, 3, 1]]),
        (&[4, 4, 2], 2, &[&[2, 2, 1], &[2, 2, 1]]),
        (&[6, 3, 1], 2, &[&[3, 2, 0], &[3, 1, 1]]),
        (&[7, 2, 1], 3, &[&[3, 0, 1], &[2, 1, 0], &[2, 1, 0]]),
    ];
    for (counts, n, want) in table {
        let total: u64 = counts.iter().sum();
        let mut sums = vec![0u64; counts.len()];
        for (index, w) in want.iter().enumerate() {
            let shard = Shard {
                index: index as u32,
                count: n,
            };
            let parts = shard.journey_counts(counts);
            assert_eq!(parts, w.to_vec(), "{counts:?} shard {index}/{n}");
            assert_eq!(parts.iter().sum::<u64>(), shard.share(total));
            for (s, p) in sums.iter_mut().zip(&parts) {
                *s += p;
            }
        }
        assert_eq!(sums, counts.to_vec());
    }
}

#[test]
fn shard_shares_add_up_exactly() {
    for total in [0u64, 1, 2, 7, 10, 1000, 1001] {
        for n in 1..=5u32 {
            let sum: u64 = (0..n)
                .map(|i| Shard { index: i, count: n }.share(total))
                .sum();
            assert_eq!(sum, total, "{total} over {n}");
        }
    }
    let mut seen: Vec<usize> = (0..3u32)
        .flat_map(|i| {
            let s = Shard { index: i, count: 3 };
            (0..s.share(10) as usize).map(move |l| s.global_user(l))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "disjoint and complete identities"
    );
    assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
    assert!(
        Shard::parse("3/3").is_err() && Shard::parse("1").is_err() && Shard::parse("0/0").is_err()
    );
    let p = plan().shard(Shard { index: 1, count: 3 });
    assert_eq!(p.goose_test_plan(), "7,10;7,30;0,5");
}

#[test]
fn goose_plan_and_overrides() {
    let p = plan();
    assert_eq!(p.goose_test_plan(), "20,10;20,30;0,5");
    let q = p.with_users(100).with_hold(Duration::from_secs(60));
    assert_eq!(q.goose_test_plan(), "100,10;100,60;0,5");
    let hold_only = LoadPlan::from_ramp(
        &[
            RampStep::To {
                to: 3,
                over: Duration::ZERO,
            },
            RampStep::Hold(Duration::from_secs(2)),
        ],
        None,
    );
    assert_eq!(hold_only.goose_test_plan(), "3,0;3,2;0,0");
    assert_eq!(q.total(), Duration::from_secs(75));
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn near(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) < Duration::from_micros(1)
}

/// (elapsed, arrivals started so far) -> what the pacer says.
fn check(pacer: &mut Pacer, table: &[(Duration, u64, Pace)]) {
    for (elapsed, count, want) in table {
        let got = pacer.next(*elapsed, *count);
        let same = match (got, want) {
            (Pace::Start { intended: a }, Pace::Start { intended: b }) => near(a, *b),
            (Pace::Wait(a), Pace::Wait(b)) => near(a, *b),
            (a, b) => a == *b,
        };
        assert!(
            same,
            "at {elapsed:?} after {count}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn pacer_constant_rate_table() {
    // 10 arrivals per second for 2 s: due at 0, 0.1, ..., 1.9 s.
    let plan = RatePlan::from_steps(10.0, &[(None, Duration::from_secs(2))]);
    let mut p = Pacer::new(plan, Arrivals::Constant, 1, Shard::default());
    check(
        &mut p,
        &[
            (ms(0), 0, Pace::Start { intended: ms(0) }),
            (ms(0), 1, Pace::Wait(ms(100))),
            (ms(40), 1, Pace::Wait(ms(60))),
            (ms(150), 1, Pace::Start { intended: ms(100) }),
            // A generator that fell behind gets the past-due arrivals at
            // once, each with its own intended start.
            (ms(1000), 2, Pace::Start { intended: ms(200) }),
            (ms(1000), 3, Pace::Start { intended: ms(300) }),
            (ms(1950), 19, Pace::Start { intended: ms(1900) }),
            (ms(1950), 20, Pace::Stop),
            (ms(5000), 20, Pace::Stop),
        ],
    );
}

#[test]
fn pacer_ramp_and_shard_tables() {
    // 0 -> 10/s over 2 s: expected(t) = 2.5 t², so arrival k is due at sqrt(k / 2.5).
    let plan = RatePlan::from_steps(0.0, &[(Some(10.0), Duration::from_secs(2))]);
    assert!((plan.expected(2.0) - 10.0).abs() < 1e-9);
    let mut p = Pacer::new(plan.clone(), Arrivals::Constant, 1, Shard::default());
    let due = |k: f64| Duration::from_secs_f64((k / 2.5).sqrt());
    check(
        &mut p,
        &[
            (ms(0), 0, Pace::Start { intended: ms(0) }),
            (ms(0), 1, Pace::Wait(due(1.0))),
            (ms(900), 2, Pace::Start { intended: due(2.0) }),
            (ms(900), 3, Pace::Wait(due(3.0) - ms(900))),
            (ms(2000), 9, Pace::Start { intended: due(9.0) }),
            (ms(2000), 10, Pace::Stop),
        ],
    );
    // Two shards of 10/s each run 5/s, interleaved: shard 1 is due half a gap later.
    let flat = RatePlan::from_steps(10.0, &[(None, Duration::from_secs(1))]);
    let shard = |index| Shard { index, count: 2 };
    let mut s0 = Pacer::new(flat.shard(shard(0)), Arrivals::Constant, 1, shard(0));
    let mut s1 = Pacer::new(flat.shard(shard(1)), Arrivals::Constant, 1, shard(1));
    check(
        &mut s0,
        &[
            (ms(0), 0, Pace::Start { intended: ms(0) }),
            (ms(0), 1, Pace::Wait(ms(200))),
        ],
    );
    check(
        &mut s1,
        &[
            (ms(0), 0, Pace::Wait(ms(100))),
            (ms(100), 0, Pace::Start { intended: ms(100) }),
            (ms(100), 1, Pace::Wait(ms(200))),
            (ms(1000), 5, Pace::Stop),
        ],
    );
    // A hold at rate 0 has no arrivals; the plan resumes after it.
    let gap = RatePlan::from_steps(
        2.0,
        &[
            (None, Duration::from_secs(1)),
            (Some(0.0), Duration::ZERO),
            (None, Duration::from_secs(3)),
            (Some(2.0), Duration::ZERO),
            (None, Duration::from_secs(1)),
        ],
    );
    let mut g = Pacer::new(gap, Arrivals::Constant, 1, Shard::default());
    check(
        &mut g,
        &[
            (ms(600), 1, Pace::Start { intended: ms(500) }),
            (ms(600), 2, Pace::Wait(ms(3400))),
            (ms(4600), 3, Pace::Start { intended: ms(4500) }),
            (ms(4600), 4, Pace::Stop),
        ],
    );
}

/// Kolmogorov-Smirnov distance between `xs` and the Exp(rate) distribution.
fn ks_exponential(xs: &mut [f64], rate: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = 1.0 - (-rate * x).exp();
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn poisson_gaps_fit_the_exponential_distribution() {
    // 100/s for 100 s: about 10,000 arrivals.
    let plan = RatePlan::from_steps(100.0, &[(None, Duration::from_secs(100))]);
    let mut p = Pacer::new(plan.clone(), Arrivals::Poisson, 7, Shard::default());
    let mut times = Vec::new();
    while let Some(t) = p.intended(times.len() as u64) {
        times.push(t.as_secs_f64());
    }
    let n = times.len();
    // The count of a Poisson process: mean 10,000, sd 100.
    assert!((9_700..=10_300).contains(&n), "{n} arrivals");
    let mut gaps: Vec<f64> = std::iter::once(times[0])
        .chain(times.windows(2).map(|w| w[1] - w[0]))
        .collect();
    let mean = gaps.iter().sum::<f64>() / n as f64;
    assert!((mean - 0.01).abs() < 0.0004, "mean gap {mean}");
    // KS critical value at the 1% level: 1.628 / sqrt(n).
    let d = ks_exponential(&mut gaps, 100.0);
    let critical = 1.628 / (n as f64).sqrt();
    assert!(d < critical, "KS distance {d} >= {critical}");
    // The same check must be able to fail: evenly spaced arrivals are not exponential.
    let mut even = vec![0.01; n];
    assert!(ks_exponential(&mut even, 100.0) > critical);
    // Seeded: the same seed gives the same arrivals, another seed others.
    let mut again = Pacer::new(plan.clone(), Arrivals::Poisson, 7, Shard::default());
    let mut other = Pacer::new(plan, Arrivals::Poisson, 8, Shard::default());
    let a: Vec<_> = (0..100).map(|k| again.intended(k)).collect();
    let b: Vec<_> = (0..100).map(|k| other.intended(k)).collect();
    let t: Vec<_> = times[..100]
        .iter()
        .map(|&x| Some(Duration::from_secs_f64(x)))
        .collect();
    assert_eq!(a, t);
    assert_ne!(a, b);
}

/// The plan printout's stage counts add up to its total, and match what
/// the pacer starts (4.5 expected arrivals are 5 starts: at 0, 1, 2, 3, 4).
#[test]
fn arrival_counts_add_up_and_match_the_pacer() {
    let open = |stages: &[RateStep]| OpenModel {
        rate: RatePlan::from_steps(1.5, stages),
        arrivals: Arrivals::Constant,
        max_users: 1,
        when_full: WhenFull::Drop,
        time_unit: Duration::from_secs(1),
        start_tolerance: crate::plan::DEFAULT_START_TOLERANCE,
    };
    let s = Duration::from_secs;
    // 1.5/s for 1 s three times: 1.5 expected per stage, 4.5 in all.
    let cases: [(&[RateStep], &[u64]); 4] = [
        (&[(None, s(1)), (None, s(1)), (None, s(1))], &[2, 1, 2]),
        (&[(None, s(2))], &[3]),
        (&[(Some(10.0), s(2))], &[12]),
        (&[(None, s(2)), (Some(0.0), s(0)), (None, s(5))], &[3, 0, 0]),
    ];
    for (stages, want) in cases {
        let m = open(stages);
        assert_eq!(m.arrival_counts(), want, "{stages:?}");
        let mut pacer = Pacer::new(m.rate.clone(), Arrivals::Constant, 1, Shard::default());
        let mut started = 0;
        while pacer.intended(started).is_some() {
            started += 1;
        }
        assert_eq!(started, want.iter().sum::<u64>(), "{stages:?}");
    }
    let text = open(&[(None, s(1)), (None, s(1)), (None, s(1))]).to_string();
    assert!(text.contains(", 5 arrivals in 3s"), "{text}");
    let poisson = OpenModel {
        arrivals: Arrivals::Poisson,
        ..open(&[(None, s(3))])
    };
    assert!(
        poisson.to_string().contains("about 5 arrivals"),
        "{poisson}"
    );
}

#[test]
fn capacity_steps_and_plans() {
    let cap = CapacityPlan {
        levels: arithmetic_levels(4.0, 4.0, 12.0),
        step_duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        target: None,
        rate_unit: None,
        connect: ConnectRamp::AtOnce,
        mode: SearchMode::Load,
    };
    let steps = cap.steps();
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.index, s.load, s.start_s, s.measure_s, s.end_s, s.at_once))
            .collect::<Vec<_>>(),
        vec![
            (1, 4.0, 0, 2, 10, Some(4)),
            (2, 8.0, 10, 12, 20, Some(4)),
            (3, 12.0, 20, 22, 30, Some(4))
        ]
    );
    assert_eq!(
        cap.closed_plan().goose_test_plan(),
        "4,0;4,10;8,0;8,10;12,0;12,10;0,0"
    );
    let r = cap.rate_plan();
    assert_eq!(r.total(), Duration::from_secs(30));
    assert_eq!(r.rate_at(15.0), 8.0);
    assert!((r.expected(30.0) - 240.0).abs() < 1e-9);
    // Float steps keep `max` itself.
    assert_eq!(arithmetic_levels(0.1, 0.1, 0.3).len(), 3);
    // A list of levels; new users connect at 5/s, apart from the level.
    let listed = CapacityPlan {
        levels: vec![10.0, 20.0, 40.0],
        connect: ConnectRamp::Rate(5.0),
        ..cap.clone()
    };
    assert_eq!(
        listed.closed_plan().goose_test_plan(),
        "10,2;10,8;20,2;20,8;40,4;40,6;0,0"
    );
    assert!(listed.steps().iter().all(|s| s.at_once.is_none()));
    let over = CapacityPlan {
        connect: ConnectRamp::Over(Duration::from_secs(3)),
        ..listed.clone()
    };
    assert_eq!(
        over.closed_plan().goose_test_plan(),
        "10,3;10,7;20,3;20,7;40,3;40,7;0,0"
    );
    // A connect-burst search: each step adds its level as new users at once.
    let burst = CapacityPlan {
        levels: vec![5.0, 10.0, 20.0],
        mode: SearchMode::ConnectBurst,
        ..cap
    };
    assert_eq!(
        burst.closed_plan().goose_test_plan(),
        "5,0;5,10;15,0;15,10;35,0;35,10;0,0"
    );
    assert_eq!(
        burst.steps().iter().map(|s| s.at_once).collect::<Vec<_>>(),
        vec![Some(5), Some(10), Some(20)]
    );
    assert_eq!(burst.show_load(20.0), "20 at once");
    assert_eq!(burst.show_step(&burst.steps()[2]), "20 at once (35 users)");
}
