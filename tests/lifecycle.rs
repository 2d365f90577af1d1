//! Token lifecycles and reconnects against the embedded reference server:
//! tokens from a login endpoint refreshed before they expire on a server that
//! closes sockets whose token expired; tokens from a file; a server dropping
//! sockets mid-run, with every dropped run counted and every user back after
//! a back-off.

mod common;

use std::time::Duration;

use chatload::auth::{Minter, Secret};
use chatload::run::RunError;
use chatload::scenario::Reconnect;
use common::*;

const JOURNEY: &str = r#"
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#;

#[test]
fn the_back_off_grows_exponentially_within_its_jitter_and_cap() {
    let r = Reconnect {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(5),
        multiplier: 2.0,
        jitter: 0.2,
        attempts: 10,
        ..Reconnect::default()
    };
    let ms = |d: Duration| d.as_millis();
    // (failures so far, jitter draw) -> wait
    let table = [
        (0, 0.5, 0),
        (1, 0.5, 500),
        (2, 0.5, 1000),
        (3, 0.5, 2000),
        (4, 0.5, 4000),
        (5, 0.5, 5000),
        (30, 0.5, 5000),
        (1, 0.0, 400),
        (1, 0.999_999, 599),
        (5, 0.0, 4000),
    ];
    for (failures, u, want) in table {
        assert_eq!(
            ms(r.delay(failures, u)),
            want,
            "{failures} failures, draw {u}"
        );
    }
}

/// Tokens live `lifetime` and the server closes a socket whose token expired;
/// over `run` every user logs in again and reconnects before expiry, and no
/// socket is ever refused or closed for its token.
async fn refresh_over(lifetime_s: u64, margin_s: u64, run_s: u64) {
    let text = format!(
        r#"
version = 1
name = "refresh"
seed = 5
[server]
login_lifetime = "{lifetime_s}s"
enforce_token_expiry = true
event_delay = ["2ms", "5ms"]
[auth]
mode = "login"
refresh_margin = "{margin_s}s"
[auth.login]
url = "/auth/dev/login"
body = {{ user_id = "{{{{user}}}}", email = "{{{{user}}}}@loadtest.chatload.invalid" }}
token = "access_token"
[workload]
users = 10
duration = "{run_s}s"
{JOURNEY}
[[journey]]
step = "think"
duration = "1s"
"#
    );
    let (_d, out) = out_dir("refresh");
    let r = run(parse(&text), None, SECRET, out).await;
    let users = 10;
    eprintln!(
        "{lifetime_s} s tokens over {run_s} s: {} logins, {} refreshes, {} runs ok, {} failed",
        counter(&r, "tokens.login"),
        counter(&r, "tokens.refreshed"),
        counter(&r, "runs.ok"),
        counter(&r, "runs.failed")
    );
    // Each token serves lifetime - margin seconds: at least this many per user.
    let per_user = run_s / (lifetime_s - margin_s);
    assert!(
        counter(&r, "tokens.login") >= per_user * users,
        "{} logins",
        counter(&r, "tokens.login")
    );
    assert!(
        counter(&r, "tokens.refreshed") >= (per_user - 1) * users,
        "{} refreshes",
        counter(&r, "tokens.refreshed")
    );
    assert_eq!(truth(&r, "auth.logins"), counter(&r, "tokens.login"));
    for zero in [
        "tokens.rejected",
        "tokens.expired_on_socket",
        "runs.failed",
        "closes.1008",
    ] {
        assert_eq!(counter(&r, zero), 0, "{zero}");
    }
    assert_eq!(truth(&r, "connections.auth_failed"), 0);
    assert_eq!(truth(&r, "connections.closed_token_expired"), 0);
    assert_eq!(r.snapshot.verdict, "pass");
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Tokens") && md.contains("| refreshed |"),
        "{md}"
    );
}

/// The short version, always run: 6 s tokens over 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_tokens_are_refreshed_before_they_expire() {
    let _g = goose_lock().await;
    refresh_over(6, 2, 15).await;
}

