//! Beyond one machine: three shard processes against one reference server,
//! merged exactly; the same scenario in one process gives the same counts.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use chatload::auth::Secret;
use chatload::metrics::Snapshot;
use chatload::server::{self, Settings};
use common::*;

const SCENARIO: &str = r#"
version = 1
name = "sharded"
seed = 5
[workload]
users = 10
iterations = 4
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
[thresholds]
# Each shard starts 13 or 14 runs and passes; the whole starts 40 and fails:
# thresholds must be judged on the merged data, not per shard.
"runs.started count" = "< 20"
"run_ok rate" = "> 99%"
"#;

fn chatload(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(args)
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .output()
        .expect("the binary runs")
}

async fn server() -> server::RunningServer {
    let mut c = Settings::new(Secret::new(SECRET));
    c.seed = 77;
    c.tools = (0, 3);
    server::spawn(c, "127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

fn load(p: &Path) -> Snapshot {
    let text = std::fs::read_to_string(p.join("snapshot.json")).unwrap();
    check_schema(&text);
    Snapshot::from_json(&text).unwrap()
}

fn run_shards(scenario: &Path, target: &str, dir: &Path, indexes: &[u32]) -> Vec<PathBuf> {
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let children: Vec<_> = indexes
        .iter()
        .map(|i| {
            let out = dir.join(format!("shard-{i}"));
            let child = Command::new(env!("CARGO_BIN_EXE_chatload"))
                .args([
                    "run",
                    scenario.to_str().unwrap(),
                    "--target",
                    target,
                    "--shard",
                    &format!("{i}/3"),
                ])
                .args([
                    "--start-at",
                    &start_at,
                    "--out",
                    out.to_str().unwrap(),
                    "-q",
                ])
                .env("CHATLOAD_JWT_SECRET", SECRET)
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    children
        .into_iter()
        .map(|(mut c, out)| {
            assert_eq!(c.wait().unwrap().code(), Some(0), "each shard alone passes");
            out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shard_processes_merge_exactly_and_match_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("sharded.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();

    let srv = server().await;
    let outs = run_shards(&scenario, &srv.ws_url(), dir.path(), &[0, 1, 2]);
    let truth = srv.truth();
    srv.shutdown().await;

    let shards: Vec<Snapshot> = outs.iter().map(|o| load(o)).collect();
    let merged_dir = dir.path().join("merged");
    let mut args = vec!["merge".to_string()];
    args.extend(
        outs.iter()
            .map(|o| o.join("snapshot.json").display().to_string()),
    );
    args.extend(["--out".into(), merged_dir.display().to_string()]);
    let o = chatload(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        o.status.code(),
        Some(1),
        "the merged run breaks `runs.started count < 20`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let merged = load(&merged_dir);

    // Disjoint identities: every user id appears in exactly one shard.
    let users: Vec<u64> = shards.iter().map(|s| s.users).collect();
    assert_eq!(users, vec![4, 3, 3]);
    // Counts: the sum of the shards, and what the server saw.
    for k in [
        "runs.started",
        "runs.ok",
        "events.agent_started",
        "events.agent_thinking",
        "events.tool_completed",
        "connections.ready",
    ] {
        let sum: u64 = shards
            .iter()
            .map(|s| s.counters.get(k).copied().unwrap_or(0))
            .sum();
        assert_eq!(merged.counters[k], sum, "{k}");
    }
    assert_eq!(merged.counters["runs.ok"], 40);
    assert_eq!(merged.counters["runs.ok"], truth["runs.completed"]);
    assert_eq!(
        merged.counters["events.agent_thinking"],
        truth["events.agent_thinking"]
    );
    assert_eq!(
        merged.counters["events.tool_completed"],
        truth["events.tool_completed"]
    );
    // Percentiles of the merge are those of the union of every recorded value.
    let mut union = chatload::metrics::new_histogram();
    for s in &shards {
        union
            .add(s.histograms["ttc"].decode("ttc").unwrap())
            .unwrap();
    }
    let m = merged.histograms["ttc"].decode("ttc").unwrap();
    assert_eq!(m, union);
    for q in [0.5, 0.95, 0.99, 1.0] {
        assert_eq!(m.value_at_quantile(q), union.value_at_quantile(q));
    }
    // Judged on the whole: fails where every shard passed.
    assert!(shards.iter().all(|s| s.verdict == "pass"));
    assert_eq!(merged.verdict, "fail");
    assert_eq!(merged.shards.len(), 3);

    // The same scenario in one process, against a fresh server with the same seed.
    let srv = server().await;
    let single = dir.path().join("single");
    let o = chatload(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        &srv.ws_url(),
        "--out",
        single.to_str().unwrap(),
        "-q",
    ]);
    srv.shutdown().await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "40 runs break `runs.started count < 20` in one process too"
    );
    let one = load(&single);
    for k in [
        "runs.started",
        "runs.ok",
        "events.agent_started",
        "events.agent_thinking",
        "events.tool_executing",
        "events.tool_completed",
        "events.agent_completed",
    ] {
        assert_eq!(
            one.counters[k], merged.counters[k],
            "{k}: one process vs three shards"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_makes_a_partial_result_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("sharded.toml");
    std::fs::write(
        &scenario,
        SCENARIO.replace("\"runs.started count\" = \"< 20\"\n", ""),
    )
    .unwrap();
    let srv = server().await;
    let outs = run_shards(&scenario, &srv.ws_url(), dir.path(), &[0, 2]);
    srv.shutdown().await;
    let merged_dir = dir.path().join("merged");
    let o = chatload(&[
        "merge",
        outs[0].join("snapshot.json").to_str().unwrap(),
        outs[1].join("snapshot.json").to_str().unwrap(),
        "--out",
        merged_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "a partial merge is never a pass");
    for f in ["report.md", "report.html", "junit.xml", "snapshot.json"] {
        let text = std::fs::read_to_string(merged_dir.join(f)).unwrap();
        assert!(
            text.contains("partial: 2 of 3 shards"),
            "{f} must say it is partial"
        );
    }
    assert_eq!(load(&merged_dir).verdict, "partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_different_scenarios_or_seeds_are_refused() {
    let _g = goose_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, s: &Snapshot| {
        let p = dir.path().join(name);
        std::fs::write(&p, s.to_json()).unwrap();
        p
    };
    let (_t, out) = out_dir("one");
    let mut a = run(parse(&iterations_scenario(2, 1, "")), None, SECRET, out)
        .await
        .snapshot;
    let o = chatload(&[
        "merge",
        write("plain.json", &a).to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a shard"));
    a.shard = Some(chatload::plan::Shard { index: 0, count: 2 });
    let mut b = a.clone();
    b.shard = Some(chatload::plan::Shard { index: 1, count: 2 });
    b.seed = 99;
    let o = chatload(&[
        "merge",
        write("a.json", &a).to_str().unwrap(),
        write("b.json", &b).to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has seed 99, not 7"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    b.seed = a.seed;
    b.scenario_name = "other".into();
    let o = chatload(&[
        "merge",
        write("a.json", &a).to_str().unwrap(),
        write("b.json", &b).to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is of scenario `other`"));
}

/// Journeys with exact user counts keep them across shards: 3 + 1 users over
/// two shards run journey `a` for 3 users and `b` for 1 in all. Regression:
/// every shard weighted 3:1 over its own 2 users, so the whole ran 2 and 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_journey_counts_add_up_across_shards() {
    let _g = goose_lock().await;
    let text = r#"
version = 1
name = "counted"
[workload]
users = 4
iterations = 2
[[journeys]]
name = "a"
users = 3
[[journeys.steps]]
step = "http"
name = "a"
path = "/health"
[[journeys]]
name = "b"
users = 1
[[journeys.steps]]
step = "http"
name = "b"
path = "/health"
"#;
    let srv = server().await;
    let mut totals = (0, 0);
    for index in 0..2 {
        let (_d, out) = out_dir(&format!("counted-{index}"));
        let mut req = request(parse(text), Some(srv.ws_url()), SECRET, out);
        req.shard = chatload::plan::Shard { index, count: 2 };
        let r = chatload::run::run(req).await.expect("the shard runs");
        totals.0 += counter(&r, "rest.a.200");
        totals.1 += counter(&r, "rest.b.200");
    }
    assert_eq!(totals, (3 * 2, 2), "journey calls over both shards");
    srv.shutdown().await;
}
