//! A run whose stderr is a file (CI, a container log) prints one plain
//! progress line per interval there (thinned by `[output] progress_every`),
//! and its stdout holds only chatload's own summary: nothing from goose.

use std::process::{Command, Stdio};

/// A closed-model scenario of `hold` seconds after a 1 s ramp, with `output`.
fn scenario(dir: &std::path::Path, output: &str) -> std::path::PathBuf {
    let f = dir.join("p.toml");
    std::fs::write(
        &f,
        format!(
            r#"version = 1
name = "plain"
[workload]
users = 2
ramp = [{{ to = 2, over = "1s" }}, {{ hold = "5s" }}]
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "200ms"
[output]
{output}
"#
        ),
    )
    .unwrap();
    f
}

/// Runs with stderr into a file; (stdout, stderr file text, run seconds).
fn run(output: &str) -> (String, String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(dir.path(), output);
    let out = dir.path().join("out");
    let err_path = dir.path().join("stderr.log");
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", f.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env_remove("CHATLOAD_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    let snap = chatload::metrics::Snapshot::from_json(
        &std::fs::read_to_string(out.join("snapshot.json")).unwrap(),
    )
    .unwrap();
    (
        stdout,
        std::fs::read_to_string(err_path).unwrap(),
        snap.duration_s,
    )
}

fn progress_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.starts_with("progress ")).collect()
}

#[test]
fn stderr_to_a_file_gets_one_progress_line_per_interval_and_stdout_only_the_summary() {
    let (stdout, err, secs) = run("interval = \"1s\"");
    let lines = progress_lines(&err);
    // One per whole interval of the run (the last may fall after the end).
    let whole = secs.floor() as usize;
    assert!(
        lines.len() + 1 >= whole && lines.len() <= whole,
        "{} lines over {secs}s:\n{err}",
        lines.len()
    );
    let mut last = 0;
    for (i, l) in lines.iter().enumerate() {
        let words: Vec<&str> = l.split_whitespace().collect();
        // The i-th line comes after i + 1 intervals (later on a loaded machine).
        let secs: u64 = words[1].strip_suffix("s/6s").unwrap().parse().unwrap();
        assert!(secs >= last && secs > i as u64, "{l}\n{err}");
        last = secs;
        // Users: connected now / wanted by the plan (at most 2 each).
        let (connected, wanted) = words[3].split_once('/').expect(l);
        assert!(connected.parse::<u64>().unwrap() <= 2, "{l}");
        assert!(wanted.parse::<u64>().unwrap() <= 2, "{l}");
        for (k, at) in [
            ("users", 2),
            ("runs/s", 4),
            ("ttfe_p95", 6),
            ("gen_delay_p99", 8),
            ("1011s", 10),
            ("failed", 12),
        ] {
            assert_eq!(words[at], k, "{l}");
        }
    }
    assert!(
        lines.iter().any(|l| l.contains(" users 2/2 ")),
        "no line had both users connected:\n{err}"
    );
    assert!(
        lines.iter().any(|l| !l.contains("ttfe_p95 - ")),
        "no line had a ttfe p95:\n{err}"
    );
    // stdout: chatload's summary only; goose's own line went to stderr.
    assert!(!stdout.contains("users launched"), "{stdout}");
    assert!(err.contains("users launched"), "{err}");
    assert!(progress_lines(&stdout).is_empty(), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("PASS: reports in "),
        "{stdout}"
    );
}

#[test]
fn progress_every_thins_the_lines() {
    let (_, err, secs) = run("interval = \"1s\"\nprogress_every = \"3s\"");
    let lines = progress_lines(&err);
    let whole = (secs / 3.0).floor() as usize;
    assert!(
        lines.len() + 1 >= whole && lines.len() <= whole && !lines.is_empty(),
        "{} lines over {secs}s:\n{err}",
        lines.len()
    );
    assert!(
        lines[0].starts_with("progress 3s/6s ") || lines[0].starts_with("progress 4s/6s "),
        "{err}"
    );
}
