#!/usr/bin/env bash
# The daemon's own files are its user's alone whatever umask it is started
# with: under umask 000 the state dir is 0700 and the index, lock, file://
# objects (in the state dir and in a store of their own) and the directories
# holding them have no group or other bits; the control socket is 0600. A
# state dir left open to others is made private at start, with a log line.
source "$(dirname "$0")/lib.sh"
requires nbdinfo qemu-io
requires_portalctl

# open_to_others PATH...: every file, directory and socket under PATH that
# group or others may use, as "mode path" lines.
open_to_others() { find "$@" -perm /077 -printf '%m %p\n' 2>/dev/null || true; }

mode_of() { stat -c %a "$1"; }

# exercise: write and flush, snapshot and checkpoint, so that every kind of
# file exists: index (and WAL), segments, roots, checkpoints, lease.
exercise() {
  qio "$(nbd_uri)" 'write -P 0x5a 0 1M' 'flush'
  check "snapshot create" portalctl snapshot create s1
  check "checkpoint" portalctl checkpoint
  qio "$(nbd_uri)" 'write -P 0x5b 1M 1M' 'flush'
}

# ---- a fresh state dir under umask 000, file:// store inside it (the default)
umask 000
STATE_DIR=$TMP/fresh/state
start_portalbd --disk-size-gb 1
exercise
assert_eq "$(mode_of "$STATE_DIR")" 700 "the state dir made under umask 000 is 0700"
[ -f "$STATE_DIR/index.sqlite" ] || fail "no index.sqlite in $STATE_DIR"
assert_eq "$(mode_of "$STATE_DIR/index.sqlite")" 600 "index.sqlite is 0600"
segments=$(find "$STATE_DIR/data" -type f | wc -l)
[ "$segments" -ge 3 ] || fail "only $segments objects under $STATE_DIR/data; the test wants segments, roots and a checkpoint"
assert_eq "$(open_to_others "$STATE_DIR")" "" "nothing in the state dir ($(find "$STATE_DIR" | wc -l) entries, $segments objects) is open to group or others"
assert_eq "$(mode_of "$CTL_SOCK")" 600 "the control socket is 0600"
assert_eq "$(open_to_others "$(dirname "$STATE_DIR")")" "" "the parent directories it made are private too"
stop_portalbd
assert_eq "$(open_to_others "$STATE_DIR")" "" "still nothing open to others after the final flush"

# ---- a file:// store of its own, outside the state dir
STATE_DIR=$TMP/own-store/state
start_portalbd --disk-size-gb 1 --storage "file://$TMP/own-store/objects/vol1"
exercise
assert_eq "$(mode_of "$TMP/own-store/objects/vol1")" 700 "the store's root made under umask 000 is 0700"
objects=$(find "$TMP/own-store/objects" -type f | wc -l)
[ "$objects" -ge 3 ] || fail "only $objects objects in the store"
assert_eq "$(open_to_others "$TMP/own-store/objects")" "" "none of the store's $objects objects or its directories is open to others"
stop_portalbd

# ---- an existing state dir open to everyone is made private, and says so
STATE_DIR=$TMP/open/state
mkdir -p "$STATE_DIR"
chmod 0777 "$STATE_DIR"
start_portalbd --disk-size-gb 1
assert_eq "$(mode_of "$STATE_DIR")" 700 "a 0777 state dir is made 0700 at start"
assert_match "$(cat "$PORTALBD_LOG")" "state directory was open to other users; made it private path=$STATE_DIR mode_was=0777 mode=0700" \
  "the log says the state dir was made private"
stop_portalbd
umask 022
