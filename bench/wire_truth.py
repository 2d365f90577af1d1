#!/usr/bin/env python3
"""chatload's latencies checked against the loopback wire (issue 17).

Captures the loopback interface with tcpdump while a closed-model chatload
run loads `chatload serve`, reads the capture back (TCP reassembled per
direction, WebSocket frames unmasked, text frames decoded as JSON), and
times every run on the wire: its `start_agent` (client to server, carrying
`run_id`), the first server frame carrying that run_id, and its
`agent_completed`. A frame's time is the pcap timestamp of the packet that
carried its last byte. These are paired by run_id with chatload's own lines
in runs.jsonl (`ttfe_ms`, and `ttc_ms` where the build writes it; older
builds write only `duration_ms`, the run's end as chatload counted it, used
for ttc then and named so in the output), both sides put into HDR
histograms configured like chatload's (1 us to 3,600 s, 3 significant
figures), and chatload's figures printed beside the wire's.

Usage (from the repository root):  python3 bench/wire_truth.py [--users 20]
    [--think 500ms] [--seconds 10] [--bin PATH] [--json]

The load: `--users` users connect over max(1, users/200) s, then hold for
`--seconds`, each sending `start_agent` (run_id and thread_id set), awaiting
its end and thinking `--think` (0: no think step). The capture is
`tcpdump -i lo -B 65536 -s 0 -U --time-stamp-precision=nano -w -` (the
server port only), copied to a file by this script: tcpdump gets the
kernel's packets in blocks, so a SIGINT right after the run loses its last
half second; the script sends a marker through the server port and stops
tcpdump only once the marker is in the file. The capture's own CPU
(tcpdump and the copier) is reported beside the figures.

Without `--bin` it builds this repository (release, into $CARGO_TARGET_DIR
or target/). Needs tcpdump and the right to capture (root or
CAP_NET_RAW); exits 77 when either is missing (tests/wire_truth.rs skips
then, or fails with CI set). Means are exact (over the microsecond values);
percentiles come from the histograms.
"""
import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from bench import ROOT, free_port, proc_cpu, wait_listening

SKIP = 77  # the exit status of "cannot measure here" (missing tool or right)

# ---------------------------------------------------------------- the capture file

LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_SLL2, LINK_NULL = 1, 101, 113, 276, 0


def pcap_records(f):
    """(linktype, [(timestamp ns, packet bytes)]) of a classic pcap file."""
    head = f.read(24)
    magic = head[:4]
    formats = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
    if magic not in formats:
        raise ValueError(f"not a classic pcap file (magic {magic.hex()}); pcapng is not read")
    order, ns_per_tick = formats[magic]
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")

    def gen():
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, orig = record.unpack(h)
            data = f.read(incl)
            if incl < orig:
                raise ValueError("a packet was cut short by the snapshot length (capture with -s 0)")
            yield sec * 1_000_000_000 + frac * ns_per_tick, data

    return linktype, gen()


def ip_packet(linktype, p):
    """The IP packet inside one captured frame (None: not IP)."""
    if linktype == LINK_ETHERNET:
        kind, off = struct.unpack_from("!H", p, 12)[0], 14
        if kind == 0x8100:  # one VLAN tag
            kind, off = struct.unpack_from("!H", p, 16)[0], 18
    elif linktype == LINK_SLL:
        kind, off = struct.unpack_from("!H", p, 14)[0], 16
    elif linktype == LINK_SLL2:
        kind, off = struct.unpack_from("!H", p, 0)[0], 20
    elif linktype in (LINK_RAW, LINK_NULL):
        off = 0 if linktype == LINK_RAW else 4
        kind = {4: 0x0800, 6: 0x86DD}.get(p[off] >> 4)
    else:
        raise ValueError(f"link type {linktype} is not read")
    return p[off:] if kind in (0x0800, 0x86DD) else None


