#!/usr/bin/env bash
# Retries: S3Store through a proxy (s3_fault_proxy.py) that fails ~25% of the
# requests to s3rver with 500, 503 SlowDown, 429, dropped connections,
# truncated bodies and delays. Every operation (put, ranged get, head, list,
# multipart, delete) must still succeed, with the retries counted; and with
# retries switched off the same faults must surface as errors (so the first
# check could fail).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"

requires_unit_tests
requires_s3rver
start_s3rver

start_fault_proxy --rate 0.25 --seed 7 --delay-ms 150 --stats "$TMP/proxy-stats.json"
log "fault proxy at $FAULT_PROXY_URL -> $S3_ENDPOINT (25% faults)"
S3_ENDPOINT_DIRECT=$S3_ENDPOINT
S3_ENDPOINT=$FAULT_PROXY_URL

live_tests 's3.live.faults' S3_TEST_FAULTS=1

stats=$(curl -s "$S3_ENDPOINT/__fault_proxy_stats" || "$SYSPYTHON" -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$S3_ENDPOINT/__fault_proxy_stats")
log "proxy counts: $stats"
injected=$("$SYSPYTHON" -c 'import json,sys; s=json.loads(sys.argv[1]); print(sum(s[k] for k in ("500","503","429","drop","truncate")))' "$stats")
[ "$injected" -ge 10 ] || fail "only $injected faults were injected; the test proves nothing"
ok "$injected failing answers injected and survived"

# Control: one attempt only, the same faults must fail the suite.
rc=0
env S3_TEST_FAULTS=1 PORTALBD_S3_MAX_ATTEMPTS=1 S3_TEST_MAX_ATTEMPTS=1 S3_TEST_ENDPOINT="$S3_ENDPOINT" \
  S3_TEST_BUCKET="$S3_BUCKET" "$UNIT_TESTS" -ts='s3.live.faults' --no-skip --no-intro=true >"$TMP/control.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "with retries off the injected faults went unnoticed"
ok "with retries off the injected faults fail the same suite (exit $rc)"
S3_ENDPOINT=$S3_ENDPOINT_DIRECT
