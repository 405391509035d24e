#!/usr/bin/env bash
# The kernel's NBD client over TLS (issue 25): a qemu guest (tests/vm, as
# test_vm_kernel.sh) attaches the export with `nbd-client -enable-tls` (X.509, a
# client certificate, the daemon at --tls require --tls-verify-peer), makes
# an ext4 filesystem, writes a file and syncs; the host then reads the file's
# bytes back over nbds://. A plaintext nbd-client is refused.
# run_all: alone (a TCG guest on one core is slow enough; and the VM tests share build/vm)
source "$(dirname "$0")/lib.sh"
source "$TOP/tests/vm/vm_lib.sh"
source "$(dirname "$0")/tls_lib.sh"

requires openssl nbdinfo nbdcopy
requires_portalctl
vm_build

DEV=/dev/nbd0
PKI=$TMP/pki
make_test_pki "$PKI"
# The guest reaches the host as 10.0.2.2: the certificate names localhost,
# and nbd-client is told that name (-tlshostname).
start_tls_portalbd "nbds://127.0.0.1:$PORT/$EXPORT_NAME?tls-certificates=$PKI/client" \
  --storage memory:// --disk-size-gb 1 --tls require --tls-certificates "$PKI/server" --tls-verify-peer
vm_start

# put_file HOST_FILE GUEST_FILE: copy a small file into the guest (one line of base64).
put_file() {
  guest_check "copy $(basename "$1") into the guest" "echo $(base64 -w0 "$1") | base64 -d >$2"
}
guest_check "the guest's clock is the host's (certificates are valid from now)" "date -s @$(date +%s) >/dev/null"
put_file "$PKI/client/ca-cert.pem" /tmp/ca-cert.pem
put_file "$PKI/client/client-cert.pem" /tmp/client-cert.pem
put_file "$PKI/client/client-key.pem" /tmp/client-key.pem

guest 60 "nbd-client -N $EXPORT_NAME 10.0.2.2 $PORT $DEV"
[ "$GUEST_RC" != 0 ] || fail "a plaintext nbd-client attached under --tls require"
ok "a plaintext nbd-client is refused under --tls require: $(tr '\n' ' ' <<<"$GUEST_OUT" | cut -c1-160)"
assert_match "$(cat "$PORTALBD_LOG")" 'reply=0x80000005' "the daemon answered it NBD_REP_ERR_TLS_REQD"

tls_before=$(grep -c 'NBD TLS established' "$PORTALBD_LOG" || true)
guest_check "nbd-client -enable-tls attaches $DEV over TLS" \
  "nbd-client -N $EXPORT_NAME 10.0.2.2 $PORT $DEV -enable-tls -cacertfile /tmp/ca-cert.pem -certfile /tmp/client-cert.pem -keyfile /tmp/client-key.pem -tlshostname localhost"
log "nbd-client: $(tr "\n" " " <<<"$GUEST_OUT")"
tls_after=$(grep -c 'NBD TLS established.*x509:CN=tls-test-client' "$PORTALBD_LOG" || true)
[ "$tls_after" -gt "$tls_before" ] || fail "no new TLS session for the kernel client ($tls_before -> $tls_after)"
ok "the daemon logged the kernel client's TLS session and certificate"
guest_check "mkfs.ext4 on $DEV" "mkfs.ext4 -q -F $DEV"
guest_check "mount ext4" "mount -t ext4 $DEV /mnt"
guest_check "write a file and sync" "echo 'sent over TLS' >/mnt/note && sync"
guest_check "unmount" "umount /mnt"
guest_check "e2fsck -fn is clean" "e2fsck -fn $DEV"
guest_check "nbd-client -d disconnects" "nbd-client -d $DEV"
vm_stop

check "the host reads the device over nbds://" nbdcopy "nbds://127.0.0.1:$PORT/$EXPORT_NAME?tls-certificates=$PKI/client" \
  "$TMP/disk.img"
if command -v debugfs >/dev/null; then
  assert_eq "$(debugfs -R 'cat /note' "$TMP/disk.img" 2>/dev/null)" "sent over TLS" \
    "the guest's file, written through TLS, is on the device"
else
  assert_match "$(grep -a -c 'sent over TLS' "$TMP/disk.img")" '^[1-9]' "the guest's file is on the device"
fi
stop_portalbd
