#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): portalbd on s3:// against
# s3backer 1.5.4, both storing into ONE s3rver in the same run, both reaching
# it through one counting HTTP proxy (bench/s3_count_proxy.py), so requests
# and bytes are counted the same way for both.
#
#   pb  portalbd s3://BUCKET/pb-REP, 1 GiB, driven by fio ioengine=nbd (unix socket)
#   sb  s3backer --blockSize=1M --size=1G, prefix sb-REP/, FUSE-mounted on a temp
#       dir; fio runs on its `file` with ioengine=libaio direct=1
#
# Jobs (same fio parameters for both; only the engine differs):
#   seqwrite   1 MiB sequential writes, 256 MiB, iodepth 8, fsync at end
#   randwrite  4 KiB random writes, 16 MiB spread over the whole 1 GiB,
#              iodepth 32, fsync at end
#   randread   4 KiB random reads over the first 256 MiB, iodepth 32, 8 MiB in
#              all, cold (below)
#   seqread    1 MiB sequential reads of the first 256 MiB, iodepth 8, cold
#   warmread   seqread again after another restart, with what each system keeps
#              across one: portalbd its disk cache of fetched frames (on by
#              default for s3://); s3backer nothing, unless SB_CACHE_FILE=1 gives
#              it --blockCacheFile (its own persistent block cache)
#
# Cold: portalbd's daemon restarted on the same state dir with its disk cache
# removed, so neither its memory nor its disk cache holds a frame; s3backer
# unmounted and mounted again (its block cache file, if any, removed), so its
# block cache is empty; direct=1 and drop_caches keep the kernel's page cache
# out of it: every byte comes from s3rver.
#
# Remote-store model (REMOTE=1, the default): the proxy adds 25 ms to every
# request and carries 80 MiB/s per connection (bench/s3_count_proxy.py
# --remote), the least distance to a real S3; REMOTE=0 measures loopback.
#
# "Settled": s3backer's fsync returns before its block cache has written
# everything back, so after each job the script waits until the system has
# nothing dirty (portalbd: dirty_bytes; s3backer: block_cache_dirty_ratio) and
# the proxy has no request in flight. The table shows fio's own MiB/s and IOPS
# and also "settled" rates: bytes (or I/Os) over fio's wall time plus that wait.
#
# s3backer flags, found by experiment against s3rver 3.7.1: path-style URLs
# (--baseURL=http://127.0.0.1:PORT/) work, so no virtual-host names or
# /etc/hosts entries are needed; --md5CacheSize=0 --minWriteDelay=0 turn off
# the eventual-consistency guards that s3rver (read-after-write consistent)
# does not need; --blockCacheSize=512 gives it 512 MiB of cache, what
# portalbd's default write buffer (256 MiB) and read cache (256 MiB) add up
# to (SB_CACHE_BLOCKS changes it); --force because a fresh
# prefix fails its size auto-detection; --listBlocks stays off (default).
#
# Store ceiling: each repetition also PUTs 256 MiB of random bytes with curl, as
# 4 objects of 64 MiB at once, through the same proxy: the most this s3rver
# and proxy take on this machine, whatever the client. The table reports it
# next to the seqwrite target, which cannot be met above that ceiling. And it
# reads them back as 32 ranged 8 MiB GETs, 8 at once and then 16 at once: the
# read ceilings shown next to the cold seqread target.
#
# Drift: each repetition starts both systems on fresh prefixes; each job runs
# on one and then the other (pb sb; even repetitions sb pb). The table shows
# medians over REPS.
#
# Usage: bench/s3_compare.sh   (as root: FUSE mount, drop_caches; installs
#        fio, s3backer, jq, libnbd-bin, curl with apt-get when missing; needs
#        s3rver from `make deps`)
# Data: --refill_buffers, so fio writes incompressible data and portalbd's lz4
# does not make its upload counts look better than they are.
#
# Env: BUILD (default build), REPS (3), REMOTE (1), SB_CACHE_BLOCKS (512), SB_CACHE_FILE (0), PB_SEGMENT_BYTES
#      (portalbd's [lsm] l0_sst_size_bytes; default: the daemon's), PB_UPLOAD_CONCURRENCY
#      ([lsm] upload_concurrency; default: the daemon's), OUT (write the markdown table to this
#      file as well), JOBS (subset, in order, e.g. "seqwrite seqread"), PB_CONFIG (a
#      portalbd TOML file used for the run in place of the generated one, e.g.
#      [cache] read_ahead_bytes; not with PB_SEGMENT_BYTES / PB_UPLOAD_CONCURRENCY).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
REPS=${REPS:-3}
OUT=${OUT:-}
JOBS=${JOBS:-"seqwrite randwrite randread seqread warmread"}
REMOTE=${REMOTE:-1}
SB_CACHE_FILE=${SB_CACHE_FILE:-0}
SB_CACHE_BLOCKS=${SB_CACHE_BLOCKS:-512}
PB_SEGMENT_BYTES=${PB_SEGMENT_BYTES:-}
PB_UPLOAD_CONCURRENCY=${PB_UPLOAD_CONCURRENCY:-}
PB_CONFIG=${PB_CONFIG:-}
if [ -n "$PB_CONFIG" ]; then
  [ -z "$PB_SEGMENT_BYTES$PB_UPLOAD_CONCURRENCY" ] || { echo "PB_CONFIG replaces the generated config: set PB_SEGMENT_BYTES / PB_UPLOAD_CONCURRENCY in it" >&2; exit 2; }
  [ -r "$PB_CONFIG" ] || { echo "PB_CONFIG=$PB_CONFIG is not a readable file" >&2; exit 2; }
