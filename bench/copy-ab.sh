#!/usr/bin/env bash
# The cost of one COW copy under two cowtrace builds, A and B (e.g. main and a branch):
# cowbench --mode cow rewrites every page of MIB MiB after a fork (one copy per page),
# REPS times, traced by `A record -p PID` or `B record -p PID`, in alternating order,
# ROUNDS pairs. Prints the thread CPU ns per copy of each run and the median of the
# per-round ratios B/A.
#
# Usage (root): flock /tmp/roottests.lock bench/copy-ab.sh A_COWTRACE B_COWTRACE
# Environment: ROUNDS (8), MIB (256), REPS (3), COWBENCH (target/debug/examples/cowbench).
set -euo pipefail
A=$1
B=$2
ROUNDS=${ROUNDS:-8}
MIB=${MIB:-256}
REPS=${REPS:-3}
COWBENCH=${COWBENCH:-target/debug/examples/cowbench}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
dir=$(mktemp -d /tmp/cowtrace-copy-ab.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# One run: the median thread CPU ns per copy of its REPS rewrites.
run() {
    local tracer=$1 trace=$dir/trace.jsonl
    coproc W { "$COWBENCH" --mode cow --mib "$MIB" --reps "$REPS"; }
    local ready pid
    read -r ready pid <&"${W[0]}"
    [ "$ready" = ready ] || { echo "cowbench said $ready" >&2; exit 1; }
    rm -f "$trace"
    "$tracer" record -p "$pid" -o "$trace" >/dev/null 2>"$dir/err" &
    local tp=$!
    for _ in $(seq 100); do
        grep -q '"type":"meta"' "$trace" 2>/dev/null && break
        sleep 0.1
    done
    echo go >&"${W[1]}"
    local out
    read -r out <&"${W[0]}"
    wait "$W_PID" || true
    wait "$tp" || { echo "cowtrace failed:" >&2; cat "$dir/err" >&2; exit 1; }
    python3 -c '
import json, statistics, sys
r = json.loads(sys.argv[1])
print(round(statistics.median(c / r["pages"] for c in r["cpu_ns"])))' "$out"
}

echo "round | A ns/copy | B ns/copy | B/A"
ratios=()
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then a=$(run "$A"); b=$(run "$B"); else b=$(run "$B"); a=$(run "$A"); fi
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
    ratios+=("$ratio")
    echo "r$r | $a | $b | $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "median ratio B/A over %d rounds: %.3f (min %.3f, max %.3f)\n", NR, m, a[1], a[NR] }'