/// The acceptance soak: 20 s tokens over 70 s (`cargo test -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "70 s soak; the short version always runs"]
async fn login_tokens_are_refreshed_before_they_expire_over_a_long_run() {
    let _g = goose_lock().await;
    refresh_over(20, 5, 70).await;
}

/// The same server without refresh (`refresh_margin = "off"`): sockets
/// outlive their token, the server closes them (1008) and chatload counts
/// each, then logs in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closed_for_its_expired_token_is_counted_and_recovers() {
    let _g = goose_lock().await;
    let text = format!(
        r#"
version = 1
name = "expiry"
seed = 5
[server]
login_lifetime = "3s"
enforce_token_expiry = true
[auth]
mode = "login"
refresh_margin = "off"
lifetime = "1m"
[reconnect]
initial = "100ms"
[workload]
users = 3
duration = "8s"
{JOURNEY}
[[journey]]
step = "think"
duration = "500ms"
"#
    );
    let (_d, out) = out_dir("expiry");
    let r = run(parse(&text), None, SECRET, out).await;
    let closed = truth(&r, "connections.closed_token_expired");
    assert!(
        closed >= 3,
        "every user's first socket outlives its token ({closed})"
    );
    assert_eq!(
        counter(&r, "tokens.expired_on_socket"),
        closed,
        "each expiry close counted"
    );
    assert!(
        counter(&r, "tokens.login") > closed,
        "users logged in again"
    );
    assert!(counter(&r, "runs.ok") > 0);
}

/// Tokens from a file: each user gets its line and acts as the token's `sub`;
/// fewer tokens than users is refused before any socket opens: by the loader
/// (naming `auth.tokens_file` with its position), and by `run` when `--users`
/// raises the users above the tokens after loading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_names_the_users_and_too_few_tokens_are_refused() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let minter = Minter::new(
        &Secret::new(SECRET),
        chatload::auth::netra_claims(),
        Duration::from_secs(600),
    );
    let lines: Vec<String> = ["ann", "ben", "cat"]
        .iter()
        .map(|u| {
            minter
                .mint(u, std::time::SystemTime::now(), &format!("j-{u}"))
                .unwrap()
                .expose()
                .to_string()
        })
        .collect();
    std::fs::write(
        dir.path().join("tokens.txt"),
        format!("# one per line\n{}\n", lines.join("\n")),
    )
    .unwrap();
    let text = |users: u64| {
        format!(
            "version = 1\nname = \"file\"\n[auth]\nmode = \"file\"\ntokens_file = \"tokens.txt\"\n[workload]\nusers = {users}\niterations = 2\n{JOURNEY}"
        )
    };
    let scenario = |users: u64| {
        chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), text(users)).unwrap()
    };
    let (_d, out) = out_dir("file");
    let r = run(scenario(3), None, SECRET, out).await;
    assert_eq!(counter(&r, "runs.ok"), 6);
    assert_eq!(counter(&r, "tokens.from_file"), 3);
    assert_eq!(truth(&r, "connections.auth_failed"), 0);
    // Events carry the users the tokens name: no isolation violation.
    assert_eq!(counter(&r, "violations.cross_user_leak"), 0);
    assert_eq!(r.snapshot.verdict, "pass");

    // 4 users for 3 tokens: refused when the scenario loads.
    let err = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), text(4))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "s.toml:5:15: `auth.tokens_file`: the tokens file tokens.txt has 3 tokens for 4 users"
        ),
        "{err}"
    );
    assert!(!err.contains(&lines[0]), "a token must never be printed");

    // `--users 4` on a scenario loaded with 3: refused by `run`.
    let mut raised = scenario(3);
    raised.workload.plan = raised.workload.plan.with_users(4);
    let (_d2, out2) = out_dir("few");
    let req = request(raised, None, SECRET, out2);
    match chatload::run::run(req).await {
        Err(RunError::Usage(msg)) => {
            assert!(msg.contains("3 tokens for 4 users"), "{msg}");
            assert!(!msg.contains(&lines[0]), "a token must never be printed");
        }
        Err(e) => panic!("expected a usage error, got {e}"),
        Ok(_) => panic!("4 users with 3 tokens must be refused"),
    }
}

