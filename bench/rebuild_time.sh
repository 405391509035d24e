#!/usr/bin/env bash
# Benchmark (not a test): how long a daemon with an empty state dir takes to
# rebuild its index from object storage and serve, for a volume with GIB
# written in 10 rounds and a snapshot after each round (issue 7), in two cases:
#
#   checkpoint     the store holds a fresh index checkpoint (portalctl
#                  checkpoint just before the stop): download + unpack it,
#                  replay no segment
#   no checkpoint  checkpoints/ moved aside: every segment footer is read and
#                  replayed
#
# Each start is timed from exec to "status answers and the NBD socket serves"
# (nbdinfo --size). The two cases alternate (A B A B ...), REPS each; the table
# shows medians. After each rebuild the live volume's checksum is compared
# with the one taken before the stop (VERIFY=1, the default), so a fast but
# wrong rebuild cannot pass unnoticed.
#
# The fill: fio random 64 KiB writes with 50% compressible buffers over the
# first GIB of the device, GIB/10 per round, with an fsync every FSYNC_EVERY
# writes (the way a database writes: each fsync is a FLUSH, which seals one
# segment, so the store ends up with about GIB*1024/(FSYNC_EVERY/16) segments);
# `portalctl snapshot create round-N` after each round.
#
# Usage: bench/rebuild_time.sh   (as root; installs fio, libnbd-bin, jq when missing)
# Env: BUILD (default build), GIB (4), REPS (3), VERIFY (1), FSYNC_EVERY (64;
#      0: no fsync, large segments), STORE (file, or
#      s3 for s3rver from build/node), OUT (also write the table there).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
GIB=${GIB:-4}
REPS=${REPS:-3}
VERIFY=${VERIFY:-1}
STORE=${STORE:-file}
FSYNC_EVERY=${FSYNC_EVERY:-64}
OUT=${OUT:-}
ROUNDS=10

need() {  # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "rebuild_time: installing $2 for $1" >&2
  apt-get install -y -q "$2" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; }
}
need fio fio
need nbdinfo libnbd-bin
need nbdcopy libnbd-bin
need jq jq
[ -x "$BUILD/bin/portalbd" ] && [ -x "$BUILD/bin/portalctl" ] || { echo "rebuild_time: build first (make)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/portalbd-bench-rebuild.XXXXXX)
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/"
PBD=$TMP/bin/portalbd
CTL="$TMP/bin/portalctl --socket $TMP/ctl.sock"
URI="nbd+unix:///portalbd?socket=$TMP/nbd.sock"
DPID= S3PID=
cleanup() {
  [ -z "$DPID" ] || { kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null || true; }
  [ -z "$S3PID" ] || { kill "$S3PID" 2>/dev/null; wait "$S3PID" 2>/dev/null || true; }
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

case "$STORE" in
  file)
    mkdir -p "$TMP/data"
    STORAGE=file://$TMP/data
    checkpoints_off() { mv "$TMP/data/checkpoints" "$TMP/checkpoints.off"; }
    checkpoints_on() { rm -rf "$TMP/data/checkpoints"; mv "$TMP/checkpoints.off" "$TMP/data/checkpoints"; }
    ;;
  s3)
    S3RVER=$BUILD/node/node_modules/.bin/s3rver
    [ -x "$S3RVER" ] || { echo "rebuild_time: s3rver missing at $S3RVER (make deps)" >&2; exit 1; }
    port=$(( 20000 + RANDOM % 20000 ))
    mkdir -p "$TMP/s3"
    S3RVER_MODULE_DIR=$(dirname "$(readlink -f "$S3RVER")")/.. \
      NODE_OPTIONS="--openssl-legacy-provider --require $TOP/tests/integration/s3rver_put_order.js" \
      "$S3RVER" -d "$TMP/s3" -a 127.0.0.1 -p "$port" --silent \
      --configure-bucket bench >"$TMP/s3rver.log" 2>&1 &
    S3PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    STORAGE=s3://bench/vol
    # s3rver keeps objects as files under <dir>/<bucket>/<key>._S3rver_object.
    checkpoints_off() { mv "$TMP/s3/bench/vol/checkpoints" "$TMP/checkpoints.off"; }
    checkpoints_on() { rm -rf "$TMP/s3/bench/vol/checkpoints"; mv "$TMP/checkpoints.off" "$TMP/s3/bench/vol/checkpoints"; }
    ;;
  *) echo "rebuild_time: STORE is file or s3" >&2; exit 2 ;;
