//! Bad or hostile input files (issue 14): each is refused with a clear
//! reason and exit 2, quickly, without reading without bound or printing
//! without bound.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn chatload(args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(args)
        .output()
        .expect("chatload runs");
    (out, t0.elapsed())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const HEAD: &str = "version = 1\nname = \"hostile\"\n[workload]\nusers = 1\nduration = \"1s\"\n[[journey]]\nstep = \"connect\"\n";

/// 5,000 problems in one file used to be printed one per line (a 55 MB file
/// printed 733 MB); now the first 200 are listed and the rest counted.
#[test]
fn a_file_with_thousands_of_problems_lists_the_first_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.toml");
    let mut s = String::from(HEAD);
    s.push_str("[target]\n");
    for i in 0..5000 {
        s.push_str(&format!("junk_{i} = 1\n"));
    }
    std::fs::write(&path, s).unwrap();
    let (out, _) = chatload(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("5000 problems found"),
        "{}",
        &t[..t.len().min(500)]
    );
    assert!(
        t.contains("... and 4800 more problems"),
        "{}",
        &t[t.len().saturating_sub(500)..]
    );
    assert!(
        t.lines().count() <= 210,
        "{} lines printed",
        t.lines().count()
    );
}

#[test]
fn a_scenario_that_is_not_a_regular_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    // A directory, a FIFO (nothing ever writes it: reading it would block
    // forever) and a device.
    let fifo = dir.path().join("fifo.toml");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    for (path, kind) in [
        (dir.path().to_path_buf(), "a directory"),
        (fifo, "a FIFO"),
        ("/dev/zero".into(), "a device"),
    ] {
        let (out, took) = chatload(&["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", text(&out));
        assert!(text(&out).contains(kind), "{kind}: {}", text(&out));
        // A safety bound, not a speed target: the refusal does not wait on the input.
        assert!(took < Duration::from_secs(10), "{kind} took {took:?}");
    }
}

#[test]
fn an_oversized_scenario_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let mut s = String::from(HEAD);
    s.push_str(&format!(
        "description = \"{}\"\n",
        "x".repeat(5 * 1024 * 1024)
    ));
    std::fs::write(&path, s).unwrap();
    let (out, _) = chatload(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("a scenario may have at most 4194304"),
        "{}",
        text(&out)
    );
}

fn scenario_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const JOURNEY: &str = "[[journey]]\nstep = \"connect\"\n";