/// The server drops 5% of runs' sockets without a close frame: each dropped
/// run is failed with 1006, exactly as many as the server dropped; users come
/// back after a back-off and every user still runs every iteration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sockets_fail_their_runs_and_users_come_back_after_a_back_off() {
    let _g = goose_lock().await;
    let text = format!(
        r#"
version = 1
name = "drops"
seed = 9
[server]
faults = "close_1006=5%"
event_delay = ["1ms", "3ms"]
[reconnect]
initial = "200ms"
max = "2s"
jitter = 0.25
[workload]
users = 40
iterations = 6
{JOURNEY}
"#
    );
    let (_d, out) = out_dir("drops");
    let r = run(parse(&text), None, SECRET, out).await;
    let dropped = truth(&r, "faults.close_1006");
    assert!(dropped > 3, "the seed must drop some sockets ({dropped})");
    assert_eq!(counter(&r, "runs.failed.closed"), dropped);
    assert_eq!(
        counter(&r, "closes_by_phase.during_run.1006")
            + counter(&r, "closes_by_phase.first_exchange.1006"),
        dropped
    );
    // Concurrency kept: no user was lost, every one ran all its iterations.
    assert_eq!(counter(&r, "runs.started"), 240);
    assert_eq!(counter(&r, "runs.ok") + dropped, 240);
    assert_eq!(counter(&r, "reconnects.gave_up"), 0);
    // A drop in a user's last iteration is not followed by a reconnect.
    let back = r
        .snapshot
        .histograms
        .get("reconnect_time")
        .map_or(0, |h| h.count);
    assert!(
        back <= dropped && back + 40 >= dropped,
        "{back} reconnects after {dropped} drops"
    );
    assert!(back > 0);
    let wait = &r.snapshot.histograms["reconnect_backoff"];
    assert!(
        wait.min_us >= 150_000,
        "the first wait is the initial delay less its jitter: {}",
        wait.min_us
    );
    assert!(wait.max_us <= 2_500_000);
}

/// A refresh that cannot get a later token is not repeated. Regression: a
/// token from a file within `refresh_margin` of its expiry was refreshed,
/// the same token came back, and the user reopened its socket in a loop
/// (850 sockets in a 2 s think); a login endpoint issuing tokens shorter than
/// the margin did the same with a login per loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_cannot_renew_the_token_is_not_repeated() {
    let _g = goose_lock().await;
    let journey = format!("{JOURNEY}[[journey]]\nstep = \"think\"\nduration = \"2s\"\n");

    // A file token that expires in 40 s, inside the default 1 min margin.
    let dir = tempfile::tempdir().unwrap();
    let minter = Minter::new(
        &Secret::new(SECRET),
        chatload::auth::netra_claims(),
        Duration::from_secs(40),
    );
    let token = minter
        .mint("ann", std::time::SystemTime::now(), "j-ann")
        .unwrap();
    std::fs::write(dir.path().join("tokens.txt"), token.expose()).unwrap();
    let text = format!(
        "version = 1\nname = \"file\"\n[auth]\nmode = \"file\"\ntokens_file = \"tokens.txt\"\n[workload]\nusers = 1\niterations = 2\n{journey}"
    );
    let scenario = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), text).unwrap();
    let (_d, out) = out_dir("file-refresh");
    let r = run(scenario, None, SECRET, out).await;
    assert_eq!(counter(&r, "runs.ok"), 2);
    assert_eq!(counter(&r, "tokens.refreshed"), 0);
    assert_eq!(counter(&r, "connections.ready"), 1);

    // Login tokens that live 2 s against a 5 s margin: each user refreshes
    // once (the token it had was due), gets another token that was due at
    // once, and keeps it.
    let text = format!(
        r#"
version = 1
name = "short-login"
[server]
login_lifetime = "2s"
[auth]
mode = "login"
refresh_margin = "5s"
[auth.login]
url = "/auth/dev/login"
body = {{ user_id = "{{{{user}}}}", email = "{{{{user}}}}@loadtest.chatload.invalid" }}
token = "access_token"
[workload]
users = 2
iterations = 2
{journey}"#
    );
    let (_d2, out2) = out_dir("login-refresh");
    let r = run(parse(&text), None, SECRET, out2).await;
    assert_eq!(counter(&r, "runs.ok"), 4);
    assert_eq!(counter(&r, "tokens.refreshed"), 2);
    assert_eq!(counter(&r, "connections.ready"), 4);
    assert_eq!(truth(&r, "auth.logins"), 4);
}