fi
BUCKET=bench-s3
EXPORT=portalbd
S3RVER=${S3RVER:-$BUILD/node/node_modules/.bin/s3rver}

need() {  # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "s3_compare: installing $2 for $1" >&2
  apt-get install -y -q "$2" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; }
}
need fio fio
need s3backer s3backer
need jq jq
need nbdinfo libnbd-bin
need curl curl
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || { echo "s3_compare: this fio has no nbd engine" >&2; exit 1; }
[ -x "$BUILD/bin/portalbd" ] && [ -x "$BUILD/bin/portalctl" ] || { echo "s3_compare: build first (make)" >&2; exit 1; }
[ -x "$S3RVER" ] || { echo "s3_compare: s3rver is not installed at $S3RVER (run make deps)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "s3_compare: no /dev/fuse, s3backer cannot mount" >&2; exit 1; }

TMP=$(mktemp -d /tmp/portalbd-bench-s3.XXXXXX)
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/" && BUILD=$TMP
MNT=$TMP/sb.mnt
: >"$TMP/pb.toml"
if [ -n "$PB_CONFIG" ]; then
  cp "$PB_CONFIG" "$TMP/pb.toml"
else
  { [ -z "$PB_SEGMENT_BYTES$PB_UPLOAD_CONCURRENCY" ] || echo '[lsm]'
    [ -z "$PB_SEGMENT_BYTES" ] || echo "l0_sst_size_bytes = $PB_SEGMENT_BYTES"
    [ -z "$PB_UPLOAD_CONCURRENCY" ] || echo "upload_concurrency = $PB_UPLOAD_CONCURRENCY"; } >"$TMP/pb.toml"
fi
mkdir -p "$MNT"
declare -A PID=()

stop_pb() {
  [ -n "${PID[pb]:-}" ] || return 0
  kill "${PID[pb]}" 2>/dev/null || true
  wait "${PID[pb]}" 2>/dev/null || true
  unset 'PID[pb]'
}
stop_sb() {
  [ -n "${PID[sb]:-}" ] || return 0
  fusermount -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  wait "${PID[sb]}" 2>/dev/null || true
  unset 'PID[sb]'
}
cleanup() {
  stop_pb
  stop_sb
  local p
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  mountpoint -q "$MNT" && umount -l "$MNT"
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

pick_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {  # PORT NAME
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "s3_compare: $2 did not listen on port $1" >&2
  exit 1
}

S3_PORT=$(pick_port)
mkdir -p "$TMP/s3rver"
# s3rver's list continuation tokens need OpenSSL 3's legacy provider.
S3RVER_MODULE_DIR=$(dirname "$(readlink -f "$S3RVER")")/.. \
  NODE_OPTIONS="--openssl-legacy-provider --require $TOP/tests/integration/s3rver_put_order.js" \
  "$S3RVER" -d "$TMP/s3rver" -a 127.0.0.1 -p "$S3_PORT" --silent \
  --configure-bucket "$BUCKET" >"$TMP/s3rver.log" 2>&1 &
PID[s3rver]=$!
wait_port "$S3_PORT" s3rver
PROXY_PORT=$(pick_port)
REMOTE_ARGS=()
[ "$REMOTE" = 1 ] && REMOTE_ARGS=(--remote)
python3 "$TOP/bench/s3_count_proxy.py" --listen "$PROXY_PORT" --upstream "http://127.0.0.1:$S3_PORT" \
  "${REMOTE_ARGS[@]}" >"$TMP/proxy.log" 2>&1 &
PID[proxy]=$!
wait_port "$PROXY_PORT" proxy
ENDPOINT=http://127.0.0.1:$PROXY_PORT
proxy_stats() { curl -sf "$ENDPOINT/__count_proxy_stats"; }

start_pb() {  # REP
  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=us-east-1 \
    "$BUILD/bin/portalbd" -c "$TMP/pb.toml" --storage "s3://$BUCKET/pb-$1" --disk-size-gb 1 --nbd-address "" \
    --nbd-unix "$TMP/pb.sock" --socket "$TMP/pb.ctl" --state-dir "$TMP/pb.state.$1" \
    --gc-interval-s 0 --log-level warn >>"$TMP/pb.log" 2>&1 &
  PID[pb]=$!
  for _ in $(seq 1 300); do
    nbdinfo --size "nbd+unix:///$EXPORT?socket=$TMP/pb.sock" >/dev/null 2>&1 && return 0
    kill -0 "${PID[pb]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "s3_compare: portalbd did not come up" >&2
  tail -5 "$TMP/pb.log" >&2
  exit 1
}

start_sb() {  # REP
  local cache_file=()
  [ "$SB_CACHE_FILE" = 1 ] && cache_file=(--blockCacheFile="$TMP/sb.cache.$1")
  s3backer -f "${cache_file[@]}" --accessId=S3RVER --accessKey=S3RVER --baseURL="$ENDPOINT/" --blockSize=1M --size=1G \
    --prefix="sb-$1/" --force --quiet --md5CacheSize=0 --md5CacheTime=0 --minWriteDelay=0 \
    --blockCacheSize="$SB_CACHE_BLOCKS" "$BUCKET" "$MNT" >>"$TMP/sb.log" 2>&1 &
  PID[sb]=$!
  for _ in $(seq 1 300); do
    [ -e "$MNT/file" ] && return 0
    kill -0 "${PID[sb]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "s3_compare: s3backer did not mount" >&2
  tail -5 "$TMP/sb.log" >&2
  exit 1
}

# True when SYSTEM has nothing left to upload and no request is in flight.
idle() {  # SYSTEM
  local dirty
  if [ "$1" = pb ]; then
    dirty=$("$BUILD/bin/portalctl" --socket "$TMP/pb.ctl" --json status | jq -r .dirty_bytes)
    [ "$dirty" = 0 ] || return 1
  else
    dirty=$(awk '$1 == "block_cache_dirty_ratio" { print $2 }' "$MNT/stats")
    awk -v d="$dirty" 'BEGIN { exit !(d + 0 == 0) }' || return 1
  fi
  [ "$(proxy_stats | jq .inflight)" = 0 ]
}
# Waits until idle three polls in a row; prints the seconds from T0 to the
# start of the first of those polls (so slow polls on a loaded machine do not
# count as upload time).
settle() {  # SYSTEM T0
  local calm=0 deadline=$((SECONDS + 600)) poll_start idle_since=$2
  while [ "$SECONDS" -lt "$deadline" ]; do
    poll_start=$(date +%s.%N)
    if idle "$1"; then
      [ "$calm" = 0 ] && idle_since=$poll_start
      calm=$((calm + 1))
    else
      calm=0
    fi
    [ "$calm" -ge 3 ] && break
    sleep 0.02
  done
  [ "$calm" -ge 3 ] || echo "s3_compare: $1 did not settle" >&2
  python3 -c "import sys; print(f'{max(0.0, float(sys.argv[2]) - float(sys.argv[1])):.2f}')" "$2" "$idle_since"
}

job_args() {  # JOB
  case $1 in
    seqwrite) echo "--rw=write --bs=1M --iodepth=8 --size=256M --end_fsync=1" ;;
    randwrite) echo "--rw=randwrite --bs=4k --iodepth=32 --size=1G --io_size=16M --end_fsync=1" ;;
    seqread | warmread) echo "--rw=read --bs=1M --iodepth=8 --size=256M" ;;
    randread) echo "--rw=randread --bs=4k --iodepth=32 --size=256M --io_size=8M" ;;
    *) echo "s3_compare: unknown job $1" >&2; exit 2 ;;
  esac
}
engine_args() {  # SYSTEM
  if [ "$1" = pb ]; then echo "--ioengine=nbd --uri=nbd+unix:///$EXPORT?socket=$TMP/pb.sock"
  else echo "--ioengine=libaio --direct=1 --filename=$MNT/file"; fi
}

