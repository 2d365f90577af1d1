//! Capacity searches a planner can put in a plan, against the embedded
//! reference server: runs belong to the step they started in (closed users
//! in lock-step across step boundaries never read above 100% ok), the
//! connect/auth capacity and the agent-run capacity are found apart in one
//! search against a server with a connect limit and a run limit, and
//! `validate` refuses connect SLOs no step can measure.

mod common;

use chatload::metrics::capacity_sides::Side;
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

/// Closed users with no think time run in lock-step: they start together
/// and their runs (about 1.2 s) straddle every step boundary (3 s steps,
/// no warm-up). Nothing fails, so every step's `run_ok rate` is exactly
/// 100%: the runs a step counts as ok are the runs that started in it.
/// (Counted by the time they ended, a step read 100.6%, and a step whose
/// window closed with runs still in flight read below 99% with no failure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_step_runs_across_step_boundaries_read_exactly_100_percent_ok() {
    let _g = goose_lock().await;
    let text = format!(
        r#"version = 1
name = "lock-step"
seed = 9
[server]
event_delay = ["400ms", "400ms"]
thinking = [1, 1]
tools = [0, 0]
[workload]
model = "closed"
[capacity]
levels = [6, 12, 18]
step_duration = "3s"
[capacity.slo]
"run_ok rate" = "> 99%"
{JOURNEY}"#
    );
    let (_d, out) = out_dir("lock-step");
    let r = run(parse(&text), None, SECRET, out).await;
    let c = r.snapshot.capacity.as_ref().expect("a capacity section");
    assert_eq!(counter(&r, names::RUNS_FAILED), 0, "no run failed");
    assert_eq!(c.steps.len(), 3, "{}", c.summary());
    for st in &c.steps {
        let n = |k: &str| st.counters.get(k).copied().unwrap_or(0);
        assert!(n(names::RUNS_STARTED) > 0, "step {}", st.index);
        assert_eq!(
            n(names::RUNS_OK),
            n(names::RUNS_STARTED),
            "step {}: every run that started in it ended ok in it",
            st.index
        );
        let v = &st.slo[0];
        assert_eq!(
            v.observed,
            Some(1.0),
            "step {}: {}",
            st.index,
            v.observed_text
        );
        assert!(st.held, "step {}", st.index);
        let f = st.figures();
        assert_eq!(f.runs.n, f.runs.of);
        // The window is the step's 3 s (a safety bound, not a timing).
        assert!(f.window_s.is_some_and(|w| w > 1.0 && w < 9.0), "{f:?}");
    }
    assert_eq!(c.knee, Some(18.0));
    assert!(
        c.summary().contains("at least 18 users"),
        "no step broke: the knee is a lower bound: {}",
        c.summary()
    );
}

