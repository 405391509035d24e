#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): fio with ioengine=nbd
# against four servers on unix sockets, in the same run:
#   pm  portalbd memory://          nk  nbdkit memory 4G
#   pf  portalbd file:// (temp dir)  qn  qemu-nbd on a fresh qcow2, --cache=writeback
# Jobs: seq 1 MiB write / read (iodepth 8), 4 KiB randwrite / randread
# (iodepth 32), 4 KiB randwrite with fsync every 32 writes, 70/30 4 KiB randrw;
# on request (JOBS), randread_qd1 and randwrite_qd1: 4 KiB random reads or
# writes one at a time (latency).
# seqwrite writes the first SIZE_MIB of the device once (so later reads find
# data, not holes); every other job is time-bounded (RUNTIME s) over that range.
#
# randwrite_fsync32 is fio's fsync=32, whose FLUSH count depends on the
# server (see the note under the table): the table is followed by the
# FLUSHes per write each server was sent.
#
# Drift: each repetition starts four fresh servers; each job then runs on
# portalbd and its peer back to back (A B A B; odd repetitions B A B A), and
# the table shows the median of REPS runs. Before a job starts, the portalbd
# daemons' dirty data must have drained, so background uploads from one run do
# not eat the CPU of the next.
#
# Peak RSS: VmHWM of each server, reset (clear_refs 5) before each job; the
# table shows the highest value over the repetitions.
#
# Usage: bench/fio_compare.sh            (as root; installs fio, nbdkit,
#        qemu-utils with apt-get when missing)
# Env: BUILD (default build), RUNTIME (5 s per job), REPS (3), SIZE_MIB (512),
#      OUT (write the markdown table to this file as well), JOBS (subset, e.g.
#      "randwrite randread"), SERVERS (subset of "pm nk pf qn" to run, e.g.
#      "pm nk" for a quick memory:// pair; the others still start).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
SIZE_MIB=${SIZE_MIB:-512}
OUT=${OUT:-}
JOBS=${JOBS:-"seqwrite seqread randwrite randread randwrite_fsync32 randrw_70_30"}
SERVERS=${SERVERS:-"pm nk pf qn"}
EXPORT=portalbd
DISK_GB=4

BENCH=fio_compare
# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"
need fio fio
need nbdkit nbdkit
need qemu-nbd qemu-utils
need nbdinfo libnbd-bin
need jq jq
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || { echo "fio_compare: this fio has no nbd engine" >&2; exit 1; }
[ -x "$BUILD/bin/portalbd" ] && [ -x "$BUILD/bin/portalctl" ] || { echo "fio_compare: build first (make)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/portalbd-bench-fio.XXXXXX)
# Private copies: build/ may be relinked under us (a shared tree) mid-run.
mkdir -p "$TMP/bin" && cp "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$TMP/bin/" && BUILD=$TMP
cleanup() { stop_servers; rm -rf --one-file-system "$TMP"; }
trap cleanup EXIT

job_args() {  # JOB
  case $1 in
    seqwrite) echo "--rw=write --bs=1M --iodepth=8" ;;
    seqread) echo "--rw=read --bs=1M --iodepth=8" ;;
    randwrite) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    randread) echo "--rw=randread --bs=4k --iodepth=32" ;;
    randread_qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
    randwrite_qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
    randwrite_fsync32) echo "--rw=randwrite --bs=4k --iodepth=32 --fsync=32" ;;
    randrw_70_30) echo "--rw=randrw --rwmixread=70 --bs=4k --iodepth=32" ;;
    *) echo "fio_compare: unknown job $1" >&2; exit 2 ;;
  esac
}

