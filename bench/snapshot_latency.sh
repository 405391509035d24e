#!/usr/bin/env bash
# Benchmark (not a test): wall time of `portalctl snapshot create` and
# `portalctl snapshot restore --discard-current` on two file:// volumes of the
# same size, one with SMALL_GIB written and one with BIG_GIB written (issue 4:
# both under 50 ms, big/small under 2). Create and restore must be O(1) in the
# data written, so the two columns should match.
#
# Both daemons run at once and the measurements alternate small, big, small,
# big, so machine drift hits both alike; each figure is the median of ITER.
# Before every create, 1 MiB is written at a random offset (a snapshot of an
# idle volume would only measure the control socket); the create has to seal
# that write buffer, which costs the same on both volumes. The wall time
# includes starting portalctl: `portalctl status` is timed too, as the floor;
# the same requests are also timed on the control socket from inside one client.
#
# The fill is compressible (fio, 4 MiB writes of the byte 0x5a), so the
# store stays small: watch `df -h /tmp` anyway.
#
# Usage: bench/snapshot_latency.sh        (as root; needs qemu-io, jq)
# Env: BUILD (default build), SMALL_GIB (1), BIG_GIB (32), ITER (5),
#      TMPDIR_BASE (/tmp), OUT (write the markdown table there as well).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
SMALL_GIB=${SMALL_GIB:-1}
BIG_GIB=${BIG_GIB:-32}
ITER=${ITER:-5}
OUT=${OUT:-}
DISK_GB=$((BIG_GIB + 8))
CTL=$BUILD/bin/portalctl

