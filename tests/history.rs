//! The run history's schema: a file written by an older chatload (schema
//! version 0, committed as `tests/data/history-v0.sqlite`, made by the
//! chatload before versions existed) migrates in place and keeps its runs;
//! new runs carry p50/p95/p99 of the key metrics and their tags; `trend
//! --tag` filters and its charts name each run by date and id.

mod common;

use std::process::Command;

use chatload::report::history::{self, SCHEMA_VERSION};
use common::*;

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// A short real run against the embedded server.
async fn real_run(tag: &str) -> chatload::metrics::snapshot::Snapshot {
    let (_t, out) = out_dir(tag);
    let req = chatload::run::RunRequest {
        scenario: parse(&iterations_scenario(3, 2, "")),
        target: None,
        secret: chatload::auth::Secret::new(SECRET),
        seed: 7,
        out: Some(out),
        goose_report: false,
        baseline: None,
        progress: false,
        shard: Default::default(),
        start_at: None,
        metrics_addr: None,
        history: None,
    };
    chatload::run::run(req).await.unwrap().snapshot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_of_the_first_schema_migrates_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/history-v0.sqlite"),
        &path,
    )
    .unwrap();
    assert_eq!(user_version(&path), 0, "the committed file is of schema 0");
    let old = history::load(&path, None, &[]).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(old.len(), 2, "{old:?}");
    for r in &old {
        // What version 0 kept is still there; what it never had is absent.
        assert!(r.us("ttfe", "p95").is_some() && r.us("ttc", "p95").is_some());
        assert_eq!(r.us("ttc", "p99"), None);
        assert!(r.tags.is_empty() && r.verdict == "pass" && r.runs_started > 0);
    }
    // A new run after the migration keeps every key percentile and its tags.
    let mut s = {
        let _g = goose_lock().await;
        real_run("hist").await
    };
    s.tags.insert("build".into(), "1234".into());
    s.tags.insert("env".into(), "ci".into());
    history::append(&path, &s).unwrap();
    let all = history::load(&path, None, &[]).unwrap();
    assert_eq!(all.len(), 3);
    let tagged = history::load(&path, None, &[("env".into(), "ci".into())]).unwrap();
    assert_eq!(tagged.len(), 1);
    let new = &tagged[0];
    assert_eq!(new.run_id, s.run_id);
    assert_eq!(new.verdict, s.verdict.as_str());
    for m in ["ws_connect", "ttfe", "ttc"] {
        let h = &s.histograms[m];
        assert_eq!(new.us(m, "p50"), Some(h.p50_us), "{m}");
        assert_eq!(new.us(m, "p95"), Some(h.p95_us), "{m}");
        assert_eq!(new.us(m, "p99"), Some(h.p99_us), "{m}");
    }
    assert!(history::load(&path, None, &[("env".into(), "prod".into())])
        .unwrap()
        .is_empty());
    // Reopening a migrated file changes nothing.
    assert_eq!(history::load(&path, None, &[]).unwrap(), all);
    trend_cli(&path, &s.run_id, &all);
}

/// `trend --tag` lists only the tagged run; the HTML charts label every
/// run by date and id.
fn trend_cli(path: &std::path::Path, tagged_id: &str, all: &[history::TrendRow]) {
    let bin = env!("CARGO_BIN_EXE_chatload");
    let o = Command::new(bin)
        .args(["trend", path.to_str().unwrap(), "--tag", "build=1234"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let md = String::from_utf8(o.stdout).unwrap();
    assert!(
        md.contains(tagged_id) && md.contains("build=1234 env=ci"),
        "{md}"
    );
    assert!(!md.contains(&all[0].run_id), "{md}");
    let o = Command::new(bin)
        .args(["trend", path.to_str().unwrap(), "--format", "html"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let html = String::from_utf8(o.stdout).unwrap();
    for id in ["trend-ttfe", "trend-ttc", "trend-ok-rate"] {
        assert!(html.contains(&format!(r#"data-chart="{id}""#)), "{id}");
    }
    for r in all {
        let label = chatload::report::history_view::run_label(r);
        assert!(label.starts_with(&r.started_at[..10]), "{label}");
        assert!(html.contains(&format!("\n{label}\n</text>")), "{label}");
    }
    let o = Command::new(bin)
        .args(["trend", path.to_str().unwrap(), "--tag", "nokey"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_history_from_a_newer_chatload_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE runs (run_id TEXT PRIMARY KEY); PRAGMA user_version = 99;")
        .unwrap();
    drop(c);
    let e = history::load(&path, None, &[]).unwrap_err();
    assert!(
        e.contains("schema version 99") && e.contains("newer chatload"),
        "{e}"
    );
    assert_eq!(user_version(&path), 99);
}
