#!/usr/bin/env bash
# A bounded libFuzzer run (FUZZ_SECONDS each, default 10) of every target in
# tests/fuzz/ — the NBD handshake + request stream, the segment and checkpoint
# decoders, journal recovery and the S3 XML reader
# (DESIGN invariant 7) — from their seed corpora, under ASan+UBSan. Builds
# the targets with clang first (incremental). Skips, loudly, only when clang
# or its libFuzzer runtime is genuinely missing.
source "$(dirname "$0")/lib.sh"
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
FUZZ_CXX=${FUZZ_CXX:-clang++}
command -v "$FUZZ_CXX" >/dev/null 2>&1 || skip "$FUZZ_CXX is not installed (apt-get install clang libclang-rt-14-dev; make deps)"
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$TMP/probe.cc"
"$FUZZ_CXX" -fsanitize=fuzzer,address,undefined -o "$TMP/probe" "$TMP/probe.cc" >"$TMP/probe.log" 2>&1 ||
  { cat "$TMP/probe.log"; skip "$FUZZ_CXX cannot link a libFuzzer target (libclang-rt-*-dev missing?)"; }
ok "$FUZZ_CXX links libFuzzer targets"

check "fuzz targets build with clang (make fuzz-build)" make -C "$TOP" --no-print-directory -j"$(nproc)" BUILD="$BUILD" fuzz-build
out=$(FUZZ_SECONDS=$FUZZ_SECONDS BUILD=$BUILD bash "$TOP/tests/fuzz/run.sh" 2>&1) || {
  echo "$out" | sed 's/^/    /'
  fail "a fuzz target crashed or failed (input saved in $BUILD/fuzz/artifacts/)"
}
echo "$out" | sed 's/^/    /'
assert_eq "$(grep -c '^ok - ' <<<"$out")" "$(ls "$TOP"/tests/fuzz/*_fuzz.cc | wc -l)" \
  "every fuzz target ran ${FUZZ_SECONDS}s without a crash"
