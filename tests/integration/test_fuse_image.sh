#!/usr/bin/env bash
# FUSE view, image content: a snapshot's .img has the device's size and the
# snapshot's mtime, reads back byte-for-byte what nbdcopy reads from the same
# export, keeps holes for `cp --sparse=always` (SEEK_DATA/SEEK_HOLE from block
# status), refuses writes, and has a README.
source "$(dirname "$0")/lib.sh"
requires_root
requires nbdcopy fusermount3 cp du
requires_python_nbd
[ -c /dev/fuse ] || skip "/dev/fuse is missing"

start_portalbd --storage memory:// --disk-size-gb 1
MNT=$TMP/view
mkdir -p "$MNT"

# 12 MiB of random data in three places of a 1 GiB device; the rest is holes.
head -c $((4 << 20)) /dev/urandom >"$TMP/a"
head -c $((4 << 20)) /dev/urandom >"$TMP/b"
head -c $((4 << 20)) /dev/urandom >"$TMP/c"
nbdsh -u "$(nbd_uri)" -c "
for path, off in (('$TMP/a', 0), ('$TMP/b', 300 << 20), ('$TMP/c', 900 << 20)):
    h.pwrite(open(path, 'rb').read(), off)
h.flush()
"
portalctl snapshot create s1 >/dev/null
t_snap=$(date +%s)

check "portalctl mount (background)" "$PORTALCTL" --socket "$CTL_SOCK" mount "$MNT" --nbd-unix "$NBD_SOCK"
cleanup_fn fusermount3 -uz "$MNT"
assert_match "$(findmnt -n -o FSTYPE "$MNT")" '^fuse\.portalbd$' "the view is mounted as fuse.portalbd"

IMG=$MNT/snapshots/s1.img
assert_eq "$(ls "$MNT/snapshots")" "s1.img" "snapshots/ lists s1.img"
assert_eq "$(stat -c %s "$IMG")" 1073741824 "image size is the device size"
mtime=$(stat -c %Y "$IMG")
[ $((mtime - t_snap)) -le 2 ] && [ $((t_snap - mtime)) -le 5 ] || fail "mtime $mtime is not the snapshot time $t_snap"
ok "image mtime is the snapshot's creation time"
assert_match "$(cat "$MNT/README")" '^reachable: +yes' "README reports the daemon reachable"

# Change the live volume after the snapshot: the image must not follow.
nbdsh -u "$(nbd_uri)" -c "h.pwrite(b'x' * 65536, 0); h.flush()"

fuse_sum=$(sha256 "$IMG")
nbd_sum=$(nbdcopy "nbd+unix:///portalbd@s1?socket=$NBD_SOCK" - | sha256sum | cut -d' ' -f1)
assert_eq "$fuse_sum" "$nbd_sum" "whole-image sha256 through FUSE equals nbdcopy of portalbd@s1"
assert_eq "$(head -c $((4 << 20)) "$IMG" | sha256sum | cut -d' ' -f1)" "$(sha256 "$TMP/a")" \
  "the image shows snapshot-time data, not the later live write"

seeks=$("$SYSPYTHON" - "$IMG" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
def seek(off, whence):
    try:
        return str(os.lseek(fd, off, whence))
    except OSError as e:
        return "errno%d" % e.errno
M = 1 << 20
print(seek(0, os.SEEK_DATA), seek(0, os.SEEK_HOLE), seek(5 * M, os.SEEK_DATA),
      seek(300 * M, os.SEEK_HOLE), seek(905 * M, os.SEEK_DATA))
PY
)
assert_eq "$seeks" "0 4194304 314572800 318767104 errno6" "SEEK_DATA/SEEK_HOLE follow the written ranges (ENXIO past the last data)"

t0=$(now_ms)
check "cp --sparse=always of the 1 GiB image" cp --sparse=always "$IMG" "$TMP/copy.img"
log "cp took $(( $(now_ms) - t0 )) ms"
assert_files_equal "$TMP/copy.img" "$IMG" "the sparse copy equals the image"
used_kib=$(du -k "$TMP/copy.img" | cut -f1)
[ "$used_kib" -le $(( 16 * 1024 )) ] || fail "sparse copy allocates $used_kib KiB for 12 MiB of data"
ok "sparse copy allocates $used_kib KiB for 12 MiB of data"

check_fails "opening a snapshot image for writing fails" "$SYSPYTHON" -c "open('$IMG', 'r+b')"
check_fails "creating files in the view fails" touch "$MNT/snapshots/new.img"

check "portalctl umount" "$PORTALCTL" umount "$MNT"
check_fails "the view is gone after umount" findmnt "$MNT"
check_fails "umount of a directory without a view fails" "$PORTALCTL" umount "$MNT"
stop_portalbd