# One fio run; appends "server job rep MiB/s IOPS peak_rss_KiB flushes
# writes" to results (flushes: the FLUSH requests fio sent, its sync count).
run_one() {  # SERVER JOB REP
  local s=$1 job=$2 rep=$3 pid json
  pid=${PID[$s]}
  drain "$s"
  echo 5 >"/proc/$pid/clear_refs"
  json=$TMP/$s.$job.$rep.json
  local bound="--time_based --runtime=$RUNTIME"
  [ "$job" = seqwrite ] && bound="--runtime=120"
  # shellcheck disable=SC2046
  fio --name="$job" --ioengine=nbd --uri="$(uri "$s")" \
    $(job_args "$job") --size="${SIZE_MIB}M" $bound \
    --numjobs=1 --group_reporting --output-format=json --output="$json" >/dev/null 2>"$TMP/fio.err" ||
    { echo "fio_compare: fio $job on $s failed:" >&2; cat "$TMP/fio.err" >&2; exit 1; }
  local hwm
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  jq -r --arg s "$s" --arg j "$job" --arg r "$rep" --arg h "$hwm" '
    .jobs[0] as $x
    | (($x.read.bw_bytes + $x.write.bw_bytes) / 1048576) as $mib
    | ($x.read.iops + $x.write.iops) as $iops
    | "\($s) \($j) \($r) \($mib) \($iops) \($h) \($x.sync.total_ios // 0) \($x.write.total_ios)"' "$json" >>"$TMP/results"
  printf '  rep %s %-18s %-2s %9.1f MiB/s %9.0f IOPS  RSS %s MiB\n' "$rep" "$job" "$s" \
    "$(tail -1 "$TMP/results" | cut -d' ' -f4)" "$(tail -1 "$TMP/results" | cut -d' ' -f5)" "$((hwm / 1024))" >&2
}

: >"$TMP/results"
started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  start_servers
  for job in $JOBS; do
    if [ $((rep % 2)) = 1 ]; then order="pm nk pf qn"; else order="nk pm qn pf"; fi
    for s in $order; do
      case " $SERVERS " in *" $s "*) run_one "$s" "$job" "$rep" ;; esac
    done
  done
  stop_servers
done
elapsed=$(($(date +%s) - started))

# The table: medians over repetitions; RSS is the maximum.
table() {
  python3 - "$TMP/results" "$JOBS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
jobs = sys.argv[2].split()
def med(s, j, k):
    v = [float(r[k]) for r in rows if r[0] == s and r[1] == j]
    return statistics.median(v) if v else float("nan")
def peak(s, j):
    v = [int(r[5]) for r in rows if r[0] == s and r[1] == j]
    return max(v) // 1024 if v else 0
servers = [("pm", "portalbd memory://"), ("nk", "nbdkit memory"), ("pf", "portalbd file://"), ("qn", "qemu-nbd qcow2")]
print("| job | " + " | ".join(f"{n} MiB/s | IOPS" for _, n in servers) +
      " | mem/nbdkit | file/qemu-nbd | RSS MiB pm / nk / pf / qn |")
print("|---" * (2 + 2 * len(servers) + 2) + "|")
for j in jobs:
    cells = [j]
    for s, _ in servers:
        cells += [f"{med(s, j, 3):.1f}", f"{med(s, j, 4):.0f}"]
    r1 = med("pm", j, 4) / med("nk", j, 4)
    r2 = med("pf", j, 4) / med("qn", j, 4)
    cells += [f"{r1:.2f}x", f"{r2:.2f}x", " / ".join(str(peak(s, j)) for s, _ in servers)]
    print("| " + " | ".join(cells) + " |")
# fio's fsync=N on an async engine: once N writes are issued, it sends a FLUSH
# for every free queue slot until the first FLUSH completes, so a server that
# completes writes sooner gets more FLUSHes per write, and fio (CPU-bound
# here) issues fewer writes. Print what each server was sent.
fs = [j for j in jobs if "fsync" in j]
for j in fs:
    cells = []
    for s, name in servers:
        v = [(int(r[6]), int(r[7])) for r in rows if r[0] == s and r[1] == j and len(r) > 7]
        if v and sum(w for _, w in v):
            cells.append(f"{name} {sum(f for f, _ in v) / sum(w for _, w in v):.2f}")
    print()
    print(f"{j}: FLUSH requests fio sent per write: " + ", ".join(cells))
EOF
}
{
  echo "fio $(fio --version | sed 's/^fio-//'), ioengine=nbd over unix sockets, ${RUNTIME} s per job over ${SIZE_MIB} MiB, median of $REPS (A B A B), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), run took ${elapsed} s, portalbd binary $(sha256sum "$BUILD/bin/portalbd" | cut -c1-12) from $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
  echo
  table
} | tee "$TMP/table.md"
[ -n "$OUT" ] && cp "$TMP/table.md" "$OUT"
exit 0
