#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): the local journal (issue
# 20) side by side with its absence and with qemu-nbd, in one run.
#
# Targets, each started fresh for each phase, one at a time (so no idle daemon
# shares the CPU), all reached on a unix socket:
#   s3j  portalbd s3:// --journal on    } through bench/s3_count_proxy.py --remote:
#   s3   portalbd s3:// --journal off   } s3rver behind 25 ms a request, 80 MiB/s a stream
#   fj   portalbd file:// --journal on
#   f    portalbd file:// --journal off
#   qn   qemu-nbd on a fresh qcow2, --cache=writeback (as in fio_compare.sh)
# The journal lives in its default place, <state_dir>/journal, on the same
# local disk as the file:// store and the qcow2.
#
# Phases:
#   fsync   fio ioengine=nbd, 4 KiB random writes over the first 512 MiB with
#           fsync=1 at iodepth 1 (every write followed by a FLUSH), RUNTIME s,
#           --refill_buffers (lz4 gains nothing). IOPS is fio's write IOPS;
#           fsync p50/p99 are fio's sync latencies. On s3 targets the proxy's
#           PUT count for the run is shown too.
#   fill    a fresh FILL_MIB sequential fill, fio 1 MiB writes at iodepth 8, no
#           fsync (fio_compare.sh's seqwrite), on fj, f and qn: with the journal
#           a large write must not pay twice. "until uploaded": seconds from
#           fio's end until portalbd had nothing dirty (not part of fio's rate).
#   pgbench PostgreSQL 15 on ext4 on each target, reached through nbdfuse and a
#           loop device (the kernel here has no NBD client): mkfs.ext4 (lazy
#           inode tables, nodiscard; mounted noinit_itable, so no background
#           zeroing runs during the test), initdb --no-sync (setup, not
#           measured), pgbench -i -s 10, then pgbench -c 4 -j 2 -T PGBENCH_S.
#           PGBENCH=0 skips it (the run is then ~3 minutes instead of ~9).
#           Also shown: the server's and nbdfuse's CPU time per transaction,
#           how idle the machine was during the timed run, and (portalbd only,
#           from its metrics) the time the server spent on requests per
#           transaction, FLUSH alone in brackets: its share of the latency.
#
# One repetition: ratios against qemu-nbd are from minutes apart on one
# machine; quote them with the load average printed in the header.
#
# Usage: bench/journal_compare.sh   (as root; installs fio, qemu-utils,
#        libnbd-bin, nbdfuse, jq, curl, postgresql with apt-get when missing;
#        needs s3rver from `make deps`)
# Env: BUILD (default build), RUNTIME (15), FILL_MIB (512), PGBENCH (1),
#      PGBENCH_S (30), LATENCY_MS (25), BANDWIDTH_MIB_S (80), TARGETS (subset of
#      "qn s3j s3 fj f", in order), PHASES (subset of "fsync fill pgbench"),
#      OUT (write the markdown tables there too).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
RUNTIME=${RUNTIME:-15}
FILL_MIB=${FILL_MIB:-512}
PGBENCH=${PGBENCH:-1}
PGBENCH_S=${PGBENCH_S:-30}
LATENCY_MS=${LATENCY_MS:-25}
BANDWIDTH_MIB_S=${BANDWIDTH_MIB_S:-80}
TARGETS=${TARGETS:-"qn s3j s3 fj f"}
PHASES=${PHASES:-"fsync fill pgbench"}
OUT=${OUT:-}
S3RVER=${S3RVER:-$TOP/build/node/node_modules/.bin/s3rver}
[ -x "$S3RVER" ] || S3RVER=$BUILD/node/node_modules/.bin/s3rver
EXPORT=portalbd
DISK_GB=4
BUCKET=bench-journal
PGBIN=/usr/lib/postgresql/15/bin

