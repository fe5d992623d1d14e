#!/usr/bin/env bash
# What the cause probes (issue 15) cost a Redis server during a save.
#
# A throwaway redis-server is filled with KEYS keys. Each round runs two configurations
# in alternating order: `cowtrace record -p REDIS --causes` (the cause probes on), and
# without `--causes` (the same agent, the probes never attached). One run: start
# cowtrace, BGSAVE (rdb-key-save-delay keeps the child alive far longer than the
# window), wait until the probes are attached, then the window: SETS pipelined SETs on
# the existing keys (the parent keeps copying pages). The figure is the server's CPU
# time over the window (every thread, from /proc/PID/task/*/schedstat, in ns) per 1,000
# SETs. The child is then stopped with SIGUSR1 (a cancelled save) and cowtrace with
# SIGINT. Prints each round and the median of the per-round ratios on/off.
#
# Usage (root, from the repository): flock /tmp/roottests.lock bench/causes.sh
# Environment: ROUNDS (8), KEYS (200000), SETS (300000), PIPELINE (16: redis-benchmark -P),
# COWTRACE (target/debug/cowtrace).
set -euo pipefail
ROUNDS=${ROUNDS:-8}
KEYS=${KEYS:-200000}
SETS=${SETS:-300000}
PIPELINE=${PIPELINE:-16}
COWTRACE=${COWTRACE:-target/debug/cowtrace}
[ -x "$COWTRACE" ] || { echo "no $COWTRACE: run cargo build first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (cowtrace loads BPF programs)" >&2; exit 1; }

dir=$(mktemp -d /tmp/cowtrace-bench-causes.XXXXXX)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --dir "$dir" --save "" --appendonly no \
    --daemonize no --rdb-key-save-delay 200 --logfile "$dir/redis.log" &
rpid=$!
cleanup() {
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do
    [ "$(redis-cli -s "$sock" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
redis-benchmark -s "$sock" -t set -r "$KEYS" -n "$KEYS" -d 100 -P 16 -q >/dev/null

cpu_ns() {
    local t=0 v
    for f in /proc/"$rpid"/task/*/schedstat; do
        read -r v _ <"$f" || continue
        t=$((t + v))
    done
    echo "$t"
}

# One run: prints CPU ms per 1k SETs and SET/s.
run() {
    local mode=$1 trace=$dir/trace-$1.jsonl
    rm -f "$trace"
    local flags=()
    [[ $mode == on ]] && flags=(--causes)
    "$COWTRACE" record -p "$rpid" "${flags[@]}" -o "$trace" >/dev/null 2>"$dir/cowtrace.err" &
    local tp=$!
    for _ in $(seq 100); do
        grep -q '"type":"meta"' "$trace" 2>/dev/null && break
        sleep 0.1
    done
    redis-cli -s "$sock" BGSAVE >/dev/null
    sleep 1 # the agent sees the fork and attaches the probes
    local c0 t0 c1 t1
    c0=$(cpu_ns)
    t0=$(date +%s%N)
    redis-benchmark -s "$sock" -t set -r "$KEYS" -n "$SETS" -d 100 -P "$PIPELINE" -q >/dev/null
    t1=$(date +%s%N)
    c1=$(cpu_ns)
    local child
    child=$(pgrep -P "$rpid" || true)
    [ -n "$child" ] || { echo "the save ended inside the window: raise rdb-key-save-delay" >&2; exit 1; }
    kill -USR1 "$child"
    while [ "$(redis-cli -s "$sock" INFO persistence | tr -d '\r' | grep rdb_bgsave_in_progress)" != "rdb_bgsave_in_progress:0" ]; do
        sleep 0.1
    done
    kill -INT "$tp"
    wait "$tp" || { echo "cowtrace failed:" >&2; cat "$dir/cowtrace.err" >&2; exit 1; }
    awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v n="$SETS" \
        'BEGIN { printf "%.3f %.0f\n", c / 1e6 / (n / 1000), n / (t / 1e9) }'
}

echo "round | causes on: CPU ms/1k SETs, SET/s | causes off: CPU ms/1k SETs, SET/s | ratio on/off"
ratios=()
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        on=$(run on); off=$(run off)
    else
        off=$(run off); on=$(run on)
    fi
    ratio=$(awk -v a="${on%% *}" -v b="${off%% *}" 'BEGIN { printf "%.3f", a / b }')
    ratios+=("$ratio")
    echo "r$r | ${on% *}, ${on#* } | ${off% *}, ${off#* } | $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "median ratio (causes on / off) over %d rounds: %.3f (min %.3f, max %.3f)\n", NR, m, a[1], a[NR] }'
