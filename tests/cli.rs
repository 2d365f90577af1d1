//! The real binary: exit codes, messages and files, as a user sees them.

use std::path::Path;
use std::process::{Command, Output};

fn chatload(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatload"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CHATLOAD_JWT_SECRET");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const THREE_MISTAKES: &str = r#"version = 1
name = "broken"
[workload]
users = 10
ramp = [{ to = 10, over = "10 parsecs" }]
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}" } }
[[journey]]
step = "await"
timeout = "5s"
retries = 3
[thresholds]
"ttfe p95" = "2s"
"#;

#[test]
fn validate_reports_all_three_mistakes_with_positions_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.toml");
    std::fs::write(&f, THREE_MISTAKES).unwrap();
    let o = chatload(&["validate", f.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("3 problems found"), "{err}");
    let file = f.display().to_string();
    assert!(
        err.contains(&format!("{file}:5:27: `workload.ramp[0].over`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:12:1: `journey[1].retries`: unknown key")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:14:1: `thresholds.\"ttfe p95\"`")),
        "{err}"
    );
}

#[test]
fn validate_prints_the_plan_of_a_good_file() {
    let o = chatload(&["validate", "scenarios/smoke.toml"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("0m00s      0m05s        0 -> 20"), "{out}");
    assert!(out.contains("hold 20"), "{out}");
    assert!(out.contains("ttfe max < 1s"), "{out}");
}

#[test]
fn every_shipped_scenario_validates() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")).unwrap()
    {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let o = chatload(&["validate", p.to_str().unwrap()], &[]);
            assert_eq!(o.status.code(), Some(0), "{}: {}", p.display(), text(&o).1);
        }
    }
}

#[test]
fn a_run_of_the_smoke_scenario_passes_writes_its_files_and_prints_what_the_snapshot_holds() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let secret = "very-distinctive-signing-key-4711";
    let o = chatload(
        &[
            "run",
            "scenarios/smoke.toml",
            "--users",
            "4",
            "--duration",
            "2s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[("CHATLOAD_JWT_SECRET", secret)],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let snap = chatload::metrics::Snapshot::from_json(
        &std::fs::read_to_string(out_dir.join("snapshot.json")).unwrap(),
    )
    .unwrap();
    let ttfe = &snap.histograms["ttfe"];
    assert_eq!(ttfe.count, snap.counters["runs.ok"]);
    // The console line for ttfe carries the snapshot's count and p95.
    let p95 = chatload::units::format_us(ttfe.p95_us as f64);
    let line = out
        .lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("ttfe") && w.next().is_some_and(|c| c.parse::<u64>().is_ok())
        })
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&ttfe.count.to_string()) && line.contains(&p95),
        "{line} vs {ttfe:?}"
    );
    // `stdout_guard` keeps goose's own lines off stdout (it holds only
    // chatload's summary) and passes them to stderr.
    assert!(!out.contains("users launched."), "{out}");
    assert!(err.contains("users launched."), "{err}");
    assert!(out_dir.join("report.md").exists());
    assert!(out_dir.join("goose-report.html").exists());
    // The signing key appears nowhere.
    assert!(!out.contains(secret) && !err.contains(secret));
    for f in std::fs::read_dir(&out_dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret));
    }
}