# One fio run; appends to results:
#   system job rep MiB/s IOPS wall_s settle_s io_bytes PUT GET other bytes_up ios
run_one() {  # SYSTEM JOB REP
  local s=$1 job=$2 rep=$3
  case $job in
    seqread | randread)  # cold caches: every byte from s3rver
      if [ "$s" = pb ]; then
        stop_pb
        rm -rf "$TMP/pb.state.$rep/cache"
        start_pb "$rep"
      else
        stop_sb
        rm -f "$TMP/sb.cache.$rep"
        start_sb "$rep"
      fi ;;
    warmread)  # a restart: what each keeps across one
      if [ "$s" = pb ]; then stop_pb; start_pb "$rep"; else stop_sb; start_sb "$rep"; fi ;;
  esac
  case $job in *read) sync; echo 3 >/proc/sys/vm/drop_caches ;; esac
  settle "$s" "$(date +%s.%N)" >/dev/null
  local before after t0 t1 wait_s json=$TMP/$s.$job.$rep.json own0="" own1=""
  before=$(proxy_stats)
  if [ "$s" = pb ]; then own0=$("$BUILD/bin/portalctl" --socket "$TMP/pb.ctl" --json status | jq -c .s3); fi
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  fio --name="$job" $(engine_args "$s") $(job_args "$job") --refill_buffers --numjobs=1 --group_reporting \
    --output-format=json --output="$json" >/dev/null 2>"$TMP/fio.err" ||
    { echo "s3_compare: fio $job on $s failed:" >&2; cat "$TMP/fio.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  wait_s=0.00
  case $job in *read) ;; *) wait_s=$(settle "$s" "$t1") ;; esac
  after=$(proxy_stats)
  if [ "$s" = pb ]; then own1=$("$BUILD/bin/portalctl" --socket "$TMP/pb.ctl" --json status | jq -c .s3); fi
  python3 - "$s" "$job" "$rep" "$json" "$t0" "$t1" "$wait_s" "$before" "$after" "$own0" "$own1" \
    >>"$TMP/results" <<'EOF'
