#!/usr/bin/env bash
# portalbd-csi's Node service against the real kernel: a qemu (TCG) guest
# (tests/vm/build-csi-initramfs.sh: the VM test's kernel and busybox, plus
# portalbd-csi, portalbd, util-linux mount/blkid and resize2fs) runs two
# driver instances, node-a (--mode all: controller too) and node-b (--mode
# node, another state dir), on file:// storage in the guest. The host drives
# them over slirp-forwarded TCP with csi_call.py, in the order kubelet and the
# sidecars call them:
#
#   1. CreateVolume; NodeStage (daemon + nbd-client + mkfs.ext4 + mount), again
#      (idempotent); NodePublish (bind mount), again; a file written and synced
#      through the pod's path; NodeGetVolumeStats; a read-only publish refuses
#      writes; NodeUnpublish / NodeUnstage, each twice; the daemon is gone.
#   2. CreateSnapshot; CreateVolume from it; NodeStage of the new volume: the
#      file is there. A MULTI_NODE_READER_ONLY volume from the snapshot (no
#      copy) staged on node-a and node-b at once (portalbd --serve-snapshot,
#      read-only mounts): both read the file; a writer mode is refused.
#   3. ControllerExpandVolume of the detached volume; NodeStage grows ext4 to
#      the new size; NodeExpandVolume reports it.
#   4. Failover: the volume staged on node-a; node-b's NodeStage is refused
#      while node-a's daemon lives; kill -9 of that daemon after a synced
#      write; node-b stages it (its daemon takes the lease over from the dead
#      one) and the synced file reads back.
#   5. A raw block volume: NodeStage attaches without a filesystem, NodePublish
#      bind-mounts the device file.
#   6. xfs: NodeStage formats and mounts it; after ControllerExpandVolume the
#      next stage runs xfs_growfs.
#   7. Encryption and TLS (issue 25): node-b restarted with --tls-certificates
#      (test certificates made here); an encrypted volume (encryptionKey
#      secret) staged there: the daemon gets the key as a 0600 file, never in
#      its argv or environment, and serves nbd-client over TLS on its unix
#      socket; staging without the key is refused; NodeUnstage removes the key
#      file; a marker written through the filesystem is in no stored object.
# run_all: alone (a TCG guest on one core is slow enough; and the VM tests share build/vm)
source "$(dirname "$0")/lib.sh"
source "$TOP/tests/vm/vm_lib.sh"
source "$(dirname "$0")/tls_lib.sh"

requires protoc grpc_python_plugin openssl
CSI=${PORTALBD_CSI:-$BUILD/bin/portalbd-csi}
[ -x "$CSI" ] || fail "driver binary $CSI is missing (run make)"
requires_portalbd
"$SYSPYTHON" -c 'import grpc, google.protobuf' 2>/dev/null ||
  skip "$SYSPYTHON lacks grpc or protobuf (python3-grpcio, python3-protobuf: make deps)"
STUBS=$TMP/stubs
mkdir -p "$STUBS"
check "protoc generates the Python stubs" \
  protoc -I"$TOP/csi/proto" --python_out="$STUBS" --grpc_python_out="$STUBS" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$TOP/csi/proto/csi.proto"

rc=0
out=$(bash "$TOP/tests/vm/build-csi-initramfs.sh" "$VM_DIR" "$BUILD/bin" 2>&1) || rc=$?
echo "$out" | sed 's/^/# /'
[ "$rc" -ne 77 ] || skip "cannot build the guest: $(tail -1 <<<"$out")"
[ "$rc" -eq 0 ] || fail "tests/vm/build-csi-initramfs.sh exited $rc"

PORT_A=$(pick_unused_port)
PORT_B=$(pick_unused_port)
VM_INITRD=$VM_DIR/csi-initramfs.cpio.gz
VM_HOSTFWD="hostfwd=tcp:127.0.0.1:$PORT_A-:7001,hostfwd=tcp:127.0.0.1:$PORT_B-:7002"
VM_MEM_MB=${VM_MEM_MB:-1024}
vm_start

