#!/usr/bin/env bash
# One writer per volume: a second daemon on the same storage URL (fresh state
# dir, or the same state dir) is refused with a message instead of serving,
# and the first daemon keeps serving untouched. Once the first stops cleanly,
# a daemon on another state dir takes the volume over with all its data.
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdinfo

MiB=$((1024 * 1024))
STORE=file://$TMP/bucket
STATE_DIR=$TMP/state-a
start_portalbd --disk-size-gb 1 --storage "$STORE"
qio "$(nbd_uri)" "write -P 0x11 0 $MiB" "flush"
ok "first daemon serves the volume in $STORE"

# second_daemon WHAT STATE-DIR: must be refused while the first one runs.
second_daemon() {
  local port2; port2=$(pick_unused_port)
  run_portalbd_expect_failure 20 --nbd-address "127.0.0.1:$port2" --nbd-unix "$TMP/nbd2.sock" \
    --socket "$TMP/ctl2.sock" --state-dir "$2" --storage "$STORE" --disk-size-gb 1
  echo "$RUN_OUT" | tail -6 | sed 's/^/    | /'
  if [ "$RUN_RC" -eq 124 ] || [ "$RUN_RC" -eq 137 ]; then
    fail "$1: a second daemon on $STORE was not refused; it was still running after 20 s"
  fi
  assert_ne "$RUN_RC" 0 "$1: a second daemon on the same storage is refused (exit $RUN_RC in ${RUN_MS} ms)"
  [ "$RUN_RC" -lt 128 ] || fail "$1: the second daemon died of signal $((RUN_RC - 128))"
  assert_match "$RUN_OUT" '[Ll]ease|[Ff]enc|[Hh]eld|[Aa]nother|[Oo]wne|[Hh]older|in use|[Ll]ock|[Cc]laim|[Ww]riter' \
    "$1: the refusal says the volume is taken"
}
second_daemon "fresh state dir" "$TMP/state-b"
second_daemon "same state dir" "$TMP/state-a"

qio "$(nbd_uri)" "read -P 0x11 0 $MiB" "write -P 0x22 $MiB $MiB" "flush" "read -P 0x22 $MiB $MiB"
ok "the first daemon still serves, reads and writes after the refused attempts"
stop_portalbd

STATE_DIR=$TMP/state-b
start_portalbd --storage "$STORE"
assert_eq "$(nbdinfo --size "$(nbd_uri)")" $((1024 * MiB)) "after the first stopped, a daemon on a fresh state dir opens the 1 GiB volume"
qio "$(nbd_uri)" "read -P 0x11 0 $MiB" "read -P 0x22 $MiB $MiB"
ok "and sees all the data the first daemon flushed"
stop_portalbd
