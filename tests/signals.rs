//! A killed run keeps what it measured: SIGTERM drains and writes every report
//! (exit 3), a second signal exits at once after a last checkpoint, and
//! `kill -9` leaves the last checkpoint of snapshot.json, which still renders.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatload::metrics::Snapshot;
use common::check_schema;

const LONG: &str = r#"
version = 1
name = "long"
[output]
checkpoint = "500ms"
interval = "1s"
[server]
event_delay = ["100ms", "300ms"]
[workload]
users = 6
ramp = [{ to = 6, over = "0s" }, { hold = "120s" }]
[[journey]]
step = "send"
message = { type = "start_agent", payload = { run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#;

fn start(dir: &Path) -> Child {
    let f = dir.join("long.toml");
    std::fs::write(&f, LONG).unwrap();
    Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            f.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls the checkpoint until it shows completed runs (a condition, not a fixed sleep).
fn wait_for_checkpoint(dir: &Path) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("out/snapshot.json")) {
            if let Ok(s) = Snapshot::from_json(&text) {
                if s.counters.get("runs.ok").copied().unwrap_or(0) >= 6 {
                    return s;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint with completed runs appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn final_snapshot(dir: &Path) -> Snapshot {
    let text = std::fs::read_to_string(dir.join("out/snapshot.json")).unwrap();
    check_schema(&text);
    Snapshot::from_json(&text).unwrap()
}

#[test]
fn sigterm_drains_writes_every_report_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let seen = wait_for_checkpoint(dir.path());
    assert_eq!(seen.verdict, "incomplete");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let s = final_snapshot(dir.path());
    assert_eq!(s.verdict, "aborted");
    assert!(
        s.notes.iter().any(|n| n.contains("stopped by a signal")),
        "{:?}",
        s.notes
    );
    for f in ["report.md", "report.html", "junit.xml", "goose-report.html"] {
        assert!(dir.path().join("out").join(f).exists(), "{f} written");
    }
    let c = |k: &str| s.counters.get(k).copied().unwrap_or(0);
    assert!(c("runs.ok") >= seen.counters["runs.ok"]);
    assert_eq!(
        c("runs.ok") + c("runs.failed"),
        c("runs.started"),
        "in-flight runs were drained, none lost"
    );
}

#[test]
fn a_second_signal_exits_at_once_after_a_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    wait_for_checkpoint(dir.path());
    signal(&child, "-TERM");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let s = final_snapshot(dir.path());
    assert!(
        s.notes.iter().any(|n| n.contains("second stop signal")),
        "{:?}",
        s.notes
    );
    assert!(s.counters["runs.ok"] >= 6);
}

#[test]
fn kill_9_keeps_the_last_checkpoint_which_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let seen = wait_for_checkpoint(dir.path());
    signal(&child, "-KILL");
    let _ = child.wait();
    let s = final_snapshot(dir.path());
    assert_eq!(s.verdict, "incomplete");
    assert!(s.counters["runs.ok"] >= seen.counters["runs.ok"]);
    assert!(!s.intervals.is_empty() || s.duration_s < 1.0);
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "report",
            dir.path().join("out/snapshot.json").to_str().unwrap(),
            "--format",
            "md",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("INCOMPLETE") && md.contains("checkpoint"),
        "{md}"
    );
}
