#!/usr/bin/env bash
# A/B of two chatload builds by instruction count (valgrind's callgrind) on a
# fixed amount of work: 20 users x 10 iterations of connect, send, await
# (200 agent runs), against one reference server that both builds share.
# Instruction counts repeat within about 1% on a busy shared machine, where
# wall-clock and CPU-time figures do not, so a structural change can be
# shown to cost nothing.
#
# Usage (from the repository root):
#   bash bench/callgrind_ab.sh BEFORE_BIN AFTER_BIN [ROUNDS]
# Prints each run's total instructions (Ir), the median per build and the
# ratio AFTER/BEFORE. The server is BEFORE_BIN's `serve`, run natively.
set -euo pipefail
before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-3}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export CHATLOAD_JWT_SECRET=callgrind-ab-key
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$before" serve --addr "127.0.0.1:$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
cat >"$work/ab.toml" <<'EOF'
version = 1
name = "callgrind-ab"
seed = 7
[target]
connect_timeout = "60s"
ready_timeout = "60s"
[workload]
users = 20
iterations = 10
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "60s"
[thresholds]
"runs.ok count" = "== 200"
EOF
ir() {
  local bin=$1 tag=$2
  valgrind --tool=callgrind --callgrind-out-file="$work/$tag.out" \
    "$bin" run "$work/ab.toml" --target "ws://127.0.0.1:$port/ws" --out "$work/$tag" -q \
    >"$work/$tag.log" 2>&1 || { echo "run $tag failed:" >&2; tail -5 "$work/$tag.log" >&2; exit 1; }
  # The total of every thread's counts (callgrind writes one file per thread
  # only with --separate-threads; without it, one summary line).
  grep -h '^summary:' "$work/$tag".out* | awk '{s+=$2} END {print s}'
}
declare -a A B
for r in $(seq "$rounds"); do
  a=$(ir "$before" "before-$r"); b=$(ir "$after" "after-$r")
  A+=("$a"); B+=("$b")
  echo "round $r: before $a Ir, after $b Ir"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(median "${A[@]}"); mb=$(median "${B[@]}")
echo "median before: $ma Ir; median after: $mb Ir; after/before: $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.4f", b/a}')"