esac

start() {  # sets START_MS: the milliseconds from exec to serving
  local t0; t0=$(date +%s%N)
  "$PBD" --storage "$STORAGE" --nbd-address "" --nbd-unix "$TMP/nbd.sock" --socket "$TMP/ctl.sock" \
    --state-dir "$TMP/state" --gc-interval-s 0 --disk-size-gb $((GIB + 4)) "$@" >>"$TMP/daemon.log" 2>&1 &
  DPID=$!
  until $CTL status >/dev/null 2>&1 && nbdinfo --size "$URI" >/dev/null 2>&1; do
    kill -0 "$DPID" 2>/dev/null || { echo "rebuild_time: daemon exited" >&2; tail -20 "$TMP/daemon.log" >&2; exit 1; }
    sleep 0.02
  done
  START_MS=$((($(date +%s%N) - t0) / 1000000))
}
stop() { kill "$DPID"; wait "$DPID" || { echo "rebuild_time: daemon exit status $?" >&2; exit 1; }; DPID=; }
live_sum() { nbdcopy "$URI" - | sha256sum | cut -d' ' -f1; }

echo "rebuild_time: filling $GIB GiB in $ROUNDS rounds with a snapshot after each ($STORE store)" >&2
start
per_round=$((GIB * 1024 / ROUNDS))
for r in $(seq 1 $ROUNDS); do
  fio --name=fill --ioengine=nbd --uri="$URI" --rw=randwrite --bs=64k --iodepth=16 --size="${GIB}G" \
    --io_size="${per_round}M" --randseed="$r" --buffer_compress_percentage=50 --refill_buffers --fsync="$FSYNC_EVERY" \
    >"$TMP/fio.log" 2>&1 || { cat "$TMP/fio.log" >&2; exit 1; }
  $CTL snapshot create "round-$r" >/dev/null
done
$CTL checkpoint >/dev/null
status=$($CTL status --json)
segments=$(jq -r .segments <<<"$status")
stored=$(jq -r .bytes_stored <<<"$status")
snaps=$($CTL snapshot list --json | jq ".snapshots | length")
want=
[ "$VERIFY" = 1 ] && want=$(live_sum)
stop
echo "rebuild_time: $segments segments, $((stored >> 20)) MiB stored, $snaps snapshots" >&2

declare -A MS=()
replayed() { grep -o 'replayed segments from storage count=[0-9]*' "$TMP/daemon.log" | tail -1 | grep -o '[0-9]*$' || echo 0; }
run_case() {  # CASE
  rm -rf "$TMP/state"
  : >"$TMP/daemon.log"
  [ "$1" = checkpoint ] || checkpoints_off
  start
  local ms=$START_MS
  local n; n=$($CTL snapshot list --json | jq ".snapshots | length")
  [ "$n" = "$snaps" ] || { echo "rebuild_time: $n snapshots after the rebuild, want $snaps" >&2; exit 1; }
  if [ "$VERIFY" = 1 ]; then
    [ "$(live_sum)" = "$want" ] || { echo "rebuild_time: the live volume differs after a rebuild ($1)" >&2; exit 1; }
  fi
  local rp; rp=$(replayed)
  stop
  [ "$1" = checkpoint ] || checkpoints_on
  MS[$1]+="$ms "
  REPLAYED[$1]=$rp
  echo "  $1: ready in $ms ms, $rp segments replayed" >&2
}
declare -A REPLAYED=()
for i in $(seq 1 "$REPS"); do
  if [ $((i % 2)) = 1 ]; then run_case checkpoint; run_case none; else run_case none; run_case checkpoint; fi
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
a=$(median <<<"${MS[checkpoint]}")
b=$(median <<<"${MS[none]}")
table=$(cat <<EOF
| rebuild ($STORE://, $GIB GiB written, $snaps snapshots, $segments segments, $((stored >> 20)) MiB stored) | ready in (median of $REPS) | segments replayed |
|---|---:|---:|
| with a fresh checkpoint | $a ms | ${REPLAYED[checkpoint]} |
| without a checkpoint | $b ms | ${REPLAYED[none]} |
| ratio (without / with) | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", b / a }') | |
EOF
)
echo "$table"
[ -z "$OUT" ] || echo "$table" >"$OUT"
