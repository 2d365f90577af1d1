//! The HTML pages in a real browser (Debian's Chromium, headless; see
//! `tests/chromium/mod.rs`): a finished run's report and a capacity
//! search's report lay out every expected chart, with every label inside
//! its chart and no page error; the live page at `/` during a run shows
//! numbers that change between two reads and match `/live.json`.

mod chromium;
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use chromium::{check_result, dump_dom, CHECK_SCRIPT};

/// Runs the binary on a scenario file with extra arguments; the run's folder.
fn run(dir: &Path, scenario: &Path, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .arg(scenario)
        .args(extra)
        .args(["-q", "--out"])
        .arg(&out)
        .env_remove("CHATLOAD_JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.join("report.html").exists(),
        "no report: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The report with the check script added, as the browser left it.
fn check_report(out: &Path) -> Option<serde_json::Value> {
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let checked = html.replacen("</body>", &format!("{CHECK_SCRIPT}</body>"), 1);
    let page = out.join("checked.html");
    std::fs::write(&page, checked).unwrap();
    let dom = dump_dom(&format!("file://{}", page.display()), 3000)?;
    Some(check_result(&dom))
}

/// Every chart laid out, drawn, with its labels inside it; no page error.
fn assert_charts(result: &serde_json::Value, expected: &BTreeSet<String>) {
    assert_eq!(result["errors"].as_array().unwrap().len(), 0, "{result}");
    let charts = result["charts"].as_array().unwrap();
    let ids: BTreeSet<String> = charts
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&ids, expected, "{result}");
    for c in charts {
        assert!(c["width"].as_f64().unwrap() > 200.0, "{c}");
        assert!(c["height"].as_f64().unwrap() > 100.0, "{c}");
        assert!(c["lines"].as_u64().unwrap() >= 2, "{c}");
        assert!(c["texts"].as_u64().unwrap() >= 6, "{c}");
        assert_eq!(
            c["outside"].as_array().unwrap().len(),
            0,
            "label outside: {c}"
        );
    }
}

fn chart<'a>(result: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    result["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
}

#[test]
fn a_short_runs_report_shows_every_chart_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // 11 s: a 5 s ramp and a 6 s hold.
    let scenario = Path::new("scenarios/smoke.toml");
    let out = run(dir.path(), scenario, &["--users", "5", "--duration", "6s"]);
    let Some(result) = check_report(&out) else {
        return;
    };
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("snapshot.json")).unwrap()).unwrap();
    let mut expected: BTreeSet<String> = [
        "ttfe-over-time",
        "ttc-over-time",
        "runs-per-second",
        "ws_connect-spectrum",
        "ttfe-spectrum",
        "ttc-spectrum",
    ]
    .map(String::from)
    .into();
    for (m, h) in snap["histograms"].as_object().unwrap() {
        if h["count"].as_u64().unwrap() > 0 {
            expected.insert(format!("{m}-distribution"));
        }
    }
    assert_charts(&result, &expected);
    // A short run still draws a curve: a point per 1 s interval, not two.
    let intervals = snap["intervals"].as_array().unwrap().len();
    assert!(intervals >= 9, "{intervals} intervals");
    let ttc = chart(&result, "ttc-over-time");
    assert!(ttc["lines"].as_u64().unwrap() >= 3, "{ttc}");
}

#[test]
fn a_capacity_report_shows_its_knee_chart_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/capacity.toml"),
    )
    .unwrap();
    // Three short steps of the same search.
    let scenario = base
        .replace("max = 40", "max = 12")
        .replace("step_duration = \"8s\"", "step_duration = \"3s\"")
        .replace("warmup = \"2s\"", "warmup = \"1s\"");
    assert_ne!(scenario, base);
    let file = dir.path().join("capacity.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = run(dir.path(), &file, &[]);
    let Some(result) = check_report(&out) else {
        return;
    };
    let knee = chart(&result, "knee");
    // p50, p95, p99 and the SLO line, each a polyline or path.
    assert!(knee["lines"].as_u64().unwrap() >= 4, "{knee}");
    assert_eq!(knee["outside"].as_array().unwrap().len(), 0, "{knee}");
    let ids: BTreeSet<String> = result["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_charts(&result, &ids);
    assert!(ids.contains("ttc-spectrum") && ids.contains("ttc-over-time"));
}

/// A plain HTTP GET on 127.0.0.1 (the body), `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// Until `/live.json`'s figures satisfy `done` (a bounded wait on a
/// condition, polled every 100 ms).
fn wait_for(port: u16, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let json = http_get(port, "/live.json")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
        if json.is_some_and(|j| done(&j["figures"])) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the live figures did not move"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The text of the element with this id in a dumped DOM.
fn by_id(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!(r#"id="{id}">"#))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"))
        + id.len()
        + 6;
    dom[at..at + dom[at..].find('<').unwrap()].to_string()
}

/// One read of the live page: its figures, as the browser shows them.
struct Read {
    elapsed_s: u64,
    runs_ok: u64,
    line: String,
    dom: String,
}

fn read_live_page(port: u16) -> Option<Read> {
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"), 2500)?;
    let n = |id: &str| {
        by_id(&dom, id)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("#{id}: {dom}"))
    };
    // The page shows the progress line, built from the same figures as its cards.
    let line = by_id(&dom, "line");
    let expected = format!(
        "{}s/{}s  users {}/{}  runs/s {}  ttfe p95 {}  1011s {}  failed {}",
        n("elapsed_s"),
        n("total_s"),
        n("connected"),
        n("users"),
        n("runs_per_s"),
        by_id(&dom, "ttfe_p95").replace("&nbsp;", " "),
        n("closes_1011"),
        n("failed")
    );
    assert_eq!(line, expected);
    Some(Read {
        elapsed_s: n("elapsed_s"),
        runs_ok: n("runs_ok"),
        line,
        dom,
    })
}

#[test]
fn the_live_page_shows_the_runs_numbers_changing_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // Long enough for both reads on a loaded machine; stopped once read.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/smoke.toml",
            "--users",
            "5",
            "--duration",
            "60s",
            "-q",
        ])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .env_remove("CHATLOAD_JWT_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, |f| f["runs_ok"].as_u64() > Some(0));
    let reads = (|| {
        let first = read_live_page(port)?;
        // Until the run has moved on from what the first read showed.
        wait_for(port, |f| {
            f["elapsed_s"].as_u64() > Some(first.elapsed_s)
                && f["runs_ok"].as_u64() > Some(first.runs_ok)
        });
        Some((first, read_live_page(port)?))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let Some((first, second)) = reads else {
        return;
    };
    assert!(
        second.elapsed_s > first.elapsed_s,
        "{} then {}",
        first.line,
        second.line
    );
    assert!(
        second.runs_ok > first.runs_ok,
        "{} then {}",
        first.line,
        second.line
    );
    for id in ["live-ttfe", "live-runs"] {
        let at = second.dom.find(&format!(r#"data-chart="{id}""#)).unwrap();
        let fig = &second.dom[at..at + second.dom[at..].find("</figure>").unwrap()];
        assert!(fig.contains("<polyline"), "{id} not drawn: {fig}");
        assert!(fig.contains(">p95<") || fig.contains(">ok<"), "{fig}");
    }
    assert_eq!(by_id(&second.dom, "status"), "", "the page lost the run");
}
