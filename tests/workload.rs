//! Workload models against the embedded reference server: the open model
//! measures a stalling target for every arrival it delayed (no coordinated
//! omission) where the closed model hides it; the pool's dropped and late
//! starts add up exactly; a capacity search finds the knee the server's
//! capacity predicts; `validate` prints every kind of plan.

mod common;

use chatload::metrics::names;
use common::*;

const JOURNEY: &str = r#"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#;

/// A quick, fixed agent: two events 2 ms apart, so any latency above a few
/// milliseconds is the server's stall (or queue), not its work.
const QUICK_SERVER: &str = r#"
[server]
event_delay = ["2ms", "2ms"]
thinking = [0, 0]
tools = [0, 0]
"#;

fn scenario(name: &str, server_extra: &str, workload: &str) -> String {
    format!("version = 1\nname = \"{name}\"\nseed = 3\n{QUICK_SERVER}{server_extra}\n{workload}\n{JOURNEY}")
}

fn p(
    r: &chatload::run::RunResult,
    metric: &str,
    q: fn(&chatload::metrics::snapshot::HistogramData) -> u64,
) -> f64 {
    q(&r.snapshot.histograms[metric]) as f64 / 1e6
}

/// The server stalls every agent event for 1 s once every 10 s. Open model,
/// evenly spaced arrivals for 25 s: the windows at 10 s and 20 s delay the
/// arrivals in them by a uniform (0, 1] s, so with a stalled share
/// f = 2 s / 25 s, p99 ttc = base + (1 - 0.01 / f) x 1 s (0.875 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_measures_a_stall_for_every_arrival_it_delayed() {
    let _g = goose_lock().await;
    let stall = "stall = { every = \"10s\", for = \"1s\" }\n";
    let open = scenario(
        "stall-open",
        stall,
        "[workload]\nmodel = \"open\"\nrate = 60\nduration = \"25s\"\nmax_users = 150\n",
    );
    let (_d, out) = out_dir("open");
    let r = run(parse(&open), None, SECRET, out).await;
    let arrivals = counter(&r, names::STARTS_INTENDED);
    assert_eq!(arrivals, 1500, "60/s for 25 s");
    // The generator kept up: every arrival found a session at once.
    assert_eq!(counter(&r, names::STARTS_DROPPED), 0);
    assert_eq!(counter(&r, names::STARTS_LATE), 0);
    assert_eq!(counter(&r, names::RUNS_STARTED), arrivals);
    assert_eq!(counter(&r, names::RUNS_OK), arrivals);
    let lag_p99 = p(&r, names::SEND_LAG, |h| h.p99_us);
    assert!(
        lag_p99 < 0.05,
        "send lag p99 {lag_p99}s: the generator fell behind"
    );
    assert_eq!(truth(&r, "stall.windows"), 2, "windows at 10 s and 20 s");
    assert!(
        !r.snapshot.notes.iter().any(|n| n.contains("session pool")),
        "every arrival started: {:?}",
        r.snapshot.notes
    );
    let f = 2.0 / 25.0;
    let base = p(&r, names::TTC, |h| h.p50_us);
    let expected = base + (1.0 - 0.01 / f) * 1.0;
    let p99 = p(&r, names::TTC, |h| h.p99_us);
    assert!(
        (p99 - expected).abs() / expected < 0.10,
        "open p99 ttc {p99:.3}s, analytic {expected:.3}s"
    );

    // The same stall under the closed model: 10 users who each wait for their
    // answer meet each stall once, so almost no run shows it. (12 s hold one
    // stall window, at 10 s.)
    let closed = scenario(
        "stall-closed",
        stall,
        "[workload]\nusers = 10\nduration = \"12s\"\n",
    );
    let (_d2, out2) = out_dir("closed");
    let c = run(parse(&closed), None, SECRET, out2).await;
    assert!(truth(&c, "stall.windows") >= 1);
    let closed_p99 = p(&c, names::TTC, |h| h.p99_us);
    assert!(
        closed_p99 < p99 / 4.0,
        "closed p99 {closed_p99:.3}s should hide the stall that the open model shows ({p99:.3}s)"
    );
    eprintln!(
        "stall: open p99 ttc {p99:.3}s (analytic {expected:.3}s), closed p99 ttc {closed_p99:.3}s"
    );
    // The closed model's max still saw a stall: it was measured once per user, not per arrival.
    assert!(p(&c, names::TTC, |h| h.max_us) > 0.5);
    assert_eq!(
        counter(&c, names::STARTS_INTENDED),
        0,
        "no arrivals in the closed model"
    );
}

