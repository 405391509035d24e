#!/usr/bin/env bash
# The real kernel NBD client: a qemu (TCG) guest with Debian's kernel attaches
# the daemon's export with nbd-client over slirp (host loopback = 10.0.2.2)
# and runs the seed's flow:
#
#   1. attach, mkfs.ext4, mount, write "important data", sync; the host takes
#      snapshot before-disaster; the guest deletes the file and unmounts
#      (nbd-client stays connected); the host restores before-disaster; the
#      guest mounts again and reads "important data"; fstrim; e2fsck -fn clean;
#      nbd-client -d. The daemon's counters show the kernel's FLUSH and TRIM.
#   2. kill -9 the daemon while the guest writes files with fsync+sync points,
#      restart it, attach again (new attach on /dev/nbd1): every file synced
#      before the kill reads back with its checksum, and e2fsck is clean.
#
# The guest is built by tests/vm/build-initramfs.sh into build/vm (cached) and
# driven over its serial console by tests/vm/vm_lib.sh.
# run_all: alone (a TCG guest on one core is slow enough; and the VM tests share build/vm)
source "$(dirname "$0")/lib.sh"
source "$TOP/tests/vm/vm_lib.sh"

requires nbdinfo
requires_portalctl
vm_build

DEV=/dev/nbd0
start_portalbd --storage "file://$TMP/bucket" --disk-size-gb 1
vm_start

# counter NAME: .counters.NAME of `portalctl --json status` (the NBD server's).
counter() {
  portalctl --json status | "$SYSPYTHON" -c 'import json, sys; print(json.load(sys.stdin)["counters"][sys.argv[1]])' "$1"
}

# increased WHAT NAME BEFORE: check that counter NAME went up from BEFORE.
increased() {
  local now; now=$(counter "$2")
  [[ $now =~ ^[0-9]+$ && $now -gt $3 ]] || fail "$1: counters.$2 went from $3 to $now"
  ok "$1 (counters.$2 $3 -> $now)"
}

# ---------------------------------------------------------------- 1. seed flow
guest_check "nbd-client attaches $DEV over TCP" "nbd-client -N $EXPORT_NAME 10.0.2.2 $PORT $DEV"
log "nbd-client: $(tr "\n" " " <<<"$GUEST_OUT")"
assert_match "$GUEST_OUT" 'size = 1024MB' "nbd-client prints the negotiated size (1024MB)"
guest_check "mkfs.ext4 on $DEV" "mkfs.ext4 -q -F $DEV"
guest_check "mount ext4" "mount -t ext4 $DEV /mnt"
flushes=$(counter flushes)
guest_check "write 'important data' and sync" "echo 'important data' >/mnt/precious && sync"
increased "the kernel sent FLUSH for sync" flushes "$flushes"

check "snapshot create before-disaster" portalctl snapshot create before-disaster

guest_check "delete the file and unmount (nbd-client stays connected)" \
  "rm /mnt/precious && sync && umount /mnt && test -e /sys/block/nbd0/pid"
guest_check "the deletion reached the device" \
  "mount -t ext4 $DEV /mnt && ! test -e /mnt/precious && umount /mnt"

check "snapshot restore before-disaster" portalctl snapshot restore before-disaster

# The guest's block cache still holds the pre-restore device.
guest_check "drop the guest's cached blocks" "blockdev --flushbufs $DEV && echo 3 >/proc/sys/vm/drop_caches"
guest_check "mount again after restore" "mount -t ext4 $DEV /mnt"
guest 60 "cat /mnt/precious"
assert_eq "$GUEST_OUT" "important data" "the restored file reads 'important data'"
trims=$(counter trims)
guest_check "fstrim" "fstrim -v /mnt"
assert_match "$GUEST_OUT" 'trimmed' "fstrim reports trimmed bytes"
increased "the kernel sent TRIM for fstrim" trims "$trims"
guest_check "unmount" "umount /mnt"
guest_check "e2fsck -fn is clean" "e2fsck -fn $DEV"
guest_check "nbd-client -d disconnects" "nbd-client -d $DEV"

# ---------------------------------------------------------------- 2. kill -9
guest_check "attach again for the crash round" "nbd-client -N $EXPORT_NAME 10.0.2.2 $PORT $DEV"
guest_check "mount" "mount -t ext4 $DEV /mnt"
# Each file's line is appended only after its fsync and a sync returned.
guest_check "start the writer" "(i=0; while i=\$((i+1)); dd if=/dev/urandom of=/mnt/f\$i bs=64k count=4 conv=fsync 2>/dev/null && sync && sha256sum /mnt/f\$i >>/tmp/synced; do :; done; echo stopped >/tmp/writer.done) >/dev/null 2>&1 &"

synced=0
deadline=$(( $(date +%s) + 120 ))
while [ "$synced" -lt 5 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the guest synced only $synced files in 120s"
  sleep 1
  guest 30 "cat /tmp/synced 2>/dev/null | wc -l"
  synced=$GUEST_OUT
done
kill9_portalbd
ok "kill -9 the daemon while the guest writes ($synced files synced so far)"

# Without a timeout (-t) the kernel waits forever for replies to requests in
# flight on a dead connection; detaching fails them with EIO.
guest_check "detach the dead device" "nbd-client -d $DEV"
guest 60 "for i in \$(seq 1 40); do test -e /tmp/writer.done && break; sleep 1; done; cat /tmp/writer.done"
assert_eq "$GUEST_OUT" "stopped" "the guest's writer stops on I/O errors"
guest 60 "wc -l </tmp/synced"
synced=$GUEST_OUT
guest 60 "umount /mnt || umount -l /mnt"
log "old mount torn down (exit $GUEST_RC)"

start_portalbd --storage "file://$TMP/bucket" --disk-size-gb 1
DEV=/dev/nbd1
guest_check "new attach on $DEV after the restart" "nbd-client -N $EXPORT_NAME 10.0.2.2 $PORT $DEV"
guest_check "mount (replays the journal)" "mount -t ext4 $DEV /mnt"
guest_check "all $synced files synced before the kill are intact" "sha256sum -c /tmp/synced"
guest_check "unmount" "umount /mnt"
guest_check "e2fsck -fn is clean after the crash" "e2fsck -fn $DEV"
guest_check "nbd-client -d" "nbd-client -d $DEV"

vm_stop
stop_portalbd