#[test]
fn a_target_outside_the_allow_list_is_refused_before_any_socket_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("x");
    let o = chatload(
        &[
            "run",
            "scenarios/smoke.toml",
            "--target",
            "wss://prod.example.com/ws",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[("CHATLOAD_JWT_SECRET", "k")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("prod.example.com") && err.contains("target.allow"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing is written for a refused run");
}

#[test]
fn an_external_target_without_the_signing_key_is_a_usage_error() {
    let o = chatload(
        &[
            "run",
            "scenarios/smoke.toml",
            "--target",
            "ws://127.0.0.1:9/ws",
        ],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("CHATLOAD_JWT_SECRET"), "{err}");
}

#[test]
fn an_unreachable_target_aborts_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("x");
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let o = chatload(
        &[
            "run",
            "scenarios/smoke.toml",
            "--target",
            "ws://127.0.0.1:9/ws",
            "--users",
            "2",
            "--duration",
            "1s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[("CHATLOAD_JWT_SECRET", "k")],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(
        err.contains("no connection became ready") && err.contains("refused"),
        "{err}"
    );
    assert!(
        out_dir.join("snapshot.json").exists(),
        "an aborted run still keeps what it measured"
    );
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let o = chatload(&["--help"], &[]);
    let (out, _) = text(&o);
    assert!(
        out.contains("Examples:") && out.contains("Exit codes"),
        "{out}"
    );
}

#[test]
fn run_help_names_the_live_page_beside_metrics() {
    let o = chatload(&["run", "--help"], &[]);
    let (out, _) = text(&o);
    let flag = out
        .split("--metrics-addr")
        .nth(1)
        .and_then(|rest| rest.split("\n      --").next())
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        flag.contains("/metrics") && flag.contains("http://ADDR/") && flag.contains("/live.json"),
        "{out}"
    );
}

/// Two users, two runs each: the smallest scenario a run writes reports for.
fn tiny_scenario(dir: &std::path::Path) -> std::path::PathBuf {
    let f = dir.join("tiny.toml");
    std::fs::write(
        &f,
        r#"version = 1
name = "tiny"
[workload]
users = 2
iterations = 2
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
"#,
    )
    .unwrap();
    f
}

/// `[output] goose_report = false` leaves goose's own report out (a soak of
/// many hours: goose keeps per-second series for its charts) and changes
/// nothing else: the run still passes with every chatload report. A wrong
/// type is a usage error naming the key.
#[test]
fn goose_report_false_leaves_out_only_gooses_report() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_scenario(dir.path());
    let body = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, format!("{body}[output]\ngoose_report = false\n")).unwrap();
    let out = dir.path().join("out");
    let o = chatload(
        &["run", f.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[("CHATLOAD_JWT_SECRET", "a-test-key")],
    );
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{err}");
    for f in ["snapshot.json", "report.md", "report.html", "junit.xml"] {
        assert!(out.join(f).exists(), "{f} written");
    }
    assert!(!out.join("goose-report.html").exists());

    std::fs::write(&f, format!("{body}[output]\ngoose_report = \"no\"\n")).unwrap();
    let o = chatload(&["validate", f.to_str().unwrap()], &[]);
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}{err}");
    assert!(
        format!("{stdout}{err}").contains("goose_report"),
        "{stdout}{err}"
    );
}

/// A run whose stderr reader went away (`2>&1 | head`, a CI log that stopped
/// reading) still writes every report and exits with its documented code.
/// Regression: a message on a closed stderr panicked the run (exit 101); here
/// the run aborts (nothing listens on the target), so it has one to write.
#[test]
fn a_run_with_a_closed_stderr_still_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_scenario(dir.path());
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            f.to_str().unwrap(),
            "--target",
            "ws://127.0.0.1:9/ws",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("CHATLOAD_JWT_SECRET", "a-test-key")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end at once: every write to stderr now fails.
    drop(child.stderr.take());
    assert_eq!(
        child.wait().unwrap().code(),
        Some(3),
        "aborted, not a panic"
    );
    for f in ["snapshot.json", "report.md", "report.html", "junit.xml"] {
        assert!(out.join(f).exists(), "{f} written");
    }
}

/// A run whose stdout reader went away (`chatload run … | head -1`) still
/// writes every report and exits with its verdict. Regression: goose prints
/// "N users launched." with `println!`, which panicked on the closed pipe
/// (exit 101, no reports); `stdout_guard` now stands between them.
#[test]
fn a_run_with_a_closed_stdout_still_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_scenario(dir.path());
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", f.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("CHATLOAD_JWT_SECRET", "a-test-key")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Close the reading end at once: every write to stdout now fails.
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0), "passed, not a panic");
    for f in ["snapshot.json", "report.md", "report.html", "junit.xml"] {
        assert!(out.join(f).exists(), "{f} written");
    }
    let snap = std::fs::read_to_string(out.join("snapshot.json")).unwrap();
    assert!(snap.contains("\"runs.ok\": 4"), "{snap}");
}
