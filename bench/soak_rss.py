#!/usr/bin/env python3
"""A longer soak than the test suite's: the generator's RSS and live heap over time.

Runs `chatload serve` and a 200-user closed-model soak (the journey of
tests/memory.rs: connect, send, await, think 1 s) as separate processes for
`--minutes`, samples the generator's RSS every 2 s and its live heap (bytes
handed out by the allocator and not given back: a build with the
`heap-count` feature writes them once a second to CHATLOAD_HEAP_LOG), and
prints per tenth of the run after the ramp: the RSS floor (lowest sample),
median and peak, the live-heap floor and median, and the runs completed;
then the largest single step between consecutive samples and the verdict
against the soak bars (BENCHMARKS.md): the median RSS floor of tenths 9-10
within 5% of tenths 2-3, and the live heap (median of tenths 9-10 against
2-3) flat within 2%. A leak shows as a floor that climbs tenth after tenth;
RSS alone wanders by several percent on a flat run (the allocator's
arenas), so read the trend, and the live heap beside it.

Usage (from the repository root):  python3 bench/soak_rss.py [--minutes 30]
    [--users 200] [--interval 10s] [--bin OTHER/target/release/chatload]
    [--samples FILE] [--checkpoint 1m|off] [--goose-report on|off]

Without `--bin` it builds this repository with `--features heap-count`
(release, into $CARGO_TARGET_DIR or target/). A `--bin` built without the
feature gets RSS only. `--samples` writes every sample (seconds, RSS KiB,
live heap bytes) to FILE as it is taken, so a soak cut short can still be
read. `--goose-report off` sets `[output] goose_report = false`: goose
keeps a few numbers per second of the run for its own report's charts,
growing with the run (steps at 512 s, 1024 s, 2048 s, ... as its per-second
series double), so the off run shows chatload's own memory alone.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import ROOT, free_port, wait_listening

SOAK = """version = 1
name = "bench-soak"
[output]
interval = "{interval}"
{checkpoint}{goose}[workload]
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


class HeapLog:
    """The live heap the generator writes (`<ms> <bytes>` a line), read as it grows."""

    def __init__(self, path):
        self.path, self.pos, self.last = path, 0, None

    def latest(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                for line in f:
                    if not line.endswith("\n"):
                        break
                    self.pos += len(line)
                    self.last = int(line.split()[1])
        except OSError:
            pass
        return self.last


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "heap-count"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "chatload")


