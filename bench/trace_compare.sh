#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): replays the recorded
# traces in bench/traces/ (see its README.md) with build/bin/nbd_replay, as
# fast as their recorded concurrency allows, against the four servers of
# fio_compare.sh (bench/servers.sh):
#   pm  portalbd memory://          nk  nbdkit memory 4G
#   pf  portalbd file:// (temp dir)  qn  qemu-nbd on a fresh qcow2, --cache=writeback
#
# A trace shorter than MIN_OPS requests (mkfs: a few dozen) is replayed
# ceil(MIN_OPS / requests) times back to back in one run (nbd_replay
# --repeat), so that its time is not lost in connection setup.
#
# Drift: each repetition starts four fresh servers and replays every trace in
# turn on each server, portalbd and its peer back to back (A B A B; even
# repetitions B A B A); the table shows the median of REPS runs. Before a
# replay starts, the portalbd daemons' dirty data must have drained.
#
# Usage: bench/trace_compare.sh   (as root; installs nbdkit, qemu-utils, jq
#        and zstd with apt-get when missing)
# Env: BUILD (default build), REPS (3), TRACES ("mkfs pgbench untar"),
#      MIN_OPS (10000), OUT (write the markdown table to this file as well).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
REPS=${REPS:-3}
TRACES=${TRACES:-"mkfs pgbench untar"}
MIN_OPS=${MIN_OPS:-10000}
OUT=${OUT:-}
EXPORT=portalbd
DISK_GB=4
BENCH=trace_compare

# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"
need nbdkit nbdkit
need qemu-nbd qemu-utils
need nbdinfo libnbd-bin
need jq jq
need zstd zstd
for b in portalbd portalctl nbd_replay; do
  [ -x "$BUILD/bin/$b" ] || { echo "$BENCH: build first (make $BUILD/bin/$b)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/portalbd-bench-trace.XXXXXX)
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$BUILD/bin/nbd_replay" "$TMP/bin/" && BUILD=$TMP
cleanup() { stop_servers; rm -rf --one-file-system "$TMP"; }
trap cleanup EXIT

declare -A REPEAT=() REQUESTS=()
for t in $TRACES; do
  zstd -q -dc "$TOP/bench/traces/$t.trace.zst" >"$TMP/$t.trace"
  REQUESTS[$t]=$(grep -c -v -e '^#' -e '^portalbd' -e ' DISC ' "$TMP/$t.trace")
  REPEAT[$t]=$(( (MIN_OPS + REQUESTS[$t] - 1) / REQUESTS[$t] ))
done

# One replay; appends "server trace rep ops/s MiB/s" to results.
run_one() {  # SERVER TRACE REP
  local s=$1 t=$2 rep=$3 json=$TMP/$1.$2.$3.json
  drain "$s"
  "$BUILD/bin/nbd_replay" --json --repeat "${REPEAT[$t]}" "$TMP/$t.trace" "$(uri "$s")" >"$json" 2>"$TMP/replay.err" ||
    { echo "$BENCH: nbd_replay $t on $s failed:" >&2; cat "$TMP/replay.err" >&2; exit 1; }
  [ "$(jq -r .errors "$json")" = 0 ] || { echo "$BENCH: $t on $s: requests failed" >&2; cat "$TMP/replay.err" >&2; exit 1; }
  jq -r --arg s "$s" --arg t "$t" --arg r "$rep" \
    '"\($s) \($t) \($r) \(.ops_per_s) \(.read_mib_s + .write_mib_s) \(.elapsed_s)"' "$json" >>"$TMP/results"
  printf '  rep %s %-8s %-2s %9.0f ops/s %8.1f MiB/s %7.2f s\n' "$rep" "$t" "$s" \
    "$(tail -1 "$TMP/results" | cut -d' ' -f4)" "$(tail -1 "$TMP/results" | cut -d' ' -f5)" \
    "$(tail -1 "$TMP/results" | cut -d' ' -f6)" >&2
}

: >"$TMP/results"
started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  start_servers
  for t in $TRACES; do
    if [ $((rep % 2)) = 1 ]; then order="pm nk pf qn"; else order="nk pm qn pf"; fi
    for s in $order; do run_one "$s" "$t" "$rep"; done
  done
  stop_servers
done
elapsed=$(($(date +%s) - started))

table() {
  python3 - "$TMP/results" "$TRACES" "$(for t in $TRACES; do echo "$t:${REQUESTS[$t]}:${REPEAT[$t]}"; done)" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
traces = sys.argv[2].split()
info = {x.split(":")[0]: x.split(":")[1:] for x in sys.argv[3].split()}
def med(s, t, k):
    v = [float(r[k]) for r in rows if r[0] == s and r[1] == t]
    return statistics.median(v) if v else float("nan")
servers = [("pm", "portalbd memory://"), ("nk", "nbdkit memory"), ("pf", "portalbd file://"), ("qn", "qemu-nbd qcow2")]
print("| trace (requests x passes) | " + " | ".join(f"{n} ops/s | MiB/s" for _, n in servers) +
      " | mem/nbdkit | file/qemu-nbd |")
print("|---" * (1 + 2 * len(servers) + 2) + "|")
for t in traces:
    n, rep = info[t]
    cells = [f"{t} ({n} x {rep})"]
    for s, _ in servers:
        cells += [f"{med(s, t, 3):.0f}", f"{med(s, t, 4):.1f}"]
    cells += [f"{med('pm', t, 3) / med('nk', t, 3):.2f}x", f"{med('pf', t, 3) / med('qn', t, 3):.2f}x"]
    print("| " + " | ".join(cells) + " |")
EOF
}
{
  echo "nbd_replay as fast as the recorded concurrency allows, over unix sockets, median of $REPS (A B A B), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), run took ${elapsed} s, portalbd binary $(sha256sum "$BUILD/bin/portalbd" | cut -c1-12) from $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo
  table
} | tee "$TMP/table.md"
[ -n "$OUT" ] && cp "$TMP/table.md" "$OUT"
exit 0
