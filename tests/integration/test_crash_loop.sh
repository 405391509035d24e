#!/usr/bin/env bash
# Seeded kill -9 loop (DESIGN invariants 2, 3, 4, 1): a random workload over
# three NBD connections plus snapshot create/restore/delete, SIGKILL at a
# random moment, restart (every 5th on a fresh state dir), check the prefix
# invariant and the snapshots against a model — see crash_loop.py.
#
# Runs on file:// and on s3://: "s3" on s3rver, "s3-journal" on moto_server;
# a server that is not installed makes its half say SKIP loudly, and the
# file:// half still counts. The two servers differ where a crash shows it:
# s3rver writes an object in place as its body arrives, so a kill -9 in the
# middle of a PUT leaves a torn object it serves with 200 (some S3-compatible
# stores do too; the daemon must take it as the crash's uncommitted tail),
# and it ignores If-None-Match (fencing by the lease alone). moto stores an
# object only once its whole body is in and enforces If-None-Match, as AWS S3
# does (fencing by conditional puts).
# Both run without the local journal (every answered FLUSH in storage, so the
# fresh-state restarts must find it); "file-journal" runs file:// with it
# (file://'s default): every answered FLUSH survives the kill -9 through the
# journal, and clean stops are rebuilt from storage alone. The s3:// loop
# runs beside the file:// ones, each with its own daemon. "s3-journal" runs
# s3:// with the journal on (off by default there; users turn it on for
# local-disk FLUSH latency).
#
# Environment:
#   SEED=N           replay a run (printed at the start and on failure)
#   ITERATIONS=N     on file:// (default 20; `make crash-test` passes 500)
#   S3_ITERATIONS=N  on s3:// (default 8: each FLUSH waits for s3rver)
#   TIME_BUDGET=S    per store, seconds; stop starting iterations after it,
#                    but never before MIN_ITERATIONS (default: ITERATIONS)
#   JOURNAL_ITERATIONS=N  on file:// with the journal (default 12)
#   S3_JOURNAL_ITERATIONS=N  on s3:// with the journal (default 6)
#   STORES="file s3 file-journal s3-journal" which loops to run
#   FLATTEN_DEPTH=N  [cache] flatten_depth of every daemon (default 2)
#   ENCRYPTION_KEY_FILE=F  every daemon runs with --encryption-key-file F
#                    (test_encryption.sh runs a short loop this way)
# run_all: alone (it kills its daemons at timed moments and wants both cores for their writers)
source "$(dirname "$0")/lib.sh"
requires_python_nbd
requires_portalbd
requires_portalctl

# Private copies: a rebuild of build/bin during a long run must not pull the
# binary out from under a restart.
mkdir -p "$TMP/bin"
cp "$PORTALBD" "$TMP/bin/portalbd" && cp "$PORTALCTL" "$TMP/bin/portalctl" || fail "cannot copy the binaries"
PORTALBD=$TMP/bin/portalbd PORTALCTL=$TMP/bin/portalctl

