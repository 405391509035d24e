#!/usr/bin/env bash
# Long control commands keep their answer (issue 24): `portalctl gc --wait`
# with a grace period longer than the daemon's old 10 s reply deadline (and
# than portalctl's --timeout) answers, with progress lines in text mode and
# one JSON object with --json; a portalctl killed while its gc runs does not
# cancel or break the pass, and the daemon keeps answering. The three parts
# run at once, each with its own daemon.
source "$(dirname "$0")/lib.sh"
requires nbdcopy
requires_portalctl

MiB=$((1024 * 1024))
GRACE_MS=13000
# Each of the three parts below waits out a grace period; they run at once,
# each with a daemon of its own (in_parallel).
start_daemon() {
  # Without the journal every FLUSH uploads, so overwrites make garbage at once.
  start_portalbd --journal off --disk-size-gb 1 --storage "file://$TMP/store" --gc-interval-s 0 --gc-grace-ms "$GRACE_MS"
}

# make_garbage: overwrite the same 16 MiB twice, so that the first copy's
# segments become unreferenced and must wait out the grace period.
make_garbage() {
  local i
  for i in 1 2; do
    head -c $((16 * MiB)) /dev/urandom >"$TMP/data.bin"
    nbdcopy --flush "$TMP/data.bin" "$(nbd_uri)"
  done
}

stored_bytes() { portalctl --json status | sed -nE 's/.*"bytes_stored":([0-9]+).*/\1/p'; }

# 1. Text mode, with a client timeout shorter than the command: the daemon's
# heartbeats keep the connection alive, progress lines show each pass.
part_text() {
  start_daemon
  make_garbage
  t0=$(now_ms)
  rc=0
  out=$(portalctl --timeout 5 gc --wait 2>&1) || rc=$?
  dt=$(( $(now_ms) - t0 ))
  echo "$out" | sed 's/^/    /'
  assert_eq "$rc" 0 "gc --wait exits 0 after ${dt} ms (longer than the old 10 s deadline and --timeout 5)"
  [ "$dt" -ge 10000 ] || fail "gc --wait took only $dt ms; the test needs a command longer than 10 s"
  assert_match "$out" "pass 1: " "a progress line reports the first pass"
  assert_match "$out" "waiting out the grace period" "a progress line says what the command waits for"
  assert_match "$out" "Garbage collection: [2-9][0-9]* pass" "the final answer counts several passes"
  assert_no_match "$out" "waiting: +[1-9]" "no segment is left waiting when gc --wait answers"
  stop_portalbd
}

# 2. --json: exactly one line, one JSON object, no progress text.
part_json() {
  start_daemon
  make_garbage
  rc=0
  out=$(portalctl --timeout 5 --json gc --wait) || rc=$?
  assert_eq "$rc" 0 "gc --wait --json exits 0"
  assert_eq "$(printf '%s\n' "$out" | wc -l)" 1 "gc --wait --json prints one line"
  check "gc --wait --json prints one JSON object with passes >= 2" "$SYSPYTHON" -c '
import json, sys
r = json.loads(sys.argv[1])
assert isinstance(r, dict) and r["passes"] >= 2 and r["segments_waiting"] == 0 and r["segments_deleted"] > 0, r
' "$out"
  stop_portalbd
}

# 3. A client that goes away: the pass goes on, the daemon keeps answering,
# and the garbage is deleted once its grace period is over.
part_abandoned() {
  start_daemon
  make_garbage
  before=$(stored_bytes)
  done_before=$(grep -c "gc --wait done" "$PORTALBD_LOG" || true)
  "$PORTALCTL" --socket "$CTL_SOCK" gc --wait >"$TMP/killed.out" 2>&1 &
  client=$!
  sleep 2
  kill -9 "$client"
  wait "$client" 2>/dev/null || true
  check "status answers while the abandoned gc --wait runs" portalctl status
  deadline=$(( $(date +%s) + GRACE_MS / 1000 + 30 ))
  while :; do
    [ "$(grep -c "gc --wait done" "$PORTALBD_LOG" || true)" -gt "$done_before" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "the abandoned gc --wait never finished (see the daemon log)"
    sleep 0.5
  done
  after=$(stored_bytes)
  log "bytes stored before the abandoned gc: $before; after: $after"
  [ "$after" -lt "$before" ] || fail "the abandoned gc --wait reclaimed nothing ($before -> $after)"
  ok "the abandoned gc --wait ran to the end and reclaimed $(( (before - after) / MiB )) MiB"
  assert_match "$(cat "$PORTALBD_LOG")" "control client (stopped listening|went away)" \
    "the daemon noticed the client leave and let the command run on"
  assert_no_match "$(cat "$PORTALBD_LOG")" "internal error|terminate called" "no internal error in the daemon log"
  check "the daemon still answers a short command" portalctl snapshot create after-abandoned
  stop_portalbd
}

in_parallel text part_text
in_parallel json part_json
in_parallel abandoned part_abandoned
wait_parallel
