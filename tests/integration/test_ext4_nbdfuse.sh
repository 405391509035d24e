#!/usr/bin/env bash
# A real filesystem on the export: nbdfuse exposes it as a file, losetup makes
# it a block device, mkfs.ext4 + mount + files with checksums. After a clean
# unmount and a daemon restart the files are intact and e2fsck is clean. Then,
# with the filesystem mounted, more files, `sync`, and kill -9 of the daemon:
# after restart the journal replays and every synced file is intact.
source "$(dirname "$0")/lib.sh"
requires_root
requires nbdfuse fusermount3 losetup mkfs.ext4 e2fsck mount umount sha256sum
[ -c /dev/fuse ] || skip "/dev/fuse is not available"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"

GiB=1073741824
FUSE=$TMP/fuse
MNT=$TMP/mnt
mkdir -p "$FUSE" "$MNT"

# attach: nbdfuse + loop device; sets LOOP_DEV.
attach() {
  nbdfuse_start "$FUSE/nbd" "$(nbd_uri)"
  [ "$(stat -c %s "$FUSE/nbd")" = "$GiB" ] || fail "nbdfuse file $FUSE/nbd is not 1 GiB"
  loop_attach "$FUSE/nbd"
}

# detach: loop device and nbdfuse.
detach() {
  loop_detach "$LOOP_DEV"
  nbdfuse_stop "$FUSE"
}

# write_files DIR COUNT-OF-SMALL-FILES: a few MiB-sized random files, some
# unaligned, and a tree of small ones.
write_files() {
  local dir=$1 i
  mkdir -p "$dir/tree"
  head -c $((5 * 1024 * 1024)) /dev/urandom >"$dir/five-mib.bin"
  head -c $((17 * 1024 * 1024 + 123)) /dev/urandom >"$dir/seventeen-mib-odd.bin"
  head -c 4097 /dev/urandom >"$dir/page-plus-one.bin"
  echo "portalbd ext4 test $(date)" >"$dir/hello.txt"
  for i in $(seq 1 "$2"); do
    head -c $(( (RANDOM % 16 + 1) * 509 )) /dev/urandom >"$dir/tree/f$i"
  done
}

checksums() {  # DIR: sha256sum lines of every file below DIR, sorted
  (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum)
}

start_portalbd --disk-size-gb 1
attach
ok "nbdfuse serves the export as a 1 GiB file, attached as $LOOP_DEV"
check "mkfs.ext4 on $LOOP_DEV" mkfs.ext4 -q -F "$LOOP_DEV"
mount_track "$LOOP_DEV" "$MNT"
ok "mounted ext4 on $MNT"

write_files "$MNT/round1" 300
sync
checksums "$MNT" >"$TMP/sums1"
ok "wrote $(wc -l <"$TMP/sums1") files ($(du -sh "$MNT" | cut -f1)) and synced"

umount_track "$MNT"
detach
ok "unmounted, loop detached, nbdfuse stopped"
stop_portalbd
start_portalbd --disk-size-gb 1
attach
check "e2fsck -fn is clean after the restart" e2fsck -fn "$LOOP_DEV"
mount_track "$LOOP_DEV" "$MNT"
(cd "$MNT" && sha256sum --quiet -c "$TMP/sums1") || fail "checksums differ after restart"
ok "all $(wc -l <"$TMP/sums1") checksums equal after the daemon restart"

# ---- crash after sync, filesystem still mounted
write_files "$MNT/round2" 100
rm -f "$MNT/round1/five-mib.bin"
sync
checksums "$MNT" >"$TMP/sums2"
ok "wrote and removed more files, synced ($(wc -l <"$TMP/sums2") files)"
kill9_portalbd
# The device is gone under the mounted filesystem: unmount as well as it can.
umount "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot unmount $MNT after the crash"
_forget _mounts "$MNT"
losetup -d "$LOOP_DEV" || fail "losetup -d $LOOP_DEV after the crash failed"
_forget _loops "$LOOP_DEV"
fusermount3 -u "$FUSE" 2>/dev/null || fusermount3 -uz "$FUSE" || fail "cannot unmount nbdfuse after the crash"
_forget _fuse_mounts "$FUSE"
for p in "${_fuse_pids[@]}"; do wait "$p" 2>/dev/null || true; done
_fuse_pids=()
ok "after kill -9 of portalbd: unmounted, loop detached, nbdfuse gone"

start_portalbd --disk-size-gb 1
attach
mount_track "$LOOP_DEV" "$MNT"
ok "remounted after the crash (journal replay)"
(cd "$MNT" && sha256sum --quiet -c "$TMP/sums2") || fail "synced files differ after kill -9 and restart"
[ ! -e "$MNT/round1/five-mib.bin" ] || fail "a file removed before sync is back after the crash"
ok "all $(wc -l <"$TMP/sums2") synced files intact after kill -9, the removed file stays removed"
umount_track "$MNT"
check "e2fsck -fn is clean after the crash recovery" e2fsck -fn "$LOOP_DEV"
detach
stop_portalbd
