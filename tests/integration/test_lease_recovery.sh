#!/usr/bin/env bash
# The writer lease when things went wrong (WriterLease L1-L4, L9):
#   * a torn or empty lock/writer.json (what s3rver keeps of a PUT whose
#     writer died) refuses a start with a message naming the object and what
#     to do; it counts as held until it is older than the lease TTL, and
#     --take-over breaks it at once;
#   * a start that fails after claiming the lease (the volume cannot open, the
#     NBD port is taken) removes the claim, so it blocks nobody;
#   * on s3rver, which ignores conditional PUTs, a second daemon without
#     --take-over is refused while the first lives, and the first keeps
#     flushing (it used to overwrite the lease and fence the first).
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdinfo touch
requires_portalbd

STORE_DIR=$TMP/store
STORE="file://$STORE_DIR"
LEASE=$STORE_DIR/lock/writer.json

start_portalbd --disk-size-gb 1 --storage "$STORE"
qio "$(nbd_uri)" "write -P 0x11 0 64k" "flush"
stop_portalbd
[ ! -e "$LEASE" ] || fail "a clean stop leaves no lease behind"
ok "a clean stop removes the lease"

args=(--nbd-address "127.0.0.1:$PORT" --nbd-unix "$NBD_SOCK" --socket "$CTL_SOCK" --state-dir "$STATE_DIR"
  --storage "$STORE")
for torn in '{"host": "web1", "pid": 42, "started_un' ''; do
  what="a torn lease"; [ -n "$torn" ] || what="an empty lease"
  mkdir -p "$(dirname "$LEASE")"
  printf '%s' "$torn" >"$LEASE"
  run_portalbd_expect_failure 30 "${args[@]}"
  assert_ne "$RUN_RC" 0 "$what: the start is refused"
  assert_match "$RUN_OUT" "lock/writer.json in $STORE is unreadable" "$what: the message names the object"
  assert_match "$RUN_OUT" "held by an unknown portalbd until .*--take-over" "$what: it says until when, and what to do"
  [ -e "$LEASE" ] || fail "$what: the refused start removed the lease it did not claim"
done

touch -d '2 minutes ago' "$LEASE"  # older than the 60 s TTL
start_portalbd --storage "$STORE"
assert_match "$(cat "$PORTALBD_LOG")" "an unreadable lease written at .* more than the lease TTL" \
  "a torn lease older than the TTL is taken over without --take-over"
check "and the volume's data is there" qemu-io -f raw "$(nbd_uri)" -c "read -P 0x11 0 64k"
stop_portalbd

printf '{"ho' >"$LEASE"
start_portalbd --storage "$STORE" --take-over
assert_match "$(cat "$PORTALBD_LOG")" "reason=\"--take-over \\(lock/writer.json .* is unreadable" \
  "--take-over breaks a fresh torn lease at once"
stop_portalbd

# A start that fails after its claim: the claim goes with it.
run_portalbd_expect_failure 30 "${args[@]}" --disk-size-gb 2  # without --grow: Volume::Open refuses
assert_ne "$RUN_RC" 0 "a start whose volume cannot open fails"
assert_match "$RUN_OUT" "pass --grow" "(it failed opening the volume, after the claim)"
[ ! -e "$LEASE" ] || fail "the failed start left its lease behind: $(cat "$LEASE")"
ok "the failed start removed the lease it claimed"

"$SYSPYTHON" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$PORT" &
squatter=$!
cleanup_fn kill "$squatter"
for _ in $(seq 1 50); do ss -ltn 2>/dev/null | grep -q ":$PORT " && break; sleep 0.1; done
run_portalbd_expect_failure 30 "${args[@]}"
kill "$squatter"; wait "$squatter" 2>/dev/null || true
assert_ne "$RUN_RC" 0 "a start whose NBD port is taken fails"
[ ! -e "$LEASE" ] || fail "the start that failed after opening the volume left its lease behind"
ok "that failed start removed its lease too"
start_portalbd --storage "$STORE"
check "the next start needs no --take-over and sees the data" qemu-io -f raw "$(nbd_uri)" -c "read -P 0x11 0 64k"
stop_portalbd

# s3rver ignores conditional PUTs: the lease is read before it is written.
source "$(dirname "$0")/s3_lib.sh"
if ! command -v node >/dev/null 2>&1 || ! [ -x "$S3RVER" ]; then
  echo "SKIP (s3rver part only): s3rver is not installed at $S3RVER; the file:// part ran"
  exit 0
fi
start_s3rver
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
S3_STORE="s3://$S3_BUCKET/volumes/lease"
STATE_DIR=$TMP/state-s3
start_portalbd --disk-size-gb 1 --storage "$S3_STORE"
qio "$(nbd_uri)" "write -P 0x21 0 64k" "flush"
port2=$(pick_unused_port)
run_portalbd_expect_failure 30 --nbd-address "127.0.0.1:$port2" --nbd-unix "$TMP/nbd2.sock" --socket "$TMP/ctl2.sock" \
  --state-dir "$TMP/state-s3-second" --storage "$S3_STORE"
assert_ne "$RUN_RC" 0 "s3rver: a second daemon without --take-over is refused"
assert_match "$RUN_OUT" "in use by portalbd on host .* pid $PORTALBD_PID" "s3rver: the refusal names the holder"
qio "$(nbd_uri)" "write -P 0x22 64k 64k" "flush"
ok "s3rver: the first daemon still flushes (its lease was not overwritten)"
assert_no_match "$(cat "$PORTALBD_LOG")" "FENCED" "s3rver: the first daemon was never fenced"
stop_portalbd