/// A server that admits 15 new sockets per second (beyond that: the
/// auth-failure frame and 1011 before ready, as the platform's overwhelmed
/// auth service does) and serves 60 agent runs at once (beyond that: 1011
/// during the run). A connect-burst search opens 5, 10, 15, 20, 25, 30
/// sockets at once (5, 15, 30, 50, 75, 105 users in lock-step): the
/// connect side breaks at 20 at once and the run side at 75 users, in one
/// search; each knee is within one step of its limit, the report says the
/// connect side broke first, and every refusal is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_search_finds_the_connect_and_the_run_capacity_apart() {
    let _g = goose_lock().await;
    let text = format!(
        r#"version = 1
name = "two-capacities"
seed = 11
[server]
event_delay = ["100ms", "100ms"]
thinking = [1, 1]
tools = [0, 0]
capacity = {{ runs = 60, queue = 0 }}
connect_limit = "15/s"
[workload]
model = "closed"
[capacity]
mode = "connect_burst"
levels = [5, 10, 15, 20, 25, 30]
step_duration = "4s"
warmup = "1s"
[capacity.slo]
"auth_failure rate" = "< 1%"
"run_failed rate" = "< 1%"
{JOURNEY}"#
    );
    let sc = parse(&text);
    let plan = sc.workload.capacity.as_ref().unwrap().plan.clone();
    let (_d, out) = out_dir("two-capacities");
    let r = run(sc, None, SECRET, out).await;
    let c = r.snapshot.capacity.as_ref().expect("a capacity section");
    eprintln!("{}", c.summary());
    let side = |s: Side| c.sides.iter().find(|k| k.side == s).expect("both sides");
    let connect = side(Side::Connect);
    let runs = side(Side::Run);
    // Connect: bursts of 15 fit the limit of 15/s, 20 do not.
    let knee = connect.knee.expect("the first bursts fit");
    assert!(
        (10.0..=15.0).contains(&knee),
        "connect knee {knee} at once: {}",
        c.summary()
    );
    let broke = connect.broke_at.expect("the connect side broke") as usize;
    assert!(plan.levels[broke - 1] > 15.0 && plan.levels[broke - 1] <= 20.0);
    // Runs: the users of each step run in lock-step; 60 at once fit.
    let users = |load: f64| plan.users_at(plan.levels.iter().position(|l| *l == load).unwrap());
    let run_knee = users(runs.knee.expect("the first steps carry their runs"));
    assert!(
        (30..=60).contains(&run_knee),
        "run knee {run_knee} users: {}",
        c.summary()
    );
    let run_broke = runs.broke_at.expect("the run side broke") as usize;
    assert!(
        (61..=105).contains(&plan.users_at(run_broke - 1)),
        "{}",
        c.summary()
    );
    assert!(broke < run_broke, "{}", c.summary());
    assert_eq!(c.first_broke, Some(Side::Connect));
    assert!(
        c.summary()
            .contains("the connect/auth capacity broke first"),
        "{}",
        c.summary()
    );
    // Every refusal counted exactly: the connect limit's as auth failures
    // (with their 1011s left out of the close rates), the run limit's as
    // 1011s during runs.
    let refused = truth(&r, "connect_limit.refused_1011");
    assert!(refused > 0);
    assert_eq!(counter(&r, names::TOKENS_REJECTED), refused);
    assert_eq!(counter(&r, "closes_auth.1011"), refused);
    assert_eq!(
        counter(&r, "closes.1011"),
        refused + truth(&r, "capacity.refused_1011")
    );
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(md.contains("connect/auth capacity broke first"), "{md}");
    assert!(md.contains("| auth failures |"), "{md}");
}

/// `ws_ready p95` is judged on the sockets each step opens: a closed search
/// whose steps add 10 users, or any open-model search (its pool connects
/// before the first step), cannot judge it, and `validate` says why at
/// the rule's key. A connect-burst search of 200 sockets at once can.
#[test]
fn validate_refuses_connect_slos_no_step_can_measure() {
    let search = |workload: &str, steps: &str| {
        format!(
            "version = 1\nname = \"ready\"\n[workload]\n{workload}\n[capacity]\n{steps}\nstep_duration = \"10s\"\nwarmup = \"2s\"\n[capacity.slo]\n\"ws_ready p95\" = \"< 3s\"\n\"ttc p95\" = \"< 2s\"\n{JOURNEY}"
        )
    };
    let err = |text: String| {
        chatload::scenario::Scenario::parse(std::path::Path::new("ready.toml"), text)
            .unwrap_err()
            .to_string()
    };
    let closed = err(search("model = \"closed\"", "levels = [200, 210, 400]"));
    assert!(closed.contains("capacity.slo.\"ws_ready p95\""), "{closed}");
    assert!(closed.contains("step 2 (210 users) opens 10"), "{closed}");
    assert!(
        closed.contains("needs 200 samples in every step"),
        "{closed}"
    );
    let open = err(search(
        "model = \"open\"\nmax_users = 50",
        "start = 10\nstep = 10\nmax = 30",
    ));
    assert!(open.contains("session pool"), "{open}");
    let ok = chatload::scenario::Scenario::parse(
        std::path::Path::new("ready.toml"),
        search(
            "model = \"closed\"",
            "mode = \"connect_burst\"\nlevels = [200, 300]",
        ),
    );
    assert!(ok.is_ok(), "{}", ok.unwrap_err());
}

