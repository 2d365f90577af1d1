//! The snapshot format version names the definitions its numbers use: 1.1
//! leaves recognised auth failures out of `close_1011 rate`, 1.0 did not.
//! `compare` (exit 2) and `merge` (its usage error) refuse to mix the two;
//! a 1.0 snapshot alone still renders, compares and merges.

mod common;

use std::path::{Path, PathBuf};

use chatload::metrics::snapshot::{Snapshot, TargetInfo, ToolInfo, FORMAT_VERSION};
use chatload::metrics::Recorder;
use common::*;

/// A small run's snapshot in format `version`, shard `index` of 2.
fn snapshot(version: &str, index: u32) -> Snapshot {
    let mut rec = Recorder::default();
    for i in 1..=50u64 {
        rec.record("ttfe", 5_000 + i * 100);
        rec.record("ttc", 50_000 + i * 500);
    }
    for (k, v) in [
        ("runs.started", 50),
        ("runs.ok", 50),
        ("connections.attempted", 10),
        ("connections.upgraded", 10),
        ("connections.ready", 10),
    ] {
        rec.count(k, v);
    }
    Snapshot {
        tags: Default::default(),
        format_version: version.into(),
        tool: ToolInfo {
            name: "chatload".into(),
            version: "0.0.0-test".into(),
        },
        run_id: format!("v{version}-{index}"),
        scenario_name: "versions".into(),
        scenario: serde_json::json!({"version": 1, "name": "versions"}),
        seed: 1,
        target: TargetInfo {
            url: "ws://127.0.0.1:1/ws".into(),
            embedded: true,
            ..Default::default()
        },
        started_at: "2026-01-01T00:00:00.000Z".into(),
        ended_at: "2026-01-01T00:00:10.000Z".into(),
        duration_s: 10.0,
        users: 5,
        histograms: Snapshot::histograms_from(&rec),
        counters: rec.counters.clone(),
        thresholds: vec![],
        verdict: chatload::outcome::Verdict::Pass,
        notes: vec![],
        baseline: None,
        shard: Some(chatload::plan::Shard { index, count: 2 }),
        generator: None,
        shards: vec![],
        intervals: vec![],
        samples: vec![],
        server_truth: None,
        capacity: None,
        validity: vec![],
        offered: vec![],
        failures: vec![],
        probes: None,
        scenario_hash: None,
    }
}

fn write(dir: &Path, name: &str, s: &Snapshot) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, s.to_json()).unwrap();
    p
}

fn chatload(args: &[&Path], first: &[&str], out: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"));
    cmd.args(first).args(args);
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let o = cmd.output().expect("the binary runs");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn compare_and_merge_refuse_to_mix_the_two_definitions_of_close_1011_rate() {
    assert_eq!(FORMAT_VERSION, "1.2");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old0 = write(d, "old0.json", &snapshot("1.0", 0));
    let old1 = write(d, "old1.json", &snapshot("1.0", 1));
    let new0 = write(d, "new0.json", &snapshot(FORMAT_VERSION, 0));
    let new1 = write(d, "new1.json", &snapshot(FORMAT_VERSION, 1));

    // Mixed: refused, with the reason.
    for (a, b) in [(&old0, &new1), (&new0, &old1)] {
        let (code, err) = chatload(&[a, b], &["compare"], None);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("define `close_1011 rate` differently"),
            "{err}"
        );
        let (code, err) = chatload(&[a, b], &["merge"], Some(&d.join("m")));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("cannot merge") && err.contains("1.0"), "{err}");
        assert!(
            err.contains("define `close_1011 rate` differently"),
            "{err}"
        );
    }

    // One definition: compared and merged as before.
    for (a, b) in [(&old0, &old1), (&new0, &new1)] {
        let (code, err) = chatload(&[a, b], &["compare"], None);
        assert_eq!(code, Some(0), "{err}");
        let out = d.join(format!(
            "merged-{}",
            a.file_name().unwrap().to_string_lossy()
        ));
        let (code, err) = chatload(&[a, b], &["merge"], Some(&out));
        assert_eq!(code, Some(0), "{err}");
        let merged = Snapshot::read(&out.join("snapshot.json")).unwrap();
        check_schema(&merged.to_json());
        let version = Snapshot::read(a).unwrap().format_version;
        assert_eq!(merged.format_version, version);
    }

    // A 1.0 baseline for a 1.1 run is refused before anything is sent.
    let scenario = d.join("s.toml");
    std::fs::write(&scenario, iterations_scenario(1, 1, "")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("run")
        .arg(&scenario)
        .arg("--baseline")
        .arg(&old0)
        .arg("--out")
        .arg(d.join("never"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("define `close_1011 rate` differently"),
        "{err}"
    );
    assert!(!d.join("never").exists());

    // A 1.0 snapshot alone still renders.
    let md = d.join("old.md");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("report")
        .arg(&old0)
        .args(["--format", "md", "--out"])
        .arg(&md)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("v1.0-0") && text.contains("close_1011 rate"),
        "{text}"
    );
}
