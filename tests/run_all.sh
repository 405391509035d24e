#!/usr/bin/env bash
# Runs every kind of test and ends with one line: "N passed, N failed[, N skipped]".
#
#   unit          build/bin/unit_tests (doctest): each test case counts
#   unit-asan     the same cases under ASan+UBSan: each counts again
#   integration   tests/integration/test_*.{sh,py}: each script counts once;
#                 exit 0 = pass, 77 = skipped (the script says why), else fail
#
# Environment: TESTS=glob limits integration scripts (e.g. TESTS='test_nbd*').
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
  "$bin" --no-intro=true >"$log" 2>&1
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

run_doctest unit "$BUILD/bin/unit_tests"
if [ -x "$BUILD/bin/unit_tests_asan" ]; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_doctest unit-asan "$BUILD/bin/unit_tests_asan"
else
  echo "== unit-asan: MISSING build/bin/unit_tests_asan"; failed=$((failed + 1)); failures+=("unit-asan missing")
fi

shopt -s nullglob
for t in tests/integration/${TESTS:-test_*}; do
  case "$t" in *.sh) cmd=(bash "$t") ;; *.py) cmd=(/usr/bin/python3 "$t") ;; *) continue ;; esac
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
    echo "FAIL $name (exit $rc, ${dt}s); last lines of $log:"; tail -30 "$log" | sed 's/^/    /'
  fi
done

echo
echo "total time: $(( $(date +%s) - start_all ))s"
for f in "${failures[@]}"; do echo "failed: $f"; done
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
