#!/usr/bin/env python3
"""Generator cost benchmarks: CPU time per completed run and RSS per idle user.

The reference server runs as its own process (`chatload serve`), so the
generator's CPU and memory are measured alone. Each figure is taken at two
sizes in the same session and reported with the ratio between them, because
these machines are shared and noisy: compare ratios, not absolute numbers.

The open model is measured the same way (`--rate`): arrivals per second
served by a pool, generator CPU per run and the pacer's own lateness
(`send_lag`), at a small and a large rate.

Usage (from the repository root):  python3 bench/bench.py [--users 1000] [--rate 300]
    [--idle-rounds 3] [--bin OTHER/target/release/chatload]

`--bin` measures another build (an earlier commit's, say) against this
repository's scenarios, for an A/B in one session; `--idle-rounds` repeats the
idle measurement and reports the median (one difference of two max-RSS
readings varies by about 5 KiB per user from run to run).
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "chatload")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("the reference server did not start")


def proc_cpu(pid):
    """CPU seconds (user + system) a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


OPEN = """version = 1
name = "bench-open"
[target]
connect_timeout = "20s"
ready_timeout = "20s"
[workload]
model = "open"
max_users = {pool}
arrivals = "poisson"
rate = {rate}
ramp = [{{ to = {rate}, over = "1s" }}, {{ hold = "30s" }}]
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "30s"
"""


def run_generator(scenario, users, target, out, server_pid):
    """Runs one generator process under /usr/bin/time; returns
    (generator CPU s, generator max RSS KiB, server CPU s during the run, snapshot).
    `users` None: the scenario's own load (the open model takes no --users)."""
    timing = os.path.join(out + ".time")
    load = [] if users is None else ["--users", str(users)]
    cmd = ["/usr/bin/time", "-o", timing, "-f", "%U %S %M",
           BIN, "run", scenario, *load, "--target", target, "--out", out, "-q"]
    server_before = proc_cpu(server_pid)
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CHATLOAD_JWT_SECRET="bench-key"))
    server_cpu = proc_cpu(server_pid) - server_before
    if p.returncode not in (0, 1):
        sys.exit(f"generator failed ({p.returncode}): {p.stderr}")
    with open(timing) as f:
        user, system, maxrss = f.read().split()[-3:]
    with open(os.path.join(out, "snapshot.json")) as f:
        snap = json.load(f)
    return float(user) + float(system), int(maxrss), server_cpu, snap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--rate", type=int, default=300, help="open model: arrivals per second (large size)")
    ap.add_argument("--small-rate", type=int, default=10)
    ap.add_argument("--idle-rounds", type=int, default=1, help="repeat the idle pair, report the median")
    ap.add_argument("--bin", help="the chatload binary to measure (default: this repository's release build)")
    a = ap.parse_args()
    global BIN
    if a.bin:
        BIN = os.path.abspath(a.bin)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    port = free_port()
    env = dict(os.environ, CHATLOAD_JWT_SECRET="bench-key")
    server = subprocess.Popen([BIN, "serve", "--addr", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        target = f"ws://127.0.0.1:{port}/ws"
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            idle_pairs = []
            for r in range(a.idle_rounds):
                pair = {}
                for users in (a.small, a.users):
                    out = os.path.join(tmp, f"idle-{r}-{users}")
                    pair[users] = run_generator(os.path.join(ROOT, "bench/idle.toml"), users, target, out, server.pid)
                idle_pairs.append(pair)
            for users in (a.small, a.users):
                out = os.path.join(tmp, f"busy-{users}")
                rows[("busy", users)] = run_generator(os.path.join(ROOT, "bench/busy.toml"), users, target, out, server.pid)
            for rate in (a.small_rate, a.rate):
                path = os.path.join(tmp, f"open-{rate}.toml")
                with open(path, "w") as f:
                    # A pool of twice the arrivals expected in flight (about 0.15 s per run).
                    f.write(OPEN.format(rate=rate, pool=max(20, rate)))
                rows[("open", rate)] = run_generator(path, None, target, os.path.join(tmp, f"open-{rate}"), server.pid)
    finally:
        server.terminate()
        server.wait()

    per_user = []
    for pair in idle_pairs:
        _, rss_s, _, _ = pair[a.small]
        _, rss_l, _, snap_l = pair[a.users]
        ready = snap_l["counters"].get("connections.ready", 0)
        per_user_kib = (rss_l - rss_s) / max(1, a.users - a.small)
        per_user.append(per_user_kib)
        print(f"idle: {a.small} users max RSS {rss_s} KiB; {a.users} users max RSS {rss_l} KiB "
              f"({ready} ready); {per_user_kib:.1f} KiB per idle connected user")
    if len(per_user) > 1:
        print(f"idle: median of {len(per_user)}: {sorted(per_user)[len(per_user) // 2]:.1f} KiB per idle connected user")
    for users in (a.small, a.users):
        cpu, rss, server_cpu, snap = rows[("busy", users)]
        ok = snap["counters"].get("runs.ok", 0)
        print(f"busy: {users} users, {ok} runs ok, {snap['counters'].get('runs.failed', 0)} failed; "
              f"generator {cpu:.2f} s CPU = {cpu / max(1, ok) * 1e6:.0f} µs per run, max RSS {rss} KiB; "
              f"server {server_cpu:.2f} s CPU; generator/server CPU ratio {cpu / max(server_cpu, 1e-9):.2f}; "
              f"ttc p99 {snap['histograms']['ttc']['p99_us'] / 1000:.1f} ms")
    for rate in (a.small_rate, a.rate):
        cpu, rss, server_cpu, snap = rows[("open", rate)]
        c = snap["counters"]
        ok = c.get("runs.ok", 0)
        lag = snap["histograms"]["send_lag"]
        print(f"open: {rate}/s, {c.get('starts.intended', 0)} arrivals, {c.get('starts.dropped', 0)} dropped, "
              f"{ok} runs ok; generator {cpu:.2f} s CPU = {cpu / max(1, ok) * 1e6:.0f} µs per run, max RSS {rss} KiB; "
              f"generator/server CPU ratio {cpu / max(server_cpu, 1e-9):.2f}; "
              f"send lag p50 {lag['p50_us'] / 1000:.2f} ms p99 {lag['p99_us'] / 1000:.2f} ms; "
              f"ttc p99 {snap['histograms']['ttc']['p99_us'] / 1000:.1f} ms")


if __name__ == "__main__":
    main()
