//! The raw-results stream (`--raw-results`): one JSON line per finished run
//! in `runs.jsonl`, written while the run goes, with the run's tags and the
//! tags of the `send` step; its lines agree exactly with the snapshot's
//! counters (every run once, ok or failed by class).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn one_line_per_finished_run_written_as_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("raw.toml");
    // Closes with 1011 at a seeded fraction of first exchanges: some runs
    // fail (class `closed`), the rest are ok.
    std::fs::write(
        &f,
        r#"version = 1
name = "raw"
[tags]
testid = "raw-1"
[server]
seed = 3
faults = "close_1011=30%@first_exchange"
[workload]
users = 3
ramp = [{ to = 3, over = "1s" }, { hold = "6s" }]
[thresholds]
defaults = false
[[journey]]
step = "connect"
[[journey]]
step = "send"
name = "ask"
tags = { phase = "question" }
message = { type = "start_agent", payload = { user_request = "{{prompt}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "100ms"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            f.to_str().unwrap(),
            "-q",
            "--raw-results",
            "--out",
            out.to_str().unwrap(),
        ])
        .env_remove("CHATLOAD_JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines appear while the process still runs (a condition, not a sleep).
    let raw = out.join("runs.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen_running = loop {
        let lines = std::fs::read_to_string(&raw)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let done = child.try_wait().unwrap().is_some();
        if lines > 0 {
            break !done;
        }
        assert!(
            !done && Instant::now() < deadline,
            "no line written during the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(seen_running, "the first lines came only after the run");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let snap = chatload::metrics::Snapshot::from_json(
        &std::fs::read_to_string(out.join("snapshot.json")).unwrap(),
    )
    .unwrap();
    let c = |k: &str| snap.counters.get(k).copied().unwrap_or(0);
    let text = std::fs::read_to_string(&raw).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, c("runs.started"), "{text}");
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut run_ids = std::collections::BTreeSet::new();
    for l in &lines {
        let key = match l["outcome"].as_str().unwrap() {
            "ok" => "runs.ok".to_string(),
            "failed" => format!("runs.failed.{}", l["class"].as_str().unwrap()),
            other => panic!("outcome {other}"),
        };
        *by.entry(key).or_default() += 1;
        assert!(
            run_ids.insert(l["run_id"].as_str().unwrap().to_string()),
            "a run twice: {l}"
        );
        assert_eq!(l["step"], "ask", "{l}");
        assert_eq!(l["tags"]["testid"], "raw-1", "{l}");
        assert_eq!(l["tags"]["phase"], "question", "{l}");
        assert!(l["user"].as_str().is_some_and(|u| !u.is_empty()), "{l}");
        assert!(
            l["duration_ms"].as_f64().is_some() && l["ended_at"].as_str().is_some(),
            "{l}"
        );
        if l["outcome"] == "ok" {
            let (ttfe, took) = (
                l["ttfe_ms"].as_f64().unwrap(),
                l["duration_ms"].as_f64().unwrap(),
            );
            assert!(ttfe > 0.0 && ttfe <= took, "{l}");
        }
    }
    assert!(
        c("runs.ok") > 0 && c("runs.failed") > 0,
        "the fault plan made no mix: {:?}",
        snap.counters
    );
    let counted: BTreeMap<String, u64> = snap
        .counters
        .iter()
        .filter(|(k, _)| *k == "runs.ok" || k.starts_with("runs.failed."))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(by, counted, "{text}");
}
