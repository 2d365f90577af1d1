//! Run validity, the preflight and fail fast (issue 13): a plan the machine
//! cannot carry is refused before any socket opens (exit 2); a run whose
//! first connects all fail stops at once (exit 3) and says why, with the
//! target's own reason; a run that offered less than its plan is INVALID
//! (exit 4) in every report format; every report shows offered vs achieved.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The binary with both the soft and the hard RLIMIT_NOFILE at `limit`.
fn with_fd_limit(limit: u64, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_chatload");
    let prlimit = std::path::Path::new("/usr/bin/prlimit");
    let mut c = if prlimit.exists() {
        let mut c = Command::new(prlimit);
        c.arg(format!("--nofile={limit}:{limit}")).arg(bin);
        c
    } else {
        let mut c = Command::new(bin);
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
        unsafe {
            c.pre_exec(move || {
                let l = rustix::process::Rlimit {
                    current: Some(limit),
                    maximum: Some(limit),
                };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, l)
                    .map_err(std::io::Error::from)
            });
        }
        c
    };
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CHATLOAD_JWT_SECRET", "a-test-key")
        .output()
        .expect("the binary runs")
}

/// 400 users need 400 sockets, 401 on the embedded server's side and the
/// process's own 64: with soft and hard limits at 256 the run is refused
/// before anything opens, and the message names the need, the limit and
/// the fix.
#[test]
fn a_plan_over_the_fd_limit_is_refused_before_any_socket_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = with_fd_limit(
        256,
        &[
            "run",
            "scenarios/smoke.toml",
            "--users",
            "400",
            "--duration",
            "5s",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}{err}");
    assert!(err.contains("needs about 865 file descriptors"), "{err}");
    assert!(err.contains("at most 256"), "{err}");
    assert!(
        err.contains("ulimit -n 865") && err.contains("--shards"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "refused before the run's folder, or any socket"
    );
    // A soft limit under the need with a hard limit over it is raised: 100
    // users need 265 fds, over a soft limit of 256, and the run goes ahead.
    let out2 = dir.path().join("out2");
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} run scenarios/smoke.toml --users 100 --duration 1s --out {}",
            env!("CARGO_BIN_EXE_chatload"),
            out2.display()
        ))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CHATLOAD_JWT_SECRET", "a-test-key")
        .output()
        .unwrap();
    let (stdout, err) = text(&o);
    assert_ne!(o.status.code(), Some(2), "{stdout}{err}");
    assert!(!err.contains("file descriptors"), "{err}");
    assert!(out2.join("snapshot.json").exists(), "{err}");
}

/// A closed port: every connect is refused. The 60 s plan stops as soon as
/// its first attempts have all failed (a safety bound of 10 s, not a speed
/// target), exits 3, and says why.
#[test]
fn an_unreachable_target_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let port = free_port();
    let target = format!("ws://127.0.0.1:{port}/ws");
    let t0 = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            "scenarios/smoke.toml",
            "--target",
            &target,
            "--users",
            "5",
            "--duration",
            "60s",
            "--out",
            out.to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CHATLOAD_JWT_SECRET", "a-test-key")
        .output()
        .unwrap();
    let took = t0.elapsed();
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{stdout}{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {err}");
    assert!(
        err.contains("fail fast") && err.contains("the first 5 connect attempts all failed"),
        "{err}"
    );
    assert!(err.contains("refused: Connection refused"), "{err}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Connect and handshake failures"), "{md}");
}

/// A target that answers the upgrade without the subprotocol the token was
/// offered in: tungstenite refuses the socket ("Server sent no
/// subprotocol"), and chatload's own report says so, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subprotocol_is_named_in_chatloads_own_report() {
    use axum::extract::ws::WebSocketUpgrade;
    let _g = goose_lock().await;
    // Accepts every upgrade, never selecting a subprotocol.
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_s| async {}) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (_d, out) = out_dir("no-subprotocol");
    let r = run(
        parse(&iterations_scenario(3, 1, "")),
        Some(format!("ws://{addr}/ws")),
        SECRET,
        out,
    )
    .await;
    server.abort();
    assert_eq!(r.exit_code(), 3, "{:?}", r.snapshot.notes);
    let failed = counter(&r, "connections.failed.protocol");
    assert!(failed >= 3, "{failed}");
    let f = &r.snapshot.failures;
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].reason.ends_with("Server sent no subprotocol"), "{f:?}");
    assert_eq!(f[0].count, failed, "every failure counted under its reason");
    let md = std::fs::read_to_string(r.out_dir.join("report.md")).unwrap();
    assert!(md.contains("Server sent no subprotocol"), "{md}");
    let html = std::fs::read_to_string(r.out_dir.join("report.html")).unwrap();
    assert!(html.contains("Server sent no subprotocol"));
    assert!(r
        .snapshot
        .notes
        .iter()
        .any(|n| n.contains("fail fast") && n.contains("Server sent no subprotocol")));
}

