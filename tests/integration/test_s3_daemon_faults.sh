#!/usr/bin/env bash
# The daemon on s3:// through a fault-injecting proxy (s3_fault_proxy.py:
# 20% of requests fail with 500, 503 SlowDown, 429, dropped or truncated
# answers, or are delayed): a 256 MiB fio verify run (random 4k/64k writes
# with fsyncs, then read back with crc32c) sees zero errors at the NBD client,
# the daemon's log shows the retries that hid the faults, and after a
# SIGTERM (whose flush also crosses the faults) and a restart the device
# reads back with the same checksum.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires fio nbdcopy sha256sum
requires_portalbd
fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd ioengine"

start_s3rver
start_fault_proxy --rate 0.2 --seed 11 --delay-ms 100
export AWS_ENDPOINT_URL=$FAULT_PROXY_URL AWS_REGION=us-east-1 PORTALBD_S3_MAX_ATTEMPTS=10
STORAGE="s3://$S3_BUCKET/volumes/faulty"
log "daemon storage $STORAGE through the fault proxy $AWS_ENDPOINT_URL -> $S3_ENDPOINT"

start_portalbd --storage "$STORAGE" --disk-size-gb 1

JOB_MiB=128   # per job; two jobs = 256 MiB
cat >"$TMP/verify.fio" <<JOB
[global]
ioengine=nbd
uri=$(nbd_uri)
rw=randwrite
bssplit=4k/50:64k/50
iodepth=16
size=${JOB_MiB}m
offset_increment=$((JOB_MiB + 16))m
numjobs=2
randrepeat=1
randseed=4243
verify=crc32c
verify_fatal=1
verify_backlog=0
fsync=256
do_verify=1
group_reporting=1

[mixed]
JOB
rc=0
(cd "$TMP" && fio --output="$TMP/fio.out" "$TMP/verify.fio") >"$TMP/fio.stderr" 2>&1 || rc=$?
grep -E 'err=|WRITE:|READ:' "$TMP/fio.out" | head -6 | sed 's/^/    /'
[ "$rc" -eq 0 ] || { tail -20 "$TMP/fio.stderr" | sed 's/^/    /'; fail "fio exited $rc through the faults"; }
grep -qE 'err= *0' "$TMP/fio.out" || fail "fio did not report err=0"
if grep -qiE 'verify failed|bad magic|mismatch' "$TMP/fio.out" "$TMP/fio.stderr"; then fail "fio verify errors"; fi
ok "fio: $((2 * JOB_MiB)) MiB of random writes with fsyncs, read back and verified, zero errors at the NBD client"

rm -f "$TMP/before.img"
nbdcopy "$(nbd_uri)" "$TMP/before.img" || fail "nbdcopy out before restart failed"
before=$(sha256 "$TMP/before.img")
stop_portalbd
retries=$(grep -c 'S3 retry' "$PORTALBD_LOG" || true)
[ "$retries" -ge 5 ] || fail "only $retries retries in the daemon log: the faults did not reach it"
ok "the daemon retried $retries S3 requests and stayed up"
log "proxy: $(curl -s "$AWS_ENDPOINT_URL/__fault_proxy_stats" || true)"

start_portalbd --storage "$STORAGE" --disk-size-gb 1
rm -f "$TMP/after.img"
nbdcopy "$(nbd_uri)" "$TMP/after.img" || fail "nbdcopy out after restart failed"
assert_eq "$(sha256 "$TMP/after.img")" "$before" "after a SIGTERM and restart through the faults the device reads the same"
stop_portalbd
