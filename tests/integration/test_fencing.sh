#!/usr/bin/env bash
# One writer per volume (DESIGN invariant 6) on file://: a second daemon on the
# same storage refuses to start and names the holder; --take-over breaks the
# claim, and the first daemon, still alive, is fenced: its next flush fails
# with EIO and it logs loudly instead of writing over the new holder.
source "$(dirname "$0")/lib.sh"
# The claim is about FLUSH in storage (the next holder reads what the first
# one flushed): the mode without the local journal. With it, a take-over does
# not see the first host's journal (README, "Durability").
TEST_MODE_ARGS=(--journal off)
requires qemu-io nbdinfo

STORE="file://$TMP/shared-store"
start_portalbd --disk-size-gb 1 --storage "$STORE"
qio "$(nbd_uri)" "write -P 0x11 0 65536" "flush"
ok "first daemon writes and flushes"
FIRST_PID=$PORTALBD_PID FIRST_NBD=$NBD_SOCK FIRST_LOG=$PORTALBD_LOG

# A second daemon: same storage, its own state dir, sockets and port.
PORT2=$(pick_unused_port)
args2=(--nbd-address "127.0.0.1:$PORT2" --nbd-unix "$TMP/nbd2.sock" --socket "$TMP/ctl2.sock"
  --state-dir "$TMP/state2" --storage "$STORE")
run_portalbd_expect_failure 30 "${args2[@]}"
assert_ne "$RUN_RC" "0" "a second daemon on the same storage exits non-zero"
assert_match "$RUN_OUT" "in use by portalbd on host .* pid $FIRST_PID" "its message names the holder's host and pid"
assert_match "$RUN_OUT" "--take-over" "its message says how to break a stale claim"

# --take-over while the first is alive: the second serves, the first is fenced.
"$PORTALBD" "${args2[@]}" --take-over >"$TMP/second.log" 2>&1 &
SECOND_PID=$!
cleanup_fn kill -9 "$SECOND_PID"
for _ in $(seq 1 100); do nbdinfo --size "nbd+unix:///portalbd?socket=$TMP/nbd2.sock" >/dev/null 2>&1 && break; sleep 0.1; done
check "the second daemon took over and serves" nbdinfo --size "nbd+unix:///portalbd?socket=$TMP/nbd2.sock"
assert_match "$(cat "$TMP/second.log")" "taking over the volume" "the take-over is logged"
check "the second daemon reads the first one's flushed data" \
  qemu-io -f raw "nbd+unix:///portalbd?socket=$TMP/nbd2.sock" -c "read -P 0x11 0 65536"

out=$(qemu-io -f raw "nbd+unix:///portalbd?socket=$FIRST_NBD" -c "write -P 0x22 0 65536" -c "flush" 2>&1) || true
assert_match "$out" "flush failed|Input/output error" "the fenced first daemon answers FLUSH with EIO"
assert_match "$(cat "$FIRST_LOG")" "FENCED" "the fenced daemon logs it loudly"
check "the new holder's data is untouched" \
  qemu-io -f raw "nbd+unix:///portalbd?socket=$TMP/nbd2.sock" -c "read -P 0x11 0 65536"

kill -TERM "$SECOND_PID"; wait "$SECOND_PID" || fail "second daemon exited non-zero"
ok "second daemon stopped cleanly"
kill -9 "$FIRST_PID" 2>/dev/null || true; wait "$FIRST_PID" 2>/dev/null || true
PORTALBD_PID=
# After a kill -9 on this host the claim is stale: a restart needs no flag.
start_portalbd --disk-size-gb 1 --storage "$STORE"
check "a restart after the holders are gone needs no --take-over" qemu-io -f raw "$(nbd_uri)" -c "read -P 0x11 0 65536"
stop_portalbd
