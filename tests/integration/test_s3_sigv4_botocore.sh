#!/usr/bin/env bash
# SigV4 second opinion: botocore (python3-botocore) signs a table of S3
# requests (keys with spaces, unicode, + = ~ /, empty query values, multipart
# and DeleteObjects queries, session tokens, http and https); the project
# signs the same inputs (doctest "S3 requests signed like botocore") and both
# must agree byte for byte on URL and Authorization. The committed table
# (tests/data/sigv4/botocore-s3.json) must also still be what botocore says.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"

requires_unit_tests
"$SYSPYTHON" -c 'import botocore' 2>/dev/null || skip "python3-botocore is not installed (make deps)"

check "the committed table is botocore's own output" \
  "$SYSPYTHON" "$TOP/tests/integration/sigv4_botocore.py" --check "$TOP/tests/data/sigv4/botocore-s3.json"

"$SYSPYTHON" "$TOP/tests/integration/sigv4_botocore.py" --write "$TMP/botocore-s3.json" >/dev/null
out=$(S3_BOTOCORE_TABLE="$TMP/botocore-s3.json" "$UNIT_TESTS" -ts='s3.sigv4' -tc='*botocore*' --no-intro=true 2>&1) ||
  { echo "$out" | tail -40; fail "the project's signatures differ from botocore's"; }
assert_match "$out" 'test cases: *1 \| *1 passed' "the project signs $("$SYSPYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"]))' "$TMP/botocore-s3.json") S3 requests exactly as botocore does"

# The comparison can fail: a table with one signature changed must be caught.
sed 's/Signature=\([0-9a-f]\)/Signature=0\1/' "$TMP/botocore-s3.json" >"$TMP/tampered.json"
check_fails "a tampered botocore table is detected" \
  env S3_BOTOCORE_TABLE="$TMP/tampered.json" "$UNIT_TESTS" -ts='s3.sigv4' -tc='*botocore*' --no-intro=true
