#!/usr/bin/env bash
# The local journal (issue 20) with the real daemon and a real NBD client, on
# file:// and, when s3rver is installed, on s3:// (else that half says SKIP):
#  1. status: with --journal on the start log says "journal on" and
#     `portalctl status` (human and --json) shows the journal (upload lag,
#     fill: used and capacity bytes); with --journal off, "journal": null;
#  2. crash loop (journal_crash.py): one writer of sequence-stamped 4 KiB
#     blocks over a 1 MiB region with FLUSH every few writes (and unchecked
#     1 MiB fillers past it, so the journal's ring wraps), kill -9 at a random
#     moment, restart on the same state dir: every answered FLUSH survives,
#     the region is a prefix of the writes, nothing torn or foreign;
#     `portalctl status` right before a kill shows answered writes not yet
#     in object storage;
#  3. disk loss, interleaved with 2: kill -9, delete the state dir (index and
#     journal), start from storage alone: a prefix of the writes, never a mix,
#     missing some writes an answered FLUSH covered (they were only in the
#     journal); after a final SIGTERM storage alone holds everything.
# The daemon runs with 1 MiB segments, a 200 ms flush interval, four uploads
# at once and the smallest journal (two 64 MiB chunks, so the ring wraps).
#
# The stores run at once, each with its own daemon.
#
# Environment: SEED=N replays the writer's choices and kill times (printed at
# the start and on failure); CRASHES=N, DISK_LOSSES=N per store (default 6
# and 3); STORES="file s3".
source "$(dirname "$0")/lib.sh"
requires_python_nbd
requires_portalbd
requires_portalctl

SEED=${SEED:-$(( (RANDOM << 15 | RANDOM) + 1 ))}
CRASHES=${CRASHES:-6}
DISK_LOSSES=${DISK_LOSSES:-3}
STORES=${STORES:-file s3}
log "SEED=$SEED CRASHES=$CRASHES DISK_LOSSES=$DISK_LOSSES STORES='$STORES' (replay: SEED=$SEED bash $0)"

cat >"$TMP/portalbd.toml" <<'EOF'
[lsm]
l0_sst_size_bytes = 1048576
upload_concurrency = 4

[journal]
bytes = 134217728
EOF
DAEMON_ARGS=(-c "$TMP/portalbd.toml" --flush-interval-ms 200)

# json_get FILE PATH: prints the value at PATH ("journal.upload_lag_bytes") of
# the JSON in FILE, as JSON ("null" when a step is null or missing).
json_get() {
  "$SYSPYTHON" - "$1" "$2" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print(json.dumps(v))
EOF
}

# write_and_flush MIB: MIB MiB of 0x5a at offset 0, then FLUSH.
write_and_flush() {
  "$SYSPYTHON" - "$NBD_SOCK" "$1" <<'EOF'
import nbd, sys
h = nbd.NBD()
h.set_export_name("portalbd")
h.connect_unix(sys.argv[1])
h.pwrite(b"\x5a" * (int(sys.argv[2]) << 20), 0)
h.flush()
h.shutdown()
EOF
}