import json, sys
s, job, rep, path, t0, t1, wait_s, before, after, own0, own1 = sys.argv[1:]
x = json.load(open(path))["jobs"][0]
b, a = json.loads(before)["by_kind"], json.loads(after)["by_kind"]
def d(kind, field):
    return a.get(kind, {}).get(field, 0) - b.get(kind, {}).get(field, 0)
kinds = set(a) | set(b)
other = sum(d(k, "requests") for k in kinds if k not in ("PUT", "GET"))
up = sum(d(k, "bytes_up") for k in kinds)
io_bytes = x["read"]["io_bytes"] + x["write"]["io_bytes"]
ios = x["read"]["total_ios"] + x["write"]["total_ios"]
mib = (x["read"]["bw_bytes"] + x["write"]["bw_bytes"]) / 1048576
iops = x["read"]["iops"] + x["write"]["iops"]
print(s, job, rep, f"{mib:.2f}", f"{iops:.1f}", f"{float(t1) - float(t0):.3f}", wait_s, io_bytes,
      d("PUT", "requests"), d("GET", "requests"), other, up, ios)
if own0:  # portalbd's own counters, as a cross-check of the proxy's
    o0, o1 = json.loads(own0), json.loads(own1)
    print(f"  portalbd's own s3 metrics: PUT {o1['requests_put'] - o0['requests_put']} "
          f"GET {o1['requests_get'] - o0['requests_get']} bytes_up {o1['bytes_up'] - o0['bytes_up']}",
          file=sys.stderr)