/// A pool too small for the rate: with `drop` the arrivals that find no free
/// session are counted, and intended = started + dropped exactly; with `queue`
/// every arrival is served, late ones counted, latency from the intended start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_drops_or_queues_and_every_arrival_is_accounted_for() {
    let _g = goose_lock().await;
    // Each run takes about 100 ms; 2 sessions serve about 20/s of the 50/s asked.
    let slow = "[server]\nevent_delay = [\"50ms\", \"50ms\"]\nthinking = [0, 0]\ntools = [0, 0]\n";
    let text = |when: &str| {
        format!("version = 1\nname = \"pool-{when}\"\nseed = 3\n{slow}\n[workload]\nmodel = \"open\"\nrate = 50\nduration = \"3s\"\nmax_users = 2\nwhen_full = \"{when}\"\n{JOURNEY}")
    };
    let (_d, out) = out_dir("drop");
    let r = run(parse(&text("drop")), None, SECRET, out).await;
    let (intended, dropped, started) = (
        counter(&r, names::STARTS_INTENDED),
        counter(&r, names::STARTS_DROPPED),
        counter(&r, names::RUNS_STARTED),
    );
    assert_eq!(intended, 150);
    assert!(dropped > 50, "{dropped} dropped of {intended}");
    assert_eq!(started + dropped, intended);
    assert_eq!(counter(&r, names::STARTS_LATE), 0);
    assert_eq!(counter(&r, names::RUNS_OK), started);
    // The report says the target got less than the plan asked for.
    let note = format!("{dropped} of 150 arrivals dropped");
    assert!(
        r.snapshot.notes.iter().any(|n| n.contains(&note)),
        "{:?}",
        r.snapshot.notes
    );

    let (_d2, out2) = out_dir("queue");
    let q = run(parse(&text("queue")), None, SECRET, out2).await;
    assert_eq!(counter(&q, names::STARTS_INTENDED), 150);
    assert_eq!(counter(&q, names::STARTS_DROPPED), 0);
    assert!(counter(&q, names::STARTS_LATE) > 50);
    assert_eq!(
        counter(&q, names::RUNS_OK),
        150,
        "every queued arrival is served"
    );
    // Queued arrivals waited seconds for a session, and their latency says so.
    assert!(p(&q, names::TTC, |h| h.p99_us) > 2.0);
}

/// The server serves 8 agent runs at once (2 more may wait; beyond that a run
/// is refused with 1011). Stepping 4, 8, 12, ... users: up to 8 every run is
/// served at once; past 10 runs in flight refusals start. The knee must be
/// within one step of 8. (The latency rule is loose on purpose: a debug build
/// on a busy 2-core machine must not move the knee.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_search_finds_the_knee_the_server_capacity_predicts() {
    let _g = goose_lock().await;
    let text = scenario(
        "knee",
        "capacity = { runs = 8, queue = 2 }\n",
        r#"[workload]
model = "closed"
[capacity]
start = 4
step = 4
max = 24
step_duration = "4s"
warmup = "1s"
target = 6
[capacity.slo]
"ttc p95" = "< 500ms"
"close_1011 rate" = "< 1%"
"run_failed rate" = "< 1%"
"#,
    );
    let sc = parse(&text);
    assert_eq!(sc.workload.plan.peak_users(), 24);
    let (_d, out) = out_dir("knee");
    let r = run(sc, None, SECRET, out).await;
    let c = r.snapshot.capacity.as_ref().expect("a capacity section");
    let knee = c.knee.expect("some step held");
    assert!(
        (4.0..=12.0).contains(&knee),
        "knee {knee}, the server's limit is 8"
    );
    let failing = c.first_failing.as_ref().expect("a step broke");
    eprintln!("capacity: {}", c.summary());
    assert!(failing.load > knee);
    assert!(
        c.steps.len() < 6,
        "the search stops at the first failing step"
    );
    for st in &c.steps {
        assert!(
            st.histograms.contains_key(names::TTC),
            "step {} has its own ttc",
            st.index
        );
        assert!(st.counters.get(names::RUNS_STARTED).copied().unwrap_or(0) > 0);
    }
    assert_eq!(
        r.snapshot.verdict, "pass",
        "the knee carries the target of 6 users"
    );
    // Every refusal the server made is a 1011 chatload counted, exactly.
    assert_eq!(
        counter(&r, "closes.1011"),
        truth(&r, "capacity.refused_1011"),
        "refusals"
    );
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Capacity search") && md.contains("(**knee**)"),
        "{md}"
    );
    assert!(md.contains("| ttc p50 | ttc p95 | ttc p99 | run_ok | failures | 1011 rate |"));
}

