#!/usr/bin/env bash
# The daemon's own files are its user's alone whatever umask it is started
# with: under umask 000 the state dir is 0700 and the index, lock, file://
# objects (in the state dir and in a store of their own) and the directories
# holding them have no group or other bits; the control socket is 0600. A
# state dir left open to others is made private at start, with a log line.
# With --socket-group GROUP the socket is GROUP's too (0660): a member of the
# group runs portalctl, anyone else is still refused; an unknown group fails
# the start, naming it.
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

# ---- --socket-group: one group may use portalctl, nobody else
SG=$TMP/sg
mkdir -p "$SG"
chmod 0755 "$TMP" "$SG"  # the group reaches the socket through these
cp "$PORTALCTL" "$SG/portalctl"  # where user nobody may run it, wherever the build is
chmod 0755 "$SG/portalctl"
CTL_SOCK=$SG/ctl.sock
STATE_DIR=$SG/state
start_portalbd --disk-size-gb 1 --socket-group nogroup
assert_eq "$(stat -c '%a %G' "$CTL_SOCK")" "660 nogroup" "with --socket-group nogroup the socket is 0660 and nogroup's"
# as UID GID CMD...: CMD as that user and group, with no supplementary groups.
as() { local uid=$1 gid=$2; shift 2; setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"; }
out=$(as 65534 65534 "$SG/portalctl" --socket "$CTL_SOCK" status 2>&1) ||
  fail "user nobody in group nogroup cannot run portalctl status: $out"
assert_match "$out" "portalbd" "a member of the socket's group runs portalctl status"
rc=0
out=$(as 65534 4242 "$SG/portalctl" --socket "$CTL_SOCK" status 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "a user outside the socket's group ran portalctl status: $out"
assert_match "$out" "[Pp]ermission denied" "a user outside the group is refused (exit $rc)"
stop_portalbd
rc=0
out=$(timeout 30 "$PORTALBD" --storage memory:// --state-dir "$SG/state2" --socket "$SG/ctl2.sock" --nbd-address "" --nbd-unix "$SG/nbd2.sock" \
  --socket-group no-such-group-portalbd 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "the daemon started with an unknown --socket-group"
assert_match "$out" "unknown group 'no-such-group-portalbd'" "an unknown group fails the start, naming it (exit $rc)"
[ ! -e "$SG/ctl2.sock" ] || fail "the failed start left its socket behind"
