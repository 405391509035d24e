#!/usr/bin/env bash
# Runs every kind of test and ends with one line: "N passed, N failed[, N skipped]".
#
#   integration   tests/integration/test_*.{sh,py}: each script counts once;
#                 exit 0 = pass, 77 = skipped (the script says why), else fail
#   unit          build/bin/unit_tests (doctest): each test case counts
#   unit-asan     the same cases under ASan+UBSan: each counts again (beside
#                 the plain run, one per core)
#   csi-unit      build/bin/csi_unit_tests (doctest, the CSI driver): each
#                 test case counts
#
# Integration scripts run TEST_JOBS at a time (default 2; 1 runs them one
# after the other). A script with the comment line "# run_all: alone" runs
# with nothing beside it: it kills its daemons at timed moments, or its qemu
# guest needs a core of its own.
# Each slot gets its own range of TCP ports (PORTALBD_TEST_PORTS, read by
# lib.sh pick_unused_port and ports.py), so scripts side by side never pick
# the same port.
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

# start_doctest NAME BINARY: runs a doctest binary in the background (the
# unit binaries run side by side, one per core), its log in $LOGDIR/NAME.log.
declare -A doctest_pid=() doctest_bin=()
doctest_order=()
start_doctest() {
  local name=$1 bin=$2
  if [ ! -x "$bin" ]; then
    echo "== $name: MISSING $bin"; failed=$((failed + 1)); failures+=("$name missing")
    return
  fi
  # A hang fails the run instead of stalling it: the whole suite takes a minute.
  timeout --kill-after=10 900 "$bin" --no-intro=true >"$LOGDIR/$name.log" 2>&1 &
  doctest_pid[$name]=$! doctest_bin[$name]=$bin
  doctest_order+=("$name")
}

# finish_doctests: waits for each started binary, in order, and counts its
# test cases.
finish_doctests() {
  local name log rc line p f
  for name in "${doctest_order[@]}"; do
    log="$LOGDIR/$name.log"
    rc=0
    wait "${doctest_pid[$name]}" || rc=$?
    echo "== $name: ${doctest_bin[$name]}"
    line=$(grep -E '^\[doctest\] test cases:' "$log" | tail -1)
    echo "   ${line:-no doctest summary (exit $rc)}"
    p=$(sed -nE 's/.*\| *([0-9]+) passed.*/\1/p' <<<"$line")
    f=$(sed -nE 's/.*\| *([0-9]+) failed.*/\1/p' <<<"$line")
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # crashed or sanitizer error
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -ne 0 ]; then failures+=("$name (see $log)"); tail -40 "$log"; fi
  done
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

TEST_JOBS=${TEST_JOBS:-2}
RESULTS=$LOGDIR/results
rm -rf "$RESULTS"; mkdir -p "$RESULTS"

# run_integration SCRIPT: runs one script (in a job of its own) and writes
# its verdict to $RESULTS/NAME.rc and what to print to $RESULTS/NAME.out.
run_integration() {
  local t=$1 cmd name log t0 rc dt
  case "$t" in *.sh) cmd=(bash "$t") ;; *.py) cmd=(/usr/bin/python3 "$t") ;; *) return ;; esac
  name=$(basename "$t")
  log="$LOGDIR/${name}.log"
  t0=$(date +%s)
  timeout --kill-after=10 600 "${cmd[@]}" >"$log" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  {
    if [ $rc -eq 0 ]; then
      echo "PASS $name (${dt}s)"
    elif [ $rc -eq 77 ]; then
      echo "SKIP $name (${dt}s): $(grep -m1 'SKIP' "$log")"
    else
      # The lines that say what failed first (a concurrent scenario's failure
      # may sit far above the log's tail), then the tail.
      echo "FAIL $name (exit $rc, ${dt}s); failure lines of $log:"
      grep -n -m 12 -E '^ *not ok|Failure|FAIL|# error|failed' "$log" | cut -c1-400 | sed 's/^/    /'
      # What the test's helpers said about themselves (lib.sh on_failure: a
      # store server that died, its own log).
      grep -n -m 40 '^# helper: ' "$log" | cut -c1-400 | sed 's/^/    /'
      echo "    last lines of $log:"; tail -30 "$log" | sed 's/^/    /'
    fi
  } >"$RESULTS/$name.out"
  echo "$rc" >"$RESULTS/$name.rc"
}

# The scheduler: running jobs by pid, with the slot each holds.
declare -A job_name=() job_slot=()
slot_busy=()
for ((i = 0; i < TEST_JOBS; i++)); do slot_busy[i]=0; done

# Ports outside the kernel's ephemeral range, split between the slots.
port_range_of_slot() {  # SLOT -> "BASE SPAN"
  local lo=32768 hi=60999 base span
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ "$lo" -gt 11024 ]; then base=10000 span=$(( lo - 10000 )); else base=$(( hi + 1 )) span=$(( 65535 - hi )); fi
  span=$(( span / TEST_JOBS ))
  echo "$(( base + $1 * span )) $span"
}

# reap: waits for one job to end, prints its verdict and counts it.
reap() {
  local pid= name rc pids
  wait -n -p pid "${!job_name[@]}" 2>/dev/null
  if [ -z "$pid" ]; then
    # Not a job bash still knows (never expected): take one off the list, so
    # the scheduler cannot spin; its verdict file says how it ended, if at all.
    pids=("${!job_name[@]}")
    [ ${#pids[@]} -gt 0 ] || return 0
    pid=${pids[0]}
  fi
  name=${job_name[$pid]}
  rc=$(cat "$RESULTS/$name.rc" 2>/dev/null || echo 1)
  cat "$RESULTS/$name.out" 2>/dev/null || echo "FAIL $name (no verdict)"
  case "$rc" in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); failures+=("$name (exit $rc, see $LOGDIR/$name.log)") ;;
  esac
  slot_busy[${job_slot[$pid]}]=0
  unset "job_name[$pid]" "job_slot[$pid]"
}

# schedule SCRIPT: starts it in a free slot (alone: once nothing else runs).
schedule() {
  local t=$1 name alone=0 slot pid
  name=$(basename "$t")
  grep -q '^# run_all: alone' "$t" && alone=1
  if [ $alone -eq 1 ]; then
    while [ ${#job_name[@]} -gt 0 ]; do reap; done
  else
    while [ ${#job_name[@]} -ge "$TEST_JOBS" ]; do reap; done
  fi
  for ((slot = 0; slot < TEST_JOBS; slot++)); do [ "${slot_busy[slot]}" -eq 0 ] && break; done
  PORTALBD_TEST_PORTS=$(port_range_of_slot "$slot") run_integration "$t" &
  pid=$!
  job_name[$pid]=$name job_slot[$pid]=$slot
  slot_busy[slot]=1
  # Nothing starts beside a script that wants the machine to itself.
  if [ $alone -eq 1 ]; then reap; fi
}

drain() { while [ ${#job_name[@]} -gt 0 ]; do reap; done; }

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
  schedule "$t"
done
drain
wait_unit_build
for t in "${later[@]}"; do schedule "$t"; done
drain

start_doctest unit "$BUILD/bin/unit_tests"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 start_doctest unit-asan "$BUILD/bin/unit_tests_asan"
finish_doctests
doctest_order=()
start_doctest csi-unit "$BUILD/bin/csi_unit_tests"
finish_doctests

echo
echo "total time: $(( $(date +%s) - start_all ))s"
for f in "${failures[@]}"; do echo "failed: $f"; done
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
