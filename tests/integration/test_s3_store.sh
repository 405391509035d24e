#!/usr/bin/env bash
# S3Store against a real S3-compatible server (s3rver on loopback):
# put/get/ranged get/head/list with pagination/delete/DeleteObjects,
# multipart upload, the conditional-PUT probe, parallel requests, and the
# errors a wrong bucket, key or endpoint gives. The cases are the doctest
# suite "s3.live" (src/store/s3/s3_live_test.cc), skipped in the plain unit
# run because no server runs there.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"

requires_unit_tests
requires_s3rver

cases=$("$UNIT_TESTS" -ts='s3.live' --list-test-cases --no-skip 2>/dev/null | grep -c -v -E '^\[doctest\]|^=+$|^$' || true)
log "the plain unit run skips the $cases s3.live cases (they need a server); running them here"

# Asked for without a server, the live cases fail; they never pass vacuously.
check_fails "s3.live without S3_TEST_ENDPOINT fails loudly" \
  env -u S3_TEST_ENDPOINT "$UNIT_TESTS" -ts='s3.live' --no-skip --no-intro=true

start_s3rver
live_tests 's3.live'
