//! Prometheus remote write and the Grafana dashboard, against a real
//! Prometheus (Debian's `prometheus`, started here with
//! `--web.enable-remote-write-receiver` on a free port; `.ci/run` installs
//! it): after a short run that pushes every second, every expression of
//! `deploy/grafana/chatload.json` (panels and run-marker annotations), with
//! Grafana's variables substituted, returns series carrying the run's tag
//! through Prometheus's HTTP API. Grafana itself cannot be installed here:
//! the dashboard's shape is checked structurally.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::free_port;

fn dashboard() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/chatload.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: (where, expr).
fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                format!(
                    "panel `{}` target {}",
                    p["title"].as_str().unwrap(),
                    t["refId"]
                ),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        out.push((
            format!("annotation `{}`", a["name"].as_str().unwrap()),
            a["expr"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[test]
fn the_dashboard_is_structurally_sound() {
    let d = dashboard();
    assert_eq!(d["uid"], "chatload-live");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "testid"]);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut cells = std::collections::BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        assert_eq!(p["type"], "timeseries");
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panels overlap at {cx},{cy}: {}",
                    p["title"]
                );
            }
        }
        let refs: Vec<&str> = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        let mut unique = refs.clone();
        unique.dedup();
        assert!(!refs.is_empty() && unique.len() == refs.len(), "{p}");
    }
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for want in [
        "ttfe",
        "ttc",
        "runs per second",
        "closes by code",
        "violations",
        "users and sockets",
        "generator health",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no `{want}` panel in {titles:?}"
        );
    }
    // Every expression filters on the run's tag and names a family chatload exports.
    let rec = chatload::metrics::Recorder::default();
    let none = Default::default();
    let exported: Vec<String> =
        chatload::metrics::families::families(chatload::metrics::families::Live {
            rec: &rec,
            users: 0,
            step_tags: &none,
            probes: &[],
        })
        .iter()
        .flat_map(|f| {
            let n = f.name;
            [n.to_string(), format!("{n}_total"), format!("{n}_bucket")]
        })
        .chain(["chatload_run_marker".to_string()])
        .collect();
    for (at, expr) in expressions(&d) {
        assert!(expr.contains("testid=~\"$testid\""), "{at}: {expr}");
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("chatload_"))
            .collect();
        assert!(!names.is_empty(), "{at}: {expr}");
        for n in names {
            assert!(
                exported.iter().any(|e| e == n),
                "{at}: `{n}` is not exported"
            );
        }
    }
}

/// A Prometheus on a free port with the remote-write receiver; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Starts Prometheus, on another port when the free one was taken meanwhile.
/// `None`: not installed here (outside CI).
fn start_prometheus() -> Option<Prometheus> {
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").unwrap();
        let log = dir.path().join("log");
        let port = free_port();
        let spawned = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: prometheus is not installed here ({e}; .ci/run installs Debian's prometheus)");
                return None;
            }
            Err(e) => panic!("prometheus is missing in CI: {e}"),
        };
        let mut p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = http_get(port, "/-/ready") {
                return Some(p);
            }
            if let Some(status) = p.child.try_wait().unwrap() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    text.contains("address already in use"),
                    "prometheus exited ({status}):\n{text}"
                );
                break; // a bind race: another port
            }
            assert!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no free port for prometheus after 5 attempts");
}

