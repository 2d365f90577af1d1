#!/usr/bin/env python3
"""chatload against a minimal raw client on the same journey (issue 16).

The raw client is `examples/raw_client.rs` (tokio + tokio-tungstenite, one
task per user, chatload's socket settings and allocator). Both run against one
`chatload serve`, the server pinned to CPU 0 and the generator to CPU 1
(`taskset`), interleaved (the order alternates per round), and each figure is
the median of the rounds:

- journey: 50 users, think 0, connect once then loop { send start_agent,
  await the run's events }; CPU per completed run = the generator's user +
  system CPU (its rusage at exit) / completed runs; peak RSS = its max RSS.
- idle: N users connect, become ready and hold idle; RSS is sampled from
  /proc/PID/status at a fixed time into the hold, and KiB per socket is the
  marginal (RSS at --idle-large - RSS at --idle-small) / the difference.
- allocations (a separate, shorter pass, since counting slows both): calls to
  mimalloc's entry points behind Rust's global allocator (mi_malloc_aligned,
  mi_zalloc_aligned, mi_realloc_aligned), counted the same way for both
  binaries with perf uprobes, / completed runs. Needs `perf probe` (root or
  a permissive perf_event_paranoid); otherwise reported as not measured.

Usage (from the repository root):
    python3 bench/ratio.py [--rounds 3] [--duration 30] [--idle-small 1000] [--idle-large 5000]
        [--full-speed] [--chatload BIN] [--skip-journey] [--skip-idle] [--skip-allocs]

`--full-speed` has the server send each run's five events at once
(`serve --event-delay 0ms --thinking 1 --tools 1`), the issue's journey;
without it the server's defaults pace the events 5-25 ms apart.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # importing bench.py must not leave bench/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import free_port, proc_cpu, wait_listening  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-key"

JOURNEY = """version = 1
name = "ratio-journey"
[target]
connect_timeout = "20s"
ready_timeout = "20s"
[workload]
users = {users}
ramp = [{{ to = {users}, over = "1s" }}, {{ hold = "{hold}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "30s"
"""

IDLE = """version = 1
name = "ratio-idle"
[target]
connect_timeout = "30s"
ready_timeout = "30s"
[workload]
users = {users}
ramp = [{{ to = {users}, over = "{ramp}s" }}, {{ hold = "{hold}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "think"
duration = "10m"
"""


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def build():
    env = dict(os.environ)
    for what in (["--bin", "chatload"], ["--example", "raw_client"]):
        subprocess.run(["nice", "cargo", "build", "--release", "--quiet", *what], cwd=ROOT, check=True, env=env)
    rel = os.path.join(target_dir(), "release")
    return os.path.join(rel, "chatload"), os.path.join(rel, "examples", "raw_client")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def vm(pid, key):
    """A /proc/PID/status line in KiB (VmRSS, VmHWM), or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(cmd, server_pid, sample_at=None, prefix=()):
    """Runs one generator pinned to CPU 1; returns its figures. `sample_at`:
    seconds after start at which VmRSS is read (the idle hold)."""
    env = dict(os.environ, CHATLOAD_JWT_SECRET=SECRET)
    server_before = proc_cpu(server_pid)
    t0 = time.time()
    p = subprocess.Popen([*prefix, "taskset", "-c", "1", *cmd], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    sample = {}
    if sample_at is not None:
        def take():
            time.sleep(sample_at)
            sample["rss"] = vm(p.pid, "VmRSS")
        threading.Thread(target=take, daemon=True).start()
    # Read the pipes while it runs, then reap it ourselves for its rusage.
    out, err = [], []
    ts = [threading.Thread(target=lambda s=s, b=b: b.append(s.read())) for s, b in ((p.stdout, out), (p.stderr, err))]
    for t in ts:
        t.start()
    _, status, ru = os.wait4(p.pid, 0)
    for t in ts:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "maxrss_kib": ru.ru_maxrss,
        "server_cpu_s": proc_cpu(server_pid) - server_before,
        "wall_s": time.time() - t0,
        "rc": p.returncode,
        "stdout": "".join(out),
        "stderr": "".join(err),
        "rss_sample_kib": sample.get("rss"),
    }


def chatload_cmd(bin_, scenario, target, out):
    return [bin_, "run", scenario, "--target", target, "--out", out, "-q"]


def chatload_result(m, out):
    # 4: a run chatload judged INVALID (its own generator delay rule, which
    # fires on a shared machine or under the allocation probes) is still measured.
    if m["rc"] not in (0, 1, 4):
        sys.exit(f"chatload failed ({m['rc']}): {m['stderr'][-2000:]}")
    with open(os.path.join(out, "snapshot.json")) as f:
        snap = json.load(f)
    c, h = snap["counters"], snap["histograms"]
    m.update(runs=c.get("runs.ok", 0), failed=c.get("runs.failed", 0), ready=c.get("connections.ready", 0),
             ttfe=(h.get("ttfe", {}).get("p50_us"), h.get("ttfe", {}).get("p99_us")),
             ttc=(h.get("ttc", {}).get("p50_us"), h.get("ttc", {}).get("p99_us")),
             closes={k: v for k, v in c.items() if k.startswith("close")}, invalid=m["rc"] == 4)
    return m


def raw_result(m):
    if m["rc"] != 0:
        sys.exit(f"raw client failed ({m['rc']}): {m['stderr'][-2000:]}")
    r = json.loads(m["stdout"].strip().splitlines()[-1])
    m.update(runs=r["runs"], failed=r["failed"], ready=r["ready"], ttfe=(r["ttfe_us"]["p50"], r["ttfe_us"]["p99"]),
             ttc=(r["ttc_us"]["p50"], r["ttc_us"]["p99"]), closes=r["close_codes"], raw=r)
    return m


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


PROBES = ("mi_malloc_aligned", "mi_zalloc_aligned", "mi_realloc_aligned")


def count_allocs(bin_, name, tmp, run_cmd, durations):
    """Allocation calls of generator runs of each duration under perf uprobes
    on a private copy of the binary (the server's copy is not probed);
    returns [(calls, run figures)] or (None, reason)."""
    copy = os.path.join(tmp, name)
    shutil.copy(bin_, copy)
    events = []
    try:
        for fn in PROBES:
            p = subprocess.run(["perf", "probe", "-q", "-x", copy, fn], capture_output=True, text=True)
            if p.returncode != 0:
                return None, f"perf probe failed: {p.stderr.strip()[:200]}"
            events.append(f"probe_{name}:{fn}")
        out = []
        for secs in durations:
            stat = os.path.join(tmp, f"{name}-{secs}.perf")
            m = run_cmd(copy, ["perf", "stat", "-x", ",", "-o", stat, "-e", ",".join(events), "--"], secs)
            calls = 0
            with open(stat) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[2].startswith("probe_"):
                        calls += int(parts[0])
            out.append((calls, m))
        return out
    finally:
        subprocess.run(["perf", "probe", "-q", "-d", f"probe_{name}:*"], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--duration", type=int, default=30, help="journey seconds (chatload: the hold after a 1 s ramp)")
    ap.add_argument("--idle-small", type=int, default=1000)
    ap.add_argument("--idle-large", type=int, default=5000)
    ap.add_argument("--idle-hold", type=int, default=20)
    ap.add_argument("--idle-ramp", type=int, default=10, help="chatload's ramp to the idle users; the raw client connects 200 at a time")
    ap.add_argument("--alloc-duration", type=int, default=10)
    ap.add_argument("--full-speed", action="store_true",
                    help="the server answers every run with its five events at once "
                         "(serve --event-delay 0ms --thinking 1 --tools 1), as the issue measured")
    ap.add_argument("--chatload", help="measure this chatload binary as the generator instead "
                                       "of this repository's release build (the server stays this "
                                       "repository's)")
    ap.add_argument("--skip-journey", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--skip-allocs", action="store_true")
    a = ap.parse_args()
    raise_nofile()
    chatload, raw = build()
    # The server is always this repository's build (an A/B of two
    # generators loads the same server); --chatload names the generator.
    serve_bin = chatload
    if a.chatload:
        chatload = os.path.abspath(a.chatload)
    port = free_port()
    target = f"ws://127.0.0.1:{port}/ws"
    pace = ["--event-delay", "0ms", "--thinking", "1", "--tools", "1"] if a.full_speed else []
    server = subprocess.Popen(["taskset", "-c", "0", serve_bin, "serve", "--addr", f"127.0.0.1:{port}", *pace],
                              env=dict(os.environ, CHATLOAD_JWT_SECRET=SECRET),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = {"raw": {"journey": [], "idle": []}, "chatload": {"journey": [], "idle": []}}
    allocs = {}
    tmp = tempfile.mkdtemp(prefix="ratio-")
    try:
        wait_listening(port)
        jpath = os.path.join(tmp, "journey.toml")
        with open(jpath, "w") as f:
            f.write(JOURNEY.format(users=a.users, hold=a.duration))

        def raw_journey(bin_=raw, prefix=(), secs=a.duration + 1):
            cmd = [bin_, "--url", target, "--users", str(a.users), "--duration", str(secs)]
            return raw_result(measure(cmd, server.pid, prefix=prefix))

        def cl_journey(bin_=chatload, prefix=(), path=jpath, tag="j"):
            out = os.path.join(tmp, f"cl-{tag}-{time.time_ns()}")
            return chatload_result(measure(chatload_cmd(bin_, path, target, out), server.pid, prefix=prefix), out)

        for r in range(0 if a.skip_journey else a.rounds):
            order = [("raw", raw_journey), ("chatload", cl_journey)]
            for who, fn in (order if r % 2 == 0 else order[::-1]):
                m = fn()
                res[who]["journey"].append(m)
                print(f"journey round {r + 1} {who}: {m['runs']} runs ({m['failed']} failed), "
                      f"{m['cpu_s']:.2f} s CPU = {m['cpu_s'] / max(1, m['runs']) * 1e6:.1f} us/run, "
                      f"max RSS {m['maxrss_kib'] / 1024:.1f} MiB, server {m['server_cpu_s']:.2f} s CPU, "
                      f"ttfe p50/p99 {m['ttfe']} us, ttc p50/p99 {m['ttc']} us, closes {m['closes']}"
                      f"{' (chatload exit 4: INVALID by its generator rule)' if m.get('invalid') else ''}", flush=True)

        if not a.skip_idle:
            ramp = a.idle_ramp
            for r in range(a.rounds):
                for n in (a.idle_small, a.idle_large):
                    ipath = os.path.join(tmp, f"idle-{n}.toml")
                    with open(ipath, "w") as f:
                        f.write(IDLE.format(users=n, ramp=ramp, hold=a.idle_hold))
                    for who in (("raw", "chatload") if r % 2 == 0 else ("chatload", "raw")):
                        m = idle_run(who, n, ipath, ramp, a, chatload, raw, target, tmp, server.pid)
                        res[who]["idle"].append((n, m))
                        print(f"idle round {r + 1} {who} {n}: {m['ready']} ready, VmRSS in the hold "
                              f"{m['rss_sample_kib']} KiB, max RSS {m['maxrss_kib']} KiB, "
                              f"{m['cpu_s']:.2f} s CPU", flush=True)

        if not a.skip_allocs:
            # Two lengths: the difference removes start-up and the final
            # report, so the figure is per run; the probes slow a generator
            # (a trap per call), so its runs/s here is not the journey's.
            short, long_ = a.alloc_duration, 3 * a.alloc_duration

            def cl_alloc(b, pre, secs):
                path = os.path.join(tmp, f"alloc-{secs}.toml")
                with open(path, "w") as f:
                    f.write(JOURNEY.format(users=a.users, hold=secs - 1))
                return cl_journey(b, pre, path, "alloc")

            for who, bin_, cmd in (("raw", raw, lambda b, pre, secs: raw_journey(b, pre, secs)),
                                   ("chatload", chatload, cl_alloc)):
                got = count_allocs(bin_, who + "gen", tmp, cmd, (short, long_))
                if got[0] is None:
                    print(f"allocations {who}: not measured ({got[1]})", flush=True)
                    continue
                (c1, m1), (c2, m2) = got
                marginal = (c2 - c1) / max(1, m2["runs"] - m1["runs"])
                allocs[who] = {"per_run": marginal, "whole_long": c2 / max(1, m2["runs"]),
                               "runs": (m1["runs"], m2["runs"]), "calls": (c1, c2)}
                print(f"allocations {who}: {c1} calls over {m1['runs']} runs ({short} s), {c2} over "
                      f"{m2['runs']} runs ({long_} s): {marginal:.1f} per run (marginal), "
                      f"{c2 / max(1, m2['runs']):.1f} whole-run calls / runs at {long_} s", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    report(a, res, allocs)


def idle_run(who, n, ipath, ramp, a, chatload, raw, target, tmp, server_pid):
    at = ramp + a.idle_hold / 2
    if who == "chatload":
        out = os.path.join(tmp, f"cl-idle-{n}-{time.time_ns()}")
        return chatload_result(measure(chatload_cmd(chatload, ipath, target, out), server_pid, sample_at=at), out)
    cmd = [raw, "--idle", "--url", target, "--users", str(n), "--duration", str(ramp + a.idle_hold)]
    return raw_result(measure(cmd, server_pid, sample_at=at))


def report(a, res, allocs):
    rows = []

    def per_run(ms):
        return median([m["cpu_s"] / max(1, m["runs"]) * 1e6 for m in ms])

    fig = {}
    for who in ("raw", "chatload"):
        j = res[who]["journey"]
        fig[who] = {
            "cpu_us": per_run(j),
            "runs": median([m["runs"] for m in j]),
            "failed": sum(m["failed"] for m in j),
            "peak_mib": (median([m["maxrss_kib"] for m in j]) or 0) / 1024 or None,
            "server_us": median([m["server_cpu_s"] / max(1, m["runs"]) * 1e6 for m in j]),
        }
        idle = res[who]["idle"]
        if idle:
            per = []
            for r in range(a.rounds):
                pair = {n: m for n, m in idle[2 * r:2 * r + 2]}
                s, l = pair[a.idle_small]["rss_sample_kib"], pair[a.idle_large]["rss_sample_kib"]
                if s is not None and l is not None:
                    per.append((l - s) / (a.idle_large - a.idle_small))
            fig[who]["idle_kib"] = median(per)
            fig[who]["idle_rounds"] = per
            fig[who]["idle_abs_kib"] = median([m["rss_sample_kib"] / a.idle_large for n, m in idle if n == a.idle_large
                                               and m["rss_sample_kib"]])
            fig[who]["idle_ready"] = [m["ready"] for n, m in idle if n == a.idle_large]
        if who in allocs:
            fig[who]["allocs"] = allocs[who]["per_run"]

    def ratio(k):
        r, c = fig["raw"].get(k), fig["chatload"].get(k)
        return f"{c / r:.2f}x" if r and c else "-"

    def f(v, fmt):
        return fmt.format(v) if v is not None else "not measured"

    rows.append(("generator CPU per completed run (median of %d)" % a.rounds, "cpu_us", "{:.1f} us"))
    rows.append(("allocations per run (Rust global-allocator calls, marginal)", "allocs", "{:.1f}"))
    rows.append(("memory per idle authenticated socket (marginal %d -> %d)" % (a.idle_small, a.idle_large), "idle_kib", "{:.1f} KiB"))
    rows.append(("memory per socket, absolute at %d" % a.idle_large, "idle_abs_kib", "{:.1f} KiB"))
    rows.append(("peak RSS during the %d s journey" % a.duration, "peak_mib", "{:.1f} MiB"))
    rows.append(("completed runs per journey (median)", "runs", "{:,}"))
    rows.append(("server CPU per run (its own core)", "server_us", "{:.1f} us"))
    print()
    print("| | raw client | chatload | chatload / raw |")
    print("|---|---:|---:|---:|")
    for label, k, fmt in rows:
        print(f"| {label} | {f(fig['raw'].get(k), fmt)} | {f(fig['chatload'].get(k), fmt)} | {ratio(k)} |")
    print()
    print(json.dumps({"figures": fig, "failed": {w: fig[w]["failed"] for w in fig}}, default=str))


if __name__ == "__main__":
    main()
