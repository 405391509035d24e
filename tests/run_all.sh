#!/usr/bin/env bash
# Runs every kind of test and ends with one line: "N passed, N failed[, N skipped]".
#
#   integration   tests/integration/test_*.{sh,py}: each script counts once;
#                 exit 0 = pass, 77 = skipped (the script says why), else fail
#   unit          build/bin/unit_tests (doctest): each test case counts
#   unit-asan     the same cases under ASan+UBSan: each counts again
#   csi-unit      build/bin/csi_unit_tests (doctest, the CSI driver): each
#                 test case counts
#
# Environment: TESTS=glob limits integration scripts (e.g. TESTS='test_nbd*').
# UNIT_BUILD=command builds the unit test binaries while the integration tests
# run (`make test` sets it): at nice 19 the compiler takes only the CPU the
# tests leave idle, and the unit tests run once it is done. Without it the
# binaries must exist already.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
passed=0; failed=0; skipped=0
failures=()
start_all=$(date +%s)

run_doctest() {  # name binary
  local name=$1 bin=$2 log="$LOGDIR/$1.log"
  echo "== $name: $bin"
  # A hang fails the run instead of stalling it: the whole suite takes a minute.
  timeout --kill-after=10 900 "$bin" --no-intro=true >"$log" 2>&1
  local rc=$?
  local line
  line=$(grep -E '^\[doctest\] test cases:' "$log" | tail -1)
  echo "   ${line:-no doctest summary (exit $rc)}"
  local p f
  p=$(sed -nE 's/.*\| *([0-9]+) passed.*/\1/p' <<<"$line")
  f=$(sed -nE 's/.*\| *([0-9]+) failed.*/\1/p' <<<"$line")
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # crashed or sanitizer error
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then failures+=("$name (see $log)"); tail -40 "$log"; fi
}

unit_build_pid=
if [ -n "${UNIT_BUILD:-}" ]; then
  echo "== building the unit tests in the background (log: $LOGDIR/unit-build.log)"
  # Its own process group (set -m), so an interrupted run stops every
  # compiler too; the same session, because nice only ranks processes within
  # one scheduler autogroup, and setsid would make a new one that gets an
  # equal share of the CPU whatever its nice.
  set -m
  nice -n 19 bash -c "$UNIT_BUILD" >"$LOGDIR/unit-build.log" 2>&1 &
  unit_build_pid=$!
  set +m
  trap '[ -z "$unit_build_pid" ] || kill -- "-$unit_build_pid" 2>/dev/null' EXIT
fi

run_integration() {  # script
  local t=$1 cmd name log t0 rc dt
  case "$t" in *.sh) cmd=(bash "$t") ;; *.py) cmd=(/usr/bin/python3 "$t") ;; *) return ;; esac
  name=$(basename "$t")
  log="$LOGDIR/${name}.log"
  t0=$(date +%s)
  timeout --kill-after=10 600 "${cmd[@]}" >"$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); echo "PASS $name (${dt}s)"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); echo "SKIP $name (${dt}s): $(grep -m1 'SKIP' "$log")"
  else
    failed=$((failed + 1)); failures+=("$name (exit $rc, see $log)")
    # The lines that say what failed first (a concurrent scenario's failure
    # may sit far above the log's tail), then the tail.
    echo "FAIL $name (exit $rc, ${dt}s); failure lines of $log:"
    grep -n -m 12 -E '^ *not ok|Failure|FAIL|# error|failed' "$log" | cut -c1-400 | sed 's/^/    /'
    # What the test's helpers said about themselves (lib.sh on_failure: a
    # store server that died, its own log).
    grep -n -m 40 '^# helper: ' "$log" | cut -c1-400 | sed 's/^/    /'
    echo "    last lines of $log:"; tail -30 "$log" | sed 's/^/    /'
  fi
}

# wait_unit_build: waits for the background build, if any, and counts a failed
# build as a failure.
wait_unit_build() {
  [ -n "$unit_build_pid" ] || return 0
  local t0 rc
  t0=$(date +%s)
  wait "$unit_build_pid"
  rc=$?
  unit_build_pid=
  echo "== unit test build finished, waited $(( $(date +%s) - t0 ))s for it (exit $rc)"
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1)); failures+=("unit test build (exit $rc, see $LOGDIR/unit-build.log)")
    tail -30 "$LOGDIR/unit-build.log" | sed 's/^/    /'
  fi
}

# Scripts that drive build/bin/unit_tests themselves (requires_unit_tests)
# run after the background build.
shopt -s nullglob
later=()
for t in tests/integration/${TESTS:-test_*}; do
  if [ -n "$unit_build_pid" ] && grep -q '^requires_unit_tests' "$t"; then later+=("$t"); continue; fi
  run_integration "$t"
done
wait_unit_build
for t in "${later[@]}"; do run_integration "$t"; done

if [ -x "$BUILD/bin/unit_tests" ]; then
  run_doctest unit "$BUILD/bin/unit_tests"
else
  echo "== unit: MISSING $BUILD/bin/unit_tests"; failed=$((failed + 1)); failures+=("unit missing")
fi
if [ -x "$BUILD/bin/unit_tests_asan" ]; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_doctest unit-asan "$BUILD/bin/unit_tests_asan"
else
  echo "== unit-asan: MISSING $BUILD/bin/unit_tests_asan"; failed=$((failed + 1)); failures+=("unit-asan missing")
fi
if [ -x "$BUILD/bin/csi_unit_tests" ]; then
  run_doctest csi-unit "$BUILD/bin/csi_unit_tests"
else
  echo "== csi-unit: MISSING $BUILD/bin/csi_unit_tests"; failed=$((failed + 1)); failures+=("csi-unit missing")
fi

echo
echo "total time: $(( $(date +%s) - start_all ))s"
for f in "${failures[@]}"; do echo "failed: $f"; done
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