/// A socket the server closes while its user thinks is reopened within the
/// think only when its back-off fits; otherwise the next step waits the rest,
/// so the think keeps its length and `send_lag` (the generator's own
/// lateness) stays clean. Regression: the think waited the whole 1 s
/// back-off, ran 0.8 s late, and `send_lag` said the generator fell behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_off_longer_than_the_think_is_left_to_the_next_step() {
    let _g = goose_lock().await;
    let text = format!(
        r#"
version = 1
name = "idle-close"
seed = 4
[server]
faults = "close_1011=100%@idle"
[reconnect]
initial = "1s"
jitter = 0.0
[workload]
users = 2
iterations = 3
{JOURNEY}
[[journey]]
step = "think"
duration = "200ms"
"#
    );
    let (_d, out) = out_dir("idle-close");
    let r = run(parse(&text), None, SECRET, out).await;
    assert_eq!(counter(&r, "runs.ok"), 6);
    let closed = counter(&r, "closes_by_phase.idle.1011");
    assert_eq!(closed, truth(&r, "faults.close_1011"));
    assert!(closed >= 4, "{closed}");
    // Each socket served a run, so every wait is the initial 1 s, drawn once
    // per reconnect even when a think and then a send shared it.
    let wait = &r.snapshot.histograms["reconnect_backoff"];
    assert_eq!(wait.count, counter(&r, "reconnects"), "{wait:?}");
    assert!((999_000..=1_001_000).contains(&wait.max_us), "{wait:?}");
    let lag = &r.snapshot.histograms["send_lag"];
    assert!(lag.count > 0);
    assert!(lag.max_us < 500_000, "thinks ended on time: {lag:?}");
}

/// A server that closes every socket on its first exchange (accepted, ready,
/// then 1011 instead of the run) gets a growing back-off, as refused upgrades
/// do: such a socket never proved itself. Regression: ready reset the count
/// of failures, so users reconnected every `reconnect.initial` (here 50 ms)
/// for the whole run, 50 times in 3 s; with the back-off at 50, 100, 200,
/// then 400 ms, each user opens at most 10 sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_lost_before_they_served_a_run_grow_the_back_off() {
    let _g = goose_lock().await;
    let text = |min_uptime: &str| {
        format!(
            r#"
version = 1
name = "storm"
seed = 3
[server]
faults = "close_1011=100%@first_exchange"
[reconnect]
initial = "50ms"
max = "400ms"
multiplier = 2
jitter = 0.0
attempts = 100
min_uptime = "{min_uptime}"
[workload]
users = 2
duration = "3s"
{JOURNEY}
"#
        )
    };
    let (_d, out) = out_dir("storm");
    let r = run(parse(&text("5s")), None, SECRET, out).await;
    let opened = counter(&r, "connections.ready");
    assert_eq!(counter(&r, "runs.ok"), 0);
    assert_eq!(
        counter(&r, "closes_by_phase.first_exchange.1011"),
        truth(&r, "faults.close_1011")
    );
    assert!(
        (4..=22).contains(&opened),
        "{opened} sockets for 2 users in 3 s"
    );
    let wait = &r.snapshot.histograms["reconnect_backoff"];
    // Jitter 0: the waits are 50, 100, 200 and then 400 ms (the cap),
    // within the histogram's precision (0.1%).
    assert!((49_900..=50_100).contains(&wait.min_us), "{wait:?}");
    assert!((399_500..=400_500).contains(&wait.max_us), "{wait:?}");
    assert!(wait.p50_us >= 399_500, "most waits at the cap: {wait:?}");
    assert_eq!(counter(&r, "reconnects.gave_up"), 0);

    // `min_uptime = "0s"`: every ready socket proved itself, so each loss
    // waits the initial 50 ms again (the storm, when asked for).
    let (_d2, out2) = out_dir("storm-0s");
    let r = run(parse(&text("0s")), None, SECRET, out2).await;
    let wait = &r.snapshot.histograms["reconnect_backoff"];
    assert!((49_900..=50_100).contains(&wait.max_us), "{wait:?}");
    assert!(
        counter(&r, "connections.ready") > 22,
        "{}",
        counter(&r, "connections.ready")
    );
}

