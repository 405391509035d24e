#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): what client-side
# encryption (issue 25: AES-256-GCM on every stored object) costs, fio with
# ioengine=nbd against two portalbd daemons on file:// stores in one run:
#   pf  portalbd file://, no encryption
#   pe  portalbd file://, --encryption-key-file (32 random bytes)
# Jobs: seqwrite: SIZE_MIB once, 1 MiB writes, 8 in flight, a FLUSH at the
# end (end_fsync), then the upload drained, so the time includes sealing and
# storing every segment; randwrite: 4 KiB writes, 32 in flight, RUNTIME s
# over that range, then drained; seqread_cold: both daemons restarted first
# (empty memory caches, the disk cache off), so every frame is read back from
# the store, checked and, on pe, decrypted.
# Each job runs on pf and pe back to back (odd repetitions pf first, even pe
# first); the table shows the median of REPS runs. Keep REPS even: the one
# that runs second in a pair writes while the first one's dirty pages drain
# to the same disk, and loses by up to 60% on random writes for that alone.
#
# Usage: bench/encryption_compare.sh
# Env: BUILD (default build), REPS (4), SIZE_MIB (512), RUNTIME (5),
#      OUT (also write the markdown table to this file).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
REPS=${REPS:-4}
[ $((REPS % 2)) = 0 ] || echo "encryption_compare: REPS=$REPS is odd: the order within pairs does not balance" >&2
SIZE_MIB=${SIZE_MIB:-512}
RUNTIME=${RUNTIME:-5}
OUT=${OUT:-}
EXPORT=portalbd
DISK_GB=4
BENCH=encryption_compare
# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"  # need, stop_servers, PID, sock, uri, wait_socket, drain
need fio fio
need nbdinfo libnbd-bin
need jq jq
[ -x "$BUILD/bin/portalbd" ] && [ -x "$BUILD/bin/portalctl" ] || { echo "$BENCH: build first (make)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/portalbd-bench-enc.XXXXXX)
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/" && BUILD=$TMP
trap 'stop_servers; rm -rf --one-file-system "$TMP"' EXIT
head -c 32 /dev/urandom >"$TMP/volume.key"
chmod 600 "$TMP/volume.key"
printf '[cache]\ndisk_bytes = 0\n' >"$TMP/portalbd.toml"  # cold reads come from the store

start_one() {  # SERVER
  local s=$1 extra=()
  [ "$s" = pe ] && extra=(--encryption-key-file "$TMP/volume.key")
  PORTALBD_CONFIG=$TMP/portalbd.toml "$BUILD/bin/portalbd" --storage "file://$TMP/$s.data" --disk-size-gb "$DISK_GB" --nbd-address "" \
    --nbd-unix "$(sock "$s")" --socket "$TMP/$s.ctl" --state-dir "$TMP/$s.state" --gc-interval-s 0 \
    --log-level warn "${extra[@]}" >>"$TMP/$s.log" 2>&1 &
  PID[$s]=$!
  wait_socket "$s"
}
restart() {  # SERVER: a clean stop (flushes), then a start on the same store and state
  kill "${PID[$1]}" && wait "${PID[$1]}" 2>/dev/null || true
  start_one "$1"
}

job_args() {  # JOB
  case $1 in
    seqwrite) echo "--rw=write --bs=1M --iodepth=8 --end_fsync=1 --runtime=300" ;;
    randwrite) echo "--rw=randwrite --bs=4k --iodepth=32 --time_based --runtime=$RUNTIME" ;;
    seqread_cold) echo "--rw=read --bs=1M --iodepth=8 --runtime=300" ;;
  esac
}

: >"$TMP/results"
run_one() {  # SERVER JOB REP
  local s=$1 job=$2 rep=$3 t0 t1 json=$TMP/$1.$2.$3.json
  [ "$job" = seqread_cold ] && restart "$s"
  drain "$s"
  t0=$(date +%s%N)
  # shellcheck disable=SC2046
  fio --name="$job" --ioengine=nbd --uri="$(uri "$s")" $(job_args "$job") --size="${SIZE_MIB}M" \
    --numjobs=1 --group_reporting --output-format=json --output="$json" >/dev/null 2>"$TMP/fio.err" ||
    { echo "$BENCH: fio $job on $s failed:" >&2; cat "$TMP/fio.err" >&2; exit 1; }
  # Writes count until the store holds them: the upload (and, on pe, the
  # sealing) is what encryption adds to.
  [ "$job" = seqread_cold ] || drain "$s"
  t1=$(date +%s%N)
  jq -r --arg s "$s" --arg j "$job" --arg ns "$((t1 - t0))" '
    .jobs[0] as $x
    | ($x.read.io_bytes + $x.write.io_bytes) as $bytes
    | "\($s) \($j) \($bytes / 1048576 / (($ns | tonumber) / 1e9)) \($x.read.iops + $x.write.iops)"' \
    "$json" >>"$TMP/results"
  printf '  rep %s %-13s %s %8.1f MiB/s (to the store)\n' "$rep" "$job" "$s" "$(tail -1 "$TMP/results" | cut -d' ' -f3)" >&2
}

started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  rm -rf --one-file-system "$TMP"/p?.data "$TMP"/p?.state "$TMP"/*.sock "$TMP"/*.ctl
  mkdir -p "$TMP/pf.data" "$TMP/pe.data"
  start_one pf
  start_one pe
  for job in seqwrite randwrite seqread_cold; do
    if [ $((rep % 2)) = 1 ]; then order="pf pe"; else order="pe pf"; fi
    for s in $order; do run_one "$s" "$job" "$rep"; done
  done
  stop_servers
done
elapsed=$(($(date +%s) - started))

{
  echo "fio $(fio --version | sed 's/^fio-//'), ioengine=nbd over unix sockets, file:// stores in $(df --output=source "$TMP" | tail -1), ${SIZE_MIB} MiB, median of $REPS, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), run took ${elapsed} s"
  echo
  python3 - "$TMP/results" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(s, j, k):
    return statistics.median(float(r[k]) for r in rows if r[0] == s and r[1] == j)
print("| job | plain MiB/s | encrypted MiB/s | encrypted / plain | cost |")
print("|---|---:|---:|---:|---:|")
for j in ("seqwrite", "randwrite", "seqread_cold"):
    a, b = med("pf", j, 2), med("pe", j, 2)
    print(f"| {j} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {100 * (1 - b / a):.0f}% |")
EOF
} | tee ${OUT:+"$OUT"}