/// An open-model pool far too small for its rate drops most arrivals: the
/// target was offered less than the plan, so the run is INVALID (exit 4)
/// although every run it did start was fine, and every format says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_arrivals_make_the_run_invalid_in_every_format() {
    let _g = goose_lock().await;
    let text = "version = 1\nname = \"short-pool\"\nseed = 3\n[server]\nevent_delay = [\"50ms\", \"50ms\"]\nthinking = [0, 0]\ntools = [0, 0]\n[workload]\nmodel = \"open\"\nrate = 40\nduration = \"2s\"\nmax_users = 2\n[output]\ninterval = \"1s\"\n[thresholds]\n\"run_ok rate\" = \"> 99%\"\n[[journey]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"hi\", run_id = \"{{run}}\" } }\n[[journey]]\nstep = \"await\"\ntimeout = \"5s\"\n";
    let (_d, out) = out_dir("invalid");
    let r = run(parse(text), None, SECRET, out).await;
    let s = &r.snapshot;
    assert_eq!(s.verdict, "invalid", "{:?} {:?}", s.validity, s.notes);
    assert_eq!(r.exit_code(), 4);
    assert!(s.thresholds.iter().all(|t| t.passed), "the SLOs held");
    let dropped = counter(&r, "starts.dropped");
    assert_eq!(s.validity.len(), 1, "{:?}", s.validity);
    assert_eq!(s.validity[0].cause, "starts_not_on_time");
    assert_eq!(s.validity[0].count, dropped);
    // Offered vs achieved: 40/s planned, far fewer started.
    assert_eq!(s.offered.len(), 1, "{:?}", s.offered);
    let phase = &s.offered[0];
    assert_eq!(phase.arrivals_planned_per_s, Some(40.0));
    let started = phase.arrivals_per_s.unwrap();
    assert!(started < 30.0, "{started}/s started of 40/s");
    let read = |f: &str| std::fs::read_to_string(r.out_dir.join(f)).unwrap();
    let md = read("report.md");
    assert!(
        md.contains("INVALID") && md.contains("## Validity: INVALID"),
        "{md}"
    );
    assert!(md.contains("starts_not_on_time") && md.contains("## Offered vs achieved"));
    let html = read("report.html");
    assert!(html.contains("Validity: INVALID") && html.contains("starts_not_on_time"));
    assert!(html.contains("Offered vs achieved"));
    let junit = read("junit.xml");
    assert!(
        junit.contains("<error") && junit.contains("type=\"invalid\""),
        "{junit}"
    );
    assert!(
        !junit.contains("<failure"),
        "INVALID is an error, not a failure"
    );
    let mut console = Vec::new();
    chatload::report::console::render(&r.report, &mut console).unwrap();
    let console = String::from_utf8(console).unwrap();
    assert!(
        console.contains("INVALID: the numbers do not describe"),
        "{console}"
    );
    assert!(console.contains("offered vs achieved"), "{console}");
    // `report` re-renders the same from the snapshot alone.
    let again = chatload::report::ReportData::from_snapshot(
        &chatload::metrics::snapshot::Snapshot::read(&r.out_dir.join("snapshot.json")).unwrap(),
    );
    assert_eq!(again.validity, r.report.validity);
    assert_eq!(again.offered, r.report.offered);
}

/// A closed ramp and hold: the table shows each phase's planned and actual
/// users and its runs per second; with a tolerance of 100% the same
/// dropped arrivals leave the run valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_vs_achieved_follows_the_ramp_and_the_tolerance_is_a_key() {
    let _g = goose_lock().await;
    let closed = "version = 1\nname = \"ramp\"\nseed = 3\n[workload]\nusers = 4\nramp = [{ to = 4, over = \"2s\" }, { hold = \"2s\" }]\n[output]\ninterval = \"1s\"\n[[journey]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"hi\", run_id = \"{{run}}\" } }\n[[journey]]\nstep = \"await\"\ntimeout = \"5s\"\n";
    let (_d, out) = out_dir("ramp");
    let r = run(parse(closed), None, SECRET, out).await;
    assert_eq!(r.snapshot.verdict, "pass", "{:?}", r.snapshot.notes);
    let o = &r.snapshot.offered;
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!(
        (o[0].phase.as_str(), o[0].users_from, o[0].users_to),
        ("1 ramp", 0, 4)
    );
    assert_eq!((o[1].phase.as_str(), o[1].users_to), ("2 hold", 4));
    assert_eq!(o[1].users_end, 4, "{o:?}");
    assert!(
        o[1].runs_per_s > 0.0 && o[1].arrivals_per_s.is_none(),
        "{o:?}"
    );

    let tolerant = "version = 1\nname = \"tolerant\"\nseed = 3\n[server]\nevent_delay = [\"50ms\", \"50ms\"]\nthinking = [0, 0]\ntools = [0, 0]\n[workload]\nmodel = \"open\"\nrate = 40\nduration = \"2s\"\nmax_users = 2\nstart_tolerance = \"100%\"\n[[journey]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"hi\", run_id = \"{{run}}\" } }\n[[journey]]\nstep = \"await\"\ntimeout = \"5s\"\n";
    let (_d2, out2) = out_dir("tolerant");
    let r = run(parse(tolerant), None, SECRET, out2).await;
    assert!(counter(&r, "starts.dropped") > 0);
    assert!(r.snapshot.validity.is_empty(), "{:?}", r.snapshot.validity);
    assert_eq!(r.snapshot.verdict, "pass");
}