BENCH=journal_compare
# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"
[ "$(id -u)" = 0 ] || { echo "$BENCH: run as root (loop devices, FUSE, postgres user)" >&2; exit 1; }
need fio fio
need qemu-nbd qemu-utils
need nbdinfo libnbd-bin
need jq jq
need curl curl
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || { echo "$BENCH: this fio has no nbd engine" >&2; exit 1; }
[ -x "$BUILD/bin/portalbd" ] && [ -x "$BUILD/bin/portalctl" ] || { echo "$BENCH: build first (make)" >&2; exit 1; }
case " $TARGETS " in *" s3"*) [ -x "$S3RVER" ] || { echo "$BENCH: s3rver is not installed at $S3RVER (make deps)" >&2; exit 1; } ;; esac
if [ "$PGBENCH" = 1 ]; then
  need nbdfuse nbdfuse
  need mkfs.ext4 e2fsprogs
  [ -x "$PGBIN/initdb" ] || need pg_ctlcluster postgresql
  [ -x "$PGBIN/initdb" ] || { echo "$BENCH: no PostgreSQL 15 in $PGBIN" >&2; exit 1; }
  [ -c /dev/fuse ] || { echo "$BENCH: no /dev/fuse (PGBENCH=0 skips pgbench)" >&2; exit 1; }
  losetup -f >/dev/null 2>&1 || { echo "$BENCH: no free loop device (PGBENCH=0 skips pgbench)" >&2; exit 1; }
fi

TMP=$(mktemp -d /tmp/portalbd-bench-journal.XXXXXX)
chmod 755 "$TMP"  # postgres must reach its data directory below it
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/" && BUILD=$TMP
FUSE=$TMP/fuse
MNT=$TMP/mnt
mkdir -p "$FUSE" "$MNT"
LOOP_DEV=""
PG_UP=""
declare -A AUX=()  # s3rver, proxy: up for the whole run