EOF
  local r
  r=$(tail -1 "$TMP/results")
  # shellcheck disable=SC2086
  set -- $r
  printf '  rep %s %-9s %s %8s MiB/s %8s IOPS  wall %6ss settle %5ss  PUT %5s GET %5s other %4s up %5s MiB\n' \
    "$3" "$2" "$1" "$4" "$5" "$6" "$7" "$9" "${10}" "${11}" "$((${12} >> 20))" >&2
  if [ "$s" = sb ]; then grep -E '^http_(puts|gets) ' "$MNT/stats" | tr -s ' ' | tr '\n' ' ' | sed 's/^/  s3backer stats (cumulative): /' >&2; echo >&2; fi
}

# Raw PUT throughput of the store through the proxy (see "Store ceiling").
head -c 64M /dev/urandom >"$TMP/ceiling.bin"
ceiling() {  # REP
  local t0 t1 i pids=()
  t0=$(date +%s.%N)
  for i in 1 2 3 4; do
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$TMP/ceiling.bin" \
      "$ENDPOINT/$BUCKET/ceiling-$1/$i" & pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "s3_compare: ceiling PUT failed" >&2; exit 1; }; done
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'{256 / (float(sys.argv[2]) - float(sys.argv[1])):.2f}')" "$t0" "$t1" >>"$TMP/ceiling"
  echo "  rep $1 store ceiling: 4 x 64 MiB PUTs at once with curl, $(tail -1 "$TMP/ceiling") MiB/s" >&2
  # And reading: the same objects as 32 ranged GETs of 8 MiB, 8 at once, then
  # 16 at once (what a reader with parallel fetches can get at most; portalbd's
  # read-ahead keeps up to 24 in flight).
  get_ceiling "$1" 8 "$TMP/get_ceiling"
  get_ceiling "$1" 16 "$TMP/get_ceiling16"
}

get_ceiling() {  # REP STREAMS OUT: 32 ranged 8 MiB GETs by STREAMS curl loops; MiB/s appended to OUT
  local t0 t1 i k off pids=() per=$(( 32 / $2 ))
  t0=$(date +%s.%N)
  for (( i = 0; i < $2; i++ )); do
    ( for (( k = 0; k < per; k++ )); do
        off=$(( ((i * per + k) % 8) * 8388608 ))
        curl -sf -o /dev/null -r "$off-$((off + 8388607))" "$ENDPOINT/$BUCKET/ceiling-$1/$(( i % 4 + 1 ))" || exit 1
      done ) & pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "s3_compare: ceiling GET failed" >&2; exit 1; }; done
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'{256 / (float(sys.argv[2]) - float(sys.argv[1])):.2f}')" "$t0" "$t1" >>"$3"
  echo "  rep $1 store read ceiling: $2 streams of ranged 8 MiB GETs with curl, $(tail -1 "$3") MiB/s" >&2
}

