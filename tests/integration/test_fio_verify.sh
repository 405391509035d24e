#!/usr/bin/env bash
# fio through its nbd engine: two jobs (two connections) of random writes mixing
# 4 KiB and 64 KiB blocks at iodepth 16, each block stamped with a crc32c header;
# fio reads everything back and verifies it. After a SIGTERM restart, a
# verify-only pass re-checks every block. A FLUSH every 64 writes runs under the
# concurrent load. Zero errors allowed.
source "$(dirname "$0")/lib.sh"
requires fio

fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd ioengine"

start_portalbd --disk-size-gb 1

JOB_MiB=48   # per job; two jobs = 96 MiB
cat >"$TMP/verify.fio" <<JOB
[global]
ioengine=nbd
uri=$(nbd_uri)
rw=randwrite
bssplit=4k/60:64k/40
iodepth=16
size=${JOB_MiB}m
offset_increment=$((JOB_MiB + 16))m
numjobs=2
randrepeat=1
randseed=${SEED:-4242}
verify=crc32c
verify_fatal=1
verify_backlog=0
fsync=64
do_verify=1
group_reporting=1

[mixed]
JOB

# run_fio WHAT FIO-ARGS...: run, show the summary, fail on any error.
run_fio() {
  local what=$1; shift
  local rc=0 t0; t0=$(now_ms)
  # In $TMP: fio drops its verify state files into the working directory.
  (cd "$TMP" && fio "$@" --output="$TMP/fio.out" "$TMP/verify.fio") >"$TMP/fio.stderr" 2>&1 || rc=$?
  grep -E 'err=|WRITE:|READ:|verify' "$TMP/fio.out" | head -8 | sed 's/^/    /'
  if [ "$rc" -ne 0 ]; then
    tail -20 "$TMP/fio.stderr" | sed 's/^/    /'
    fail "$what: fio exited $rc"
  fi
  if grep -qiE 'verify failed|bad magic|crc32c.*mismatch|verify: ' "$TMP/fio.out" "$TMP/fio.stderr"; then
    grep -iE 'verify' "$TMP/fio.out" "$TMP/fio.stderr" | head -10 | sed 's/^/    /'
    fail "$what: fio reported verification errors"
  fi
  grep -qE 'err= *0' "$TMP/fio.out" || fail "$what: fio did not report err=0"
  if grep -E 'err= *[1-9]' "$TMP/fio.out"; then fail "$what: fio reported errors"; fi
  ok "$what ($(( $(now_ms) - t0 )) ms)"
}

run_fio "fio randwrite 2x${JOB_MiB} MiB, bs 4k/64k, iodepth 16, then read and verify crc32c"

# The verify pass must have read what was written: fio counts the bytes.
read_kib=$(grep -oE 'READ: bw=[^,]*, [^,]*, io=[0-9.]+[KMG]i?B' "$TMP/fio.out" | grep -oE 'io=[0-9.]+[KMG]' | head -1 || true)
[ -n "$read_kib" ] || fail "fio's output has no READ summary: the verify pass did not run"
ok "the verify pass read data back ($read_kib)"

stop_portalbd
start_portalbd --disk-size-gb 1
run_fio "after a SIGTERM restart: fio verify_only re-checks every block" --verify_only
stop_portalbd
