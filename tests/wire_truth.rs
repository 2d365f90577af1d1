//! Wire truth (issue 17): chatload's latencies against a packet capture of
//! the loopback wire. `bench/wire_truth.py` runs `chatload serve` and a
//! closed-model load (20 users, think 500 ms, 10 s) under `tcpdump -i lo`,
//! times every run on the wire (its `start_agent`, its first event, its
//! `agent_completed`, each at the packet carrying the frame's last byte)
//! and pairs them by run_id with chatload's `runs.jsonl`. chatload's clock
//! starts and stops in user space, so its figures include the time a frame
//! waits for the generator; at this light load that must stay within 30 us
//! on the mean ttfe. Without tcpdump (or the right to capture) the test is
//! skipped, except with `CI` set (`.ci/run` installs tcpdump).

use std::process::Command;

use serde_json::Value;

/// The bound on |chatload's mean ttfe - the wire's| (issue 17's acceptance).
const MEAN_TTFE_WITHIN_US: f64 = 30.0;

/// The script's exit status when it cannot measure here.
const CANNOT_MEASURE: i32 = 77;

/// One capture and its comparison; None: cannot measure here (skipped).
fn capture() -> Option<Value> {
    let run = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench/wire_truth.py", "--json", "--users", "20"])
        .args(["--think", "500ms", "--seconds", "10"])
        .args(["--bin", env!("CARGO_BIN_EXE_chatload")])
        .output();
    let ci = std::env::var_os("CI").is_some();
    let o = match run {
        Ok(o) => o,
        Err(e) if !ci => {
            eprintln!("skipped: python3 cannot be run here ({e})");
            return None;
        }
        Err(e) => panic!("python3 cannot be run in CI: {e}"),
    };
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(CANNOT_MEASURE) {
        assert!(!ci, "the wire cannot be measured in CI: {err}");
        eprintln!("skipped: {err}");
        return None;
    }
    assert!(o.status.success(), "wire_truth.py failed: {err}");
    Some(serde_json::from_slice(&o.stdout).expect("one JSON object"))
}

#[test]
fn chatload_mean_ttfe_is_within_30_us_of_the_loopback_wire() {
    let Some(mut r) = capture() else { return };
    if r["packets_dropped_by_kernel"] != 0 {
        eprintln!(
            "the kernel dropped {} packets of the capture: capturing again",
            r["packets_dropped_by_kernel"]
        );
        let Some(again) = capture() else { return };
        r = again;
    }
    assert_eq!(r["packets_dropped_by_kernel"], 0, "twice: {r}");

    let runs = r["runs"]["chatload"].as_u64().unwrap();
    assert!(runs > 0, "no run: {r}");
    assert_eq!(r["runs"]["wire"], runs, "{r}");
    assert_eq!(r["only_chatload"], Value::Array(vec![]), "{r}");
    assert_eq!(r["only_wire"], Value::Array(vec![]), "{r}");
    assert_eq!(
        r["ttfe"]["paired"], runs,
        "every run has its ttfe on both sides: {r}"
    );
    assert_eq!(
        r["ttc"]["paired"], runs,
        "every run has its ttc on both sides: {r}"
    );

    let ttfe = &r["ttfe"];
    let gap = ttfe["chatload_minus_wire"]["mean_us"].as_f64().unwrap();
    assert!(
        gap.abs() <= MEAN_TTFE_WITHIN_US,
        "chatload's mean ttfe {:.1} us, the wire's {:.1} us: {gap:+.1} us apart (bound {MEAN_TTFE_WITHIN_US} us); {r}",
        ttfe["chatload"]["mean_us"].as_f64().unwrap(),
        ttfe["wire"]["mean_us"].as_f64().unwrap(),
    );
}
