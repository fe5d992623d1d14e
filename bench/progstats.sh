#!/usr/bin/env bash
# Where a traced Redis's extra CPU outside saves goes (RESULTS.md section 7): the kernel's
# own accounting of cowtrace's syscall programs (kernel.bpf_stats_enabled=1, then
# run_cnt and run_time_ns from `bpftool prog show`) over one redis-benchmark window,
# with cowtrace tracing the server (`record -p REDIS`) and tracing an idle process
# instead (`record -p OTHER`). Prints, per program, runs and ns per run, and the
# programs' time per request (every syscall of the host runs them, redis-benchmark's
# too). The accounting itself adds two clock reads per run (about 70 ns here).
#
# Usage (root, from the repository): flock /tmp/roottests.lock bench/progstats.sh
# Environment: ROUNDS (3), KEYS (100000), REQUESTS (100000), TEST (set),
# COWTRACE (target/release/cowtrace).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-100000}
REQUESTS=${REQUESTS:-100000}
TEST=${TEST:-set}
COWTRACE=${COWTRACE:-target/release/cowtrace}
[ -x "$COWTRACE" ] || { echo "no $COWTRACE: cargo build --release -p agent first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (cowtrace loads BPF programs)" >&2; exit 1; }

dir=$(mktemp -d /tmp/cowtrace-progstats.XXXXXX)
sock=$dir/redis.sock
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
redis-server --port 0 --unixsocket "$sock" --dir "$dir" --save "" --appendonly no \
    --daemonize no --logfile "$dir/redis.log" &
rpid=$!
sleep 3600 &
spid=$!
cleanup() {
    sysctl -qw kernel.bpf_stats_enabled="$old_stats"
    kill "$rpid" "$spid" 2>/dev/null || true
    wait "$rpid" "$spid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do
    [ "$(redis-cli -s "$sock" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
redis-benchmark -s "$sock" -t set -r "$KEYS" -n "$KEYS" -d 100 -P 16 -q >/dev/null
sysctl -qw kernel.bpf_stats_enabled=1

# "name run_cnt run_time_ns" of the programs the cowtrace process $1 holds.
stats() {
    local ids
    ids=$(grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u | paste -sd, -)
    bpftool -j prog show | python3 -c '
import json, sys
ids = set(int(i) for i in sys.argv[1].split(",") if i)
for p in json.load(sys.stdin):
    if p["id"] in ids and p.get("name") in ("sys_enter", "sys_exit"):
        print(p["name"], p.get("run_cnt", 0), p.get("run_time_ns", 0))' "$ids"
}

run() {
    local target=$1 trace=$dir/trace.jsonl
    rm -f "$trace"
    "$COWTRACE" record -p "$target" -o "$trace" >/dev/null 2>"$dir/err" &
    local tp=$!
    for _ in $(seq 100); do
        grep -q '"type":"meta"' "$trace" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.3
    local a b
    a=$(stats "$tp")
    redis-benchmark -s "$sock" -t "$TEST" -r "$KEYS" -n "$REQUESTS" -d 100 -q >/dev/null
    b=$(stats "$tp")
    kill -INT "$tp"
    wait "$tp" || { echo "cowtrace failed:" >&2; cat "$dir/err" >&2; exit 1; }
    python3 -c '
import sys
a = {l.split()[0]: list(map(int, l.split()[1:])) for l in sys.argv[1].splitlines()}
b = {l.split()[0]: list(map(int, l.split()[1:])) for l in sys.argv[2].splitlines()}
n = int(sys.argv[3]); total = 0; out = []
for name in ("sys_enter", "sys_exit"):
    runs = b[name][0] - a[name][0]; ns = b[name][1] - a[name][1]; total += ns
    out.append(f"{name} {runs} runs {ns / max(runs, 1):.0f} ns/run")
print("; ".join(out) + f"; programs {total / n:.0f} ns per request")' "$a" "$b" "$REQUESTS"
}

for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        echo "r$r traced: $(run "$rpid")"; echo "r$r other:  $(run "$spid")"
    else
        echo "r$r other:  $(run "$spid")"; echo "r$r traced: $(run "$rpid")"
    fi
done