as_pg() { su postgres -s /bin/bash -c "$*"; }
unmount_all() {
  [ -z "$PG_UP" ] || as_pg "$PGBIN/pg_ctl -D $MNT/pg/data -m immediate -w stop" >/dev/null 2>&1 || true
  PG_UP=""
  ! mountpoint -q "$MNT" || umount "$MNT" || umount -l "$MNT" || true
  [ -z "$LOOP_DEV" ] || losetup -d "$LOOP_DEV" || true
  LOOP_DEV=""
  ! mountpoint -q "$FUSE" || fusermount3 -u "$FUSE" || umount -l "$FUSE" || true
  [ -z "${AUX[nbdfuse]:-}" ] || wait "${AUX[nbdfuse]}" 2>/dev/null || true
  unset 'AUX[nbdfuse]'
}
cleanup() {
  unmount_all
  stop_servers
  local p
  for p in "${AUX[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

pick_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {  # PORT NAME
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "$BENCH: $2 did not listen on port $1" >&2
  exit 1
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ------------------------------------------------------------ store and targets

case " $TARGETS " in *" s3"*)
  S3_PORT=$(pick_port)
  mkdir -p "$TMP/s3rver"
  # s3rver's list continuation tokens need OpenSSL 3's legacy provider.
  S3RVER_MODULE_DIR=$(dirname "$(readlink -f "$S3RVER")")/.. \
    NODE_OPTIONS="--openssl-legacy-provider --require $TOP/tests/integration/s3rver_put_order.js" \
    "$S3RVER" -d "$TMP/s3rver" -a 127.0.0.1 -p "$S3_PORT" --silent \
    --configure-bucket "$BUCKET" >"$TMP/s3rver.log" 2>&1 &
  AUX[s3rver]=$!
  wait_port "$S3_PORT" s3rver
  PROXY_PORT=$(pick_port)
  python3 "$TOP/bench/s3_count_proxy.py" --listen "$PROXY_PORT" --upstream "http://127.0.0.1:$S3_PORT" \
    --latency-ms "$LATENCY_MS" --bandwidth-mib-s "$BANDWIDTH_MIB_S" >"$TMP/proxy.log" 2>&1 &
  AUX[proxy]=$!
  wait_port "$PROXY_PORT" proxy
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
  export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT
  unset AWS_SESSION_TOKEN AWS_PROFILE
  ;;
esac
proxy_puts() {
  [ -n "${AUX[proxy]:-}" ] || { echo 0; return; }
  curl -sf "$AWS_ENDPOINT_URL/__count_proxy_stats" | jq '.by_kind.PUT.requests // 0'
}

# Starts TARGET on a fresh volume (PHASE names its store prefix); records the
# seconds it took to serve (a new journal is written full of zeros first).
START_S=()
start_target() {  # TARGET PHASE
  local t=$1 t0
  rm -rf --one-file-system "$TMP/$t".* "$TMP/$t.sock"
  t0=$(date +%s.%N)
  case $t in
    qn)
      qemu-img create -q -f qcow2 "$TMP/qn.qcow2" "${DISK_GB}G"
      qemu-nbd -f qcow2 -x "$EXPORT" -k "$(sock qn)" --cache=writeback --shared=16 -t "$TMP/qn.qcow2" \
        >"$TMP/qn.log" 2>&1 &
      PID[qn]=$!
      ;;
    s3j | s3)
      local j=off
      [ "$t" = s3j ] && j=on
      PB_EXTRA="--journal $j --metrics-address 127.0.0.1:$METRICS_PORT" start_portalbd "$t" "s3://$BUCKET/$t-$2"
      ;;
    fj | f)
      local j=off
      [ "$t" = fj ] && j=on
      mkdir -p "$TMP/$t.data"
      PB_EXTRA="--journal $j --metrics-address 127.0.0.1:$METRICS_PORT" start_portalbd "$t" "file://$TMP/$t.data"
      ;;
  esac
  local i
  for i in $(seq 1 1200); do
    [ -S "$(sock "$t")" ] && nbdinfo --size "$(uri "$t")" >/dev/null 2>&1 && break
    kill -0 "${PID[$t]}" 2>/dev/null || { echo "$BENCH: $t exited at start" >&2; tail -5 "$TMP/$t.log" >&2; exit 1; }
    sleep 0.1
  done
  [ "$i" -lt 1200 ] || { echo "$BENCH: $t did not come up in 120 s" >&2; exit 1; }
  [ "$2" != fsync ] || START_S[${#START_S[@]}]="$t $(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0")"
  if [ "$t" != qn ]; then
    local jr
    jr=$("$BUILD/bin/portalctl" --socket "$TMP/$t.ctl" --json status | jq -c '.journal != null')
    [ "$jr" = "$( [ "${t%j}" != "$t" ] && echo true || echo false)" ] ||
      { echo "$BENCH: $t: journal in status is $jr, not what was asked" >&2; exit 1; }
  fi
}
stop_target() { stop_servers; }
# portalbd serves Prometheus metrics here: the pgbench phase reads how long
# the server spent on requests, by command.
METRICS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Seconds portalbd spent on NBD requests so far (dispatch to reply), all
# commands and FLUSH alone; "- -" for qemu-nbd.
server_seconds() {  # TARGET
  [ "$1" != qn ] || { echo "- -"; return; }
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
    /^portalbd_nbd_request_duration_seconds_sum/ { all += $2; if ($0 ~ /command="flush"/) flush += $2 }
    END { printf "%.6f %.6f\n", all, flush }'
}
# CPU ticks (user + system) a process has used so far; idle ticks of the machine.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }

# Seconds until portalbd TARGET has nothing dirty (0 for qemu-nbd).
drain_s() {  # TARGET
  [ "$1" = qn ] && { echo 0; return; }
  local t0 dirty
  t0=$(date +%s.%N)
  for _ in $(seq 1 3000); do
    dirty=$("$BUILD/bin/portalctl" --socket "$TMP/$1.ctl" --json status | jq -r .dirty_bytes)
    [ "$dirty" = 0 ] && break
    sleep 0.1
  done
  [ "$dirty" = 0 ] || echo "$BENCH: $1 still has $dirty dirty bytes after 300 s" >&2
  python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0"
}

: >"$TMP/results"

# ------------------------------------------------------------ phase: fsync
phase_fsync() {
  local t json puts0 puts1
  for t in $TARGETS; do
    start_target "$t" fsync
    json=$TMP/fsync.$t.json
    puts0=$(proxy_puts)
    fio --name=randwrite_fsync1 --ioengine=nbd --uri="$(uri "$t")" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 \
      --size=512M --time_based --runtime="$RUNTIME" --refill_buffers --numjobs=1 --output-format=json \
      --output="$json" >/dev/null 2>"$TMP/fio.err" ||
      { echo "$BENCH: fio fsync on $t failed:" >&2; cat "$TMP/fio.err" >&2; exit 1; }
    puts1=$(proxy_puts)
    jq -r --arg t "$t" --arg p "$((puts1 - puts0))" --arg l "$(loadavg | cut -d' ' -f1)" '.jobs[0] as $x |
      "fsync \($t) iops=\($x.write.iops) p50=\($x.sync.lat_ns.percentile["50.000000"] / 1e6)" +
      " p99=\($x.sync.lat_ns.percentile["99.000000"] / 1e6) writes=\($x.write.total_ios)" +
      " syncs=\($x.sync.total_ios) puts=\($p) load=\($l)"' "$json" >>"$TMP/results"
    echo "  $(tail -1 "$TMP/results")" >&2
    stop_target
  done
}

# ------------------------------------------------------------ phase: fill
phase_fill() {
  local t json d
  for t in $TARGETS; do
    case $t in s3*) continue ;; esac
    start_target "$t" fill
    json=$TMP/fill.$t.json
    fio --name=seqfill --ioengine=nbd --uri="$(uri "$t")" --rw=write --bs=1M --iodepth=8 --size="${FILL_MIB}M" \
      --numjobs=1 --output-format=json --output="$json" >/dev/null 2>"$TMP/fio.err" ||
      { echo "$BENCH: fio fill on $t failed:" >&2; cat "$TMP/fio.err" >&2; exit 1; }
    d=$(drain_s "$t")
    jq -r --arg t "$t" --arg d "$d" --arg l "$(loadavg | cut -d' ' -f1)" '.jobs[0] as $x |
      "fill \($t) mibs=\($x.write.bw_bytes / 1048576) wall=\($x.job_runtime / 1000) drain=\($d) load=\($l)"' \
      "$json" >>"$TMP/results"
    echo "  $(tail -1 "$TMP/results")" >&2
    stop_target
  done
}

