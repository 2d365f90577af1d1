#!/usr/bin/env python3
"""A longer soak than the test suite's: the generator's RSS over time.

Runs `chatload serve` and a 200-user closed-model soak (the journey of
tests/memory.rs: connect, send, await, think 1 s) for `--minutes`, samples the
generator's RSS every 2 s, and prints the floor (lowest sample), median and
peak of each tenth of the run after the ramp, with the runs completed. A
leak shows as a floor that climbs tenth after tenth; RSS alone wanders by
several percent on a flat run (the allocator's arenas), so read the trend.

Usage (from the repository root):  python3 bench/soak_rss.py [--minutes 30]
    [--users 200] [--interval 10s] [--bin OTHER/target/release/chatload]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import BIN, free_port, wait_listening

SOAK = """version = 1
name = "bench-soak"
[output]
interval = "{interval}"
checkpoint = "1m"
[workload]
users = {users}
ramp = [{{ to = {users}, over = "10s" }}, {{ hold = "{hold}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
[[journey]]
step = "think"
duration = "1s"
"""


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--interval", default="10s", help="the scenario's output.interval")
    ap.add_argument("--bin", help="the chatload binary to measure (default: this repository's release build)")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin) if a.bin else BIN
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
    env = dict(os.environ, CHATLOAD_JWT_SECRET="bench-key")
    port = free_port()
    server = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    try:
        wait_listening(port)
        with tempfile.TemporaryDirectory() as tmp:
            scenario = os.path.join(tmp, "soak.toml")
            with open(scenario, "w") as f:
                f.write(SOAK.format(users=a.users, interval=a.interval, hold=int(a.minutes * 60)))
            out = os.path.join(tmp, "out")
            gen = subprocess.Popen([binary, "run", scenario, "--target", f"ws://127.0.0.1:{port}/ws",
                                    "--out", out, "-q"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            while gen.poll() is None:
                kib = rss_kib(gen.pid)
                if kib is not None:
                    samples.append((time.monotonic() - t0, kib))
                time.sleep(2)
            if gen.returncode not in (0, 1):
                sys.exit(f"generator failed ({gen.returncode})")
            with open(os.path.join(out, "snapshot.json")) as f:
                snap = json.load(f)
    finally:
        server.terminate()
        server.wait()
    steady = [kib for t, kib in samples if t >= 20]
    c = snap["counters"]
    print(f"soak: {a.users} users, {snap['duration_s'] / 60:.1f} min, {c.get('runs.ok', 0)} runs ok, "
          f"{c.get('runs.failed', 0)} failed; generator RSS per tenth after the ramp (KiB):")
    n = len(steady)
    for i in range(10):
        part = sorted(steady[i * n // 10:(i + 1) * n // 10])
        if part:
            print(f"  tenth {i + 1:2}: floor {part[0]} median {part[len(part) // 2]} peak {part[-1]}")

if __name__ == "__main__":
    main()
