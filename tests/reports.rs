//! Reports: golden Markdown and JUnit from a fixed snapshot, JSON against the
//! schema, JUnit through a standard parser, byte-identical re-rendering, a
//! self-contained HTML file, and baseline regressions.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chatload::metrics::snapshot::{IntervalData, Snapshot, TargetInfo, ToolInfo, FORMAT_VERSION};
use chatload::metrics::threshold::Threshold;
use chatload::metrics::{OffendingFrame, Recorder};
use chatload::report::ReportData;
use chatload::report::{render, Format};
use common::*;

/// A snapshot built from fixed data, so its reports never change unless the renderers do.
fn fixed_snapshot() -> Snapshot {
    let mut rec = Recorder::default();
    for i in 1..=200u64 {
        rec.record("ttfe", 5_000 + i * 97);
        rec.record("ttc", 60_000 + i * 731);
        if i <= 20 {
            rec.record("ws_connect", 800 + i * 13);
        }
    }
    for (k, v) in [
        ("runs.started", 200),
        ("runs.ok", 197),
        ("runs.failed", 3),
        ("runs.failed.closed", 2),
        ("runs.failed.missing_field", 1),
        ("connections.attempted", 22),
        ("connections.upgraded", 22),
        ("connections.ready", 22),
        ("closes.1011", 2),
        ("closes_by_phase.first_exchange.1011", 2),
        ("violations", 1),
        ("violations.missing_field", 1),
        ("violations.missing_field.tool_completed.results", 1),
        ("events.agent_started", 200),
        ("events.agent_completed", 198),
    ] {
        rec.count(k, v);
    }
    let thresholds = [
        ("ttfe p95", "< 30ms"),
        ("ttc p99", "< 150ms"),
        ("close_1011 rate", "< 0.1%"),
        ("run_ok rate", "> 99%"),
    ]
    .iter()
    .map(|(k, v)| Threshold::parse(k, v).unwrap().judge(&rec))
    .chain(std::iter::once({
        // A default SLO: reports mark it "(default)".
        let mut t = Threshold::parse("violations rate", "== 0").unwrap();
        t.default = true;
        t.judge(&rec)
    }))
    .collect::<Vec<_>>();
    let mut half = Recorder::default();
    half.record("ttfe", 9_000);
    half.record("ttc", 100_000);
    half.count("runs.ok", 1);
    Snapshot {
        tags: [("build".to_string(), "1234".to_string())].into(),
        format_version: FORMAT_VERSION.into(),
        tool: ToolInfo {
            name: "chatload".into(),
            version: "0.0.0-golden".into(),
        },
        run_id: "golden-20260101-000000".into(),
        scenario_name: "golden".into(),
        scenario: serde_json::json!({"version": 1, "name": "golden"}),
        scenario_hash: None,
        seed: 1,
        target: TargetInfo {
            url: "ws://127.0.0.1:1/ws".into(),
            embedded: true,
            ..Default::default()
        },
        started_at: "2026-01-01T00:00:00.000Z".into(),
        ended_at: "2026-01-01T00:00:30.000Z".into(),
        duration_s: 30.0,
        users: 20,
        histograms: Snapshot::histograms_from(&rec),
        counters: rec.counters.clone(),
        thresholds,
        verdict: chatload::outcome::Verdict::Fail,
        notes: vec![],
        baseline: None,
        shard: None,
        generator: None,
        shards: vec![],
        intervals: vec![IntervalData {
            start_s: 0.0,
            length_s: 5.0,
            counters: BTreeMap::from([("runs.ok".to_string(), 1)]),
            histograms: Snapshot::histograms_from(&half),
        }],
        samples: vec![OffendingFrame {
            class: "missing_field".into(),
            detail: "tool_completed.results".into(),
            message: "`tool_completed` has none of results, result".into(),
            user_id: "chatload-user-00003".into(),
            run_id: Some("chatload-user-00003-r7".into()),
            frame: r#"{"type":"tool_completed","tool_name":"tool_1"}"#.into(),
        }],
        server_truth: None,
        capacity: None,
        validity: vec![],
        offered: vec![],
        failures: vec![],
        probes: None,
    }
}

fn golden(name: &str, actual: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        want == actual,
        "{name} differs from its golden file (regenerate with UPDATE_GOLDEN=1 cargo test --test reports):\n{}",
        String::from_utf8_lossy(actual)
    );
}