/// Idle users ping every second and time the answers; the server's own pings
/// are answered; a target that stops answering the client's heartbeats has
/// its sockets closed, counted, and reopened under the back-off policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_keep_alive_with_heartbeats_and_a_silent_one_is_closed() {
    let _g = goose_lock().await;
    let text = |profile: &str, faults: &str| {
        format!(
            r#"
version = 1
name = "heartbeats"
seed = 5
[server]
heartbeat = "1s"
faults = "{faults}"
[profile]
heartbeat = {profile}
[reconnect]
initial = "200ms"
jitter = 0.0
[workload]
users = 5
iterations = 1
[[journey]]
step = "connect"
[[journey]]
step = "think"
duration = "4500ms"
"#
        )
    };
    let (_d, out) = out_dir("alive");
    let r = run(
        parse(&text(r#"{ every = "1s", timeout = "3s" }"#, "")),
        None,
        SECRET,
        out,
    )
    .await;
    let sent = counter(&r, "heartbeats.sent");
    assert!(sent >= 5 * 3, "pings at 1, 2, 3 and 4 s per user ({sent})");
    let answered = counter(&r, "heartbeats.answered");
    assert!(
        answered + 5 >= sent && answered <= sent,
        "{answered} of {sent}"
    );
    assert_eq!(r.snapshot.histograms["ws_ping"].count, answered);
    assert!(
        truth(&r, "heartbeats.answered") > 0,
        "the server's pings were answered"
    );
    assert_eq!(counter(&r, "heartbeats.missed"), 0);

    // The server holds every socket but answers none of its heartbeats: each
    // unanswered one closes its socket, which comes back after the back-off.
    let (_d2, out2) = out_dir("silent");
    let silent = r#"{ every = "500ms", timeout = "1s", message = { type = "heartbeat" }, reply = "heartbeat_ack" }"#;
    let r = run(
        parse(&text(silent, "mute_heartbeat=100%")),
        None,
        SECRET,
        out2,
    )
    .await;
    let (sent, missed) = (
        counter(&r, "heartbeats.sent"),
        counter(&r, "heartbeats.missed"),
    );
    assert_eq!(counter(&r, "heartbeats.answered"), 0);
    assert_eq!(
        truth(&r, "heartbeats.ignored"),
        sent,
        "every heartbeat reached the server"
    );
    // Each heartbeat was missed, but for at most one per user still pending
    // when the think ended.
    assert!(missed <= sent && missed + 5 >= sent, "{missed} of {sent}");
    assert!(missed >= 2 * 5, "1.5 s per cycle in 4.5 s: {missed}");
    assert_eq!(counter(&r, "connections.closed_missed_heartbeat"), missed);
    // Every closed socket was reopened (every connection was muted).
    assert_eq!(truth(&r, "faults.mute_heartbeat"), 5 + missed);
    assert_eq!(counter(&r, "reconnects"), missed);
    assert_eq!(
        r.snapshot.histograms["reconnect_time"].count, missed,
        "time to reconnect after each"
    );
    // No socket served a run or answered a heartbeat, so each loss counts as
    // a failed attempt and the waits grow (jitter 0): 200 ms after the first,
    // 400 ms after the second, rather than 200 ms every time.
    let wait = &r.snapshot.histograms["reconnect_backoff"];
    assert!((199_500..=200_500).contains(&wait.min_us), "{wait:?}");
    assert!((399_000..=401_000).contains(&wait.max_us), "{wait:?}");
}

/// An expired token from a file cannot be renewed: each attempt is counted,
/// and the reconnect policy's limit ends the retries instead of looping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_file_token_is_counted_and_never_retried_forever() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let minter = Minter::new(
        &Secret::new(SECRET),
        chatload::auth::netra_claims(),
        Duration::from_secs(60),
    );
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    let token = minter.mint("old-user", old, "j-old").unwrap();
    std::fs::write(dir.path().join("t.txt"), token.expose()).unwrap();
    let text = format!(
        "version = 1\nname = \"expired\"\n[auth]\nmode = \"file\"\ntokens_file = \"t.txt\"\n[reconnect]\ninitial = \"50ms\"\nattempts = 2\n[workload]\nusers = 1\niterations = 3\n{JOURNEY}"
    );
    let sc = chatload::scenario::Scenario::parse(&dir.path().join("s.toml"), text).unwrap();
    let (_d, out) = out_dir("expired");
    let r = run(sc, None, SECRET, out).await;
    assert_eq!(
        counter(&r, "tokens.expired"),
        2,
        "one per attempt, up to the limit"
    );
    assert_eq!(counter(&r, "reconnects.gave_up"), 1);
    assert_eq!(
        truth(&r, "connections.upgraded"),
        0,
        "an expired token is never sent"
    );
    assert_eq!(r.snapshot.verdict, "aborted", "no socket ever became ready");
    assert_eq!(counter(&r, "runs.started"), 0);
}