# csi PORT SERVICE METHOD JSON: one call; CSI_OUT gets the answer, CSI_RC 0 or 3.
csi() {
  CSI_RC=0
  CSI_OUT=$("$SYSPYTHON" "$TOP/tests/integration/csi_call.py" "$STUBS" "127.0.0.1:$1" "$2" "$3" "${4:-{\}}" 2>&1) ||
    CSI_RC=$?
  echo "+ csi $1 $3 ${4:-} -> $CSI_OUT" >>"$TMP/csi-calls.log"
}
csi_ok() {  # WHAT PORT SERVICE METHOD JSON
  local what=$1; shift
  csi "$@"
  [ "$CSI_RC" -eq 0 ] || { guest 30 "tail -20 /tmp/a.log /tmp/b.log; tail -20 /tmp/a/volumes/*/portalbd.log"; echo "$GUEST_OUT" | sed 's/^/    /'; fail "$what: $CSI_OUT"; }
  ok "$what"
}
field() {  # JSON PYTHON-EXPR (d is the answer)
  "$SYSPYTHON" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
MOUNT_CAP='"volume_capability": {"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}'

guest_check "the daemon's config for a small guest" \
  "printf '[lsm]\nl0_sst_size_bytes = 8388608\nwrite_buffer_bytes = 33554432\n[cache]\nbytes = 16777216\n[gc]\ninterval_s = 0\n[journal]\nenabled = false\n' >/etc/portalbd.toml"
guest_check "start portalbd-csi node-a (controller and node)" \
  "PORTALBD_CONFIG=/etc/portalbd.toml /usr/local/bin/portalbd-csi --endpoint tcp://0.0.0.0:7001 --mode all --node-id node-a --state-dir /tmp/a --storage-url file:///tmp/store --portalbd /usr/local/bin/portalbd >/tmp/a.log 2>&1 &"
guest_check "start portalbd-csi node-b (node only, its own state dir)" \
  "PORTALBD_CONFIG=/etc/portalbd.toml /usr/local/bin/portalbd-csi --endpoint tcp://0.0.0.0:7002 --mode node --node-id node-b --state-dir /tmp/b --portalbd /usr/local/bin/portalbd >/tmp/b.log 2>&1 &"
for i in $(seq 60); do
  csi "$PORT_A" Identity Probe; a=$CSI_RC
  csi "$PORT_B" Identity Probe
  [ "$a" -eq 0 ] && [ "$CSI_RC" -eq 0 ] && break
  sleep 1
done
[ "$CSI_RC" -eq 0 ] || { guest 10 "cat /tmp/a.log /tmp/b.log"; echo "$GUEST_OUT"; fail "the drivers did not answer Probe"; }
ok "both drivers answer Probe through the forwarded ports"
csi_ok "NodeGetInfo of node-b" "$PORT_B" Node NodeGetInfo
assert_eq "$(field "$CSI_OUT" 'd["node_id"]')" node-b "node-b says its node id"

# ---------------------------------------------------------------- 1. stage, publish, write
csi_ok "CreateVolume pvc-vm-1 (256 MiB)" "$PORT_A" Controller CreateVolume \
  '{"name": "pvc-vm-1", "capacity_range": {"required_bytes": 268435456}, "volume_capabilities": [{"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}'
VOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
STAGE=/tmp/k/staging/$VOL
STAGE_REQ="{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE\", $MOUNT_CAP, \"volume_context\": {\"storageUrl\": \"$URL\"}}"
csi_ok "NodeStageVolume: daemon, nbd-client, mkfs.ext4, mount" "$PORT_A" Node NodeStageVolume "$STAGE_REQ"
guest_check "the staging path is an ext4 mount of /dev/nbd*" "grep -q \"^/dev/nbd[0-9]* $STAGE ext4\" /proc/mounts"
csi_ok "NodeStageVolume again (idempotent)" "$PORT_A" Node NodeStageVolume "$STAGE_REQ"
guest 30 "grep -c \" $STAGE \" /proc/mounts"
assert_eq "$GUEST_OUT" 1 "... still one mount"
PUB=/tmp/k/pods/p1/vol
PUB_REQ="{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE\", \"target_path\": \"$PUB\", $MOUNT_CAP}"
csi_ok "NodePublishVolume (bind mount)" "$PORT_A" Node NodePublishVolume "$PUB_REQ"
csi_ok "NodePublishVolume again (idempotent)" "$PORT_A" Node NodePublishVolume "$PUB_REQ"
guest_check "a pod writes a file and syncs" "echo 'csi data' >$PUB/hello && sync"
csi_ok "NodeGetVolumeStats of the pod's path" "$PORT_A" Node NodeGetVolumeStats "{\"volume_id\": \"$VOL\", \"volume_path\": \"$PUB\"}"
total=$(field "$CSI_OUT" '[u for u in d["usage"] if u["unit"] == "BYTES"][0]["total"]')
[ "$total" -gt 200000000 ] && [ "$total" -le 268435456 ] || fail "NodeGetVolumeStats total bytes $total"
ok "... bytes total $total"
RO=/tmp/k/pods/p2/vol
csi_ok "NodePublishVolume read-only" "$PORT_A" Node NodePublishVolume \
  "{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE\", \"target_path\": \"$RO\", \"readonly\": true, $MOUNT_CAP}"
guest_check "the read-only path reads the file and refuses writes" "grep -q 'csi data' $RO/hello && ! touch $RO/x 2>/dev/null"
for p in "$PUB" "$RO"; do
  for n in 1 2; do
    csi_ok "NodeUnpublishVolume $p ($n)" "$PORT_A" Node NodeUnpublishVolume "{\"volume_id\": \"$VOL\", \"target_path\": \"$p\"}"
  done
done
UNSTAGE_REQ="{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE\"}"
csi_ok "NodeUnstageVolume: unmount, nbd-client -d, daemon stopped" "$PORT_A" Node NodeUnstageVolume "$UNSTAGE_REQ"
csi_ok "NodeUnstageVolume again (idempotent)" "$PORT_A" Node NodeUnstageVolume "$UNSTAGE_REQ"
guest_check "nothing left: no mount, no daemon" "! grep -q /tmp/k /proc/mounts && ! pidof portalbd"

# ---------------------------------------------------------------- 2. snapshot, restore
csi_ok "CreateSnapshot of the detached volume" "$PORT_A" Controller CreateSnapshot "{\"name\": \"snap-vm-1\", \"source_volume_id\": \"$VOL\"}"
SNAP=$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')
csi_ok "CreateVolume from the snapshot" "$PORT_A" Controller CreateVolume \
  "{\"name\": \"pvc-vm-2\", \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$SNAP\"}}}"
VOL2=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL2=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
STAGE2=/tmp/k/staging/$VOL2
STAGE2_REQ="{\"volume_id\": \"$VOL2\", \"staging_target_path\": \"$STAGE2\", $MOUNT_CAP, \"volume_context\": {\"storageUrl\": \"$URL2\"}}"
csi_ok "NodeStageVolume of the restored volume" "$PORT_A" Node NodeStageVolume "$STAGE2_REQ"
guest 30 "cat $STAGE2/hello"
assert_eq "$GUEST_OUT" "csi data" "the restored volume holds the file written before the snapshot"
csi_ok "NodeUnstageVolume of the restored volume" "$PORT_A" Node NodeUnstageVolume \
  "{\"volume_id\": \"$VOL2\", \"staging_target_path\": \"$STAGE2\"}"

# ---------------------------------------------------------------- 2b. MULTI_NODE_READER_ONLY on both nodes at once
ROX_CAP='"volume_capability": {"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "MULTI_NODE_READER_ONLY"}}'
csi_ok "CreateVolume MULTI_NODE_READER_ONLY from the snapshot (no copy)" "$PORT_A" Controller CreateVolume \
  "{\"name\": \"pvc-vm-rox\", \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"MULTI_NODE_READER_ONLY\"}}], \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$SNAP\"}}}"
ROX=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
ROX_CTX=$(field "$CSI_OUT" 'json.dumps(d["volume"]["volume_context"])')
guest_check "... nothing stored under its id" "! ls /tmp/store/$ROX 2>/dev/null"
ROX_A=/tmp/k/staging/$ROX
ROX_B=/tmp/k/staging-b/$ROX
for n in a b; do
  port=$PORT_A; stage=$ROX_A
  [ "$n" = b ] && { port=$PORT_B; stage=$ROX_B; }
  csi_ok "NodeStageVolume of the reader volume on node-$n" "$port" Node NodeStageVolume \
    "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$stage\", $ROX_CAP, \"volume_context\": $ROX_CTX}"
done
csi_ok "NodeStageVolume of the reader volume on node-a again (idempotent)" "$PORT_A" Node NodeStageVolume \
  "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$ROX_A\", $ROX_CAP, \"volume_context\": $ROX_CTX}"
guest 30 "cat $ROX_A/hello $ROX_B/hello"
assert_eq "$GUEST_OUT" "csi data
csi data" "both nodes read the snapshot's file at once"
guest_check "both are read-only ext4 mounts" "grep -q \" $ROX_A ext4 ro\" /proc/mounts && grep -q \" $ROX_B ext4 ro\" /proc/mounts"
guest 30 "tr '\\0' ' ' </proc/\$(sed -n 's/.*\"daemon_pid\": \\([0-9]*\\).*/\\1/p' /tmp/b/volumes/$ROX/stage.json)/cmdline"
assert_match "$GUEST_OUT" "--serve-snapshot csi-" "node-b's daemon serves the snapshot (--serve-snapshot, no lease)"
ROX_PUB=/tmp/k/pods/p4/vol
csi_ok "NodePublishVolume of the reader volume on node-b (readonly not asked)" "$PORT_B" Node NodePublishVolume \
  "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$ROX_B\", \"target_path\": \"$ROX_PUB\", $ROX_CAP}"
guest_check "... the pod's path reads the file and refuses writes" "grep -q 'csi data' $ROX_PUB/hello && ! touch $ROX_PUB/x 2>/dev/null"
csi "$PORT_B" Node NodeStageVolume \
  "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$ROX_B\", $MOUNT_CAP, \"volume_context\": $ROX_CTX}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*read-only view" "NodeStageVolume of the reader volume as SINGLE_NODE_WRITER is refused ($CSI_OUT)"
csi_ok "NodeUnpublishVolume of the reader volume" "$PORT_B" Node NodeUnpublishVolume "{\"volume_id\": \"$ROX\", \"target_path\": \"$ROX_PUB\"}"
for n in 1 2; do
  csi_ok "NodeUnstageVolume of the reader volume on node-a ($n)" "$PORT_A" Node NodeUnstageVolume \
    "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$ROX_A\"}"
  csi_ok "NodeUnstageVolume of the reader volume on node-b ($n)" "$PORT_B" Node NodeUnstageVolume \
    "{\"volume_id\": \"$ROX\", \"staging_target_path\": \"$ROX_B\"}"
done
guest_check "no reader mount or daemon left" "! grep -q \"$ROX\" /proc/mounts && ! pidof portalbd"
csi_ok "DeleteVolume of the reader volume" "$PORT_A" Controller DeleteVolume "{\"volume_id\": \"$ROX\"}"

# ---------------------------------------------------------------- 3. expansion
csi_ok "ControllerExpandVolume to 512 MiB (detached)" "$PORT_A" Controller ControllerExpandVolume \
  "{\"volume_id\": \"$VOL2\", \"capacity_range\": {\"required_bytes\": 536870912}}"
assert_eq "$(field "$CSI_OUT" 'd["node_expansion_required"]')" True "... the node must grow the filesystem"
csi_ok "NodeStageVolume grows ext4 to the new size" "$PORT_A" Node NodeStageVolume "$STAGE2_REQ"
guest 30 "df -k $STAGE2 | tail -1 | awk '{print \$2}'"
[ "$GUEST_OUT" -gt 450000 ] || fail "ext4 on the expanded volume has $GUEST_OUT KiB"
ok "... ext4 now holds $GUEST_OUT KiB"
csi_ok "NodeExpandVolume" "$PORT_A" Node NodeExpandVolume "{\"volume_id\": \"$VOL2\", \"volume_path\": \"$STAGE2\"}"
assert_eq "$(field "$CSI_OUT" 'd["capacity_bytes"]')" 536870912 "NodeExpandVolume reports 512 MiB"
guest 30 "cat $STAGE2/hello"
assert_eq "$GUEST_OUT" "csi data" "the file survives the expansion"
csi_ok "NodeUnstageVolume" "$PORT_A" Node NodeUnstageVolume "{\"volume_id\": \"$VOL2\", \"staging_target_path\": \"$STAGE2\"}"

# ---------------------------------------------------------------- 4. failover a -> b
csi_ok "NodeStageVolume of pvc-vm-1 on node-a" "$PORT_A" Node NodeStageVolume "$STAGE_REQ"
guest_check "node-a writes 4 MiB and syncs" \
  "dd if=/dev/urandom of=$STAGE/synced bs=64k count=64 conv=fsync 2>/dev/null && sync && sha256sum $STAGE/synced | cut -d' ' -f1 >/tmp/synced.sha"
STAGE_B=/tmp/k/staging-b/$VOL
STAGE_B_REQ="{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE_B\", $MOUNT_CAP, \"volume_context\": {\"storageUrl\": \"$URL\"}}"
csi "$PORT_B" Node NodeStageVolume "$STAGE_B_REQ"
assert_eq "$CSI_RC" 3 "node-b's NodeStageVolume is refused while node-a's daemon holds the volume"
assert_match "$CSI_OUT" "^FAILED_PRECONDITION" "... with FAILED_PRECONDITION ($CSI_OUT)"
guest_check "kill -9 node-a's daemon" \
  "kill -9 \$(sed -n 's/.*\"daemon_pid\": \\([0-9]*\\).*/\\1/p' /tmp/a/volumes/$VOL/stage.json)"
# kubelet retries a failed NodeStage; node-a's plugin reaps its dead daemon
# within 200 ms, after which the lease's holder is visibly gone.
for i in $(seq 15); do
  csi "$PORT_B" Node NodeStageVolume "$STAGE_B_REQ"
  [ "$CSI_RC" -ne 0 ] || break
  sleep 1
done
[ "$CSI_RC" -eq 0 ] || fail "node-b could not stage the volume after node-a's daemon died: $CSI_OUT"
ok "node-b stages the volume (its daemon takes over from the dead one; attempt $i)"
guest 30 "sha256sum $STAGE_B/synced | cut -d' ' -f1; cat /tmp/synced.sha"
assert_eq "$(sed -n 1p <<<"$GUEST_OUT")" "$(sed -n 2p <<<"$GUEST_OUT")" "the write synced on node-a reads back on node-b"
guest 30 "grep -m1 'taking over' /tmp/b/volumes/$VOL/portalbd.log"
assert_match "$GUEST_OUT" "taking over the volume" "node-b's daemon logged that it took the volume over"
csi_ok "node-b unstages" "$PORT_B" Node NodeUnstageVolume "{\"volume_id\": \"$VOL\", \"staging_target_path\": \"$STAGE_B\"}"
csi_ok "node-a unstages after losing its daemon (device disconnected first)" "$PORT_A" Node NodeUnstageVolume "$UNSTAGE_REQ"
guest_check "node-a's staging path is unmounted" "! grep -q \" $STAGE \" /proc/mounts"

# ---------------------------------------------------------------- 5. raw block
BLOCK_CAP='"volume_capability": {"block": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}'
csi_ok "CreateVolume of a raw block volume (64 MiB)" "$PORT_A" Controller CreateVolume \
  '{"name": "pvc-vm-block", "capacity_range": {"required_bytes": 67108864}, "volume_capabilities": [{"block": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}'
VOL3=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL3=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
csi_ok "NodeStageVolume of a block volume (no filesystem)" "$PORT_A" Node NodeStageVolume \
  "{\"volume_id\": \"$VOL3\", \"staging_target_path\": \"/tmp/k/staging/$VOL3\", $BLOCK_CAP, \"volume_context\": {\"storageUrl\": \"$URL3\"}}"
csi_ok "NodePublishVolume of a block volume (the device file bind-mounted)" "$PORT_A" Node NodePublishVolume \
  "{\"volume_id\": \"$VOL3\", \"staging_target_path\": \"/tmp/k/staging/$VOL3\", \"target_path\": \"/tmp/k/pods/p3/dev\", $BLOCK_CAP}"
guest 30 "blockdev --getsize64 /tmp/k/pods/p3/dev"
assert_eq "$GUEST_OUT" 67108864 "the published block device is 64 MiB"
csi_ok "NodeUnpublishVolume of the block volume" "$PORT_A" Node NodeUnpublishVolume "{\"volume_id\": \"$VOL3\", \"target_path\": \"/tmp/k/pods/p3/dev\"}"
csi_ok "NodeUnstageVolume of the block volume" "$PORT_A" Node NodeUnstageVolume "{\"volume_id\": \"$VOL3\", \"staging_target_path\": \"/tmp/k/staging/$VOL3\"}"
guest_check "no daemon left" "! pidof portalbd"

# ---------------------------------------------------------------- 6. xfs
guest_check "load the xfs module" "insmod /lib/modules/libcrc32c.ko; insmod /lib/modules/xfs.ko && grep -qw xfs /proc/filesystems"
XFS_CAP='"volume_capability": {"mount": {"fs_type": "xfs"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}'
csi_ok "CreateVolume of an xfs volume (320 MiB)" "$PORT_A" Controller CreateVolume \
  '{"name": "pvc-vm-xfs", "capacity_range": {"required_bytes": 335544320}, "volume_capabilities": [{"mount": {"fs_type": "xfs"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}'
VOL4=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL4=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
STAGE4=/tmp/k/staging/$VOL4
STAGE4_REQ="{\"volume_id\": \"$VOL4\", \"staging_target_path\": \"$STAGE4\", $XFS_CAP, \"volume_context\": {\"storageUrl\": \"$URL4\"}}"
csi_ok "NodeStageVolume formats xfs and mounts it" "$PORT_A" Node NodeStageVolume "$STAGE4_REQ"
guest_check "it is an xfs mount; a file written and synced" "grep -q \" $STAGE4 xfs\" /proc/mounts && echo xfs-data >$STAGE4/f && sync"
guest 30 "df -k $STAGE4 | tail -1 | awk '{print \$2}'"
XFS_BEFORE=$GUEST_OUT
csi_ok "NodeUnstageVolume" "$PORT_A" Node NodeUnstageVolume "{\"volume_id\": \"$VOL4\", \"staging_target_path\": \"$STAGE4\"}"
csi_ok "ControllerExpandVolume to 640 MiB" "$PORT_A" Controller ControllerExpandVolume \
  "{\"volume_id\": \"$VOL4\", \"capacity_range\": {\"required_bytes\": 671088640}}"
csi_ok "NodeStageVolume again: xfs_growfs" "$PORT_A" Node NodeStageVolume "$STAGE4_REQ"
guest 30 "df -k $STAGE4 | tail -1 | awk '{print \$2}'; cat $STAGE4/f"
[ "$(sed -n 1p <<<"$GUEST_OUT")" -gt $((XFS_BEFORE + 250000)) ] || fail "xfs did not grow by 300 MiB: $XFS_BEFORE KiB, then $GUEST_OUT"
assert_eq "$(sed -n 2p <<<"$GUEST_OUT")" xfs-data "xfs grew from $XFS_BEFORE to $(sed -n 1p <<<"$GUEST_OUT") KiB and the file is there"
csi_ok "NodeUnstageVolume" "$PORT_A" Node NodeUnstageVolume "{\"volume_id\": \"$VOL4\", \"staging_target_path\": \"$STAGE4\"}"

# ---------------------------------------------------------------- 7. encryption, TLS
PKI=$TMP/pki
make_test_pki "$PKI"
mkdir -p "$TMP/csi-tls"
cp "$PKI/server/"*.pem "$PKI/client/client-"*.pem "$TMP/csi-tls/"
guest_check "the guest's clock is the host's (certificates are valid from now)" "date -s @$(date +%s) >/dev/null"
guest_check "make the TLS directory" "mkdir -p /etc/csi-tls"
for f in ca-cert.pem server-cert.pem server-key.pem client-cert.pem client-key.pem; do
  guest_check "copy $f into the guest" "echo $(base64 -w0 "$TMP/csi-tls/$f") | base64 -d >/etc/csi-tls/$f"
done
guest_check "stop node-b" \
  "for p in \$(pidof portalbd-csi); do grep -q node-b /proc/\$p/cmdline && kill \$p; done; sleep 1"
guest_check "start node-b again with --tls-certificates" \
  "PORTALBD_CONFIG=/etc/portalbd.toml /usr/local/bin/portalbd-csi --endpoint tcp://0.0.0.0:7002 --mode node --node-id node-b --state-dir /tmp/b --portalbd /usr/local/bin/portalbd --tls-certificates /etc/csi-tls --tls-hostname localhost >/tmp/b.log 2>&1 &"
for i in $(seq 30); do csi "$PORT_B" Identity Probe; [ "$CSI_RC" -eq 0 ] && break; sleep 1; done
[ "$CSI_RC" -eq 0 ] || { guest 10 "cat /tmp/b.log"; echo "$GUEST_OUT"; fail "node-b did not answer after its restart with TLS"; }
ok "node-b answers again, with TLS to its daemons"

head -c 32 /dev/urandom >"$TMP/vm.key"
KEY_B64=$(base64 -w0 "$TMP/vm.key")
KEY_SECRET="\"secrets\": {\"encryptionKey\": \"$KEY_B64\"}"
csi_ok "CreateVolume of an encrypted volume (encryptionKey secret)" "$PORT_A" Controller CreateVolume \
  "{\"name\": \"pvc-vm-encrypted\", \"capacity_range\": {\"required_bytes\": 134217728}, \"volume_capabilities\": [{\"mount\": {\"fs_type\": \"ext4\"}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], $KEY_SECRET}"
VOL5=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL5=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
STAGE5=/tmp/k/staging-b/$VOL5
STAGE5_BASE="\"volume_id\": \"$VOL5\", \"staging_target_path\": \"$STAGE5\", $MOUNT_CAP, \"volume_context\": {\"storageUrl\": \"$URL5\"}"
csi "$PORT_B" Node NodeStageVolume "{$STAGE5_BASE}"
assert_eq "$CSI_RC" 3 "NodeStageVolume of the encrypted volume without its key fails"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*$VOL5.*encrypt" "... INVALID_ARGUMENT naming the volume and its encryption ($CSI_OUT)"
guest_check "... no key file is left behind" "! ls /tmp/b/volumes/$VOL5/encryption.* 2>/dev/null"
csi_ok "NodeStageVolume with the key: daemon with a key file, nbd-client over TLS, mkfs, mount" \
  "$PORT_B" Node NodeStageVolume "{$STAGE5_BASE, $KEY_SECRET}"
guest 30 "stat -c %a /tmp/b/volumes/$VOL5/encryption.key"
assert_eq "$GUEST_OUT" 600 "the daemon's key file is mode 0600"
guest_check "the key file holds the 32 key bytes" "echo $KEY_B64 | base64 -d | cmp - /tmp/b/volumes/$VOL5/encryption.key"
PID_OF_DAEMON="\$(sed -n 's/.*\"daemon_pid\": \\([0-9]*\\).*/\\1/p' /tmp/b/volumes/$VOL5/stage.json)"
guest 30 "tr '\\0' ' ' </proc/$PID_OF_DAEMON/cmdline"
DAEMON_ARGV=$GUEST_OUT
log "the daemon's argv: $DAEMON_ARGV"
assert_match "$DAEMON_ARGV" "--encryption-key-file /tmp/b/volumes/$VOL5/encryption.key" "the daemon is started with --encryption-key-file"
assert_match "$DAEMON_ARGV" "--tls require --tls-certificates /etc/csi-tls --tls-verify-peer" "... and --tls require --tls-verify-peer"
assert_no_match "$DAEMON_ARGV" "$KEY_B64" "... its argv does not hold the key"
guest 30 "tr '\\0' '\\n' </proc/$PID_OF_DAEMON/environ | grep -c '$KEY_B64'"
assert_eq "$GUEST_OUT" 0 "... nor does its environment"
guest 30 "grep -c 'NBD TLS established' /tmp/b/volumes/$VOL5/portalbd.log"
[ "${GUEST_OUT:-0}" -ge 1 ] 2>/dev/null ||
  { guest 30 "tail -20 /tmp/b/volumes/$VOL5/portalbd.log /tmp/b.log"; echo "$GUEST_OUT"; fail "nbd-client did not connect over TLS"; }
ok "nbd-client attached over TLS on the unix socket (the daemon logged the TLS session)"
MARKER=csi-vm-encryption-marker-5d1c
guest_check "write a marker file through the encrypted volume and sync" \
  "for i in \$(seq 256); do echo $MARKER; done >$STAGE5/marker && sync"
csi_ok "NodeUnstageVolume of the encrypted volume" "$PORT_B" Node NodeUnstageVolume \
  "{\"volume_id\": \"$VOL5\", \"staging_target_path\": \"$STAGE5\"}"
guest_check "the key file is removed with the daemon stopped" "! ls /tmp/b/volumes/$VOL5/encryption.* 2>/dev/null"
guest 30 "grep -rl $MARKER /tmp/store | head -3; echo end"
assert_eq "$GUEST_OUT" "end" "the marker appears in no stored object"
csi_ok "NodeStageVolume again with the key" "$PORT_B" Node NodeStageVolume "{$STAGE5_BASE, $KEY_SECRET}"
guest 30 "grep -c $MARKER $STAGE5/marker"
assert_eq "$GUEST_OUT" 256 "the marker file reads back after a new stage"
csi_ok "NodeUnstageVolume" "$PORT_B" Node NodeUnstageVolume "{\"volume_id\": \"$VOL5\", \"staging_target_path\": \"$STAGE5\"}"
csi "$PORT_A" Controller DeleteVolume "{\"volume_id\": \"$VOL5\"}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*$VOL5.*encrypted" "DeleteVolume without the key is refused ($CSI_OUT)"
csi_ok "DeleteVolume with the key" "$PORT_A" Controller DeleteVolume "{\"volume_id\": \"$VOL5\", $KEY_SECRET}"

vm_stop