check_status() {  # NAME STORAGE_URL
  local name=$1 storage=$2 out v
  STATE_DIR=$TMP/state-status-$name
  start_portalbd --storage "$storage" --disk-size-gb 1 "${DAEMON_ARGS[@]}" --journal on
  assert_match "$(cat "$PORTALBD_LOG")" 'journal on' "$name: the start log says the journal is on"
  # Long enough for the journal to hold it past the 200 ms upload timer: the
  # fill is what status shows, the lag may be 0 again by the time it looks.
  write_and_flush 4 || fail "$name: writing 4 MiB and FLUSH failed"
  portalctl --json status >"$TMP/status.json" || fail "$name: portalctl --json status failed"
  for key in upload_lag_bytes upload_lag_ms max_lag_ms used_bytes capacity_bytes live_records syncs; do
    v=$(json_get "$TMP/status.json" "journal.$key")
    [[ "$v" =~ ^[0-9]+$ ]] || fail "$name: status --json journal.$key is '$v', not a number: $(cat "$TMP/status.json")"
  done
  assert_eq "$(json_get "$TMP/status.json" journal.capacity_bytes)" 134217728 \
    "$name: status --json shows the journal's capacity (journal.bytes)"
  v=$(json_get "$TMP/status.json" journal.used_bytes)
  [ "$v" -gt 0 ] || fail "$name: status --json journal.used_bytes is $v after 4 MiB written and flushed"
  v=$(json_get "$TMP/status.json" journal.syncs)
  [ "$v" -ge 1 ] || fail "$name: status --json journal.syncs is $v after a FLUSH"
  ok "$name: status --json shows the journal: upload lag, fill ($(json_get "$TMP/status.json" journal.used_bytes) bytes used), $v syncs"
  out=$(portalctl status) || fail "$name: portalctl status failed"
  echo "$out" | grep -iE 'journal|lag|used|capacity' | sed 's/^/    /'
  assert_match "$out" '^journal' "$name: human status has a journal section"
  assert_match "$out" 'upload.lag' "$name: human status shows the upload lag"
  assert_match "$out" 'capacity|used' "$name: human status shows the journal's fill"
  stop_portalbd

  start_portalbd --storage "$storage" --disk-size-gb 1 "${DAEMON_ARGS[@]}" --journal off
  assert_no_match "$(cat "$PORTALBD_LOG")" 'journal on' "$name: with --journal off the start log does not say journal on"
  portalctl --json status >"$TMP/status.json" || fail "$name: portalctl --json status failed"
  assert_eq "$(json_get "$TMP/status.json" journal)" null "$name: with --journal off, status --json has \"journal\": null"
  assert_match "$(cat "$TMP/status.json")" '"journal": ?null' "$name: the key is there, null"
  stop_portalbd
}

run_loop() {  # NAME STORAGE_URL
  local name=$1 storage=$2 work="$TMP/loop-$1" rc=0 a args=()
  for a in "${DAEMON_ARGS[@]}" --journal on; do args+=("--daemon-arg=$a"); done
  "$SYSPYTHON" "$TOP/tests/integration/journal_crash.py" --portalbd "$PORTALBD" --portalctl "$PORTALCTL" \
    --storage "$storage" --workdir "$work" --port "$(pick_unused_port)" --seed "$SEED" \
    --crashes "$CRASHES" --disk-losses "$DISK_LOSSES" "${args[@]}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "    last lines of the daemon log ($work/portalbd.log):"
    tail -25 "$work/portalbd.log" | sed 's/^/    /'
    fail "journal crash loop on $name failed (replay: SEED=$SEED STORES=$name bash $0)"
  fi
  ok "$name: $CRASHES kill -9 restarts kept every answered FLUSH, $DISK_LOSSES starts from storage alone were prefixes (SEED=$SEED)"
}

run_file() {
  check_status file "file://$TMP/file/status"
  run_loop file "file://$TMP/file/loop"
}

run_s3() {
  start_s3rver
  export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
  check_status s3 "s3://$S3_BUCKET/volumes/journal-status"
  run_loop s3 "s3://$S3_BUCKET/volumes/journal-loop"
}

# The stores run at once, each with its own daemon (in_parallel).
for store in $STORES; do
  case "$store" in
    file) in_parallel file run_file ;;
    s3)
      source "$(dirname "$0")/s3_lib.sh"
      if ! command -v node >/dev/null 2>&1 || ! [ -x "$S3RVER" ]; then
        echo "SKIP (s3:// half only): s3rver is not installed at $S3RVER (make deps with npm)"
        continue
      fi
      in_parallel s3 run_s3
      ;;
    *) fail "unknown store '$store' in STORES" ;;
  esac
done
wait_parallel
[ "$_checks" -gt 0 ] || skip "no store was tested (STORES='$STORES')"