# ------------------------------------------------------------ phase: pgbench
phase_pgbench() {
  local t sock=$TMP/pgsock i
  mkdir -p "$sock" && chown postgres: "$sock"
  for t in $TARGETS; do
    start_target "$t" pg
    rm -f "$TMP/nbdfuse.pid"
    nbdfuse -P "$TMP/nbdfuse.pid" "$FUSE/nbd" "$(uri "$t")" >>"$TMP/nbdfuse.log" 2>&1 &
    AUX[nbdfuse]=$!
    for i in $(seq 1 200); do [ -s "$TMP/nbdfuse.pid" ] && break; sleep 0.05; done
    [ -s "$TMP/nbdfuse.pid" ] || { echo "$BENCH: nbdfuse did not start" >&2; cat "$TMP/nbdfuse.log" >&2; exit 1; }
    LOOP_DEV=$(losetup -f --show -- "$FUSE/nbd")
    mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$LOOP_DEV"
    mount -o noinit_itable "$LOOP_DEV" "$MNT"
    mkdir -p "$MNT/pg" && chown postgres: "$MNT/pg"
    as_pg "$PGBIN/initdb --no-sync -D $MNT/pg/data" >"$TMP/pg.$t.out" 2>&1 || { cat "$TMP/pg.$t.out" >&2; exit 1; }
    as_pg "$PGBIN/pg_ctl -D $MNT/pg/data -l $MNT/pg/log -o \"-k $sock -c listen_addresses=''\" -w start" \
      >>"$TMP/pg.$t.out" 2>&1 || { cat "$TMP/pg.$t.out" "$MNT/pg/log" >&2; exit 1; }
    PG_UP=1
    local t0 init_s
    t0=$(date +%s.%N)
    as_pg "$PGBIN/pgbench -h $sock -q -i -s 10 postgres" >>"$TMP/pg.$t.out" 2>&1 ||
      { cat "$TMP/pg.$t.out" >&2; exit 1; }
    init_s=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0")
    local srv0 fuse0 idle0 srv1 fuse1 idle1
    local busy0 busy1
    srv0=$(cpu_ticks "${PID[$t]}"); fuse0=$(cpu_ticks "$(cat "$TMP/nbdfuse.pid")"); idle0=$(idle_ticks)
    busy0=$(server_seconds "$t")
    as_pg "$PGBIN/pgbench -h $sock -c 4 -j 2 -T $PGBENCH_S postgres" >"$TMP/pgbench.$t.out" 2>&1 ||
      { cat "$TMP/pgbench.$t.out" >&2; exit 1; }
    srv1=$(cpu_ticks "${PID[$t]}"); fuse1=$(cpu_ticks "$(cat "$TMP/nbdfuse.pid")"); idle1=$(idle_ticks)
    busy1=$(server_seconds "$t")
    awk -v t="$t" -v i="$init_s" -v l="$(loadavg | cut -d' ' -f1)" -v hz="$(getconf CLK_TCK)" -v ncpu="$(nproc)" \
      -v srv=$((srv1 - srv0)) -v fuse=$((fuse1 - fuse0)) -v idle=$((idle1 - idle0)) -v secs="$PGBENCH_S" \
      -v busy0="$busy0" -v busy1="$busy1" '
      /^tps = / { tps = $3 } /^latency average/ { lat = $4 } /^number of transactions actually processed/ { n = $NF }
      END {
        split(busy0, b0, " "); split(busy1, b1, " ")
        busy = b0[1] == "-" ? "-" : sprintf("%.0f", (b1[1] - b0[1]) * 1e6 / n)
        fl = b0[2] == "-" ? "-" : sprintf("%.0f", (b1[2] - b0[2]) * 1e6 / n)
        printf "pgbench %s tps=%s lat=%s txns=%s init=%s load=%s srv_us=%.0f fuse_us=%.0f idle=%.0f busy_us=%s flush_us=%s\n",
               t, tps, lat, n, i, l, srv / hz * 1e6 / n, fuse / hz * 1e6 / n, 100 * idle / hz / (secs * ncpu), busy, fl }' \
      "$TMP/pgbench.$t.out" >>"$TMP/results"
    echo "  $(tail -1 "$TMP/results")" >&2
    unmount_all
    stop_target
  done
}

