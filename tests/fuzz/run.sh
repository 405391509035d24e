#!/usr/bin/env bash
# Runs every libFuzzer target in $BUILD/fuzz for FUZZ_SECONDS each, on its seed
# corpus tests/fuzz/corpus/<name>/ (read only) plus a working corpus
# $BUILD/fuzz/corpus/<name>/ that keeps what it finds between runs. Prints one
# summary line per target: executions, coverage (edges, features), corpus size.
# Crashes leave their input in $BUILD/fuzz/artifacts/ and fail the run:
# replay with `$BUILD/fuzz/<name>_fuzz <artifact>`.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
status=0
shopt -s nullglob
targets=("$BUILD"/fuzz/*_fuzz)
[ ${#targets[@]} -gt 0 ] || { echo "FAIL - no fuzz targets in $BUILD/fuzz (make fuzz-build)"; exit 1; }
mkdir -p "$BUILD/fuzz/artifacts" "$BUILD/fuzz/logs"
for bin in "${targets[@]}"; do
  name=$(basename "$bin" _fuzz)
  seeds=tests/fuzz/corpus/$name
  work=$BUILD/fuzz/corpus/$name
  log=$BUILD/fuzz/logs/$name.log
  mkdir -p "$work"
  echo "== $name: ${FUZZ_SECONDS}s, seed corpus $seeds ($(ls "$seeds" 2>/dev/null | wc -l) inputs)"
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$BUILD/fuzz/artifacts/$name-" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1 runs in \2 s/p' "$log" | tail -1)
  cov=$(sed -nE 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 edges, \2 features, corpus \3/p' <<<"$done_line")
  if [ $rc -ne 0 ]; then
    status=1
    echo "FAIL - $name: fuzzer exit $rc; last lines of $log:"
    grep -E 'ERROR|SUMMARY|artifact|==[0-9]+==' "$log" | head -20 | sed 's/^/    /'
  else
    echo "ok - $name: ${runs:-? runs}, ${cov:-coverage unknown}"
  fi
done
exit $status
