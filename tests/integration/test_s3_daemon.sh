#!/usr/bin/env bash
# The daemon on s3:// (s3rver on loopback): 64 MiB in with nbdcopy, SIGTERM,
# restart on the same state dir and on a fresh one (only the bucket URL
# known), copy out, compare; the bucket holds the segment objects and the
# store's counters show the traffic. Then a kill -9 with several 1 MiB
# segments uploading at once (s3:// uploads 4 at a time by default): a fresh
# state dir sees every flushed byte, and of the unflushed writes a prefix in
# write order (invariant 3), with uploads delayed at random so that they
# finish out of order. SEED=N reproduces the writes and the delays. The two
# rounds run at once, each with its own daemon, on one s3rver.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires nbdcopy sha256sum cmp head
requires_portalbd

DATA_MiB=64
start_s3rver
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
BUCKET_DIR=$TMP/s3rver/$S3_BUCKET

# check_out WHAT: the first 64 MiB of the device equal the input.
check_out() {
  rm -f "$TMP/out.img"
  nbdcopy "$(nbd_uri)" "$TMP/out.img" || fail "$1: nbdcopy out failed"
  got=$(head -c "${DATA_MiB}M" "$TMP/out.img" | sha256sum | cut -d' ' -f1)
  assert_eq "$got" "$want" "$1: the first ${DATA_MiB} MiB read back equal the input"
}

# ---- round trip: SIGTERM, restarts on the same and on a fresh state dir
round_trip() {
  STORAGE="s3://$S3_BUCKET/volumes/daemon-test"
  head -c "${DATA_MiB}M" /dev/urandom >"$TMP/in.bin"
  want=$(sha256 "$TMP/in.bin")
  log "input: ${DATA_MiB} MiB, sha256 $want, storage $STORAGE at $S3_ENDPOINT"

  start_portalbd --storage "$STORAGE" --disk-size-gb 1
  assert_match "$(cat "$PORTALBD_LOG")" 'S3 store opened .*conditional_put=(enforced|ignored)' \
    "the daemon logs the S3 store and the fencing the probe found"

  t0=$(now_ms)
  nbdcopy "$TMP/in.bin" "$(nbd_uri)" || fail "nbdcopy into the s3:// export failed"
  ms=$(( $(now_ms) - t0 ))
  ok "nbdcopy of ${DATA_MiB} MiB into the s3:// export (${ms} ms)"
  check_out "same session"
  stop_portalbd

  objects=$(find "$BUCKET_DIR/volumes/daemon-test" -type f -name '*._S3rver_object' 2>/dev/null | wc -l)
  bytes=$(find "$BUCKET_DIR/volumes/daemon-test" -type f -name '*._S3rver_object' -printf '%s\n' 2>/dev/null |
          awk '{s+=$1} END {print s+0}')
  [ "$objects" -gt 0 ] || fail "s3rver holds no objects under volumes/daemon-test after a clean stop"
  ok "the bucket holds $objects objects, $bytes bytes under volumes/daemon-test"

  start_portalbd --storage "$STORAGE" --disk-size-gb 1
  check_out "after restart on the same state dir"
  stop_portalbd

  # Object storage is the truth: a fresh machine knows only the bucket URL.
  STATE_DIR=$TMP/state-fresh
  start_portalbd --storage "$STORAGE" --disk-size-gb 1
  check_out "after restart with a fresh state dir"
  stop_portalbd
}

# ---- kill -9 with uploads in flight
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "crash round: SEED=$SEED (rerun with SEED=$SEED bash $0)"
crash_round() {
  MiB=$((1024 * 1024))
  STORAGE="s3://$S3_BUCKET/volumes/crash-test"
  cat >"$TMP/small-segments.toml" <<TOML
[lsm]
l0_sst_size_bytes = 1048576
TOML
  truncate -s 1G "$TMP/model.img"
  # Half the requests held 1.5 s before they are forwarded, so uploads land out
  # of order and
  # several are in flight at the kill.
  start_fault_proxy --rate 0.5 --faults delay --delay-ms 1500 --seed "$SEED"
  STATE_DIR=$TMP/state-crash
  AWS_ENDPOINT_URL=$FAULT_PROXY_URL start_portalbd --storage "$STORAGE" --disk-size-gb 1 \
    --config "$TMP/small-segments.toml"
  assert_match "$(cat "$PORTALBD_LOG")" 'portalbd started .*upload_concurrency=4' "s3:// uploads 4 segments at once by default"
  nbdmodel_write_held "crash round" "$(nbd_uri)" "$TMP/model.img" --seed "$SEED" --count 40 --region "0:$((8 * MiB))" \
    --unflushed 200 --unflushed-region "$((64 * MiB)):$((32 * MiB))" --journal "$TMP/journal"
  kill9_portalbd
  nbdmodel_release
  sed 's/^/    /' "$TMP/writer.out"
  ok "writes, FLUSH, about 7 MiB of unflushed writes in 1 MiB segments, kill -9"

  STATE_DIR=$TMP/state-crash-fresh
  start_portalbd --storage "$STORAGE"
  grep -E 'dropping a (torn )?segment|replayed segments' "$PORTALBD_LOG" | sed 's/^/    /' || true
  out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" --region "0:$((8 * MiB))" --region "$((64 * MiB)):$((32 * MiB))" \
    --journal "$TMP/journal") || { echo "$out"; fail "after kill -9 with uploads in flight, the rebuilt volume is wrong"; }
  echo "$out" | sed 's/^/    /'
  ok "after kill -9 with uploads in flight: every flushed byte, and a prefix of the unflushed writes"
  stop_portalbd
}

in_parallel round-trip round_trip
in_parallel crash crash_round
wait_parallel