SEED=${SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
ITERATIONS=${ITERATIONS:-20}
S3_ITERATIONS=${S3_ITERATIONS:-8}
TIME_BUDGET=${TIME_BUDGET:-1000000}
JOURNAL_ITERATIONS=${JOURNAL_ITERATIONS:-12}
S3_JOURNAL_ITERATIONS=${S3_JOURNAL_ITERATIONS:-6}
STORES=${STORES:-file s3 file-journal s3-journal}
# Reads of the live volume go through the flattened map of the snapshots
# under it from the second snapshot on (default 16, which a loop's dozen
# snapshots rarely reach), so its folds and rebuilds are crash-tested too.
FLATTEN_DEPTH=${FLATTEN_DEPTH:-2}
printf '[cache]\nflatten_depth = %s\n' "$FLATTEN_DEPTH" >"$TMP/flatten.toml"
export PORTALBD_CONFIG=$TMP/flatten.toml
log "FLATTEN_DEPTH=$FLATTEN_DEPTH SEED=$SEED ITERATIONS=$ITERATIONS S3_ITERATIONS=$S3_ITERATIONS STORES='$STORES' ENCRYPTION_KEY_FILE='${ENCRYPTION_KEY_FILE:-}' (replay: SEED=$SEED bash $0)"

run_loop() {  # NAME STORAGE_URL ITERATIONS [JOURNAL]
  local name=$1 storage=$2 iterations=$3 journal=${4:-off} work="$TMP/$1" rc=0
  mkdir -p "$work"
  "$SYSPYTHON" "$TOP/tests/integration/crash_loop.py" --portalbd "$PORTALBD" --portalctl "$PORTALCTL" \
    --storage "$storage" --workdir "$work" --port "$(pick_unused_port)" --seed "$SEED" \
    --iterations "$iterations" --min-iterations "${MIN_ITERATIONS:-$iterations}" --time-budget "$TIME_BUDGET" \
    --journal "$journal" --encryption-key-file "${ENCRYPTION_KEY_FILE:-}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "    last lines of the daemon log ($work/portalbd.log):"
    tail -25 "$work/portalbd.log" | sed 's/^/    /'
    fail "crash loop on $name failed (replay: SEED=$SEED STORES=$name bash $0)"
  fi
  ok "crash loop on $name: every restart consistent (SEED=$SEED)"
}

run_s3() {  # STORE...: the s3:// loops, one after the other
  local store
  for store in "$@"; do
    case "$store" in
      s3)
        start_s3rver
        AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1 \
          run_loop s3 "s3://$S3_BUCKET/volumes/crash-loop" "$S3_ITERATIONS" off
        ;;
      s3-journal)
        start_moto_server
        AWS_ENDPOINT_URL=$MOTO_ENDPOINT AWS_REGION=us-east-1 \
          run_loop s3-journal "s3://$S3_BUCKET/volumes/crash-loop-journal" "$S3_JOURNAL_ITERATIONS" on
        ;;
    esac
  done
}

run_local() {  # STORE...: the file:// loops, one after the other
  local store
  for store in "$@"; do
    case "$store" in
      file) run_loop file "file://$TMP/file/data" "$ITERATIONS" off ;;
      file-journal) run_loop file-journal "file://$TMP/file-journal/data" "$JOURNAL_ITERATIONS" on ;;
    esac
  done
}

# The s3:// loops, which mostly wait on their server, runs beside the file:// ones
# (in_parallel: its own daemon and work dir). The file:// loops keep to one
# at a time: each wants a core for its writers and daemon, and sharing one
# would thin out the writes each iteration's kill interrupts.
local_stores=() s3_stores=()
for store in $STORES; do
  case "$store" in
    file | file-journal) local_stores+=("$store") ;;
    s3 | s3-journal) s3_stores+=("$store") ;;
    *) fail "unknown store '$store' in STORES" ;;
  esac
done
if [ ${#s3_stores[@]} -gt 0 ]; then
  source "$(dirname "$0")/s3_lib.sh"
  runnable=()
  for store in "${s3_stores[@]}"; do
    if [ "$store" = s3 ] && { ! command -v node >/dev/null 2>&1 || ! [ -x "$S3RVER" ]; }; then
      echo "SKIP (s3 half only): s3rver is not installed at $S3RVER (make deps with npm); the others ran"
    elif [ "$store" = s3-journal ] && ! command -v moto_server >/dev/null 2>&1; then
      echo "SKIP (s3-journal half only): moto_server is not installed (pip install 'moto[server]'); the others ran"
    else
      runnable+=("$store")
    fi
  done
  [ ${#runnable[@]} -eq 0 ] || in_parallel s3 run_s3 "${runnable[@]}"
fi
[ ${#local_stores[@]} -eq 0 ] || in_parallel local run_local "${local_stores[@]}"
wait_parallel