/// The open model's capacity search: steps of arrival rates against a server
/// that serves 4 agent runs at once (none may wait; one more is refused with
/// 1011). Runs take about 100 ms, so by Little's law (runs in flight = rate x
/// run time) the server holds up to about 40/s: stepping 10, 25, 40, 55/s the
/// knee is within one step of 40/s, and every refusal is a 1011 counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_capacity_search_finds_the_knee_littles_law_predicts() {
    let _g = goose_lock().await;
    let text = format!(
        "version = 1\nname = \"open-knee\"\nseed = 3\n[server]\nevent_delay = [\"50ms\", \"50ms\"]\nthinking = [0, 0]\ntools = [0, 0]\ncapacity = {{ runs = 4, queue = 0 }}\n[workload]\nmodel = \"open\"\nmax_users = 20\n[capacity]\nstart = 10\nstep = 15\nmax = 55\nstep_duration = \"3s\"\nwarmup = \"1s\"\ntarget = 20\n[capacity.slo]\n\"close_1011 rate\" = \"< 1%\"\n\"run_failed rate\" = \"< 1%\"\n{JOURNEY}"
    );
    let (_d, out) = out_dir("open-knee");
    let r = run(parse(&text), None, SECRET, out).await;
    let c = r.snapshot.capacity.as_ref().expect("a capacity section");
    eprintln!("open capacity: {}", c.summary());
    assert_eq!(c.unit, "arrivals_per_s");
    let knee = c.knee.expect("10/s holds");
    let failing = c.first_failing.as_ref().expect("55/s cannot hold");
    assert!(
        (25.0..=40.0).contains(&knee),
        "knee {knee}/s, the limit is about 40/s"
    );
    assert!(failing.load > knee && failing.load <= 55.0);
    assert!(failing
        .failed
        .iter()
        .any(|v| v.threshold.starts_with("close_1011 rate")
            || v.threshold.starts_with("run_failed rate")));
    for st in &c.steps {
        assert!(st.counters.get("starts.intended").copied().unwrap_or(0) > 0);
        assert!(st.histograms.contains_key(names::TTC), "step {}", st.index);
    }
    assert_eq!(
        counter(&r, "closes.1011"),
        truth(&r, "capacity.refused_1011"),
        "refusals"
    );
    assert_eq!(r.snapshot.verdict, "pass", "the knee carries 20/s");
}

