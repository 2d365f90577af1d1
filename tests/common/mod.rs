//! Helpers shared by the integration tests: scenario text, a lock that keeps
//! goose runs in one process from overlapping (goose keeps process-wide state:
//! its ctrl-c kill switch and logger), and a temporary output folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use tokio::sync::{Mutex, MutexGuard};

use chatload::auth::Secret;
use chatload::run::{RunRequest, RunResult};
use chatload::scenario::Scenario;

static GOOSE: Mutex<()> = Mutex::const_new(());

/// Holds the process-wide goose lock for the duration of a test.
pub async fn goose_lock() -> MutexGuard<'static, ()> {
    GOOSE.lock().await
}

pub const SECRET: &str = "integration-test-signing-key";

/// A scenario where every user runs the journey `iterations` times.
pub fn iterations_scenario(users: u64, iterations: u64, extra: &str) -> String {
    format!(
        r#"
version = 1
name = "it"
seed = 7
[workload]
users = {users}
iterations = {iterations}
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
{extra}
"#
    )
}

/// A port that was free a moment ago, for a process this test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn parse(text: &str) -> Scenario {
    Scenario::parse(Path::new("test.toml"), text.to_string()).unwrap_or_else(|d| panic!("{d}"))
}

pub fn out_dir(tag: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join(tag);
    (dir, p)
}

/// A request for one run of `scenario` into `out` (seed 7, no goose report,
/// no progress line, one process); tests change the fields they need.
pub fn request(
    scenario: Scenario,
    target: Option<String>,
    secret: &str,
    out: PathBuf,
) -> RunRequest {
    RunRequest {
        scenario,
        target,
        secret: Secret::new(secret),
        seed: 7,
        out: Some(out),
        goose_report: false,
        baseline: None,
        progress: false,
        shard: Default::default(),
        start_at: None,
        metrics_addr: None,
        history: None,
    }
}

pub async fn run(
    scenario: Scenario,
    target: Option<String>,
    secret: &str,
    out: PathBuf,
) -> RunResult {
    let req = request(scenario, target, secret, out);
    let r = match chatload::run::run(req).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    // Every snapshot the suite writes must satisfy the committed schema.
    check_schema(
        &std::fs::read_to_string(r.out_dir.join("snapshot.json")).expect("snapshot written"),
    );
    r
}

/// Validates snapshot text against `schema/snapshot.schema.json`.
pub fn check_schema(snapshot: &str) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/snapshot.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let doc: serde_json::Value = serde_json::from_str(snapshot).expect("snapshot is JSON");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "snapshot does not match the schema: {errors:#?}"
    );
}

pub fn counter(r: &RunResult, k: &str) -> u64 {
    r.snapshot.counters.get(k).copied().unwrap_or(0)
}

pub fn truth(r: &RunResult, k: &str) -> u64 {
    r.snapshot
        .server_truth
        .as_ref()
        .and_then(|t| t.get(k))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// `GET /metrics` with an optional `Accept` header: (head, body).
pub fn scrape(port: u16, accept: Option<&str>) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{accept}\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// `promtool check metrics` on an exposition: clean, or the test fails.
/// Without promtool the check is skipped, except with `CI` set (`.ci/run`
/// installs Debian's prometheus).
pub fn promtool_check(body: &str) {
    use std::process::{Command, Stdio};
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut check = match check {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: promtool is not installed here ({e}; .ci/run installs Debian's prometheus)");
            return;
        }
        Err(e) => panic!("promtool is missing in CI: {e}"),
    };
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool: {text}\n{body}"
    );
}

/// A child process (a server, a run), killed however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `chatload serve` in its own process (its RSS is its own) with a fault
/// plan, once it accepts connections: the process and its port.
pub fn serve_process(faults: &str) -> (KillOnDrop, u16) {
    use std::time::{Duration, Instant};
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--faults",
            faults,
        ])
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(child);
    // Polls for the listening port (a condition, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}