#[test]
fn markdown_and_junit_match_their_golden_files() {
    let s = fixed_snapshot();
    let d = ReportData::from_snapshot(&s);
    golden("report.md", &render(&d, &s, Format::Markdown));
    golden("junit.xml", &render(&d, &s, Format::Junit));
}

/// The fixed snapshot as a capacity search: three steps of users, the third broke.
fn capacity_snapshot() -> Snapshot {
    use chatload::metrics::capacity::{conclude, judge_step};
    use chatload::plan::CapacityStep;
    let slo = vec![
        Threshold::parse("ttc p95", "< 100ms").unwrap(),
        Threshold::parse("close_1011_during_run rate", "< 1%").unwrap(),
        Threshold::parse("auth_failure rate", "< 5%").unwrap(),
    ];
    let steps = [(4.0, 60_000u64, 0u64), (8.0, 70_000, 0), (12.0, 140_000, 3)]
        .iter()
        .enumerate()
        .map(|(i, &(load, ttc, closes))| {
            let mut rec = Recorder::default();
            // 200 samples: the fewest a p95 is judged on.
            for k in 0..200u64 {
                rec.record("ttc", ttc + k * 50);
                rec.record("ttfe", ttc / 4 + k * 20);
            }
            rec.count("runs.started", 100);
            rec.count("runs.ok", 100 - closes);
            rec.count("runs.failed", closes);
            rec.count("runs.failed.closed", closes);
            rec.count("closes.1011", closes);
            rec.count("closes_by_phase.during_run.1011", closes);
            // Each step connects its 4 new users (one auth failure in step 3, retried).
            let auth = u64::from(i == 2);
            rec.count("connections.attempted", 4 + auth);
            rec.count("connections.upgraded", 4 + auth);
            rec.count("connections.ready", 4);
            rec.count("tokens.rejected", auth);
            for k in 0..4u64 {
                rec.record("ws_connect", 2_000 + k * 100);
                rec.record("ws_ready", 40_000 + i as u64 * 10_000 + k * 1_000);
            }
            let i = i as u64;
            let step = CapacityStep {
                index: i as u32 + 1,
                load,
                start_s: i * 10,
                measure_s: i * 10 + 2,
                end_s: i * 10 + 10,
                at_once: Some(4),
            };
            // The users of the steps before hold their sockets through the step.
            let cx = chatload::metrics::capacity::StepContext {
                sockets_at_start: load as u64 - 4,
                open_model: false,
                sockets_at_end: Some(load as u64),
                window_s: Some(8.0),
                drain_s: Some(0.1),
            };
            judge_step(&step, format!("{load} users"), &slo, &rec, cx)
        })
        .collect();
    let mut s = fixed_snapshot();
    s.thresholds.clear();
    s.capacity = Some(conclude(
        steps,
        5,
        "users",
        &slo,
        Some((6.0, "6 users".into())),
    ));
    s
}