/// Two open-model searches that must judge every step they ran: one where
/// every step holds (regression: the pacer ended the engine as the last step
/// ended, and that step went unjudged), one whose session pool is too small
/// for its second step (regression: a step held while its pool dropped most
/// of its arrivals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_capacity_search_judges_its_last_step_and_the_load_it_offered() {
    let _g = goose_lock().await;
    let search = |server: &str, max_users: u64, steps: &str| {
        format!(
            "version = 1\nname = \"open-steps\"\nseed = 3\n[server]\n{server}\nthinking = [0, 0]\ntools = [0, 0]\n[workload]\nmodel = \"open\"\nmax_users = {max_users}\n[capacity]\n{steps}\nstep_duration = \"3s\"\nwarmup = \"1s\"\n[capacity.slo]\n\"run_failed rate\" = \"< 1%\"\n{JOURNEY}"
        )
    };
    let (_d, out) = out_dir("all-hold");
    let quick = "event_delay = [\"2ms\", \"2ms\"]";
    let r = run(
        parse(&search(quick, 20, "start = 5\nstep = 5\nmax = 10")),
        None,
        SECRET,
        out,
    )
    .await;
    let c = r.snapshot.capacity.as_ref().unwrap();
    assert_eq!(c.steps.len(), 2, "{}", c.summary());
    assert!(
        c.reached_max && c.first_failing.is_none(),
        "{}",
        c.summary()
    );
    assert_eq!(c.knee, Some(10.0));
    assert_eq!(r.snapshot.verdict, "pass");

    // Runs of about 100 ms and a pool of 2 sessions carry about 20/s: 30/s
    // drops a third of its arrivals, and that step did not hold.
    let (_d2, out2) = out_dir("small-pool");
    let slow = "event_delay = [\"50ms\", \"50ms\"]";
    let r = run(
        parse(&search(slow, 2, "start = 5\nstep = 25\nmax = 30")),
        None,
        SECRET,
        out2,
    )
    .await;
    let c = r.snapshot.capacity.as_ref().unwrap();
    assert_eq!(c.knee, Some(5.0), "{}", c.summary());
    let f = c.first_failing.as_ref().expect("30/s broke");
    assert_eq!(f.load, 30.0);
    assert_eq!(
        f.failed
            .iter()
            .map(|v| v.threshold.as_str())
            .collect::<Vec<_>>(),
        vec![chatload::metrics::capacity::OFFERED_RULE],
        "only the pool failed: the runs it did start were fine"
    );
    let step2 = &c.steps[1];
    assert!(step2.counters.get("starts.dropped").copied().unwrap_or(0) > 0);
}

#[test]
fn validate_prints_the_plan_of_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "closed",
            "[workload]\nusers = 5\nramp = [{ to = 5, over = \"5s\" }, { hold = \"10s\" }]\n".to_string(),
            vec!["closed model", "0 -> 5", "hold 5", "peak 5 users, 15s"],
        ),
        (
            "open",
            "[workload]\nmodel = \"open\"\nmax_users = 40\narrivals = \"poisson\"\ntime_unit = \"1m\"\nrate = 60\nramp = [{ to = 600, over = \"30s\" }, { hold = \"1m\" }]\n".to_string(),
            vec!["open model", "Poisson (seeded)", "pool of 40", "60/min -> 600/min", "hold 600/min", "intended start"],
        ),
        (
            "capacity",
            "[workload]\nmodel = \"open\"\nmax_users = 100\n[capacity]\nstart = 10\nstep = 10\nmax = 30\nstep_duration = \"20s\"\nwarmup = \"5s\"\ntarget = 25\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n".to_string(),
            vec!["capacity search, open model", "10/s", "20/s", "30/s", "0m05s", "ttc p95 < 2s", "target load 25/s"],
        ),
    ];
    for (name, workload, want) in cases {
        let f = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &f,
            format!("version = 1\nname = \"{name}\"\n{workload}{JOURNEY}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
            .arg("validate")
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for w in want {
            assert!(text.contains(w), "{name}: `{w}` missing from:\n{text}");
        }
    }
}

#[test]
fn the_shipped_example_scenarios_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let open = chatload::scenario::Scenario::load(&root.join("scenarios/open.toml"))
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(open.workload.open().is_some());
    let cap = chatload::scenario::Scenario::load(&root.join("scenarios/capacity.toml"))
        .unwrap_or_else(|d| panic!("{d}"));
    let steps = cap.workload.capacity.as_ref().unwrap().plan.steps();
    assert_eq!(steps.len(), 10);
    assert_eq!(cap.server.capacity.unwrap().runs, 16);
}

#[test]
fn workload_mistakes_are_named_with_their_key() {
    let text = format!(
        "version = 1\nname = \"bad\"\n[workload]\nmodel = \"open\"\nusers = 5\narrivals = \"bursty\"\nrate = 5\n[capacity]\nstart = 10\nstep = 0\nmax = 5\nstep_duration = \"10s\"\nwarmup = \"10s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n[thresholds]\n\"ttc p99\" = \"< 1s\"\n{JOURNEY}"
    );
    let err = chatload::scenario::Scenario::parse(std::path::Path::new("bad.toml"), text)
        .unwrap_err()
        .to_string();
    for want in [
        "workload.users",
        "max_users",
        "workload.arrivals",
        "bursty",
        "workload.rate",
        "capacity.step",
        "capacity.max",
        "capacity.warmup",
        "[capacity.slo]",
    ] {
        assert!(err.contains(want), "`{want}` missing from:\n{err}");
    }
}