/// `users = 1000000000` passed `validate` and a `run` grew to 4.6 GB printing
/// nothing; a hold of 10^14 hours and a NUL in the name were accepted.
#[test]
fn caps_catch_a_typo_in_validate_and_run_and_limits_raise_them() {
    let dir = tempfile::tempdir().unwrap();
    for (file, body, want) in [
        (
            "users.toml",
            format!("version = 1\nname = \"u\"\n[workload]\nusers = 1000000000\nduration = \"10s\"\n{JOURNEY}"),
            "1000000000 users is over the limit of 50000",
        ),
        (
            "hold.toml",
            format!("version = 1\nname = \"h\"\n[workload]\nusers = 1\nduration = \"100000000000000h\"\n{JOURNEY}"),
            "over the limit of 1day",
        ),
        (
            "rate.toml",
            format!("version = 1\nname = \"r\"\n[workload]\nmodel = \"open\"\nmax_users = 10\nrate = 20000\nduration = \"10s\"\n{JOURNEY}"),
            "20000 arrivals per second is over the limit of 10000",
        ),
        (
            "name.toml",
            format!("version = 1\nname = \"a\\u0000b\"\n[workload]\nusers = 1\nduration = \"1s\"\n{JOURNEY}"),
            "must not contain control characters (found U+0000)",
        ),
    ] {
        let path = scenario_file(&dir, file, &body);
        for cmd in ["validate", "run"] {
            let (out, took) = chatload(&[cmd, &path]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {file}: {}", text(&out));
            assert!(text(&out).contains(want), "{cmd} {file}: {}", text(&out));
            assert!(took < Duration::from_secs(10), "{cmd} {file} took {took:?}");
        }
    }
    // Raised on purpose, the same plan is accepted (validate only: nothing runs).
    let raised = scenario_file(
        &dir,
        "raised.toml",
        &format!("version = 1\nname = \"big\"\n[limits]\nmax_users = 2000000000\n[workload]\nusers = 1000000000\nduration = \"10s\"\n{JOURNEY}"),
    );
    let (out, _) = chatload(&["validate", &raised]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A command-line override is held to the same caps.
    let small = scenario_file(
        &dir,
        "small.toml",
        &format!("version = 1\nname = \"s\"\n[workload]\nusers = 1\nduration = \"1s\"\n{JOURNEY}"),
    );
    let (out, _) = chatload(&["run", &small, "--users", "60000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("60000 users is over the limit"),
        "{}",
        text(&out)
    );
}

fn file_mode(tokens_file: &str, extra: &str) -> String {
    format!("version = 1\nname = \"t\"\n[auth]\nmode = \"file\"\ntokens_file = \"{tokens_file}\"\nreuse_tokens = true\n{extra}[workload]\nusers = 1\nduration = \"1s\"\n{JOURNEY}")
}

/// `tokens_file = "/dev/zero"` grew to 8.2 GB in 20 s, a data file linked to
/// /dev/urandom to 6.4 GB, and a FIFO blocked forever.
#[test]
fn tokens_and_data_files_must_be_regular_files_within_their_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tokens.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let link = dir.path().join("rows.csv");
    std::os::unix::fs::symlink("/dev/urandom", &link).unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "tok\n".repeat(1000)).unwrap();
    let cases = [
        (file_mode("/dev/zero", ""), "is a device, not a regular file"),
        (file_mode(dir.path().to_str().unwrap(), ""), "is a directory, not a regular file"),
        (file_mode(fifo.to_str().unwrap(), ""), "auth.tokens_file_stream = true"),
        (
            format!("version = 1\nname = \"d\"\n[data]\nfile = \"{}\"\n[workload]\nusers = 1\nduration = \"1s\"\n{JOURNEY}", link.display()),
            "is a device, not a regular file",
        ),
        (
            file_mode(big.to_str().unwrap(), "").replace("[workload]", "[limits]\nmax_input_bytes = 100\n[workload]"),
            "has 4000 bytes, over the limit of 100",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let path = scenario_file(&dir, &format!("case{i}.toml"), body);
        for cmd in ["validate", "run"] {
            let (out, took) = chatload(&[cmd, &path]);
            assert_eq!(out.status.code(), Some(2), "{cmd} case {i}: {}", text(&out));
            assert!(text(&out).contains(want), "{cmd} case {i}: {}", text(&out));
            assert!(
                took < Duration::from_secs(10),
                "{cmd} case {i} took {took:?}"
            );
        }
    }
}

/// A FIFO is a normal way to pass secrets: allowed when asked for, read once
/// with a size cap, and given up on when nothing writes it.
#[test]
fn a_tokens_stream_is_read_once_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tokens.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let path = scenario_file(
        &dir,
        "stream.toml",
        &file_mode(fifo.to_str().unwrap(), "tokens_file_stream = true\n"),
    );
    // A writer that hands over two tokens, then closes.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, "token-a\n# comment\ntoken-b\n").unwrap())
    };
    let (out, _) = chatload(&["validate", &path]);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nobody writes: the read gives up after its timeout (10 s) with a reason.
    let (out, took) = chatload(&["validate", &path]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("delivered nothing complete within 10s"),
        "{}",
        text(&out)
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// `validate` passed a file whose target `run` refuses (a host outside
/// `target.allow`); now it says what `run` would refuse and exits 2.
#[test]
fn validate_flags_a_target_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        (
            "[target]\nurl = \"wss://staging.example.com/ws\"\n",
            "target host `staging.example.com` is not in the scenario's target.allow",
        ),
        (
            "[auth]\nmode = \"login\"\n[auth.login]\nurl = \"https://auth.example.com/login\"\n",
            "the login endpoint's host `auth.example.com` is not in the scenario's target.allow",
        ),
    ] {
        let path = scenario_file(
            &dir,
            "refused.toml",
            &format!("version = 1\nname = \"v\"\n{extra}[workload]\nusers = 1\nduration = \"1s\"\n{JOURNEY}"),
        );
        let (out, _) = chatload(&["validate", &path]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(want), "{}", text(&out));
    }
}

