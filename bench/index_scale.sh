#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): what the extent index
# costs in memory and start-up as a volume's extent count grows (issue 23).
# For each COUNT in COUNTS: a fresh portalbd on a file:// store, a device of
# exactly COUNT 4 KiB blocks, fio writes every block once in random order
# (so no two neighbours land in one write: COUNT extents in the index), a
# clean stop, then a restart on the same state dir, timed until the export
# answers; then 10,000 random 4 KiB reads. Reported: start time, RSS after
# start and after the reads, RSS per extent above an empty volume's, the
# extents the index cache holds after the reads (status: index.cached_extents;
# the rest of the RSS growth is the frame cache), and the time a start with a
# fresh state dir takes to open (rebuild from storage: a checkpoint stored
# first with `portalctl checkpoint`, then the index restored from it).
#
# The data is 90% compressible so that 4M extents (16 GiB of writes) take
# little disk; the index does not care what the blocks hold.
#
# Usage: bench/index_scale.sh   Env: BUILD (default build),
#        COUNTS ("262144 1048576 4194304"), OUT (also write the table here).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
COUNTS=${COUNTS:-"262144 1048576 4194304"}
OUT=${OUT:-}
EXPORT=portalbd
BENCH=index_scale
# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"  # need
need fio fio
need nbdinfo libnbd-bin

TMP=$(mktemp -d /var/tmp/portalbd-bench-index.XXXXXX)
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/"
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
uri() { echo "nbd+unix:///$EXPORT?socket=$TMP/nbd.sock"; }

start() {  # SIZE_BYTES (whole GiB): starts the daemon; START_S: seconds until the export answered
  local t0 t1
  t0=$(date +%s%N)
  "$TMP/bin/portalbd" --storage "file://$TMP/store" --state-dir "$TMP/state" --nbd-address "" \
    --nbd-unix "$TMP/nbd.sock" --socket "$TMP/ctl.sock" --gc-interval-s 0 --log-level warn \
    --disk-size-gb $(($1 >> 30)) >>"$TMP/portalbd.log" 2>&1 &
  PID=$!
  until nbdinfo --size "$(uri)" >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { echo "$BENCH: portalbd exited:" >&2; tail -5 "$TMP/portalbd.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  START_S=$(printf %.2f "$(echo "($t1 - $t0) / 1000000000" | bc -l)")
}
stop() {
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }

rows=()
for count in $COUNTS; do
  rm -rf --one-file-system "$TMP/store" "$TMP/state" "$TMP"/*.sock
  size=$((count * 4096))
  start "$size"
  echo "$BENCH: writing $count blocks in random order" >&2
  fio --name=fill --ioengine=nbd --uri="$(uri)" --rw=randwrite --bs=4k --iodepth=32 --size="$size" \
    --buffer_compress_percentage=90 --refill_buffers --end_fsync=1 --output-format=json >"$TMP/fill.json"
  stop
  start "$size"
  start_s=$START_S
  rss_start=$(rss_kib)
  fio --name=read --ioengine=nbd --uri="$(uri)" --rw=randread --bs=4k --iodepth=8 --size="$size" \
    --number_ios=10000 --output-format=json >"$TMP/read.json"
  rss_read=$(rss_kib)
  cached=$("$TMP/bin/portalctl" --socket "$TMP/ctl.sock" --json status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["index"].get("cached_extents", "-"))')
  "$TMP/bin/portalctl" --socket "$TMP/ctl.sock" checkpoint >/dev/null
  stop
  rm -rf --one-file-system "$TMP/state"
  start "$size"
  rebuild_s=$START_S
  stop
  rows+=("$count $start_s $rss_start $rss_read $cached $rebuild_s")
  echo "$BENCH: $count blocks: start ${start_s} s, RSS ${rss_start} KiB after start, ${rss_read} KiB after reads" \
    "(${cached} extents cached), start with a fresh state dir ${rebuild_s} s" >&2
done

# An empty volume of the largest size, for the baseline.
rm -rf --one-file-system "$TMP/store" "$TMP/state" "$TMP"/*.sock
largest=$(tr ' ' '\n' <<<"$COUNTS" | sort -n | tail -1)
start $((largest * 4096))
empty_s=$START_S
empty_rss=$(rss_kib)
stop

{
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), portalbd $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo
  echo "| extents written | start s | RSS after start MiB | RSS after 10k random reads MiB | bytes of RSS per extent (after start, above empty) | extents cached after the reads | start from storage (checkpoint) s |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  echo "| 0 (empty) | $empty_s | $((empty_rss / 1024)) | - | - | - | - |"
  for r in "${rows[@]}"; do
    read -r count s rs rr cached rebuild <<<"$r"
    printf '| %s | %s | %s | %s | %.0f | %s | %s |\n' "$count" "$s" "$((rs / 1024))" "$((rr / 1024))" \
      "$(echo "($rs - $empty_rss) * 1024 / $count" | bc -l)" "$cached" "$rebuild"
  done
} | tee ${OUT:+"$OUT"}
