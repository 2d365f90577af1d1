#!/usr/bin/env python3
"""Kernel receive stamps on and off: the generator's CPU per run (issue 17).

One build, one switch (`[generator] kernel_timestamps`): `chatload serve`
in its own process, and the same closed-model journey (connect, send,
await, think `--think`) run with stamps on and off, interleaved for
`--rounds` rounds so the machine's noise falls on both alike. Reports, per
mode, the median over rounds of the generator's CPU per completed run (its
snapshot's `generator.cpu_us_per_run`), runs per second and ttfe p50/p99,
and the ratio on/off of the CPU per run (the bar: within 5%).

Usage (from the repository root):  python3 bench/stamps_ab.py [--users 200]
    [--think 0ms] [--seconds 20] [--rounds 3] [--bin OTHER/target/release/chatload]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench import ROOT, free_port, wait_listening

SCENARIO = """version = 1
name = "stamps-ab"
[generator]
kernel_timestamps = {stamps}
max_delay_share = "off"
[workload]
users = {users}
ramp = [{{ to = {users}, over = "2s" }}, {{ hold = "{seconds}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "30s"
[[journey]]
step = "think"
duration = "{think}"
"""


def one(a, binary, port, stamps):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ab.toml")
        with open(path, "w") as f:
            f.write(SCENARIO.format(stamps=str(stamps).lower(), users=a.users,
                                    seconds=a.seconds, think=a.think))
        out = os.path.join(tmp, "out")
        subprocess.run([binary, "run", path, "--target", f"ws://127.0.0.1:{port}/ws",
                        "--out", out, "-q"], env=dict(os.environ, CHATLOAD_JWT_SECRET="bench-key"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(out, "snapshot.json")) as f:
            snap = json.load(f)
    g, h = snap["generator"], snap["histograms"]["ttfe"]
    return {"cpu_us_per_run": g["cpu_us_per_run"], "runs_per_s": g["runs_per_s"],
            "ttfe_p50_us": h["p50_us"], "ttfe_p99_us": h["p99_us"],
            "receive_times": g.get("receive_times")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--think", default="0ms")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    binary = a.bin or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                   "release", "chatload")
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    port = free_port()
    server = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}"],
                              env=dict(os.environ, CHATLOAD_JWT_SECRET="bench-key"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        results = {True: [], False: []}
        for r in range(a.rounds):
            for stamps in ((True, False) if r % 2 == 0 else (False, True)):
                res = one(a, binary, port, stamps)
                results[stamps].append(res)
                print(f"round {r + 1} stamps {'on ' if stamps else 'off'}: {res}", flush=True)
    finally:
        server.terminate()
        server.wait()
    med = {k: {f: statistics.median(x[f] for x in v) for f in
               ("cpu_us_per_run", "runs_per_s", "ttfe_p50_us", "ttfe_p99_us")}
           for k, v in results.items()}
    for k in (True, False):
        m = med[k]
        print(f"stamps {'on ' if k else 'off'} (median of {a.rounds}): "
              f"{m['cpu_us_per_run']:.1f} us CPU per run, {m['runs_per_s']:.0f} runs/s, "
              f"ttfe p50 {m['ttfe_p50_us']} us, p99 {m['ttfe_p99_us']} us")
    ratio = med[True]["cpu_us_per_run"] / med[False]["cpu_us_per_run"]
    print(f"CPU per run, on / off: {ratio:.3f} (bar: within 5%): "
          f"{'met' if abs(ratio - 1) <= 0.05 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
