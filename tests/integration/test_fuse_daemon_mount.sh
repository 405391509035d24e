#!/usr/bin/env bash
# [fuse] mountpoint: the daemon mounts the snapshot view at start and
# unmounts it at stop; a snapshot taken while it runs shows up in it.
source "$(dirname "$0")/lib.sh"
requires_root
requires fusermount3 nbdcopy cksum
[ -c /dev/fuse ] || skip "/dev/fuse is missing"

MNT=$TMP/view
mkdir -p "$MNT"
cat >"$TMP/portalbd.toml" <<TOML
[fuse]
mountpoint = "$MNT"
TOML
cleanup_fn umount -l "$MNT"
start_portalbd --storage memory:// -c "$TMP/portalbd.toml"
check "the daemon mounted the view" grep -q " $MNT " /proc/self/mountinfo
head -c 4M /dev/urandom >"$TMP/data"
nbdcopy --flush "$TMP/data" "$(nbd_uri)"
portalctl snapshot create first >/dev/null
for _ in $(seq 1 30); do [ -e "$MNT/snapshots/first.img" ] && break; sleep 0.2; done
check "the new snapshot appears as an image" test -e "$MNT/snapshots/first.img"
assert_eq "$(head -c 4M "$MNT/snapshots/first.img" | cksum)" "$(cksum <"$TMP/data")" "the image holds the snapshot's bytes"
stop_portalbd
check_fails "the daemon unmounted the view at stop" grep -q " $MNT " /proc/self/mountinfo