/// The step plan's own mistakes are named at their key, all at once.
#[test]
fn step_plan_mistakes_are_named_with_their_key() {
    let text = format!(
        "version = 1\nname = \"bad\"\n[workload]\nmodel = \"closed\"\n[capacity]\nlevels = [10, 0, 2.5]\nstart = 5\nstep_duration = \"10s\"\nmode = \"fast\"\nconnect_rate = 1\nconnect_over = \"5s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{JOURNEY}"
    );
    let err = chatload::scenario::Scenario::parse(std::path::Path::new("bad.toml"), text)
        .unwrap_err()
        .to_string();
    for want in [
        "`capacity.start`: `levels` lists the steps",
        "`capacity.levels[1]`: must be above 0",
        "`capacity.levels[2]`: the closed model steps whole users",
        "unknown mode `fast`",
        "`capacity.connect_over`: give `connect_rate` or `connect_over`, not both",
    ] {
        assert!(err.contains(want), "`{want}` missing from:\n{err}");
    }
    // A ramp slower than a step never reaches the step's level.
    let slow = format!(
        "version = 1\nname = \"slow\"\n[workload]\nmodel = \"closed\"\n[capacity]\nlevels = [10, 40]\nstep_duration = \"10s\"\nconnect_rate = 2\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{JOURNEY}"
    );
    let err = chatload::scenario::Scenario::parse(std::path::Path::new("slow.toml"), slow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("step 2 (40 users) would still be connecting its new users when it ends (15s of a 10s step)"), "{err}");
}

/// A target above the plan's highest step could never pass: `validate` (and
/// `run`, which shares the checks) refuses it at `target`, with the fix for
/// the plan's kind.
#[test]
fn a_target_above_the_highest_step_is_refused_at_target() {
    let parse = |plan: &str| {
        let text = format!(
            "version = 1\nname = \"t\"\n[workload]\nmodel = \"closed\"\n[capacity]\n{plan}\nstep_duration = \"10s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{JOURNEY}"
        );
        chatload::scenario::Scenario::parse(std::path::Path::new("t.toml"), text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let listed = parse("levels = [2, 4]\ntarget = 12").unwrap_err();
    assert!(
        listed.contains("t.toml:7:")
            && listed.contains("`capacity.target`")
            && listed.contains("12 is above the plan's highest step")
            && listed.contains("highest of `levels` is 4"),
        "{listed}"
    );
    let stepped = parse("start = 2\nstep = 2\nmax = 5\ntarget = 6").unwrap_err();
    assert!(
        stepped.contains("`capacity.target`")
            && stepped.contains("(`max`) is 4")
            && stepped.contains("raise `max`"),
        "{stepped}"
    );
    parse("levels = [2, 4]\ntarget = 4").unwrap();
    parse("start = 2\nstep = 2\nmax = 6\ntarget = 3").unwrap();
}

/// The open model's session pool connects before the plan's clock starts:
/// 30 sessions at once against a server that admits 15 new sockets per
/// second. Every refusal (an auth failure, 1011 before ready) is counted in
/// a step (the first), none outside them: a search whose every step
/// reads 0 beside a run total that does not is what this prevents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_before_the_first_step_count_in_it() {
    let _g = goose_lock().await;
    let text = format!(
        r#"version = 1
name = "open-pool"
seed = 5
[server]
event_delay = ["2ms", "2ms"]
thinking = [0, 0]
tools = [0, 0]
connect_limit = "15/s"
[workload]
model = "open"
max_users = 30
[capacity]
levels = [5, 10]
step_duration = "3s"
warmup = "1s"
[capacity.slo]
"auth_failure rate" = "< 1%"
"run_failed rate" = "< 1%"
{JOURNEY}"#
    );
    let (_d, out) = out_dir("open-pool");
    let r = run(parse(&text), None, SECRET, out).await;
    let c = r.snapshot.capacity.as_ref().expect("a capacity section");
    let refused = truth(&r, "connect_limit.refused_1011");
    assert!(refused > 0, "30 at once, 15 admitted per second");
    assert_eq!(counter(&r, names::TOKENS_REJECTED), refused);
    let in_steps: u64 = c
        .steps
        .iter()
        .map(|s| s.counters.get(names::TOKENS_REJECTED).copied().unwrap_or(0))
        .sum();
    assert_eq!(in_steps, refused, "{}", c.summary());
    let first = &c.steps[0];
    assert!(!first.held, "step 1 carries the pool's auth failures");
    assert_eq!(c.sides[0].broke_at, Some(1), "{}", c.summary());
}