#[test]
fn a_capacity_search_reports_its_steps_and_knee() {
    let s = capacity_snapshot();
    let c = s.capacity.as_ref().unwrap();
    assert_eq!(c.knee, Some(8.0));
    assert_eq!(c.first_failing.as_ref().unwrap().index, 3);
    let d = ReportData::from_snapshot(&s);
    golden("capacity.md", &render(&d, &s, Format::Markdown));
    let json = render(&d, &s, Format::Json);
    check_schema(std::str::from_utf8(&json).unwrap());
    assert_eq!(
        Snapshot::from_json(std::str::from_utf8(&json).unwrap()).unwrap(),
        s
    );
    let html = String::from_utf8(render(&d, &s, Format::Html)).unwrap();
    assert!(html.contains("<h2>Capacity search</h2>") && html.contains("held: knee"));
    // Both capacities, as in report.md: the agent-run and the connect/auth tables.
    assert!(
        html.contains("<h3>Agent-run side (runs started in the measured window)</h3>")
            && html.contains("<h3>Connect/auth side (the whole step, warm-up included)</h3>"),
        "both sides of the step table"
    );
    // The knee chart: load against ttc p50/p95/p99, the SLO line, the knee
    // and the failing step named.
    let knee = d.knee.as_ref().expect("a knee chart");
    assert_eq!(knee.points.len(), 3);
    assert_eq!(knee.slo, [(100_000.0, "ttc p95 < 100ms".to_string())]);
    assert_eq!(knee.knee.as_ref().map(|k| k.0), Some(8.0));
    let chart = &html[html.find(r#"data-chart="knee""#).expect("knee chart")..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    for text in [
        "SLO ttc p95 &lt; 100ms",
        "knee 8 users",
        "step 3 broke ttc p95 &lt; 100ms, close_1011_during_run rate &lt; 1%, auth_failure rate &lt; 5%",
        "p50",
        "p99",
        "users",
    ] {
        assert!(
            chart.contains(&format!("\n{text}\n</text>")),
            "{text}: {chart}"
        );
    }
    // The console gives both sides too, each row under its header.
    let mut console = Vec::new();
    chatload::report::console::render(&d, &mut console).unwrap();
    let console = String::from_utf8(console).unwrap();
    let after = |head: &str| -> Vec<&str> {
        let at = console
            .find(head)
            .unwrap_or_else(|| panic!("{head}: {console}"));
        console[at..].lines().skip(1).take(4).collect()
    };
    let runs = after("agent-run side (runs started in the measured window):");
    let connects = after("connect/auth side (the whole step, warm-up included):");
    for (table, cols) in [
        (
            &runs,
            &[
                "step",
                "runs/s",
                "ttfe p95",
                "ttc p95",
                "run_ok",
                "1011 rate",
                "result",
            ][..],
        ),
        (
            &connects,
            &[
                "opened/s",
                "ws_connect p95",
                "ws_ready p95",
                "auth failures",
                "reconnects",
            ][..],
        ),
    ] {
        assert!(cols.iter().all(|c| table[0].contains(c)), "{console}");
        for (i, row) in table[1..].iter().enumerate() {
            assert!(
                row.trim_start().starts_with(&format!("{} ", i + 1)),
                "step {} row: {console}",
                i + 1
            );
        }
    }
    assert!(
        runs[3].contains("BROKE") && runs[2].contains("<- knee"),
        "{console}"
    );
    assert!(!console.contains("Outside any step"), "{console}");
    // Closes and failed runs the run counted outside the steps (a warm-up,
    // after the last window) are named beside the step tables.
    let mut more = s.clone();
    more.counters.insert("closes.1011".into(), 11);
    more.counters.insert("runs.failed".into(), 5);
    let dm = ReportData::from_snapshot(&more);
    let want = "Outside any step (a warm-up, or after the last step's window): 8 close_1011 of the run's 11, 2 failed runs of its 5";
    let md = String::from_utf8(render(&dm, &more, Format::Markdown)).unwrap();
    let mut con = Vec::new();
    chatload::report::console::render(&dm, &mut con).unwrap();
    let html = String::from_utf8(render(&dm, &more, Format::Html)).unwrap();
    for text in [
        md,
        String::from_utf8(con).unwrap(),
        html.replace("&#39;", "'"),
    ] {
        assert!(text.contains(want), "{text}");
    }
    let xml = String::from_utf8(render(&d, &s, Format::Junit)).unwrap();
    assert!(xml.contains("capacity knee carries the target load"));
    assert!(
        !xml.contains("<failure"),
        "the knee (8) carries the target (6): {xml}"
    );
}

#[test]
fn the_json_format_is_the_snapshot_and_matches_the_schema() {
    let s = fixed_snapshot();
    let json = render(&ReportData::from_snapshot(&s), &s, Format::Json);
    check_schema(std::str::from_utf8(&json).unwrap());
    assert_eq!(
        Snapshot::from_json(std::str::from_utf8(&json).unwrap()).unwrap(),
        s
    );
}

#[test]
fn the_schema_rejects_a_broken_snapshot() {
    let s = fixed_snapshot();
    let mut v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    v["verdict"] = "maybe".into();
    v["counters"]["runs.ok"] = (-1).into();
    let r = std::panic::catch_unwind(|| check_schema(&v.to_string()));
    assert!(
        r.is_err(),
        "the schema must refuse a bad verdict and a negative counter"
    );
}

#[test]
fn junit_parses_with_a_standard_parser_and_shows_value_and_limit() {
    let s = fixed_snapshot();
    let xml = render(&ReportData::from_snapshot(&s), &s, Format::Junit);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junit.xml");
    std::fs::write(&f, &xml).unwrap();
    let script = r#"
import sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    for case in suite:
        for r in case.result:
            if isinstance(r, Failure):
                print(case.name, "|", r.message)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&f)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o)
            if std::env::var_os("CI").is_none()
                && String::from_utf8_lossy(&o.stderr).contains("No module named") =>
        {
            eprintln!("skipped: the Python junitparser package is not installed here (.ci/run installs it)");
            return;
        }
        other => panic!("junitparser could not read the file: {other:?}"),
    };
    // The four failing thresholds (three written, plus the default `violations rate == 0`)
    // are failures and the passing one is not, each with value and limit.
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.contains("ttc p99 < 150ms | measured insufficient data (200 samples, p99 needs 1000; measured 204.8ms), limit ttc p99 < 150ms"),
        "{out}"
    );
    assert!(
        out.contains("violations rate == 0 (default) | measured 0.5%, limit violations rate == 0"),
        "{out}"
    );
    assert!(out.contains("run_ok rate > 99% | measured 98.5%"), "{out}");
    assert!(!out.contains("ttfe p95"), "{out}");
}