/// A journey's `send` step (a `start_agent` in the user's thread), as TOML.
macro_rules! send_step {
    () => {
        "[[journeys.steps]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"{{prompt}}\", thread_id = \"{{thread}}\", run_id = \"{{run}}\" } }\n"
    };
}

/// Three journeys on a server whose login tokens live 4 s and that closes a
/// socket whose token expired. Regressions: a socket that only idles never
/// refreshed its token (closed 1008 by the server); a REST step took the
/// fresh login token for the socket's, so its socket was never refreshed; a
/// run whose events arrived while the journey thought was dropped as
/// `frames.between_runs` and failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_rest_journeys_refresh_tokens_and_runs_survive_a_think() {
    let _g = goose_lock().await;
    let text = concat!(
        r#"
version = 1
name = "lifecycles"
seed = 5
[server]
login_lifetime = "4s"
enforce_token_expiry = true
event_delay = ["20ms", "40ms"]
[auth]
mode = "login"
# 2 s of margin on 4 s tokens: a loaded 2-core CI machine delayed a refresh
# past a 1 s margin (a socket's token expired on it once in several suites).
refresh_margin = "2s"
[workload]
users = 9
duration = "11s"

[[journeys]]
name = "holders"
users = 3
[[journeys.steps]]
step = "connect"
[[journeys.steps]]
step = "think"
duration = "20s"

[[journeys]]
name = "rest"
users = 3
[[journeys.steps]]
step = "connect"
[[journeys.steps]]
step = "list_threads"
"#,
        send_step!(),
        r#"[[journeys.steps]]
step = "await"
timeout = "10s"
[[journeys.steps]]
step = "think"
duration = "1s"

[[journeys]]
name = "thinkers"
users = 3
"#,
        send_step!(),
        r#"[[journeys.steps]]
step = "think"
duration = "300ms"
[[journeys.steps]]
step = "await"
name = "await_after_think"
timeout = "10s"
"#
    );
    let (_d, out) = out_dir("lifecycles");
    let r = run(parse(text), None, SECRET, out).await;
    for zero in [
        "tokens.expired_on_socket",
        "closes.1008",
        "frames.between_runs",
        "runs.failed",
    ] {
        assert_eq!(counter(&r, zero), 0, "{zero}");
    }
    assert_eq!(truth(&r, "connections.closed_token_expired"), 0);
    // 11 s of 4 s tokens refreshed 2 s early: every socket is refreshed at
    // least twice (at 2 s, 4 s, 6 s, 8 s and 10 s) by every journey.
    assert!(
        counter(&r, "tokens.refreshed") >= 9 * 2,
        "{} refreshes",
        counter(&r, "tokens.refreshed")
    );
    let started = counter(&r, "runs.started");
    assert!(started > 0);
    assert_eq!(counter(&r, "runs.ok"), started, "no run lost");
    // The thinkers' await has a metric of its own (one per ok run of theirs).
    let own = r.snapshot.histograms["await_after_think"].count;
    assert!(own > 0 && own < started, "{own} of {started}");
}