command -v qemu-io >/dev/null || apt-get install -y -q qemu-utils >/dev/null
command -v jq >/dev/null || apt-get install -y -q jq >/dev/null
[ -x "$BUILD/bin/portalbd" ] && [ -x "$CTL" ] || { echo "snapshot_latency: build first (make)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR_BASE:-/tmp}/portalbd-bench-snap.XXXXXX")
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/" && BUILD=$TMP && CTL=$TMP/bin/portalctl
declare -A PID=()
cleanup() {
  local v
  for v in "${!PID[@]}"; do kill "${PID[$v]}" 2>/dev/null || true; wait "${PID[$v]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

start() {  # VOLUME
  mkdir -p "$TMP/$1.data"
  "$BUILD/bin/portalbd" --storage "file://$TMP/$1.data" --disk-size-gb "$DISK_GB" --nbd-address "" \
    --nbd-unix "$TMP/$1.sock" --socket "$TMP/$1.ctl" --state-dir "$TMP/$1.state" \
    --gc-interval-s 0 --log-level warn >"$TMP/$1.log" 2>&1 &
  PID[$1]=$!
  local i
  for i in $(seq 1 300); do
    "$CTL" --socket "$TMP/$1.ctl" status >/dev/null 2>&1 && [ -S "$TMP/$1.sock" ] && return 0
    sleep 0.1
  done
  echo "snapshot_latency: daemon $1 did not start" >&2; tail -5 "$TMP/$1.log" >&2; exit 1
}

qio() {  # VOLUME qemu-io-args...
  local v=$1; shift
  qemu-io --image-opts "driver=nbd,server.type=unix,server.path=$TMP/$v.sock,export=portalbd" "$@" >/dev/null
}

fill() {  # VOLUME GIB: sequential 4 MiB writes of 0x5a, 8 in flight
  local v=$1 gib=$2 t0
  t0=$(date +%s%N)
  fio --name=fill --ioengine=nbd --uri="nbd+unix:///portalbd?socket=$TMP/$v.sock" --rw=write --bs=4M \
    --iodepth=8 --size="${gib}G" --buffer_pattern=0x5a --scramble_buffers=0 >"$TMP/fill.$v.log" 2>&1 ||
    { echo "snapshot_latency: fill of $v failed" >&2; cat "$TMP/fill.$v.log" >&2; exit 1; }
  qio "$v" -c flush
  drain "$v"
  local ms=$((($(date +%s%N) - t0) / 1000000))
  echo "  filled $v: $gib GiB in $ms ms ($(awk -v g="$gib" -v ms="$ms" 'BEGIN { printf "%.0f", g * 1024 / (ms / 1000) }') MiB/s)," \
    "stored $(du -sh "$TMP/$v.data" | cut -f1), $(status "$v" | jq -r .segments) segments" >&2
}

# One request on the control socket, timed inside the client (no process
# start-up): appends microseconds to $TMP/<what>.<volume>.
sock_timed() {  # WHAT VOLUME CMD ARGS_JSON
  python3 - "$TMP/$2.ctl" "$3" "$4" >>"$TMP/$1.$2" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
req = json.dumps({"v": 1, "cmd": sys.argv[2], "args": json.loads(sys.argv[3])}).encode() + b"\n"
t0 = time.perf_counter_ns()
f.write(req); f.flush()
resp = json.loads(f.readline())
t1 = time.perf_counter_ns()
if not resp.get("ok"):
    sys.exit("control request failed: %s" % resp)
print((t1 - t0) // 1000)
PY
}

status() { "$CTL" --socket "$TMP/$1.ctl" --json status; }
drain() {  # VOLUME: wait until the write buffer is uploaded
  local i
  for i in $(seq 1 1200); do
    [ "$(status "$1" | jq -r .dirty_bytes)" = 0 ] && return 0
    sleep 0.1
  done
  echo "snapshot_latency: $1 did not drain" >&2; exit 1
}

# Wall time of one command in microseconds, appended to $TMP/<what>.<volume>.
timed() {  # WHAT VOLUME command...
  local what=$1 v=$2 t0 t1; shift 2
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) >>"$TMP/$what.$v"
}

start small
start big
echo "snapshot_latency: filling small ($SMALL_GIB GiB) and big ($BIG_GIB GiB) volumes of $DISK_GB GiB; df before:" >&2
df -h "$TMP" | tail -1 >&2
fill small "$SMALL_GIB"
fill big "$BIG_GIB"
df -h "$TMP" | tail -1 >&2

for i in $(seq 1 "$ITER"); do
  for v in small big; do
    timed status "$v" "$CTL" --socket "$TMP/$v.ctl" status
    qio "$v" -c "write -P $((i & 0xff)) $(((64 + RANDOM % 960) << 20)) 1M"
    timed create "$v" "$CTL" --socket "$TMP/$v.ctl" snapshot create "bench-$i"
    qio "$v" -c "write -P $((i & 0xff)) $(((64 + RANDOM % 960) << 20)) 1M"
    sock_timed screate "$v" snapshot.create "{\"name\":\"sock-$i\"}"
    sock_timed sstatus "$v" status '{}'
  done
done
for i in $(seq 1 "$ITER"); do
  for v in small big; do
    timed restore "$v" "$CTL" --socket "$TMP/$v.ctl" snapshot restore "bench-$i" --discard-current
    sock_timed srestore "$v" snapshot.restore "{\"name\":\"sock-$i\",\"discard_current\":true}"
  done
done
# The restored volumes must still hold the fill (restore swapped a root, it did not lose data).
for v in small big; do
  qemu-io --image-opts "driver=nbd,server.type=unix,server.path=$TMP/$v.sock,export=portalbd" \
    -c "read -P 0x5a 0 1M" 2>&1 | grep -q '^read 1048576/1048576' ||
    { echo "snapshot_latency: $v lost its data after restore" >&2; exit 1; }
done

median_ms() {  # FILE
  sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m / 1000 }'
}
range_ms() { sort -n "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f–%.1f", lo / 1000, hi / 1000 }'; }
row() {  # WHAT LABEL
  local s b
  s=$(median_ms "$TMP/$1.small") b=$(median_ms "$TMP/$1.big")
  printf '| %s | %s (%s) | %s (%s) | %s |\n' "$2" "$s" "$(range_ms "$TMP/$1.small")" "$b" "$(range_ms "$TMP/$1.big")" \
    "$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.2f", b / s }')"
}
{
  echo "file:// store, ${DISK_GB} GiB volumes, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg); wall time of the portalctl call in ms, median of $ITER (min–max)"
  echo
  echo "| operation | ${SMALL_GIB} GiB written | ${BIG_GIB} GiB written | big/small |"
  echo "|---|---|---|---|"
  row create "snapshot create (after a 1 MiB write)"
  row restore "snapshot restore --discard-current"
  row status "portalctl status (process start-up floor)"
  row screate "control socket: snapshot.create (after a 1 MiB write)"
  row srestore "control socket: snapshot.restore discard_current"
  row sstatus "control socket: status"
} | tee "$TMP/table.md"
[ -n "$OUT" ] && cp "$TMP/table.md" "$OUT"
exit 0
