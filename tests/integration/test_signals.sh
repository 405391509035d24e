#!/usr/bin/env bash
# Clean shutdown on SIGTERM and SIGINT with unflushed data in the write buffer
# and a client still connected: the daemon exits 0, its log says what it
# flushed, and after a restart on the same state dir every write is there.
# Also SIGTERM under a running bulk copy: exit 0 and a usable volume after.
# The three rounds run at once, each with its own daemon.
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdcopy nbdinfo truncate
requires_python_nbd
requires_portalctl

MiB=$((1024 * 1024)); GiB=$((1024 * MiB))
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "SEED=$SEED (rerun with SEED=$SEED bash $0)"

json_number() {  # JSON KEY: the first value of KEY anywhere in JSON, or empty
  "$SYSPYTHON" -c '
import json, sys
def find(o, k):
    if isinstance(o, dict):
        if k in o: return o[k]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v, k)
            if r is not None: return r
    return None
r = find(json.loads(sys.argv[1]), sys.argv[2])
print("" if r is None else r)' "$1" "$2"
}

# signal_round SIG: unflushed writes, SIG, restart, verify.
signal_round() {
  local sig=$1
  STATE_DIR=$TMP/state-$sig
  model=$TMP/model-$sig.img
  truncate -s "$GiB" "$model"
  # A long flush interval: nothing but the signal moves the buffer to storage.
  start_portalbd --disk-size-gb 1 --flush-interval-ms 600000

  nbdmodel_write_held "SIG$sig" "$(nbd_uri)" "$model" --seed "$SEED" --count 150 \
    --region "0:$((48 * MiB))" --region "$((GiB - 2 * MiB)):$((2 * MiB))" --no-flush
  sed 's/^/    /' "$TMP/writer.out"
  ok "SIG$sig: 150 writes / zeroes / trims without FLUSH, client still connected"

  status=$(portalctl status --json) || fail "portalctl status --json failed: $status"
  dirty=$(json_number "$status" dirty_bytes)
  if [ -n "$dirty" ]; then
    [ "$dirty" -gt 0 ] || fail "SIG$sig: portalctl reports dirty_bytes=$dirty: the write buffer is empty before the signal, so this test proves nothing"
    ok "SIG$sig: the write buffer holds $dirty dirty bytes before the signal"
  else
    log "portalctl status --json has no dirty_bytes; cannot confirm the buffer is non-empty"
  fi

  lines_before=$(wc -l <"$PORTALBD_LOG")
  stop_portalbd "$sig"
  after=$(tail -n +"$((lines_before + 1))" "$PORTALBD_LOG")
  echo "$after" | sed 's/^/    | /'
  # Drop the timestamp, then a flush line must carry a positive count.
  flushed=$(sed -E 's/^[0-9TZ:.+-]+ +//' <<<"$after" | grep -iE 'flush' | grep -E '(^|[^0-9.])[1-9][0-9]*' | head -1 || true)
  [ -n "$flushed" ] || fail "SIG$sig: no log line after the signal says what was flushed (a flush line with a non-zero count)"
  ok "SIG$sig: the log says what was flushed: $flushed"
  if [ -n "$dirty" ] && ! grep -qE "(^|[^0-9])$dirty([^0-9]|$)" <<<"$after"; then
    log "note: the shutdown log does not repeat the $dirty dirty bytes portalctl reported"
  fi
  nbdmodel_release

  start_portalbd --disk-size-gb 1
  out=$(nbdmodel verify "$(nbd_uri)" "$model" --region "0:$((48 * MiB))" --region "$((GiB - 2 * MiB)):$((2 * MiB))") ||
    { echo "$out"; fail "SIG$sig: the unflushed writes are not all there after the restart"; }
  echo "$out" | sed 's/^/    /'
  ok "SIG$sig: after restart every write made before the signal is there"
  stop_portalbd
}

# ---- SIGTERM in the middle of a bulk copy
load_round() {
  STATE_DIR=$TMP/state-load
  start_portalbd --disk-size-gb 1
  # nbdcopy reads its source from a pipe this round feeds, so at the SIGTERM
  # it is provably mid-copy: 32 MiB sent and more flowing. (A fixed sleep
  # before the signal let a fast copy finish first, and the round then
  # tested an idle daemon.)
  mkfifo "$TMP/feed"
  nbdcopy - "$(nbd_uri)" <"$TMP/feed" >"$TMP/nbdcopy.out" 2>&1 &
  copier=$!
  cleanup_fn kill -9 "$copier"
  exec {feed}>"$TMP/feed"
  head -c 32M /dev/urandom >&"$feed"
  head -c 224M /dev/urandom >&"$feed" 2>/dev/null &  # still writing at the signal; EPIPE once nbdcopy is gone
  feeder=$!
  cleanup_fn kill -9 "$feeder"
  exec {feed}>&-
  kill -0 "$copier" 2>/dev/null || fail "nbdcopy ended before the SIGTERM: $(cat "$TMP/nbdcopy.out")"
  log "SIGTERM while nbdcopy is running (32 MiB sent, more flowing)"
  stop_portalbd TERM
  rc=0
  for _ in $(seq 1 300); do kill -0 "$copier" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$copier" 2>/dev/null && fail "nbdcopy still hangs 30 s after the daemon exited"
  wait "$copier" || rc=$?
  log "nbdcopy exited $rc"
  start_portalbd --disk-size-gb 1
  qio "$(nbd_uri)" "write -P 0x5e $((200 * MiB)) 65536" "flush" "read -P 0x5e $((200 * MiB)) 65536"
  ok "after SIGTERM under load the volume restarts and takes writes"
  nbdcopy "$(nbd_uri)" null: || fail "reading the whole device after SIGTERM under load failed"
  ok "the whole device reads without error after SIGTERM under load"
  stop_portalbd
}

# The three rounds run at once, each with its own daemon (in_parallel).
in_parallel term signal_round TERM
in_parallel int signal_round INT
in_parallel load load_round
wait_parallel