/// The end of a timed plan ends thinks, back-offs and repeat blocks at once,
/// and a run still in flight is awaited, never lost. Regressions: a 60 s
/// think held a 3 s plan for 60 s; runs sent just before the end were
/// neither ok nor failed; a user that gave up reconnecting spun through its
/// steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_ends_on_time_and_settles_every_run_in_flight() {
    let _g = goose_lock().await;
    let text = concat!(
        r#"
version = 1
name = "ends"
seed = 5
[server]
event_delay = ["200ms", "300ms"]
[workload]
users = 6
duration = "3s"

[[journeys]]
name = "chatters"
users = 4
"#,
        send_step!(),
        r#"[[journeys.steps]]
step = "await"
timeout = "10s"
[[journeys.steps]]
step = "disconnect"

[[journeys]]
name = "sleepers"
users = 2
[[journeys.steps]]
step = "connect"
[[journeys.steps]]
step = "repeat"
for = "60s"
[[journeys.steps.steps]]
step = "think"
duration = "60s"
"#
    );
    let (_d, out) = out_dir("ends");
    let r = run(parse(text), None, SECRET, out).await;
    assert!(
        r.snapshot.duration_s < 30.0,
        "the 3 s plan ran {}s: a think held it",
        r.snapshot.duration_s
    );
    let started = counter(&r, "runs.started");
    assert!(started >= 4);
    assert_eq!(
        counter(&r, "runs.ok") + counter(&r, "runs.failed"),
        started,
        "every run counted"
    );
    assert_eq!(counter(&r, "runs.ok"), started, "the server is healthy");

    // Every upgrade refused: each user tries `attempts` times, gives up, and
    // waits `max` before its next series; no spinning.
    let refused = r#"
version = 1
name = "refused"
seed = 5
[target]
fail_fast = false
[server]
faults = "refuse_upgrade=503:100%"
[reconnect]
initial = "100ms"
max = "1s"
jitter = 0.0
attempts = 3
[workload]
users = 2
duration = "4s"
[[journey]]
step = "connect"
[[journey]]
step = "think"
duration = "200ms"
"#;
    let (_d2, out2) = out_dir("refused");
    let r = run(parse(refused), None, SECRET, out2).await;
    let attempts = counter(&r, "connections.attempted");
    // A series takes 0 + 0.1 + 0.2 s, then 1 s of cool-down: at most 4 series
    // in 4 s per user.
    assert!(
        (2 * 3..=2 * 4 * 3).contains(&attempts),
        "{attempts} attempts"
    );
    assert_eq!(counter(&r, "connections.rejected.503"), attempts);
    assert!(counter(&r, "reconnects.gave_up") >= 2);
    assert_eq!(
        counter(&r, "users.parked"),
        0,
        "a 503 is not the token's fault"
    );
    assert_eq!(counter(&r, "tokens.rejected"), 0);
}

/// A login body that reads a secret from the environment is refused before
/// any socket opens when the variable is not set (it would log every user in
/// with an empty password), and the refusal names the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_environment_secret_is_refused_before_the_run() {
    let _g = goose_lock().await;
    let text = format!(
        r#"
version = 1
name = "env-secret"
[auth]
mode = "login"
[auth.login]
body = {{ user_id = "{{{{user}}}}", password = "{{{{env.CHATLOAD_TEST_UNSET_PASSWORD}}}}" }}
[workload]
users = 1
iterations = 1
{JOURNEY}"#
    );
    let (_d, out) = out_dir("env");
    let req = request(parse(&text), None, SECRET, out.clone());
    match chatload::run::run(req).await {
        Err(RunError::Usage(msg)) => {
            assert!(msg.contains("$CHATLOAD_TEST_UNSET_PASSWORD"), "{msg}")
        }
        Err(e) => panic!("expected a usage error, got {e}"),
        Ok(_) => panic!("an unset secret must stop the run"),
    }
    assert!(!out.join("snapshot.json").exists(), "nothing was run");
}
