//! A generator starved of CPU says so (issue 17): pinned to one core that a
//! CPU hog holds (the generator at nice 19), its `generator_delay` is large,
//! `generator.saturated` is true with the reason, and the run is INVALID
//! (exit 4) by the `generator_delay` cause, while the reference server runs
//! in its own process on another core. Its own test binary: the hog must
//! not slow other tests' runs.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, KillOnDrop, SECRET};

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&i| libc::CPU_ISSET(i, &set))
            .collect()
    }
}

/// Pins the calling thread (or, before exec, the child) to `cpu`.
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as above; sched_setaffinity(0) is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A command that runs pinned to `cpu` at `nice`.
fn pinned(cpu: usize, nice: i32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            pin(cpu)?;
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

const SCENARIO: &str = r#"version = 1
name = "starved"
[workload]
users = 40
ramp = [{ to = 40, over = "1s" }, { hold = "8s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "20s"
[[journey]]
step = "think"
duration = "100ms"
"#;

#[test]
fn a_generator_starved_of_cpu_is_saturated_and_the_run_invalid() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs two CPUs (one for the hog and the generator, one for the server); it has {cpus:?}"
        );
        eprintln!("skipped: needs two CPUs, has {cpus:?}");
        return;
    }
    let (gen_cpu, server_cpu) = (cpus[0], cpus[cpus.len() - 1]);
    let port = free_port();
    let server = pinned(server_cpu, 0)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The hog: a thread of this process spinning on the generator's core.
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(gen_cpu).expect("pin the hog");
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("starved.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = dir.path().join("out");
    let run = pinned(gen_cpu, 19)
        .arg("run")
        .arg(&scenario)
        .args(["--target", &format!("ws://127.0.0.1:{port}/ws"), "-q"])
        .arg("--out")
        .arg(&out)
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();

    let stdout = String::from_utf8_lossy(&run.stdout);
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("snapshot.json")).unwrap()).unwrap();
    let g = &snap["generator"];
    let why = format!("generator: {g}\nstdout: {stdout}");
    assert!(
        snap["counters"]["runs.ok"].as_u64().unwrap_or(0) > 0,
        "{why}"
    );
    assert_eq!(g["receive_times"], "kernel", "{why}");
    assert_eq!(
        g["usable_cpus"].as_f64(),
        Some(1.0),
        "pinned to one CPU: {why}"
    );
    assert!(
        g["cpus_busy"].as_f64().unwrap() > 0.9,
        "the hog held it: {why}"
    );
    let p99 = g["delay_p99_us"].as_u64().unwrap();
    let p50 = g["delay_p50_us"].as_u64().unwrap();
    eprintln!("{why}");
    assert!(p99 > 25_000 && p99 >= p50, "{why}");
    assert_eq!(g["saturated"], true, "{why}");
    let by = g["saturated_by"].to_string();
    assert!(
        by.contains("busy") && by.contains("generator_delay"),
        "{why}"
    );
    let causes = snap["validity"].as_array().expect("validity causes");
    assert!(
        causes.iter().any(|c| c["cause"] == "generator_delay"),
        "{why}\nvalidity: {causes:?}"
    );
    assert_eq!(run.status.code(), Some(4), "INVALID: {why}");
    assert!(stdout.contains("INVALID"), "{stdout}");
}