def tcp_segment(linktype, p):
    """(src, sport, dst, dport, seq, flags, payload) of a TCP packet, else None."""
    ip = ip_packet(linktype, p)
    if ip is None:
        return None
    if ip[0] >> 4 == 4:
        ihl, total, proto = (ip[0] & 15) * 4, struct.unpack_from("!H", ip, 2)[0], ip[9]
        frag = struct.unpack_from("!H", ip, 6)[0] & 0x3FFF
        if proto != 6 or frag:
            return None
        src, dst, tcp = ip[12:16], ip[16:20], ip[ihl:total]
    else:
        if ip[6] != 6:  # extension headers never appear on loopback
            return None
        src, dst, tcp = ip[8:24], ip[24:40], ip[40:40 + struct.unpack_from("!H", ip, 4)[0]]
    sport, dport, seq = struct.unpack_from("!HHI", tcp, 0)
    return src, sport, dst, dport, seq, tcp[13], tcp[(tcp[12] >> 4) * 4:]


# ---------------------------------------------------------------- one byte stream

SYN, ACK = 0x02, 0x10


class Direction:
    """One direction of one TCP connection: its bytes in sequence order
    (retransmitted bytes dropped, early segments held until the gap closes,
    then timed at the packet that closed it: that is when they became
    readable), cut into WebSocket messages after the HTTP upgrade."""

    def __init__(self):
        self.next = None  # sequence number of the next byte in order
        self.early = {}  # seq -> payload, segments past a gap
        self.buf = bytearray()
        self.upgraded = False
        self.dead = False  # not a WebSocket (an upgrade refused, a sentinel)
        self.fragments = None  # (opcode, [payloads]) of a message in pieces
        self.messages = []  # (ns of its last byte, text bytes)
        self.out_of_order = 0  # segments that came past a gap
        self.repeated = 0  # segments that came again

    def segment(self, ns, seq, flags, payload):
        if flags & SYN:
            self.next = (seq + 1) & 0xFFFFFFFF
            return
        if not payload or self.dead:
            return
        if self.next is None:  # the capture began mid-connection
            self.next = seq
        self.early.setdefault(seq, payload)
        if seq != self.next:
            behind = (self.next - seq) & 0xFFFFFFFF < 1 << 31
            self.repeated += behind  # a retransmission (a loss probe, say)
            self.out_of_order += not behind
        progress = True
        while progress:
            progress = False
            for s in list(self.early):
                behind = (self.next - s) & 0xFFFFFFFF
                if behind >= 1 << 31:  # still past a gap
                    continue
                data = self.early.pop(s)[behind:]
                if data:
                    self.next = (self.next + len(data)) & 0xFFFFFFFF
                    self.deliver(ns, data)
                    progress = True

    def deliver(self, ns, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self.upgraded = True
            self.dead = head.startswith(b"HTTP/") and b" 101 " not in head.split(b"\r\n")[0] + b" "
            if self.dead:
                return
        while (frame := take_frame(self.buf)) is not None:
            fin, opcode, payload = frame
            if opcode >= 8:  # close, ping, pong: may come between the pieces of a message
                continue
            if opcode != 0:
                self.fragments = (opcode, [payload])
            elif self.fragments is None:  # a continuation of nothing
                continue
            else:
                self.fragments[1].append(payload)
            if fin:
                kind, parts = self.fragments
                self.fragments = None
                if kind == 1:
                    self.messages.append((ns, b"".join(parts)))


def take_frame(buf):
    """Removes one whole WebSocket frame from the front of buf: (fin, opcode,
    unmasked payload); None while the frame is incomplete."""
    if len(buf) < 2:
        return None
    fin, opcode, masked, n = buf[0] >> 7, buf[0] & 15, buf[1] >> 7, buf[1] & 127
    off = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack_from("!H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack_from("!Q", buf, 2)[0], 10
    key = bytes(buf[off:off + 4]) if masked else None
    off += 4 if masked else 0
    if len(buf) < off + n:
        return None
    payload = bytes(buf[off:off + n])
    del buf[:off + n]
    if key:
        mask = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return fin, opcode, payload


# ---------------------------------------------------------------- runs on the wire

def run_id_of(msg):
    """The run id a message carries: top level, or in its payload or data
    (or data.payload: the wrapped envelope)."""
    if not isinstance(msg, dict):
        return None
    for view in (msg, msg.get("payload"), msg.get("data"),
                 (msg.get("data") or {}).get("payload") if isinstance(msg.get("data"), dict) else None):
        if isinstance(view, dict) and isinstance(view.get("run_id"), str):
            return view["run_id"]
    return None


def completes(msg):
    data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
    return msg.get("type") in ("agent_completed", "agent_response_complete") \
        or data.get("event") == "agent_completed"


def analyse(pcap_path, server_port, stats=None):
    """Per run_id on the wire: {"sent_ns", "first_event_ns", "completed_ns"}
    (None where the capture holds no such frame). `stats`, a dict, gets the
    packets read and the segments that came past a gap or came again."""
    streams = {}
    packets = 0
    with open(pcap_path, "rb") as f:
        linktype, records = pcap_records(f)
        for ns, p in records:
            seg = tcp_segment(linktype, p)
            if seg is None or server_port not in (seg[1], seg[3]):
                continue
            packets += 1
            src, sport, dst, dport, seq, flags, payload = seg
            key = (src, sport, dst, dport)
            if flags & SYN and not flags & ACK:  # a new connection on these ports
                streams.pop(key, None)
                streams.pop((dst, dport, src, sport), None)
            streams.setdefault(key, Direction()).segment(ns, seq, flags, payload)
    runs = {}
    for (_, _, _, dport), d in streams.items():
        to_server = dport == server_port
        for ns, text in d.messages:
            try:
                msg = json.loads(text)
            except ValueError:
                continue
            rid = run_id_of(msg)
            if rid is None:
                continue
            run = runs.setdefault(rid, {"sent_ns": None, "first_event_ns": None, "completed_ns": None})
            if to_server:
                if msg.get("type") == "start_agent" and run["sent_ns"] is None:
                    run["sent_ns"] = ns
                continue
            run["first_event_ns"] = min(ns, run["first_event_ns"] or ns)
            if completes(msg):
                run["completed_ns"] = min(ns, run["completed_ns"] or ns)
    if stats is not None:
        stats["packets"] = packets
        stats["out_of_order_segments"] = sum(d.out_of_order for d in streams.values())
        stats["repeated_segments"] = sum(d.repeated for d in streams.values())
    return {rid: r for rid, r in runs.items() if r["sent_ns"] is not None}


# ---------------------------------------------------------------- the measurement

SCENARIO = """version = 1
name = "wire-truth"
[target]
connect_timeout = "30s"
ready_timeout = "30s"
[workload]
users = {users}
ramp = [{{ to = {users}, over = "{ramp}s" }}, {{ hold = "{seconds}s" }}]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "{{{{prompt}}}}", thread_id = "{{{{thread}}}}", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "10s"
"""

THINK = """[[journey]]
step = "think"
duration = "{think}"
"""


class Capture:
    """tcpdump on loopback, its pcap stream copied to a file by a thread that
    also watches for a marker: the kernel hands packets to tcpdump in
    blocks, so the last ones of a run reach it late, and a SIGINT before
    they arrive would lose them. `settle()` sends the marker through the
    server port and returns once the capture holds it."""

    def __init__(self, port, path):
        self.port, self.path = port, path
        self.marker = f"wire-truth-end-{uuid.uuid4().hex}".encode()
        self.seen = threading.Event()
        try:
            self.proc = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-B", "65536", "-s", "0", "-U",
                 "--time-stamp-precision=nano", "-w", "-", "tcp", "port", str(port)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            skip("tcpdump is not installed (.ci/run installs it)")
        self.stderr = []
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))
            if "listening on" in self.stderr[-1]:
                break
        else:
            self.proc.wait()
            skip("tcpdump cannot capture here: " + "".join(self.stderr).strip())
        self.copier = threading.Thread(target=self.copy)
        self.copier.start()

    def copy(self):
        tail = b""
        with open(self.path, "wb") as out:
            while chunk := self.proc.stdout.read1(1 << 16):
                out.write(chunk)
                if self.marker in tail + chunk:
                    self.seen.set()
                tail = chunk[-len(self.marker):]
        self.seen.set()  # tcpdump ended: settle() must not wait on

    def settle(self):
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /" + self.marker + b" HTTP/1.1\r\nHost: wire-truth\r\n\r\n")
        if not self.seen.wait(30):
            sys.exit("the capture never received its end marker")

    def stop(self):
        """Stops tcpdump; returns the packets its kernel buffer dropped and
        the CPU seconds it used (the capture's own load on the machine)."""
        cpu = proc_cpu(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        self.stderr += [line.decode(errors="replace") for line in self.proc.stderr]
        self.proc.wait()
        self.copier.join()
        for line in self.stderr:
            if "dropped by kernel" in line:
                return int(line.split()[0]), cpu
        sys.exit("tcpdump did not report its drops: " + "".join(self.stderr))


def skip(why):
    print(f"wire_truth: cannot measure: {why}", file=sys.stderr)
    sys.exit(SKIP)


def measure(a, binary, tmp):
    """Runs the load under capture: (chatload's runs.jsonl lines, the wire's runs, capture stats)."""
    env = dict(os.environ, CHATLOAD_JWT_SECRET="bench-key")
    port = free_port()
    server = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        scenario = os.path.join(tmp, "wire.toml")
        with open(scenario, "w") as f:
            f.write(SCENARIO.format(users=a.users, seconds=a.seconds, ramp=max(1, a.users // 200)))
            if any(ch in "123456789" for ch in a.think):  # a think time, not 0
                f.write(THINK.format(think=a.think))
        pcap, out = os.path.join(tmp, "lo.pcap"), os.path.join(tmp, "out")
        cap = Capture(port, pcap)
        try:
            gen = subprocess.run([binary, "run", scenario, "--target", f"ws://127.0.0.1:{port}/ws",
                                  "--raw-results", "--out", out, "-q"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            cap.settle()
        finally:
            dropped, tcpdump_cpu = cap.stop()
            copier_cpu = time.process_time()  # this process, the copier thread almost alone
        # 4 (INVALID) is a measurement too: at 1,000 users think 0 on two
        # cores the generator's own delay breaks its validity rule.
        if gen.returncode not in (0, 1, 4):
            sys.exit(f"chatload run failed ({gen.returncode}): {gen.stderr}")
    finally:
        server.terminate()
        server.wait()
    with open(os.path.join(out, "runs.jsonl")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    stats = {"packets_dropped_by_kernel": dropped, "tcpdump_cpu_s": tcpdump_cpu, "copier_cpu_s": copier_cpu}
    wire = analyse(pcap, port, stats)
    return lines, wire, stats


# ---------------------------------------------------------------- the comparison

def histogram():
    from hdrh.histogram import HdrHistogram
    return HdrHistogram(1, 3_600_000_000, 3)


def figures(values):
    """Mean (exact) and percentiles (HDR, like chatload's) of microsecond values."""
    h = histogram()
    for v in values:
        h.record_value(max(0, v))
    return {"mean_us": sum(values) / len(values) if values else None,
            **{f"p{k}_us": h.get_value_at_percentile(q) if values else None
               for k, q in (("50", 50), ("99", 99), ("99_9", 99.9))}}


# A run timed this much later than the wire (us) was read in a stall.
STALL_US = 1000


def compare(lines, wire):
    """Pairs chatload's lines with the wire's runs by run_id: the figures of both."""
    ours = {line["run_id"]: line for line in lines if line.get("run_id")}
    ttc_field = "ttc_ms" if any("ttc_ms" in line for line in lines) else "duration_ms"
    result = {
        "runs": {"chatload": len(ours), "wire": len(wire)},
        "only_chatload": sorted(set(ours) - set(wire)),
        "only_wire": sorted(set(wire) - set(ours)),
    }
    for metric, field, wire_end in (("ttfe", "ttfe_ms", "first_event_ns"), ("ttc", ttc_field, "completed_ns")):
        pairs = []
        for rid, line in ours.items():
            w = wire.get(rid)
            ok = field != "duration_ms" or line.get("outcome") == "ok"
            if w and w[wire_end] is not None and line.get(field) is not None and ok:
                pairs.append((round(line[field] * 1000), (w[wire_end] - w["sent_ns"]) // 1000))
        mine, theirs = [p[0] for p in pairs], [p[1] for p in pairs]
        c, wf = figures(mine), figures(theirs)
        # Per run: a run chatload timed over STALL_US later than the wire
        # was read while the generator stalled (its generator_delay shows
        # it); the others are the ones its stamps time exactly.
        diffs = [m - t for m, t in pairs]
        on_time = [d for d in diffs if abs(d) <= STALL_US]
        result[metric] = {
            "chatload_field": field, "paired": len(pairs), "chatload": c, "wire": wf,
            "chatload_minus_wire": {k: (c[k] - wf[k] if c[k] is not None else None) for k in c},
            "stalled_runs": len(diffs) - len(on_time),
            "on_time_mean_minus_wire_us": sum(on_time) / len(on_time) if on_time else None,
        }
    return result


def print_report(r):
    print(f"wire truth: {r['users']} users, think {r['think']}, {r['seconds']} s hold; "
          f"{r['packets']} packets, {r['packets_dropped_by_kernel']} dropped by the kernel, "
          f"segments: {r['out_of_order_segments']} past a gap, {r['repeated_segments']} again")
    print(f"capture CPU: tcpdump {r['tcpdump_cpu_s']:.1f} s, copier {r['copier_cpu_s']:.1f} s")
    print(f"runs: chatload {r['runs']['chatload']}, wire {r['runs']['wire']}")
    for side in ("only_chatload", "only_wire"):
        if r[side]:
            print(f"  {side.replace('_', ' ')}: {len(r[side])}: {', '.join(r[side][:10])}")
    cols = ("mean_us", "p50_us", "p99_us", "p99_9_us")
    for metric in ("ttfe", "ttc"):
        m = r[metric]
        print(f"{metric} ({m['paired']} runs paired; chatload's {m['chatload_field']}), us:")
        print("  " + " " * 20 + "".join(f"{c[:-3]:>12}" for c in cols))
        for side in ("chatload", "wire", "chatload_minus_wire"):
            cells = "".join(f"{m[side][c]:>12.1f}" if m[side][c] is not None else f"{'-':>12}" for c in cols)
            print(f"  {side.replace('_', ' '):<20}{cells}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--think", default="500ms", help="think time between runs (0: none)")
    ap.add_argument("--seconds", type=int, default=10, help="length of the hold stage")
    ap.add_argument("--bin", help="the chatload binary (default: this repository's release build)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    try:
        histogram()
    except ImportError:
        skip("the Python hdrhistogram package is not installed (.ci/run installs it)")
    if a.bin:
        binary = os.path.abspath(a.bin)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                              "release", "chatload")
    with tempfile.TemporaryDirectory() as tmp:
        lines, wire, stats = measure(a, binary, tmp)
    r = {"users": a.users, "think": a.think, "seconds": a.seconds, **stats, **compare(lines, wire)}
    if a.json:
        print(json.dumps(r))
    else:
        print_report(r)


if __name__ == "__main__":
    main()
