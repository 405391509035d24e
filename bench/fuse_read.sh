#!/usr/bin/env bash
# Benchmark (not a test): sequential read of one snapshot image through the
# FUSE view (`dd bs=1M`) vs `nbdcopy` of the same export, in the same run,
# against the same daemon. Prints MiB/s for both and the ratio (target >= 0.7).
#
# Usage: bench/fuse_read.sh [SIZE_MIB (default 1024)]   (as root; needs nbdcopy)
# Env: BUILD (default build), STORAGE (default memory://), CONNECTIONS (8).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
SIZE_MIB=${1:-1024}
STORAGE=${STORAGE:-memory://}
CONNECTIONS=${CONNECTIONS:-8}
TMP=$(mktemp -d /tmp/portalbd-bench-fuse.XXXXXX)
SOCK=$TMP/nbd.sock CTL=$TMP/ctl.sock MNT=$TMP/view
PID=
cleanup() {
  fusermount3 -uz "$MNT" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
[ "${KEEP_LOG:-0}" = 1 ] && trap 'tail -20 "$TMP/portalbd.log"; cleanup' EXIT
mkdir -p "$MNT"

gib=$(( (SIZE_MIB + 1023) / 1024 ))
"$BUILD/bin/portalbd" --storage "$STORAGE" --disk-size-gb "$gib" --nbd-unix "$SOCK" \
  --nbd-address "127.0.0.1:$((30000 + RANDOM % 20000))" --socket "$CTL" --state-dir "$TMP/state" >"$TMP/portalbd.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do [ -S "$SOCK" ] && [ -S "$CTL" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { tail -5 "$TMP/portalbd.log"; exit 1; }
URI="nbd+unix:///portalbd?socket=$SOCK"

# Incompressible data over the whole image, so neither side reads holes.
head -c $((SIZE_MIB << 20)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$URI"
rm -f "$TMP/data"
"$BUILD/bin/portalctl" --socket "$CTL" snapshot create bench >/dev/null
"$BUILD/bin/portalctl" --socket "$CTL" mount "$MNT" --nbd-unix "$SOCK" --connections "$CONNECTIONS"

mibps() {  # BYTES MILLISECONDS
  awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.1f", (b / 1048576) / (ms / 1000) }'
}
now_ms() { date +%s%3N; }
bytes=$((SIZE_MIB << 20))

# Warm the daemon's caches equally for both readers: one untimed pass.
nbdcopy "nbd+unix:///portalbd@bench?socket=$SOCK" null: 2>/dev/null ||
  nbdcopy "nbd+unix:///portalbd@bench?socket=$SOCK" - >/dev/null

t0=$(now_ms)
nbdcopy "nbd+unix:///portalbd@bench?socket=$SOCK" - >/dev/null
nbd_ms=$(( $(now_ms) - t0 ))

sync; echo 3 >/proc/sys/vm/drop_caches
t0=$(now_ms)
dd if="$MNT/snapshots/bench.img" of=/dev/null bs=1M count="$SIZE_MIB" status=none
fuse_ms=$(( $(now_ms) - t0 ))

nbd_rate=$(mibps "$bytes" "$nbd_ms")
fuse_rate=$(mibps "$bytes" "$fuse_ms")
echo "image: ${SIZE_MIB} MiB, storage $STORAGE, $CONNECTIONS connections per open image"
echo "nbdcopy (portalbd@bench -> stdout):     ${nbd_rate} MiB/s (${nbd_ms} ms)"
echo "FUSE dd bs=1M (snapshots/bench.img):    ${fuse_rate} MiB/s (${fuse_ms} ms)"
awk -v f="$fuse_rate" -v n="$nbd_rate" 'BEGIN { printf "ratio FUSE/nbdcopy: %.2fx (target >= 0.70x)\n", f / n }'
