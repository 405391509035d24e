#!/usr/bin/env bash
# The Prometheus endpoint on s3:// (s3rver on loopback): the S3 store's own
# counters (HTTP requests by method, bytes, retries, errors) and the disk
# cache appear and parse strictly; uploads move the S3 PUT and byte counters;
# with s3rver stopped (SIGSTOP) a FLUSH fails and the scrape says storage is
# failing, since when, and counts the failed requests; after SIGCONT and a FLUSH
# that works it says healthy again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires nbdsh
requires_python_nbd

CHECK=$TOP/tests/integration/prom_check.py
MiB=$((1024 * 1024))
start_s3rver
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
MPORT=$(pick_unused_port)
URL=http://127.0.0.1:$MPORT/metrics
start_portalbd --storage "s3://$S3_BUCKET/volumes/metrics" --disk-size-gb 1 --journal off \
  --flush-timeout-ms 3000 --gc-interval-s 0 --metrics-address "127.0.0.1:$MPORT"

scrape() {  # OUT.json WHAT
  local out
  out=$("$SYSPYTHON" "$CHECK" scrape "$URL" "$1" 2>&1) || { echo "$out"; fail "$2: scrape"; }
  ok "$2: the scrape parses strictly ($out)"
}
get() { "$SYSPYTHON" "$CHECK" get "$@"; }

scrape "$TMP/s0.json" "s3:// at start"
for name in portalbd_s3_requests_total portalbd_s3_bytes_total portalbd_s3_retries_total portalbd_s3_errors_total \
  portalbd_s3_multipart_uploads_total portalbd_disk_cache_inserts_total; do
  grep -q "\"$name\"" "$TMP/s0.json" || fail "the s3:// scrape has no $name family"
done
get "$TMP/s0.json" portalbd_cache_hits_total cache=disk >/dev/null || fail "no disk cache series"
ok "the S3 store's counters and the disk cache are served"
put0=$(get "$TMP/s0.json" portalbd_s3_requests_total method=put)
up0=$(get "$TMP/s0.json" portalbd_s3_bytes_total direction=up)

nbdsh -u "$(nbd_uri)" -c "
import os
h.pwrite(os.urandom(2 * $MiB), 0)
h.flush()
" || fail "nbdsh write and flush"
scrape "$TMP/s1.json" "after 2 MiB and a FLUSH"
put1=$(get "$TMP/s1.json" portalbd_s3_requests_total method=put)
up1=$(get "$TMP/s1.json" portalbd_s3_bytes_total direction=up)
uploaded=$(get "$TMP/s1.json" portalbd_uploaded_bytes_total)
[ "$put1" -gt "$put0" ] || fail "S3 PUTs did not move ($put0 -> $put1)"
ok "S3 PUT requests moved by $((put1 - put0))"
[ $((up1 - up0)) -ge "$uploaded" ] && [ "$uploaded" -ge $((2 * MiB)) ] ||
  fail "S3 bytes up moved by $((up1 - up0)), segments uploaded $uploaded (random data: >= 2 MiB)"
ok "S3 bytes up moved by $((up1 - up0)), at least the $uploaded bytes of segments uploaded"
assert_eq "$(get "$TMP/s1.json" portalbd_storage_failing)" 0 "storage is not failing"

log "s3rver is stopped (SIGSTOP)"
kill -STOP "$S3RVER_PID"
rc=0
nbdsh -u "$(nbd_uri)" -c "
h.pwrite(b'x' * 4096, 0)
h.flush()
" >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || { kill -CONT "$S3RVER_PID"; fail "a FLUSH against a stopped s3rver succeeded"; }
ok "a FLUSH against a stopped s3rver fails"
# Scraped while s3rver is still stopped: a scrape sends nothing to storage.
scrape "$TMP/s2.json" "while storage fails"
kill -CONT "$S3RVER_PID"
assert_eq "$(get "$TMP/s2.json" portalbd_storage_failing)" 1 "portalbd_storage_failing is 1"
since=$(get "$TMP/s2.json" portalbd_storage_failing_since_timestamp_seconds)
now=$(date +%s)
"$SYSPYTHON" -c "import sys; s=float(sys.argv[1]); n=int(sys.argv[2]); sys.exit(0 if n - 60 < s <= n + 1 else 1)" \
  "$since" "$now" || fail "failing since $since, now $now"
ok "portalbd_storage_failing_since_timestamp_seconds is the last minute ($since)"
# The upload's PUT, or the lease check it makes first, timed out.
errors=$("$SYSPYTHON" -c '
import json, sys
s = json.load(open(sys.argv[1]))["series"]
print(int(sum(v for k, v in s.items() if k.startswith("portalbd_store_request_errors_total{"))))' "$TMP/s2.json")
[ "$errors" -ge 1 ] || fail "no failed store request counted"
ok "failed store requests are counted ($errors)"

nbdsh -u "$(nbd_uri)" -c "h.flush()" || fail "a FLUSH after SIGCONT failed"
scrape "$TMP/s3.json" "after storage came back"
assert_eq "$(get "$TMP/s3.json" portalbd_storage_failing)" 0 "portalbd_storage_failing is 0 again"
assert_eq "$(get "$TMP/s3.json" portalbd_write_buffer_dirty_bytes)" 0 "nothing is left in the write buffer"
stop_portalbd
