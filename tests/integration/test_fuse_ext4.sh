#!/usr/bin/env bash
# FUSE view with ext4: make ext4 on the live volume through the view's
# read-write live.img (--live) and a loop device, snapshot it, change the live
# files, then `losetup -r` the snapshot's .img and `mount -o ro` it: the files
# are the snapshot-time ones while the live volume shows the new ones.
source "$(dirname "$0")/lib.sh"
requires_root
requires fusermount3 losetup mkfs.ext4 e2fsck mount findmnt
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
requires_run losetup -f

start_portalbd --storage memory:// --disk-size-gb 1
MNT=$TMP/view LIVE=$TMP/live SNAP=$TMP/snap
mkdir -p "$MNT" "$LIVE" "$SNAP"
check "portalctl mount --live" "$PORTALCTL" --socket "$CTL_SOCK" mount "$MNT" --nbd-unix "$NBD_SOCK" --live
cleanup_fn fusermount3 -uz "$MNT"
assert_eq "$(stat -c %s "$MNT/live.img")" 1073741824 "live.img has the device size"

loop_attach "$MNT/live.img"
LIVE_LOOP=$LOOP_DEV
check "mkfs.ext4 on the loop device over live.img" mkfs.ext4 -q -F "$LIVE_LOOP"
mount_track "$LIVE_LOOP" "$LIVE"

# Snapshot-time contents: a few files of different sizes.
mkdir -p "$LIVE/dir"
head -c 5000000 /dev/urandom >"$LIVE/dir/big.bin"
echo "version 1" >"$LIVE/notes.txt"
for i in 1 2 3; do head -c $((i * 70000)) /dev/urandom >"$LIVE/file$i"; done
(cd "$LIVE" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) >"$TMP/v1.sha"
umount_track "$LIVE"  # a clean filesystem in the snapshot
check "fsync of live.img via the loop device" blockdev --flushbufs "$LIVE_LOOP"
portalctl snapshot create v1 >/dev/null

# Change the live volume after the snapshot.
mount_track "$LIVE_LOOP" "$LIVE"
echo "version 2" >"$LIVE/notes.txt"
head -c 3000000 /dev/urandom >"$LIVE/dir/big.bin"
rm "$LIVE/file2"
echo new >"$LIVE/added.txt"
(cd "$LIVE" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) >"$TMP/v2.sha"
sync -f "$LIVE"

for i in $(seq 1 50); do [ -e "$MNT/snapshots/v1.img" ] && break; sleep 0.1; done
SNAP_LOOP=$(losetup -r -f --show "$MNT/snapshots/v1.img") || fail "losetup -r of the snapshot image"
cleanup_fn losetup -d "$SNAP_LOOP"
ok "losetup -r $MNT/snapshots/v1.img -> $SNAP_LOOP"
check "e2fsck -fn of the snapshot is clean" e2fsck -fn "$SNAP_LOOP"
mount_track -o ro "$SNAP_LOOP" "$SNAP"
check "snapshot files equal the snapshot-time contents" bash -c "cd '$SNAP' && sha256sum --quiet -c '$TMP/v1.sha'"
check_fails "a file added after the snapshot is not in it" test -e "$SNAP/added.txt"
assert_eq "$(cat "$SNAP/notes.txt")" "version 1" "snapshot shows version 1"
check "live files are the new contents" bash -c "cd '$LIVE' && sha256sum --quiet -c '$TMP/v2.sha'"
assert_eq "$(cat "$LIVE/notes.txt")" "version 2" "live volume shows version 2"

umount_track "$SNAP"
umount_track "$LIVE"
check "e2fsck -fn of the live volume is clean" e2fsck -fn "$LIVE_LOOP"
loop_detach "$LIVE_LOOP"
losetup -d "$SNAP_LOOP" || fail "losetup -d $SNAP_LOOP"
# Loop devices let go of their backing file asynchronously after detach.
for i in $(seq 1 50); do "$PORTALCTL" umount "$MNT" 2>/dev/null && break; sleep 0.1; done
check_fails "portalctl umount (after detaching the loop devices)" findmnt "$MNT"
stop_portalbd