/// A run past its memory safety limit stops, keeps and writes everything it
/// measured, and ends ABORTED (exit 3). A limit of 1 MiB is passed at once.
#[test]
fn a_run_over_its_memory_limit_aborts_and_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(
        &dir,
        "memory.toml",
        &format!("version = 1\nname = \"m\"\n[limits]\nmax_rss = \"1MiB\"\n[workload]\nusers = 2\nduration = \"60s\"\n{JOURNEY}"),
    );
    let out_dir = dir.path().join("out");
    let (out, took) = chatload(&["run", &path, "--out", out_dir.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} of a 60 s plan"
    );
    let snapshot = std::fs::read_to_string(out_dir.join("snapshot.json")).unwrap();
    assert!(
        snapshot.contains("over its safety limit of 1 MiB"),
        "{snapshot}"
    );
    for f in ["report.md", "report.html", "junit.xml"] {
        assert!(out_dir.join(f).is_file(), "{f} not written");
    }
}

/// A disk that fills mid-run (here: a file size limit, RLIMIT_FSIZE, with
/// SIGXFSZ ignored so writes fail with EFBIG) lost all but the first
/// interval and left `snapshot.json.tmp`. Now the run stops, ends ABORTED,
/// keeps every interval written before the failure and leaves no `.tmp`.
#[test]
fn a_full_disk_mid_run_aborts_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(
        &dir,
        "disk.toml",
        &format!("version = 1\nname = \"disk\"\n[output]\ninterval = \"1s\"\ncheckpoint = \"1s\"\n[workload]\nusers = 2\nduration = \"60s\"\n{JOURNEY}[[journey]]\nstep = \"send\"\nmessage = {{ type = \"start_agent\", payload = {{ user_request = \"hi\", run_id = \"{{{{run}}}}\" }} }}\n[[journey]]\nstep = \"await\"\ntimeout = \"5s\"\n"),
    );
    let out_dir = dir.path().join("out");
    let t0 = Instant::now();
    // `trap "" XFSZ` is inherited across exec: the limit makes writes fail
    // instead of killing the process.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize=40000 {} run {path} --out {} -q",
            env!("CARGO_BIN_EXE_chatload"),
            out_dir.display()
        ))
        .output()
        .expect("sh runs");
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        took < Duration::from_secs(40),
        "took {took:?} of a 60 s plan"
    );
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(
        text(&out).contains("a write of the run's files failed")
            || text(&out).contains("cannot write"),
        "{}",
        text(&out)
    );
    // What was written before the failure is whole and recoverable.
    let counters = std::fs::read_to_string(out_dir.join("intervals.counters.jsonl")).unwrap();
    let whole = counters.lines().filter(|l| l.ends_with('}')).count();
    assert!(whole >= 1, "no interval kept: {counters}");
    let (rec, _) = chatload(&[
        "report",
        "--recover",
        out_dir.to_str().unwrap(),
        "--format",
        "md",
    ]);
    let recovered =
        std::fs::read_to_string(out_dir.join("recovered").join("snapshot.json")).unwrap();
    let snap: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    assert_eq!(
        snap["intervals"].as_array().map(Vec::len),
        Some(whole),
        "{}",
        text(&rec)
    );
}
