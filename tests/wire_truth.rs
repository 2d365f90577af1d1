//! Wire truth (issue 17): chatload's latencies against a packet capture of
//! the loopback wire. `bench/wire_truth.py` runs `chatload serve` and a
//! closed-model load (20 users, think 500 ms, 10 s) under `tcpdump -i lo`,
//! times every run on the wire (its `start_agent`, its first event, its
//! `agent_completed`, each at the packet carrying the frame's last byte)
//! and pairs them by run_id with chatload's `runs.jsonl`. chatload times a
//! run from the write system call that sent its frame to the kernel's
//! receive stamp of each event (`src/engine/stamp.rs`), so at this light
//! load its mean ttfe must be within 30 us of the wire's over the runs it
//! read on time. Stamps are exact only while chatload keeps up (the kernel
//! merges segments waiting in a socket under the newest stamp): a debug
//! build on a shared machine stalls now and then, and one run read 17 ms
//! late moves a 364-run mean by 47 us. So runs timed over 1 ms later than
//! the wire are counted as stalled (at most 1% of them may be) and left
//! out of the mean; a capture that still misses is taken once more, with
//! the first figures printed. Without tcpdump (or the right to capture) the test is
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

/// chatload's mean ttfe minus the wire's over the runs read on time, in us.
fn mean_gap(r: &Value) -> f64 {
    r["ttfe"]["on_time_mean_minus_wire_us"].as_f64().unwrap()
}

/// Runs chatload read in a stall (timed over 1 ms later than the wire).
fn stalled(r: &Value) -> u64 {
    r["ttfe"]["stalled_runs"].as_u64().unwrap()
}

#[test]
fn chatload_mean_ttfe_is_within_30_us_of_the_loopback_wire() {
    let Some(mut r) = capture() else { return };
    let missed = |r: &Value| {
        mean_gap(r).abs() > MEAN_TTFE_WITHIN_US
            || stalled(r) * 100 > r["ttfe"]["paired"].as_u64().unwrap()
    };
    if missed(&r) && r["packets_dropped_by_kernel"] == 0 {
        eprintln!(
            "mean ttfe {:+.1} us from the wire (generator stalled?): capturing again; {r}",
            mean_gap(&r)
        );
        let Some(again) = capture() else { return };
        r = again;
    }
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
    let gap = mean_gap(&r);
    let paired = r["ttfe"]["paired"].as_u64().unwrap();
    assert!(
        stalled(&r) * 100 <= paired,
        "{} of {paired} runs read over 1 ms late; {r}",
        stalled(&r)
    );
    assert!(
        gap.abs() <= MEAN_TTFE_WITHIN_US,
        "over the runs read on time, chatload's ttfe is {gap:+.1} us from the wire's on average (bound {MEAN_TTFE_WITHIN_US} us; all runs: chatload {:.1} us, wire {:.1} us); {r}",
        ttfe["chatload"]["mean_us"].as_f64().unwrap(),
        ttfe["wire"]["mean_us"].as_f64().unwrap(),
    );
}