started=$(date +%s)
load_start=$(loadavg)
has_phase() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }
if has_phase fsync; then
  echo "$BENCH: fsync phase ($RUNTIME s per target)" >&2
  phase_fsync
fi
if has_phase fill; then
  echo "$BENCH: fill phase ($FILL_MIB MiB)" >&2
  phase_fill
fi
if [ "$PGBENCH" = 1 ] && has_phase pgbench; then
  echo "$BENCH: pgbench phase ($PGBENCH_S s per target)" >&2
  phase_pgbench
fi
elapsed=$(($(date +%s) - started))

table() {
  python3 - "$TMP/results" "$TARGETS" "$PGBENCH" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    phase, target, *kv = line.split()
    rows[(phase, target)] = {k: v for k, v in (x.split("=", 1) for x in kv)}
targets = sys.argv[2].split()
names = {"s3j": "portalbd s3:// + journal", "s3": "portalbd s3://", "fj": "portalbd file:// + journal",
         "f": "portalbd file://", "qn": "qemu-nbd qcow2"}
def val(phase, t, k):
    r = rows.get((phase, t))
    return float(r[k]) if r and r.get(k) not in (None, "", "null") else float("nan")
def ratio(a, b):
    return f"{a / b:.2f}x" if b == b and b and a == a else "-"
checks = []
def target(text, ok):
    checks.append(f"- {text}: {'met' if ok else 'MISSED'}")

q = {k: val("fsync", "qn", k) for k in ("iops", "p50", "p99")}
if any(("fsync", t) in rows for t in targets):
    print("**4 KiB random write, fsync=1, iodepth 1** (fio ioengine=nbd)")
    print()
    print("| target | IOPS | fsync p50 ms | fsync p99 ms | IOPS / qemu-nbd | p50 / qemu-nbd | p99 / qemu-nbd | store PUTs | load |")
    print("|---|---|---|---|---|---|---|---|---|")
for t in targets:
    if ("fsync", t) not in rows:
        continue
    v = {k: val("fsync", t, k) for k in ("iops", "p50", "p99")}
    puts = rows[("fsync", t)]["puts"] if t.startswith("s3") else "-"
    print(f"| {names[t]} | {v['iops']:.0f} | {v['p50']:.3f} | {v['p99']:.3f} | {ratio(v['iops'], q['iops'])} | "
          f"{ratio(v['p50'], q['p50'])} | {ratio(v['p99'], q['p99'])} | {puts} | {rows[('fsync', t)]['load']} |")
if ("fsync", "s3j") in rows and ("fsync", "qn") in rows:
    r = val("fsync", "s3j", "iops") / q["iops"]
    target(f"fio fsync=1: s3:// + journal >= 0.8x qemu-nbd ({r:.2f}x)", r >= 0.8)
if ("fsync", "fj") in rows and ("fsync", "qn") in rows:
    r = val("fsync", "fj", "iops") / q["iops"]
    target(f"fio fsync=1: file:// + journal >= 1.2x qemu-nbd ({r:.2f}x)", r >= 1.2)

fill = [t for t in targets if ("fill", t) in rows]
if fill:
    if any(("fsync", t) in rows for t in targets):
        print()
    print("**Fresh sequential fill, 1 MiB writes, iodepth 8, no fsync** (fio ioengine=nbd)")
    print()
    print("| target | MiB/s | / qemu-nbd | fio s | s until uploaded after fio | load |")
    print("|---|---|---|---|---|---|")
    qf = val("fill", "qn", "mibs")
    for t in fill:
        drain = "-" if t == "qn" else rows[("fill", t)]["drain"]
        print(f"| {names[t]} | {val('fill', t, 'mibs'):.1f} | {ratio(val('fill', t, 'mibs'), qf)} | "
              f"{val('fill', t, 'wall'):.1f} | {drain} | {rows[('fill', t)]['load']} |")
    if ("fill", "fj") in rows and ("fill", "qn") in rows:
        r = val("fill", "fj", "mibs") / qf
        target(f"sequential fill: file:// + journal >= 1.0x qemu-nbd ({r:.2f}x)", r >= 1.0)
    if ("fill", "fj") in rows and ("fill", "f") in rows:
        r = val("fill", "fj", "mibs") / val("fill", "f", "mibs")
        checks.append(f"- sequential fill: file:// + journal / file:// without: {r:.2f}x")

pg = [t for t in targets if ("pgbench", t) in rows]
if pg:
    print()
    print("**pgbench, scale 10, 4 clients, PostgreSQL 15 on ext4 over nbdfuse + loop**")
    print()
    print("| target | TPS | latency avg ms | TPS / qemu-nbd | server CPU µs / txn | nbdfuse CPU µs / txn | CPU idle % | "
          "server time µs / txn (FLUSH) | pgbench -i s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    qt = val("pgbench", "qn", "tps")
    for t in pg:
        r = rows[('pgbench', t)]
        print(f"| {names[t]} | {val('pgbench', t, 'tps'):.1f} | {val('pgbench', t, 'lat'):.2f} | "
              f"{ratio(val('pgbench', t, 'tps'), qt)} | {r.get('srv_us', '-')} | {r.get('fuse_us', '-')} | {r.get('idle', '-')} | "
              f"{r.get('busy_us', '-')} ({r.get('flush_us', '-')}) | {r['init']} | {r['load']} |")
    if ("pgbench", "s3j") in rows and ("pgbench", "qn") in rows:
        r = val("pgbench", "s3j", "tps") / qt
        target(f"pgbench: s3:// + journal >= 0.8x qemu-nbd ({r:.2f}x)", r >= 0.8)
    if ("pgbench", "fj") in rows and ("pgbench", "qn") in rows:
        r = val("pgbench", "fj", "tps") / qt
        target(f"pgbench: file:// + journal >= 1.2x qemu-nbd ({r:.2f}x)", r >= 1.2)
elif sys.argv[3] != "1":
    print()
    print("pgbench: skipped (PGBENCH=0)")
if checks:
    print()
    print("Issue 20's targets:")
    print("\n".join(checks))
EOF
}
{
  echo "fio $(fio --version | sed 's/^fio-//'), one run, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at start: $load_start, at end: $(loadavg), run took ${elapsed} s; s3:// through s3rver $("$S3RVER" --version 2>/dev/null || echo '?') behind the proxy's remote model (${LATENCY_MS} ms a request, ${BANDWIDTH_MIB_S} MiB/s a stream); journal defaults (1 GiB, max_lag_ms 10000); seconds to serve a fresh volume (fsync phase): ${START_S[*]}; portalbd binary $(sha256sum "$BUILD/bin/portalbd" | cut -c1-12) from $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo
  table
} | tee "$TMP/table.md"
[ -z "$OUT" ] || cp "$TMP/table.md" "$OUT"
exit 0