def soak(a, binary, samples_out):
    """Runs the soak; returns the samples [(s, rss KiB, heap bytes or None)] and the snapshot."""
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
                ckpt = "" if a.checkpoint == "off" else f'checkpoint = "{a.checkpoint}"\n'
                goose = "" if a.goose_report == "on" else "goose_report = false\n"
                f.write(SOAK.format(users=a.users, interval=a.interval, hold=int(a.minutes * 60),
                                    checkpoint=ckpt, goose=goose))
            out = os.path.join(tmp, "out")
            heap = HeapLog(os.path.join(tmp, "heap.log"))
            gen = subprocess.Popen([binary, "run", scenario, "--target", f"ws://127.0.0.1:{port}/ws",
                                    "--out", out, "-q"], env=dict(env, CHATLOAD_HEAP_LOG=heap.path),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            while gen.poll() is None:
                kib = rss_kib(gen.pid)
                if kib is not None:
                    sample = (time.monotonic() - t0, kib, heap.latest())
                    samples.append(sample)
                    if samples_out:
                        samples_out.write("%.1f %d %s\n" % sample)
                        samples_out.flush()
                time.sleep(2)
            if gen.returncode not in (0, 1):
                sys.exit(f"generator failed ({gen.returncode})")
            with open(os.path.join(out, "snapshot.json")) as f:
                snap = json.load(f)
    finally:
        server.terminate()
        server.wait()
    return samples, snap


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def tenths(samples):
    """The steady samples (after the 10 s ramp and 10 s more) cut into ten parts."""
    steady = [s for s in samples if s[0] >= 20]
    n = len(steady)
    return [steady[i * n // 10:(i + 1) * n // 10] for i in range(10)]


def largest_step(samples, k):
    """The largest rise between consecutive samples of field k (after the
    ramp): (rise, at s, from, to)."""
    pairs = [(b[k] - a[k], b[0], a[k], b[k]) for a, b in zip(samples, samples[1:])
             if a[k] is not None and b[k] is not None]
    return max(pairs, default=None)


def report(a, samples, snap):
    c = snap["counters"]
    parts = tenths(samples)
    mib = lambda b: b / 1048576
    print(f"soak: {a.users} users, {snap['duration_s'] / 60:.1f} min, {c.get('runs.ok', 0)} runs ok, "
          f"{c.get('runs.failed', 0)} failed; generator per tenth after the ramp (MiB):")
    floors, heaps = [], []
    for i, part in enumerate(parts):
        rss = sorted(s[1] for s in part)
        hp = sorted(s[2] for s in part if s[2] is not None)
        floors.append(rss[0] / 1024 if rss else None)
        heaps.append(hp)
        line = f"  tenth {i + 1:2}: RSS floor {rss[0] / 1024:6.1f} median {median(rss) / 1024:6.1f} peak {rss[-1] / 1024:6.1f}" if rss else f"  tenth {i + 1:2}: no samples"
        if hp:
            line += f"   live heap floor {mib(hp[0]):6.2f} median {mib(median(hp)):6.2f}"
        print(line)
    steady = [s for s in samples if s[0] >= 20]
    step = largest_step(steady, 1)
    if step:
        print(f"largest single RSS step: +{step[0] / 1024:.1f} MiB at {step[1]:.0f} s "
              f"({step[2] / 1024:.1f} -> {step[3] / 1024:.1f})")
    hstep = largest_step(steady, 2)
    if hstep:
        print(f"largest single live-heap step: +{mib(hstep[0]):.2f} MiB at {hstep[1]:.0f} s "
              f"({mib(hstep[2]):.2f} -> {mib(hstep[3]):.2f})")
    if any(f is None for f in floors):
        return
    early, late = (floors[1] + floors[2]) / 2, (floors[8] + floors[9]) / 2
    rss_change = late / early - 1
    print(f"verdict: RSS floor, tenths 9-10 against 2-3: {early:.1f} -> {late:.1f} MiB "
          f"({rss_change:+.1%}; bar 5%): {'met' if abs(rss_change) <= 0.05 else 'NOT met'}")
    h_early, h_late = median(heaps[1] + heaps[2]), median(heaps[8] + heaps[9])
    if h_early and h_late:
        h_change = h_late / h_early - 1
        print(f"verdict: live heap median, tenths 9-10 against 2-3: {mib(h_early):.2f} -> "
              f"{mib(h_late):.2f} MiB ({h_change:+.1%}; bar 2%): "
              f"{'met' if abs(h_change) <= 0.02 else 'NOT met'}")
    else:
        print("verdict: live heap not measured (a build without --features heap-count)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--checkpoint", default="1m",
                    help='how often the generator writes its checkpoint ("off": never)')
    ap.add_argument("--goose-report", default="on", choices=["on", "off"],
                    help="whether goose writes its own report (off: [output] goose_report = false)")
    ap.add_argument("--interval", default="10s", help="the scenario's output.interval")
    ap.add_argument("--bin", help="the chatload binary to measure (default: this repository's "
                                  "release build with --features heap-count)")
    ap.add_argument("--samples", help="also write every sample to this file as it is taken")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin) if a.bin else build()
    samples_out = open(a.samples, "w") if a.samples else None
    samples, snap = soak(a, binary, samples_out)
    report(a, samples, snap)


if __name__ == "__main__":
    main()