: >"$TMP/results"
: >"$TMP/ceiling"
: >"$TMP/get_ceiling"; : >"$TMP/get_ceiling16"
started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  ceiling "$rep"
  start_pb "$rep"
  start_sb "$rep"
  for job in $JOBS; do
    if [ $((rep % 2)) = 1 ]; then order="pb sb"; else order="sb pb"; fi
    for s in $order; do run_one "$s" "$job" "$rep"; done
  done
  stop_pb
  stop_sb
done
elapsed=$(($(date +%s) - started))

table() {
  python3 - "$TMP/results" "$JOBS" "$TMP/ceiling" "$TMP/get_ceiling" "$TMP/get_ceiling16" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
jobs = sys.argv[2].split()
ceiling = statistics.median(float(l) for l in open(sys.argv[3]))
get_ceiling = statistics.median(float(l) for l in open(sys.argv[4]))
get_ceiling16 = statistics.median(float(l) for l in open(sys.argv[5]))
def med(s, j, f):
    v = [f(r) for r in rows if r[0] == s and r[1] == j]
    return statistics.median(v) if v else float("nan")
MiB = 1048576
cols = {
    "fio MiB/s": lambda r: float(r[3]),
    "fio IOPS": lambda r: float(r[4]),
    "settled MiB/s": lambda r: int(r[7]) / MiB / (float(r[5]) + float(r[6])),
    "settled IOPS": lambda r: int(r[12]) / (float(r[5]) + float(r[6])),
    "settle s": lambda r: float(r[6]),
    "PUTs": lambda r: int(r[8]),
    "GETs": lambda r: int(r[9]),
    "other reqs": lambda r: int(r[10]),
    "MiB up": lambda r: int(r[11]) / MiB,
    "up / written": lambda r: int(r[11]) / int(r[7]),
}
fmt = {"fio MiB/s": "{:.1f}", "settled MiB/s": "{:.1f}", "fio IOPS": "{:.0f}", "settled IOPS": "{:.0f}",
       "settle s": "{:.2f}", "PUTs": "{:.0f}", "GETs": "{:.0f}", "other reqs": "{:.0f}", "MiB up": "{:.1f}",
       "up / written": "{:.2f}"}
names = {"pb": "portalbd", "sb": "s3backer"}
print("| job | system | " + " | ".join(cols) + " |")
print("|---" * (2 + len(cols)) + "|")
for j in jobs:
    for s in ("pb", "sb"):
        cells = [j, names[s]]
        for c, f in cols.items():
            v = med(s, j, f)
            if c == "up / written" and j.endswith("read"):
                cells.append("-")
            else:
                cells.append(fmt[c].format(v))
        print("| " + " | ".join(cells) + " |")
    cells = [j, "**portalbd / s3backer**"]
    for c, f in cols.items():
        p, q = med("pb", j, f), med("sb", j, f)
        if not q or (c in ("up / written", "settle s") and j.endswith("read")):
            cells.append("-")
        else:
            cells.append(f"{p / q:.2f}x" if p / q >= 0.1 else f"{p / q:.4f}x")
    print("| " + " | ".join(cells) + " |")
print()
def target(text, ok):
    print(f"- {text}: {'met' if ok else 'MISSED'}")
def ratio(j, c):
    return med("pb", j, cols[c]) / med("sb", j, cols[c])
if "seqwrite" in jobs:
    for c in ("fio MiB/s", "settled MiB/s"):
        target(f"seqwrite {c} >= 3x s3backer ({ratio('seqwrite', c):.2f}x)", ratio("seqwrite", c) >= 3)
    sb = med("sb", "seqwrite", cols["settled MiB/s"])
    pb = med("pb", "seqwrite", cols["settled MiB/s"])
    print(f"- store ceiling (curl, 4 x 64 MiB PUTs at once through the same proxy, median): {ceiling:.1f} MiB/s; "
          f"3x s3backer's settled seqwrite needs {3 * sb:.1f} MiB/s, "
          f"{'within' if 3 * sb <= ceiling else 'ABOVE'} what the store takes; portalbd's settled seqwrite is "
          f"{pb / ceiling:.0%} of the ceiling, s3backer's {sb / ceiling:.0%}")
if "randwrite" in jobs:
    for c in ("fio IOPS", "settled IOPS"):
        target(f"randwrite {c} >= 20x s3backer ({ratio('randwrite', c):.2f}x)", ratio("randwrite", c) >= 20)
    r = ratio("randwrite", "PUTs")
    target(f"randwrite PUTs <= 1/20 of s3backer's ({r:.4f}x)", r <= 0.05)
    u = med("pb", "randwrite", cols["up / written"])
    target(f"randwrite bytes uploaded / bytes written <= 1.3 ({u:.2f})", u <= 1.3)
if "seqread" in jobs:
    target(f"cold seqread MiB/s >= 3x s3backer ({ratio('seqread', 'fio MiB/s'):.2f}x)",
           ratio("seqread", "fio MiB/s") >= 3)
    sb, pb = med("sb", "seqread", cols["fio MiB/s"]), med("pb", "seqread", cols["fio MiB/s"])
    print(f"- store read ceiling (curl, 8 streams of ranged 8 MiB GETs through the same proxy, median): "
          f"{get_ceiling:.1f} MiB/s; 3x s3backer's cold seqread needs {3 * sb:.1f} MiB/s, "
          f"{'within' if 3 * sb <= get_ceiling else 'ABOVE'} what the store gives; portalbd's cold seqread is "
          f"{pb / get_ceiling:.0%} of the ceiling, s3backer's {sb / get_ceiling:.0%}")
    print(f"- store read ceiling with 16 streams (median): {get_ceiling16:.1f} MiB/s; portalbd's cold seqread is "
          f"{pb / get_ceiling16:.0%} of it, s3backer's {sb / get_ceiling16:.0%}")
if "randread" in jobs:
    target(f"cold randread IOPS >= 3x s3backer ({ratio('randread', 'fio IOPS'):.2f}x)",
           ratio("randread", "fio IOPS") >= 3)
if "warmread" in jobs and "seqread" in jobs:
    w, c = med("pb", "warmread", cols["GETs"]), med("pb", "seqread", cols["GETs"])
    target(f"warm re-read after a restart: portalbd GETs < 1% of its cold read's ({w:.0f} of {c:.0f})",
           c > 0 and w < 0.01 * c)
EOF
}
{
  echo "portalbd vs s3backer $(s3backer --version 2>&1 | head -1 | awk '{print $3}'), both on one s3rver $("$S3RVER" --version 2>/dev/null) through one counting proxy ($([ "$REMOTE" = 1 ] && echo "remote-store model: 25 ms a request, 80 MiB/s a connection" || echo "loopback, no delay")); fio $(fio --version | sed 's/^fio-//') (portalbd: ioengine=nbd, unix socket; s3backer: libaio direct=1 on its FUSE file); median of $REPS (A B, B A), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), run took ${elapsed} s, portalbd segments ${PB_SEGMENT_BYTES:-default}, upload concurrency ${PB_UPLOAD_CONCURRENCY:-default}$([ -z "$PB_CONFIG" ] || echo ", portalbd config $(grep -vE '^\s*(#|$)' "$TMP/pb.toml" | tr '\n' ' ' | sed 's/ $//')"), s3backer cache ${SB_CACHE_BLOCKS} blocks$([ "$SB_CACHE_FILE" = 1 ] && echo " in a file"), portalbd binary $(sha256sum "$BUILD/bin/portalbd" | cut -c1-12) from $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo
  table
} | tee "$TMP/table.md"
[ -n "$OUT" ] && cp "$TMP/table.md" "$OUT"
exit 0
