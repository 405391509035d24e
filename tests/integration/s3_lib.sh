# Helpers for the S3 tests (test_s3_*.sh): start s3rver on loopback.
#
# Source after lib.sh. s3rver comes from npm, installed by packaging/deps.sh
# under $BUILD/node (make deps); without it the S3 tests skip and say why.
#
#   start_s3rver     starts s3rver on 127.0.0.1:$S3_PORT with a temp data dir
#                    and the bucket $S3_BUCKET; sets S3_ENDPOINT, S3RVER_PID;
#                    killed at exit
#   live_tests ARGS  runs build/bin/unit_tests against $S3_ENDPOINT
#
# s3rver checks the access key id (S3RVER) but not V4 signatures, and ignores
# If-None-Match; signatures are checked by the SigV4 vectors and botocore.

S3RVER=${S3RVER:-$BUILD/node/node_modules/.bin/s3rver}
S3_BUCKET=${S3_BUCKET:-portalbd-test}
UNIT_TESTS=${UNIT_TESTS:-$BUILD/bin/unit_tests}
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
unset AWS_SESSION_TOKEN AWS_PROFILE

requires_s3rver() {
  requires node
  [ -x "$S3RVER" ] || skip "s3rver is not installed at $S3RVER (run 'make deps' with npm available)"
}

requires_unit_tests() {
  [ -x "$UNIT_TESTS" ] || fail "$UNIT_TESTS is missing (run make)"
}

# _port_open PORT: true when something accepts connections on 127.0.0.1:PORT.
_port_open() {
  "$SYSPYTHON" - "$1" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.settimeout(0.5)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.close()
PYEOF
}

start_s3rver() {
  requires_s3rver
  S3_PORT=$(pick_unused_port)
  mkdir -p "$TMP/s3rver"
  # s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its
  # legacy provider; without it every paginated list answers 500.
  # s3rver_put_order.js: a PUT is answered once its bytes are readable.
  S3RVER_MODULE_DIR=$(dirname "$(readlink -f "$S3RVER")")/.. \
    NODE_OPTIONS="--openssl-legacy-provider --require $TOP/tests/integration/s3rver_put_order.js" \
    "$S3RVER" -d "$TMP/s3rver" -a 127.0.0.1 -p "$S3_PORT" --silent \
    --configure-bucket "$S3_BUCKET" >"$TMP/s3rver.log" 2>&1 &
  S3RVER_PID=$!
  S3RVER_LOG=$TMP/s3rver.log
  cleanup_fn kill "$S3RVER_PID"
  on_failure s3rver_report "$S3RVER_PID" "$S3RVER_LOG"
  local deadline=$(( $(date +%s) + 30 ))
  until _port_open "$S3_PORT"; do
    kill -0 "$S3RVER_PID" 2>/dev/null || { cat "$TMP/s3rver.log"; fail "s3rver exited during startup"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "s3rver did not listen on 127.0.0.1:$S3_PORT within 30s"
    sleep 0.2
  done
  S3_ENDPOINT=http://127.0.0.1:$S3_PORT
  log "s3rver $("$S3RVER" --version 2>/dev/null) listening at $S3_ENDPOINT (pid $S3RVER_PID), bucket $S3_BUCKET"
}

# s3rver_report PID LOG: on a failed test, says whether s3rver still runs and
# shows what it logged (it runs --silent: only its errors are there). A test
# whose store died must say so, not only that its reads failed.
s3rver_report() {
  local pid=$1 log=$2 rc=0
  if process_alive "$pid"; then
    echo "# helper: s3rver (pid $pid) is still running"
  else
    wait "$pid" 2>/dev/null || rc=$?
    echo "# helper: s3rver (pid $pid) is NOT running any more (exit status $rc; 137 = SIGKILL, e.g. the OOM killer)"
    dmesg 2>/dev/null | grep -iE "oom|killed process" | tail -5 | sed 's/^/# helper:   dmesg: /'
    # A full disk (seen on these machines) fails its PUTs, if not itself.
    df -h "$(dirname "$log")" 2>/dev/null | tail -1 | sed 's/^/# helper:   df: /'
  fi
  if grep -qvE '^\s*$|S3rver listening' "$log" 2>/dev/null; then
    echo "# helper: ---- last 30 lines of s3rver's log ($log) ----"
    grep -vE '^\s*$' "$log" | tail -30 | sed 's/^/# helper:   /'
  fi
}

# start_moto_server: moto's S3 server (Python's moto, `moto_server`) on
# 127.0.0.1:$MOTO_PORT with the bucket $S3_BUCKET; sets MOTO_ENDPOINT. Unlike
# s3rver it enforces If-None-Match (conditional PUT), as AWS S3 does.
# Skips the test loudly when moto_server is not installed.
start_moto_server() {
  command -v moto_server >/dev/null 2>&1 || skip "moto_server (pip install 'moto[server]') is not installed"
  MOTO_PORT=$(pick_unused_port)
  moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$TMP/moto.log" 2>&1 &
  local pid=$!
  cleanup_fn kill "$pid"
  local deadline=$(( $(date +%s) + 30 ))
  until _port_open "$MOTO_PORT"; do
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/moto.log"; fail "moto_server exited during startup"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "moto_server did not listen on 127.0.0.1:$MOTO_PORT within 30s"
    sleep 0.2
  done
  MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT
  curl -sf -X PUT "$MOTO_ENDPOINT/$S3_BUCKET" >/dev/null || fail "cannot create bucket $S3_BUCKET on moto_server"
  log "moto_server listening at $MOTO_ENDPOINT (pid $pid), bucket $S3_BUCKET"
}

# start_fault_proxy ARGS...: s3_fault_proxy.py in front of s3rver, with ARGS
# (--rate, --faults, --delay-ms, --seed, --stats); sets FAULT_PROXY_URL.
start_fault_proxy() {
  local port; port=$(pick_unused_port)
  "$SYSPYTHON" "$TOP/tests/integration/s3_fault_proxy.py" --listen "$port" --upstream "$S3_ENDPOINT" "$@" \
    >"$TMP/proxy.log" 2>&1 &
  cleanup_fn kill $!
  local deadline=$(( $(date +%s) + 20 ))
  until _port_open "$port"; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$TMP/proxy.log"; fail "fault proxy did not start"; }
    sleep 0.1
  done
  FAULT_PROXY_URL=http://127.0.0.1:$port
}

# live_tests SUITE [ENV=VALUE...]: run one doctest suite with --no-skip
# against $S3_ENDPOINT; prints its output; checks it passed and ran >= 1 case.
live_tests() {
  local suite=$1; shift
  local out rc=0
  out=$(env "$@" S3_TEST_ENDPOINT="$S3_ENDPOINT" S3_TEST_BUCKET="$S3_BUCKET" \
        "$UNIT_TESTS" -ts="$suite" --no-skip --no-intro=true 2>&1) || rc=$?
  echo "$out" | grep -v -E 'portalbd::s3: S3 (retry|store opened)' | sed 's/^/    /' | tail -40
  local summary
  summary=$(grep -E '^\[doctest\] test cases:' <<<"$out" | tail -1)
  [ "$rc" -eq 0 ] || fail "doctest suite $suite failed (exit $rc): $summary"
  local passed
  passed=$(sed -nE 's/.*\| *([0-9]+) passed.*/\1/p' <<<"$summary")
  [ "${passed:-0}" -ge 1 ] || fail "doctest suite $suite ran no test case: $summary"
  ok "doctest $suite against s3rver: $summary"
}
