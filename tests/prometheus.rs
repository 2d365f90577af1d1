//! `/metrics` as Prometheus's own tools read it: a scrape taken mid-run
//! passes `promtool check metrics` (Debian's `prometheus` package, which
//! `.ci/run` installs), with classic histograms, help text on every family,
//! every failure class and the usual close codes at 0, and the run's tags
//! on every series.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Starts `chatload run` on the smoke scenario with live metrics on `port`.
fn start(port: u16, out: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/smoke.toml",
            "--users",
            "5",
            "--duration",
            "8s",
            "-q",
        ])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .arg("--out")
        .arg(out)
        .env_remove("CHATLOAD_JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls until a scrape shows completed runs (a condition, not a fixed sleep).
fn scrape_mid_run(port: u16, accept: Option<&str>, ok_line: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((head, body)) = scrape(port, accept) {
            if body
                .lines()
                .any(|l| l.starts_with(ok_line) && l.rsplit(' ').next().is_some_and(|v| v != "0"))
            {
                return (head, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no metrics with completed runs appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_mid_run_scrape_passes_promtool_check_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(
        port,
        &dir.path().join("out"),
        &["--tag", "testid=promtool-1", "--tag", "branch=main"],
    );
    let ok_line = "chatload_runs_total{branch=\"main\",testid=\"promtool-1\",outcome=\"ok\"}";
    let (head, body) = scrape_mid_run(port, None, ok_line);
    let (om_head, om_body) =
        scrape(port, Some("application/openmetrics-text; version=1.0.0")).expect("a second scrape");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        om_head.contains("application/openmetrics-text"),
        "{om_head}"
    );
    assert!(om_body.ends_with("# EOF\n"), "{om_body}");

    // Tags on every series; every family with help text; classic histograms.
    let series: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(series.len() > 50, "{body}");
    for l in &series {
        assert!(
            l.contains("{branch=\"main\",testid=\"promtool-1\""),
            "untagged: {l}"
        );
    }
    let types = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = body.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types, helps, "{body}");
    assert!(
        body.contains("# TYPE chatload_latency_seconds histogram"),
        "{body}"
    );
    assert!(!body.contains("quantile="), "{body}");
    for code in ["1000", "1001", "1006", "1008", "1011"] {
        assert!(
            body.contains(&format!("code=\"{code}\"}}")),
            "close code {code} missing:\n{body}"
        );
    }
    for class in chatload::names::RUN_FAILURES
        .iter()
        .chain(chatload::names::VIOLATIONS)
    {
        assert!(
            body.contains(&format!("chatload_runs_failed_total{{branch=\"main\",testid=\"promtool-1\",class=\"{class}\"}}")),
            "failure class {class} missing:\n{body}"
        );
    }

    promtool_check(&body);
}