#[test]
fn html_is_one_self_contained_file_with_charts() {
    let s = fixed_snapshot();
    let html = String::from_utf8(render(&ReportData::from_snapshot(&s), &s, Format::Html)).unwrap();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(html.contains(r#"class="banner fail""#));
    assert!(
        html.contains("ttc p99 &lt; 150ms (measured"),
        "the banner names the failing threshold"
    );
    for forbidden in ["<script", "<link", "src=\"http", "@import", "url("] {
        assert!(
            !html.contains(forbidden),
            "the report must not load anything: found {forbidden}"
        );
    }
    // Over-time charts (ttfe, ttc, runs/s, closes), a spectrum per key
    // metric and one distribution per metric, each a figure with its SVG.
    for id in [
        "ttfe-over-time",
        "ttc-over-time",
        "runs-per-second",
        "ttc-spectrum",
        "ttfe-spectrum",
        "ttc-distribution",
    ] {
        assert!(
            html.contains(&format!(r#"data-chart="{id}""#)),
            "chart {id} missing"
        );
    }
    assert_eq!(
        html.matches("<figure").count(),
        html.matches("<svg").count(),
        "every chart is one figure holding one SVG"
    );
    assert!(html.contains("missing_field") && html.contains("chatload-user-00003"));
    assert!(
        html.contains(r#"<span class="tag">build=1234</span>"#),
        "the run's tags"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_rerenders_a_finished_run_byte_for_byte() {
    let _g = goose_lock().await;
    let (_tmp, out) = out_dir("rerender");
    let r = run(
        parse(&iterations_scenario(
            4,
            3,
            // 12 runs: too few for a p99 (insufficient data), so the max.
            "[thresholds]\n\"ttc max\" = \"< 5s\"\n",
        )),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    let text = std::fs::read_to_string(out.join("snapshot.json")).unwrap();
    let snap = Snapshot::from_json(&text).unwrap();
    let d = ReportData::from_snapshot(&snap);
    for format in [Format::Markdown, Format::Html, Format::Junit, Format::Json] {
        let on_disk = std::fs::read(out.join(format.file_name())).unwrap();
        assert!(
            render(&d, &snap, format) == on_disk,
            "{format:?} differs when re-rendered"
        );
    }
    assert_eq!(r.snapshot.verdict, "pass");
    assert!(!r.snapshot.intervals.is_empty());
}

/// 100 runs: enough for a p50 (a p95 needs 200 samples, a p99 1,000).
async fn delayed_run(delay: &str, baseline: Option<Snapshot>) -> chatload::run::RunResult {
    let extra = format!(
        "[server]\nseed = 3\nevent_delay = [{delay}]\n[baseline]\n\"ttfe p50\" = \"+50%\"\n\"ttc p50\" = \"+50%\"\n\"run_ok rate\" = \"-1pp\"\n"
    );
    let (_tmp, out) = out_dir("base");
    let req = chatload::run::RunRequest {
        scenario: parse(&iterations_scenario(10, 10, &extra)),
        target: None,
        secret: chatload::auth::Secret::new(SECRET),
        seed: 7,
        out: Some(out),
        goose_report: false,
        baseline,
        progress: false,
        shard: Default::default(),
        start_at: None,
        metrics_addr: None,
        history: None,
    };
    let r = chatload::run::run(req).await.unwrap();
    check_schema(&r.snapshot.to_json());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_run_regresses_against_its_baseline_and_an_equal_one_does_not() {
    let _g = goose_lock().await;
    let base = delayed_run("\"5ms\", \"15ms\"", None).await.snapshot;
    let same = delayed_run("\"5ms\", \"15ms\"", Some(base.clone())).await;
    assert_eq!(
        same.snapshot.verdict, "pass",
        "{:?}",
        same.snapshot.baseline
    );
    assert_eq!(same.exit_code(), 0);
    let slow = delayed_run("\"40ms\", \"60ms\"", Some(base.clone())).await;
    assert_eq!(slow.snapshot.verdict, "fail");
    assert_eq!(slow.exit_code(), 1);
    let c = slow.snapshot.baseline.as_ref().unwrap();
    assert!(c.regressed);
    assert!(
        c.rows.iter().any(|r| r.name == "ttfe p50" && r.regressed),
        "{c:?}"
    );
    // Every format shows it.
    let d = ReportData::from_snapshot(&slow.snapshot);
    assert!(
        String::from_utf8(render(&d, &slow.snapshot, Format::Markdown))
            .unwrap()
            .contains("**REGRESSED**")
    );
    let html = String::from_utf8(render(&d, &slow.snapshot, Format::Html)).unwrap();
    // The baseline table: regressions first, then by significance.
    let table = &html[html.find("<h2>Against baseline").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let statuses: Vec<&str> = table
        .split("</span></td></tr>")
        .filter_map(|row| row.rsplit('>').next())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(
        statuses.len() >= 10 && statuses[0] == "regressed",
        "{statuses:?}"
    );
    let first_other = statuses.iter().position(|s| *s != "regressed").unwrap();
    assert!(
        statuses[first_other..].iter().all(|s| *s != "regressed"),
        "{statuses:?}"
    );
    assert!(table.contains("<th>p-value</th>"));
    assert!(String::from_utf8(render(&d, &slow.snapshot, Format::Junit))
        .unwrap()
        .contains("type=\"regression\""));
    // And `chatload compare` says the same with its exit code.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, s: &Snapshot| {
        let p = dir.path().join(name);
        std::fs::write(&p, s.to_json()).unwrap();
        p
    };
    let (b, n, e) = (
        write("b.json", &base),
        write("n.json", &slow.snapshot),
        write("e.json", &same.snapshot),
    );
    let compare = |x: &Path, y: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args([
                "compare",
                x.to_str().unwrap(),
                y.to_str().unwrap(),
                "--tolerance",
                "ttfe p50=+50%",
                "--tolerance",
                "ttc p50=+50%",
            ])
            .output()
            .unwrap()
    };
    assert_eq!(compare(&b, &n).status.code(), Some(1));
    assert_eq!(compare(&b, &e).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_the_run_early_with_the_reason() {
    let _g = goose_lock().await;
    let text = r#"
version = 1
name = "abort"
[workload]
users = 5
ramp = [{ to = 5, over = "0s" }, { hold = "40s" }]
[[journey]]
step = "send"
message = { type = "start_agent", payload = { run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "5s"
[thresholds]
"ttc max" = { rule = "< 1ms", abort_on_fail = true, grace = "1s" }
"run_ok rate" = "> 99%"
"#;
    let (_tmp, out) = out_dir("abort");
    let t0 = std::time::Instant::now();
    let r = run(parse(text), None, SECRET, out).await;
    // The plan holds 40 s; the breach is seen after the 1 s grace. A generous bound:
    // the check is that the rule, not the plan, ended the run.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.snapshot.verdict, "fail");
    assert!(
        r.snapshot
            .notes
            .iter()
            .any(|n| n.contains("stopped early") && n.contains("ttc max < 1ms")),
        "{:?}",
        r.snapshot.notes
    );
    assert_eq!(
        counter(&r, "runs.ok") + counter(&r, "runs.failed"),
        counter(&r, "runs.started")
    );
}