/// A short run that pushes every second.
fn scenario(dir: &Path) -> PathBuf {
    let f = dir.join("rw.toml");
    std::fs::write(
        &f,
        r#"version = 1
name = "rw"
[workload]
users = 3
ramp = [{ to = 3, over = "1s" }, { hold = "5s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "200ms"
[output]
interval = "1s"
"#,
    )
    .unwrap();
    f
}

/// An instant query; the result vector.
fn query(port: u16, expr: &str) -> Vec<Value> {
    let url =
        url::Url::parse_with_params("http://127.0.0.1/api/v1/query", [("query", expr)]).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap());
    let (status, body) = http_get(port, &path).expect("prometheus answers");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{expr}: {body}");
    assert_eq!(v["status"], "success", "{expr}: {body}");
    v["data"]["result"].as_array().unwrap().clone()
}

#[test]
fn every_dashboard_query_returns_the_runs_series_from_a_real_prometheus() {
    let Some(prom) = start_prometheus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let testid = format!("rw-{}", std::process::id());
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", scenario(dir.path()).to_str().unwrap(), "-q", "--out"])
        .arg(dir.path().join("out"))
        .arg("--remote-write")
        .arg(format!("http://127.0.0.1:{}/api/v1/write", prom.port))
        .args(["--tag", &format!("testid={testid}"), "--tag", "branch=main"])
        .env_remove("CHATLOAD_JWT_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("remote write"), "a push failed: {err}");
    let snap = std::fs::read_to_string(dir.path().join("out/snapshot.json")).unwrap();
    assert!(!snap.contains("remote write:"), "{snap}");

    // The pushed totals are the run's own.
    let snap = chatload::metrics::Snapshot::from_json(&snap).unwrap();
    let ok = query(
        prom.port,
        &format!("chatload_runs_total{{outcome=\"ok\", testid=\"{testid}\"}}"),
    );
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(
        ok[0]["value"][1].as_str().unwrap(),
        snap.counters["runs.ok"].to_string()
    );
    assert_eq!(ok[0]["metric"]["branch"], "main");

    let d = dashboard();
    for (at, expr) in expressions(&d) {
        let e = expr
            .replace("$__rate_interval", "30s")
            .replace("$__interval", "1s")
            .replace("$testid", &testid);
        let series = query(prom.port, &e);
        assert!(!series.is_empty(), "{at}: `{e}` returned no series");
        for s in &series {
            assert_eq!(s["metric"]["testid"], testid.as_str(), "{at}: {s}");
        }
    }
    // The start and end markers name the run.
    for event in ["start", "end"] {
        let m = query(
            prom.port,
            &format!("chatload_run_marker{{event=\"{event}\", testid=\"{testid}\"}}"),
        );
        assert_eq!(m.len(), 1, "{event}: {m:?}");
        assert_eq!(m[0]["metric"]["run_id"], snap.run_id.as_str());
    }
}

/// A remote-write host outside `target.allow`, or a URL that is not
/// http(s), is a usage error before anything is sent.
#[test]
fn a_remote_write_url_outside_the_allow_list_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (url, why) in [
        (
            "http://metrics.example.com/api/v1/write",
            "not in the scenario's target.allow",
        ),
        (
            "ftp://127.0.0.1/write",
            "must be an http:// or https:// URL",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args([
                "run",
                scenario(dir.path()).to_str().unwrap(),
                "--remote-write",
                url,
                "--out",
            ])
            .arg(dir.path().join("out"))
            .env_remove("CHATLOAD_JWT_SECRET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(why), "{url}: {err}");
        assert!(!dir.path().join("out").exists(), "{url}: a run started");
    }
}

/// A hostile remote-write endpoint: answers every push with a 307 to a second
/// listener and echoes the request's `Authorization` header in its body.
/// Returns the headers it saw; the second listener counts its connections.
fn hostile_endpoint() -> (
    u16,
    std::sync::mpsc::Receiver<String>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (port_a, port_b) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let hops = std::sync::Arc::new(AtomicUsize::new(0));
    let h = hops.clone();
    std::thread::spawn(move || {
        for c in b.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut c in a.incoming().flatten() {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            // Read the head; the body is small and may be left unread.
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&got).to_string();
            let auth = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or(l.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .to_string();
            let body = format!("{{\"echo\":\"{auth}\"}}");
            let _ = write!(
                c,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port_b}/api/v1/write\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tx.send(auth);
        }
    });
    (port_a, rx, hops)
}

#[test]
fn remote_write_credentials_come_from_the_environment_and_appear_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    // Credentials in the URL are refused before anything is sent, and the
    // refusal does not print them.
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            scenario(dir.path()).to_str().unwrap(),
            "--remote-write",
            "http://promuser:SekritRWtoken99@127.0.0.1:1/api/v1/write",
            "--out",
        ])
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("remote_write_auth_env"), "{err}");
    assert!(!err.contains("SekritRWtoken99"), "{err}");
    assert!(!dir.path().join("refused").exists());

    // From the environment: sent as the Authorization header, never followed
    // through a redirect, and redacted where the endpoint echoes it.
    let secret = "Basic cHJvbXVzZXI6U2Vrcml0UldUb2tlbjk5";
    let (port, seen, hops) = hostile_endpoint();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            scenario(dir.path()).to_str().unwrap(),
            "--remote-write",
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            "--remote-write-auth-env",
            "CHATLOAD_TEST_RW_AUTH",
            "--out",
        ])
        .arg(&out)
        .env("CHATLOAD_TEST_RW_AUTH", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "a failing push never fails the run: {stderr}"
    );
    let first = seen.recv_timeout(Duration::from_secs(10)).expect("a push");
    assert_eq!(first, secret, "the header carries the variable's value");
    assert!(stderr.contains("warning: remote write to"), "{stderr}");
    assert!(stderr.contains("307"), "{stderr}");
    assert_eq!(
        hops.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a redirect is not followed"
    );
    let mut texts = vec![stdout.to_string(), stderr.to_string()];
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let p = e.path();
        let files: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(&p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect()
        } else {
            vec![p]
        };
        for f in files {
            texts.push(String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned());
        }
    }
    assert!(texts.len() > 3, "the run wrote its reports");
    for t in &texts {
        assert!(
            !t.contains("cHJvbXVzZXI6U2Vrcml0UldUb2tlbjk5"),
            "the credential leaked: {t}"
        );
    }
}
