#!/usr/bin/env bash
# Crash matrix for root changes (issue 18): kill -9 during snapshot create,
# restore, delete, a GC pass that merges layers, and a checkpoint, each while
# a 40 MiB unflushed buffer uploads. After every crash:
#   1. the daemon restarts on the old state dir and on a fresh one (storage
#      alone), and both show the same volume: the same snapshots, the same
#      bytes in the live volume and in every snapshot;
#   2. a write + FLUSH answered after the restart survives a clean stop and a
#      rebuild from storage alone (the old bug: the restarted daemon's index
#      knew a layer storage's roots record did not, and the rebuild dropped
#      every segment written into it: flushed data read as zeros).
# The kill lands 5-50 ms into the command (DELAYS_MS), where the upload and
# the root change race.
#
# Without the local journal (--journal off): claim 1 compares the old state
# dir with storage alone, which are the same volume only when every answered
# write is in storage. With the journal (file://'s default) the old state dir
# also holds the answered writes not yet uploaded; test_journal.sh checks
# that mode.
# run_all: alone (it kills its daemons at timed moments and wants both cores for their writers)
source "$(dirname "$0")/lib.sh"
TEST_MODE_ARGS=(--journal off)
requires_python_nbd
requires_portalctl

MiB=$((1024 * 1024))
OPS=${OPS:-"create restore delete gc checkpoint"}
DELAYS_MS=${DELAYS_MS:-"5 20 50"}
VIEW=$TOP/tests/integration/volume_view.py

# pwrite_py OFFSET LENGTH BYTE FLUSH: writes LENGTH bytes of BYTE at OFFSET in
# 1 MiB requests, then FLUSH (1) or a disconnect without one (0).
pwrite_py() {
  "$SYSPYTHON" - "$NBD_SOCK" "$EXPORT_NAME" "$@" <<'EOF'
import sys, nbd
sock, export, off, length, byte, flush = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
h = nbd.NBD(); h.set_export_name(export); h.connect_unix(sock)
buf = bytes([byte]) * min(length, 1 << 20)
pos = off
while pos < off + length:
    n = min(len(buf), off + length - pos)
    h.pwrite(buf[:n], pos)
    pos += n
if flush:
    h.flush()
h.shutdown()
EOF
}

snapshot_names() {
  portalctl --json snapshot list | "$SYSPYTHON" -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin)["snapshots"]))'
}

# view: the snapshot names and a digest of every export, one text.
view() {
  local names
  names=$(snapshot_names) || fail "snapshot list failed"
  echo "snapshots: $names"
  # shellcheck disable=SC2086
  "$SYSPYTHON" "$VIEW" "$NBD_SOCK" "$EXPORT_NAME" $names || fail "reading the volume's exports failed"
}

# start STATE: the daemon on $STORE with state dir STATE.
start() {
  STATE_DIR=$1
  start_portalbd --disk-size-gb 1 --storage "$STORE" --gc-interval-s 0 --gc-grace-ms 0
}

# The volume before the command: flushed data, snapshot 'base', newer data.
prepare() {
  pwrite_py 0 $((4 * MiB)) 1 1
  out=$(portalctl snapshot create base 2>&1) || fail "snapshot create base: $out"
  pwrite_py $((2 * MiB)) $((4 * MiB)) 2 1
  if [ "$1" = gc ]; then
    # Deleting 'base' leaves a rootless layer with one child: GC merges it.
    out=$(portalctl snapshot delete base 2>&1) || fail "snapshot delete base: $out"
  fi
}

command_for() {
  case "$1" in
    create) echo "snapshot create during" ;;
    restore) echo "snapshot restore base" ;;
    delete) echo "snapshot delete base" ;;
    gc) echo "gc --wait" ;;
    checkpoint) echo "checkpoint" ;;
  esac
}

cases=0
for op in $OPS; do
  for delay in $DELAYS_MS; do
    tag=$op-$delay
    STORE=file://$TMP/bucket-$tag
    start "$TMP/state-$tag"
    prepare "$op"
    # 40 MiB answered but not flushed: the command's own flush uploads it.
    pwrite_py $((200 * MiB)) $((40 * MiB)) 3 0
    # shellcheck disable=SC2046
    "$PORTALCTL" --socket "$CTL_SOCK" $(command_for "$op") >"$TMP/cmd-$tag.out" 2>&1 &
    cmd=$!
    sleep "$(printf '0.%03d' "$delay")"
    kill9_portalbd
    wait "$cmd" 2>/dev/null || true
    log "$op: killed ${delay} ms in; the command said: $(head -c 200 "$TMP/cmd-$tag.out" | tr '\n' ' ')"

    # The old state dir, then (on a copy of storage as the crash left it) a
    # fresh one: the same volume.
    cp -a "$TMP/bucket-$tag" "$TMP/bucket-$tag-copy"
    start "$TMP/state-$tag"
    old=$(view)
    stop_portalbd
    STORE_SAVED=$STORE
    STORE=file://$TMP/bucket-$tag-copy
    start "$TMP/state-$tag-fresh"
    fresh=$(view)
    stop_portalbd
    STORE=$STORE_SAVED
    assert_eq "$fresh" "$old" "$op, kill at ${delay} ms: a rebuild from storage alone shows the volume the old state dir shows"

    # Carry on from the old state dir: a FLUSH answered now survives a clean
    # stop and a rebuild from storage alone.
    start "$TMP/state-$tag"
    pwrite_py $((100 * MiB)) $((64 * 1024)) 7 1
    after=$(view)
    stop_portalbd
    start "$TMP/state-$tag-rebuilt"
    rebuilt=$(view)
    got=$("$SYSPYTHON" -c "
import nbd; h = nbd.NBD(); h.set_export_name('$EXPORT_NAME'); h.connect_unix('$NBD_SOCK')
print(h.pread(65536, $((100 * MiB))) == bytes([7]) * 65536)")
    stop_portalbd
    assert_eq "$rebuilt" "$after" "$op, kill at ${delay} ms: after a flushed write and a clean stop, storage alone rebuilds the same volume"
    assert_eq "$got" "True" "$op, kill at ${delay} ms: the 64 KiB flushed after the restart read back from storage alone"
    rm -rf "$TMP/bucket-$tag" "$TMP/bucket-$tag-copy" "$TMP"/state-"$tag"*
    cases=$((cases + 1))
  done
done
ok "$cases crash points, every one consistent"
