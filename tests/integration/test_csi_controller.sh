#!/usr/bin/env bash
# portalbd-csi against a conformance client written from the CSI spec
# (tests/integration/csi_conformance.py): Identity, the Controller's
# provisioner / snapshotter / resizer sequences with every idempotency and
# error-code rule that applies, volumes attached through a running daemon
# (snapshots over its control socket, delete and expand refused), clones
# and restores checked block by block over NBD, and the Node service's
# argument checks. On file:// storage (test_csi_controller_s3.sh runs the
# same on s3rver, CSI_STORE=s3); the Python stubs are generated from
# the vendored csi/proto/csi.proto with protoc at test time.
source "$(dirname "$0")/lib.sh"
requires protoc grpc_python_plugin
requires_portalbd
CSI=${PORTALBD_CSI:-$BUILD/bin/portalbd-csi}
[ -x "$CSI" ] || fail "driver binary $CSI is missing (run make)"
"$SYSPYTHON" -c 'import grpc, google.protobuf' 2>/dev/null ||
  skip "$SYSPYTHON lacks grpc or protobuf (python3-grpcio, python3-protobuf: make deps)"
"$SYSPYTHON" -c 'import nbd' 2>/dev/null ||
  log "python3-libnbd missing: clone contents are not checked (RPC checks still run)"

STUBS=$TMP/stubs
mkdir -p "$STUBS"
check "protoc generates the Python stubs from csi/proto/csi.proto" \
  protoc -I"$TOP/csi/proto" --python_out="$STUBS" --grpc_python_out="$STUBS" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$TOP/csi/proto/csi.proto"

CSI_STATE=$TMP/csi-state
CSI_SOCK=$TMP/csi.sock
CSI_LOG=$TMP/portalbd-csi.log
if [ "${CSI_STORE:-file}" = s3 ]; then
  source "$TOP/tests/integration/s3_lib.sh"
  "$SYSPYTHON" -c 'import botocore' 2>/dev/null || skip "$SYSPYTHON lacks botocore (python3-botocore)"
  start_s3rver
  export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
  STORE_URL=s3://$S3_BUCKET/csi
else
  mkdir -p "$TMP/store"
  STORE_URL=file://$TMP/store
fi
store_count() { "$SYSPYTHON" "$TOP/tests/integration/csi_store.py" count "$1"; }

# Bad command lines are usage errors, said plainly.
out=$("$CSI" --endpoint "unix://$CSI_SOCK" --mode controller --state-dir "$CSI_STATE" 2>&1) && rc=0 || rc=$?
assert_eq "$rc" 2 "the controller without --storage-url exits 2"
assert_match "$out" "storage-url" "... naming --storage-url"
out=$("$CSI" --endpoint "unix://$CSI_SOCK" --mode controller --state-dir "$CSI_STATE" --storage-url memory:// 2>&1) && rc=0 || rc=$?
assert_eq "$rc" 2 "--storage-url memory:// exits 2"
assert_match "$out" "memory://" "... saying why memory:// cannot hold volumes"
out=$("$CSI" --endpoint "http://127.0.0.1:1" --mode node --node-id n 2>&1) && rc=0 || rc=$?
assert_eq "$rc" 2 "an endpoint that is neither unix:// nor tcp:// exits 2"

CSI_ENDPOINT="unix://$CSI_SOCK" "$CSI" --mode all --node-id csi-test-node --state-dir "$CSI_STATE" \
  --storage-url "$STORE_URL" --portalbd "$PORTALBD" --mailbox-timeout-ms 5000 >"$CSI_LOG" 2>&1 &
CSI_PID=$!
cleanup_fn kill "$CSI_PID"
for _ in $(seq 100); do [ -S "$CSI_SOCK" ] && break; sleep 0.1; done
[ -S "$CSI_SOCK" ] || { cat "$CSI_LOG"; fail "portalbd-csi did not listen on $CSI_SOCK (CSI_ENDPOINT)"; }
ok "portalbd-csi listens on the CSI_ENDPOINT socket"

if ! "$SYSPYTHON" "$TOP/tests/integration/csi_conformance.py" "$STUBS" "$CSI_SOCK" "$CSI_STATE" "$PORTALBD"; then
  echo "---- last 30 lines of $CSI_LOG ----"; tail -30 "$CSI_LOG"
  fail "the CSI conformance client found failures (above)"
fi
ok "the CSI conformance client passes ($STORE_URL)"
assert_match "$(grep 'CreateVolume name=unopenable' "$CSI_LOG")" "cannot-write-here" \
  "the driver's log names the storage it could not use"

# ---- a volume staged on another node: snapshots through the storage mailbox
# node-b is a second driver (--mode node, its own state dir); the volume's
# daemon runs where node-b's NodeStage would have started it (the kernel
# part of NodeStage is test_csi_node_vm.sh's), with the stage.json it writes.
csi() {  # SERVICE METHOD JSON: CSI_OUT, CSI_RC (0 or 3)
  CSI_RC=0
  CSI_OUT=$("$SYSPYTHON" "$TOP/tests/integration/csi_call.py" "$STUBS" "unix://$CSI_SOCK" "$1" "$2" "$3" 2>&1) || CSI_RC=$?
}
field() { "$SYSPYTHON" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
NODE_B=$TMP/node-b
"$CSI" --endpoint "unix://$TMP/node-b.sock" --mode node --node-id node-b --state-dir "$NODE_B" \
  --mailbox-poll-ms 200 >"$TMP/node-b.log" 2>&1 &
NODE_B_PID=$!
cleanup_fn kill "$NODE_B_PID"
csi Controller CreateVolume '{"name": "pvc-elsewhere", "capacity_range": {"required_bytes": 67108864}, "volume_capabilities": [{"mount": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}'
assert_eq "$CSI_RC" 0 "CreateVolume pvc-elsewhere ($CSI_OUT)"
VOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
URL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
VDIR=$NODE_B/volumes/$VOL
mkdir -p "$VDIR/state"
"$PORTALBD" --storage "$URL" --state-dir "$VDIR/state" --socket "$VDIR/control.sock" --nbd-address "" \
  --nbd-unix "$VDIR/nbd.sock" --export-name "$VOL" >"$VDIR/portalbd.log" 2>&1 &
DAEMON_PID=$!
cleanup_fn kill -9 "$DAEMON_PID"
for _ in $(seq 100); do [ -S "$VDIR/control.sock" ] && break; sleep 0.1; done
[ -S "$VDIR/control.sock" ] || { cat "$VDIR/portalbd.log"; fail "the daemon of $VOL did not start"; }
printf '{"daemon_pid": %d, "device": "", "staging_path": "/staged/elsewhere", "fs_type": "ext4", "storage_url": "%s"}\n' \
  "$DAEMON_PID" "$URL" >"$VDIR/stage.json"
ok "volume $VOL is staged on node-b (its daemon runs under node-b's state dir)"
HAVE_NBD=0
if "$SYSPYTHON" -c 'import nbd' 2>/dev/null; then
  HAVE_NBD=1
  "$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
h.pwrite(b"written on node-b " * 227 + b"!!!!!!!!!!", 8 << 20); h.flush(); h.shutdown()' "$VDIR/nbd.sock" "$VOL"
  ok "a block written through node-b's daemon"
fi

csi Controller CreateSnapshot "{\"name\": \"snap-elsewhere\", \"source_volume_id\": \"$VOL\"}"
assert_eq "$CSI_RC" 0 "CreateSnapshot of a volume staged on another node ($CSI_OUT)"
SNAP=$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')
assert_match "$(grep "created snapshot name=snap-elsewhere" "$CSI_LOG")" "via=mailbox" "... it went through the storage mailbox"
out=$("$PORTALCTL" --socket "$VDIR/control.sock" snapshot list)
assert_match "$out" "${SNAP#*@}" "... and node-b's daemon took it (portalctl snapshot list)"
csi Controller CreateSnapshot "{\"name\": \"snap-elsewhere\", \"source_volume_id\": \"$VOL\"}"
assert_eq "$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')" "$SNAP" "CreateSnapshot again answers the same snapshot"
left=$(( $(store_count "$STORE_URL/_csi/requests/") + $(store_count "$STORE_URL/_csi/replies/") ))
assert_eq "$left" 0 "no request or reply is left in the mailbox"
csi Controller CreateVolume "{\"name\": \"pvc-from-elsewhere\", \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$SNAP\"}}}"
assert_eq "$CSI_RC" 0 "CreateVolume from the snapshot of a volume staged on another node: node-b copies it ($CSI_OUT)"
RVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
RURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
assert_match "$(grep "ran snapshot.copy" "$TMP/node-b.log")" "ok=true" "... through the mailbox (node-b's log)"
if [ "$HAVE_NBD" = 1 ]; then
  RDIR=$TMP/check-restored
  mkdir -p "$RDIR"
  "$PORTALBD" --storage "$RURL" --state-dir "$RDIR" --socket "$RDIR/ctl.sock" --nbd-address "" \
    --nbd-unix "$RDIR/nbd.sock" --export-name "$RVOL" >"$RDIR/portalbd.log" 2>&1 &
  RPID=$!
  cleanup_fn kill -9 "$RPID"
  for _ in $(seq 100); do [ -S "$RDIR/nbd.sock" ] && break; sleep 0.1; done
  got=$("$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
print(h.pread(4096, 8 << 20) == b"written on node-b " * 227 + b"!!!!!!!!!!", h.pread(4096, 0) == bytes(4096)); h.shutdown()' "$RDIR/nbd.sock" "$RVOL")
  assert_eq "$got" "True True" "the copy holds the block written on node-b, and zeroes elsewhere"
  kill -TERM "$RPID"; wait "$RPID" || true
fi
csi Controller DeleteVolume "{\"volume_id\": \"$RVOL\"}"
assert_eq "$CSI_RC" 0 "DeleteVolume of the copy"
csi Controller DeleteVolume "{\"volume_id\": \"$VOL\"}"
assert_eq "$CSI_RC" 3 "DeleteVolume of a volume staged on another node is refused"
assert_match "$CSI_OUT" "^FAILED_PRECONDITION" "... with FAILED_PRECONDITION ($CSI_OUT)"
csi Controller DeleteSnapshot "{\"snapshot_id\": \"$SNAP\"}"
assert_eq "$CSI_RC" 0 "DeleteSnapshot through the mailbox ($CSI_OUT)"
out=$("$PORTALCTL" --socket "$VDIR/control.sock" snapshot list)
assert_no_match "$out" "${SNAP#*@}" "... node-b's daemon deleted it"

# An encrypted volume staged on node-b: the snapshot goes through the
# mailbox with the call's key checked first, and node-b copies a restore
# into the new volume with the key file its NodeStage wrote (the one the
# daemon was started with).
head -c 32 /dev/urandom >"$TMP/mailbox.key"
MB_SECRET="\"secrets\": {\"encryptionKey\": \"$(base64 -w0 "$TMP/mailbox.key")\"}"
csi Controller CreateVolume "{\"name\": \"pvc-elsewhere-encrypted\", \"capacity_range\": {\"required_bytes\": 67108864}, \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], $MB_SECRET}"
assert_eq "$CSI_RC" 0 "CreateVolume pvc-elsewhere-encrypted ($CSI_OUT)"
EMVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
EMURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
EMDIR=$NODE_B/volumes/$EMVOL
mkdir -p "$EMDIR/state"
install -m 600 "$TMP/mailbox.key" "$EMDIR/encryption.key"
"$PORTALBD" --storage "$EMURL" --state-dir "$EMDIR/state" --socket "$EMDIR/control.sock" --nbd-address "" \
  --nbd-unix "$EMDIR/nbd.sock" --export-name "$EMVOL" --encryption-key-file "$EMDIR/encryption.key" \
  >"$EMDIR/portalbd.log" 2>&1 &
EMPID=$!
cleanup_fn kill -9 "$EMPID"
for _ in $(seq 100); do [ -S "$EMDIR/control.sock" ] && break; sleep 0.1; done
[ -S "$EMDIR/control.sock" ] || { cat "$EMDIR/portalbd.log"; fail "the daemon of $EMVOL did not start"; }
printf '{"daemon_pid": %d, "device": "", "staging_path": "/staged/encrypted", "fs_type": "ext4", "storage_url": "%s"}\n' \
  "$EMPID" "$EMURL" >"$EMDIR/stage.json"
if [ "$HAVE_NBD" = 1 ]; then
  "$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
h.pwrite(b"sealed on node-b " * 240 + b"!!!!!!!!!!!!!!!!", 4 << 20); h.flush(); h.shutdown()' "$EMDIR/nbd.sock" "$EMVOL"
fi
csi Controller CreateSnapshot "{\"name\": \"snap-elsewhere-encrypted\", \"source_volume_id\": \"$EMVOL\"}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*$EMVOL.*is encrypted" \
  "CreateSnapshot of an encrypted volume staged elsewhere without the key is refused ($CSI_OUT)"
csi Controller CreateSnapshot "{\"name\": \"snap-elsewhere-encrypted\", \"source_volume_id\": \"$EMVOL\", $MB_SECRET}"
assert_eq "$CSI_RC" 0 "CreateSnapshot of it with the key, through the mailbox ($CSI_OUT)"
EMSNAP=$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')
csi Controller CreateVolume "{\"name\": \"pvc-from-elsewhere-encrypted\", \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$EMSNAP\"}}, $MB_SECRET}"
assert_eq "$CSI_RC" 0 "a restore of it: node-b copies into the new encrypted volume with its key file ($CSI_OUT)"
EMRVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
assert_eq "$(grep "ran snapshot.copy" "$TMP/node-b.log" | grep -c "ok=true")" 2 "... node-b ran that copy (its log)"
EMRURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
if [ "$HAVE_NBD" = 1 ]; then
  EMRDIR=$TMP/check-restored-encrypted
  mkdir -p "$EMRDIR"
  "$PORTALBD" --storage "$EMRURL" --state-dir "$EMRDIR" --socket "$EMRDIR/ctl.sock" --nbd-address "" \
    --nbd-unix "$EMRDIR/nbd.sock" --export-name "$EMRVOL" --encryption-key-file "$TMP/mailbox.key" \
    >"$EMRDIR/portalbd.log" 2>&1 &
  EMRPID=$!
  cleanup_fn kill -9 "$EMRPID"
  for _ in $(seq 100); do [ -S "$EMRDIR/nbd.sock" ] && break; sleep 0.1; done
  got=$("$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
print(h.pread(4096, 4 << 20) == b"sealed on node-b " * 240 + b"!!!!!!!!!!!!!!!!"); h.shutdown()' "$EMRDIR/nbd.sock" "$EMRVOL")
  assert_eq "$got" "True" "the encrypted restore, opened with the key, holds the block written on node-b"
  kill -TERM "$EMRPID"; wait "$EMRPID" || true
fi
csi Controller DeleteVolume "{\"volume_id\": \"$EMRVOL\", $MB_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteVolume of the encrypted restore ($CSI_OUT)"
csi Controller DeleteSnapshot "{\"snapshot_id\": \"$EMSNAP\", $MB_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteSnapshot of it through the mailbox ($CSI_OUT)"
kill -TERM "$EMPID"; wait "$EMPID" || true
rm -f "$EMDIR/stage.json"
csi Controller DeleteVolume "{\"volume_id\": \"$EMVOL\", $MB_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteVolume of it once detached ($CSI_OUT)"

kill -TERM "$NODE_B_PID"; wait "$NODE_B_PID" || true
# While this call waits (5 s) for a node that is gone, calls on the same
# volume are ABORTED at once and calls on others go ahead.
(csi Controller CreateSnapshot "{\"name\": \"snap-nobody\", \"source_volume_id\": \"$VOL\"}"
 printf '%s\n%s\n' "$CSI_RC" "$CSI_OUT" >"$TMP/slow-call.out") &
SLOW_PID=$!
sleep 1.5
csi Controller CreateSnapshot "{\"name\": \"snap-meanwhile\", \"source_volume_id\": \"$VOL\"}"
assert_match "$CSI_OUT" "^ABORTED: an operation on vol:$VOL is in progress" \
  "a second CreateSnapshot of that volume meanwhile is ABORTED at once ($CSI_OUT)"
t0=$(now_ms)
csi Controller CreateVolume '{"name": "pvc-meanwhile", "volume_capabilities": [{"mount": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]}'
assert_eq "$CSI_RC" 0 "CreateVolume of another volume meanwhile ($CSI_OUT)"
MVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
csi Controller ListVolumes '{}'
dt=$(( $(now_ms) - t0 ))
assert_eq "$CSI_RC" 0 "ListVolumes meanwhile"
kill -0 "$SLOW_PID" 2>/dev/null || fail "the slow CreateSnapshot ended before the calls made meanwhile"
ok "... neither waited for the slow call on the other volume (${dt} ms for both)"
wait "$SLOW_PID"
CSI_RC=$(sed -n 1p "$TMP/slow-call.out"); CSI_OUT=$(sed -n '2,$p' "$TMP/slow-call.out")
csi Controller DeleteVolume "{\"volume_id\": \"$MVOL\"}"
assert_eq "$CSI_RC" 0 "DeleteVolume of that other volume"
CSI_RC=$(sed -n 1p "$TMP/slow-call.out"); CSI_OUT=$(sed -n '2,$p' "$TMP/slow-call.out")
assert_eq "$CSI_RC" 3 "CreateSnapshot fails when no node plugin answers for the volume"
assert_match "$CSI_OUT" "^FAILED_PRECONDITION.*no portalbd-csi node plugin" "... FAILED_PRECONDITION saying so ($CSI_OUT)"
left=$(store_count "$STORE_URL/_csi/requests/")
assert_eq "$left" 0 "... and its request is withdrawn"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true
csi Controller CreateSnapshot "{\"name\": \"snap-nobody\", \"source_volume_id\": \"$VOL\"}"
assert_eq "$CSI_RC" 0 "the same CreateSnapshot succeeds once the volume is detached ($CSI_OUT)"
csi Controller DeleteSnapshot "{\"snapshot_id\": \"$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')\"}"
assert_eq "$CSI_RC" 0 "DeleteSnapshot"
csi Controller DeleteVolume "{\"volume_id\": \"$VOL\"}"
assert_eq "$CSI_RC" 0 "DeleteVolume once detached"

if [ "${CSI_STORE:-file}" = s3 ]; then
  # ---- credentials from CSI secrets: a controller whose environment has
  # none keeps its registry on file://, and a StorageClass's storageUrl on
  # s3:// works only with the secrets the sidecars pass.
  SEC_SOCK=$TMP/csi-secrets.sock
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL -u AWS_SHARED_CREDENTIALS_FILE HOME="$TMP" \
    "$CSI" --endpoint "unix://$SEC_SOCK" --mode controller --state-dir "$TMP/csi-secrets-state" \
    --storage-url "file://$TMP/registry-secrets" >"$TMP/csi-secrets.log" 2>&1 &
  SEC_PID=$!
  cleanup_fn kill "$SEC_PID"
  for _ in $(seq 100); do [ -S "$SEC_SOCK" ] && break; sleep 0.1; done
  sec_call() { CSI_RC=0; CSI_OUT=$("$SYSPYTHON" "$TOP/tests/integration/csi_call.py" "$STUBS" "unix://$SEC_SOCK" "$@" 2>&1) || CSI_RC=$?; }
  SECRETS="\"secrets\": {\"AWS_ACCESS_KEY_ID\": \"S3RVER\", \"AWS_SECRET_ACCESS_KEY\": \"S3RVER\", \"AWS_ENDPOINT_URL\": \"$S3_ENDPOINT\", \"unrelated\": \"x\"}"
  CREATE="\"name\": \"pvc-secret\", \"volume_capabilities\": [{\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}], \"parameters\": {\"storageUrl\": \"s3://$S3_BUCKET/with-secrets\"}"
  sec_call Controller CreateVolume "{$CREATE}"
  assert_eq "$CSI_RC" 3 "CreateVolume on s3:// without credentials fails"
  assert_match "$CSI_OUT" "credentials" "... saying there are no credentials ($CSI_OUT)"
  sec_call Controller CreateVolume "{$CREATE, $SECRETS}"
  assert_eq "$CSI_RC" 0 "CreateVolume with the credentials in CSI secrets ($CSI_OUT)"
  SVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
  "$SYSPYTHON" "$TOP/tests/integration/csi_store.py" exists "s3://$S3_BUCKET/with-secrets/$SVOL/volume.json" ||
    fail "no volume.json in s3://$S3_BUCKET/with-secrets/$SVOL"
  ok "... the volume is in s3://$S3_BUCKET/with-secrets/$SVOL"
  sec_call Controller CreateSnapshot "{\"name\": \"snap-secret\", \"source_volume_id\": \"$SVOL\", $SECRETS}"
  assert_eq "$CSI_RC" 0 "CreateSnapshot with secrets ($CSI_OUT)"
  SSNAP=$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')
  sec_call Controller ControllerExpandVolume "{\"volume_id\": \"$SVOL\", \"capacity_range\": {\"required_bytes\": 2147483648}, $SECRETS}"
  assert_eq "$CSI_RC" 0 "ControllerExpandVolume with secrets ($CSI_OUT)"
  sec_call Controller DeleteSnapshot "{\"snapshot_id\": \"$SSNAP\", $SECRETS}"
  assert_eq "$CSI_RC" 0 "DeleteSnapshot with secrets ($CSI_OUT)"
  sec_call Controller DeleteVolume "{\"volume_id\": \"$SVOL\", $SECRETS}"
  assert_eq "$CSI_RC" 0 "DeleteVolume with secrets ($CSI_OUT)"
  assert_eq "$(store_count "s3://$S3_BUCKET/with-secrets/$SVOL/")" 0 "... its objects are gone"
fi

# ---- encrypted volumes (issue 25): the key comes in the call's secrets,
# encryptionKey (base64 of 32 bytes) or encryptionPassphrase. A call on an
# encrypted volume without it, or with a wrong one, is refused naming the
# volume, and writes nothing to the volume's storage.
head -c 32 /dev/urandom >"$TMP/csi.key"
head -c 32 /dev/urandom >"$TMP/other.key"
KEY_SECRET="\"secrets\": {\"encryptionKey\": \"$(base64 -w0 "$TMP/csi.key")\"}"
WRONG_SECRET="\"secrets\": {\"encryptionKey\": \"$(base64 -w0 "$TMP/other.key")\"}"
CAPS='"volume_capabilities": [{"mount": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}]'
csi Controller CreateVolume "{\"name\": \"pvc-bad-key\", $CAPS, \"secrets\": {\"encryptionKey\": \"not base64!\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: the encryptionKey secret is not base64" "an encryptionKey that is not base64 is refused ($CSI_OUT)"
csi Controller CreateVolume "{\"name\": \"pvc-bad-key\", $CAPS, \"secrets\": {\"encryptionKey\": \"$(head -c 31 /dev/urandom | base64 -w0)\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: the encryptionKey secret decodes to 31 bytes" "a 31-byte encryptionKey is refused ($CSI_OUT)"
csi Controller CreateVolume "{\"name\": \"pvc-bad-key\", $CAPS, \"secrets\": {\"encryptionKey\": \"$(base64 -w0 "$TMP/csi.key")\", \"encryptionPassphrase\": \"x\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*both encryptionKey and encryptionPassphrase" "both secrets at once are refused ($CSI_OUT)"
csi Node NodeStageVolume "{\"volume_id\": \"pvc-bad-key-00000000\", \"staging_target_path\": \"$TMP/staging-bad-key\", \"volume_capability\": {\"mount\": {}, \"access_mode\": {\"mode\": \"SINGLE_NODE_WRITER\"}}, \"volume_context\": {\"storageUrl\": \"$STORE_URL/pvc-bad-key-00000000\"}, \"secrets\": {\"encryptionKey\": \"$(head -c 16 /dev/urandom | base64 -w0)\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: volume pvc-bad-key-00000000: the encryptionKey secret decodes to 16 bytes" \
  "NodeStageVolume with a 16-byte encryptionKey is refused before any daemon starts ($CSI_OUT)"
[ ! -e "$CSI_STATE/volumes/pvc-bad-key-00000000/encryption.key" ] || fail "a key file was written for a refused key"

csi Controller CreateVolume "{\"name\": \"pvc-encrypted\", \"capacity_range\": {\"required_bytes\": 67108864}, $CAPS, $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "CreateVolume with an encryptionKey secret ($CSI_OUT)"
EVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
EURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
grep -q '"key_check"' <<<"$("$SYSPYTHON" "$TOP/tests/integration/csi_store.py" cat "$EURL/volume.json")" ||
  fail "volume.json of $EVOL records no encryption"
ok "... its volume.json records the encryption and the key check value"
MARKER=csi-encryption-marker-7f3a
if [ "$HAVE_NBD" = 1 ]; then
  EDIR=$TMP/encrypted-daemon
  mkdir -p "$EDIR"
  "$PORTALBD" --storage "$EURL" --state-dir "$EDIR" --socket "$EDIR/ctl.sock" --nbd-address "" \
    --nbd-unix "$EDIR/nbd.sock" --export-name "$EVOL" --encryption-key-file "$TMP/csi.key" >"$EDIR/portalbd.log" 2>&1 &
  EPID=$!
  cleanup_fn kill -9 "$EPID"
  for _ in $(seq 100); do [ -S "$EDIR/nbd.sock" ] && break; sleep 0.1; done
  [ -S "$EDIR/nbd.sock" ] || { cat "$EDIR/portalbd.log"; fail "portalbd with the CSI volume's key did not start"; }
  "$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
h.pwrite((sys.argv[3] * 512).encode()[:4096], 1 << 20); h.flush(); h.shutdown()' "$EDIR/nbd.sock" "$EVOL" "$MARKER"
  kill -TERM "$EPID"; wait "$EPID" || true
  ok "the daemon opens the volume the driver made with the key from the secret, and a marker is written"
else
  log "python3-libnbd missing: no marker is written into the encrypted volume (the in-clear check below is vacuous)"
fi

objects_before=$(store_count "$EURL/")
csi Controller CreateSnapshot "{\"name\": \"snap-encrypted\", \"source_volume_id\": \"$EVOL\"}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*volume $EVOL.* is encrypted; pass the encryptionKey secret" \
  "CreateSnapshot of an encrypted volume without its key is refused, naming the volume ($CSI_OUT)"
csi Controller CreateSnapshot "{\"name\": \"snap-encrypted\", \"source_volume_id\": \"$EVOL\", $WRONG_SECRET}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*volume $EVOL.*wrong encryption key" \
  "CreateSnapshot with a wrong key is refused ($CSI_OUT)"
csi Controller CreateSnapshot "{\"name\": \"snap-encrypted\", \"source_volume_id\": \"$EVOL\", \"secrets\": {\"encryptionPassphrase\": \"a passphrase\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*encrypted with a key file; pass the encryptionKey secret instead" \
  "CreateSnapshot with a passphrase for a keyed volume is refused ($CSI_OUT)"
assert_eq "$(store_count "$EURL/")" "$objects_before" "... and none of these wrote to the volume's storage"
assert_no_match "$(cat "$CSI_LOG")" "$(base64 -w0 "$TMP/csi.key" | cut -c1-20)" "the driver's log holds no key"
csi Controller CreateSnapshot "{\"name\": \"snap-encrypted\", \"source_volume_id\": \"$EVOL\", $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "CreateSnapshot with the key ($CSI_OUT)"
ESNAP=$(field "$CSI_OUT" 'd["snapshot"]["snapshot_id"]')
csi Controller CreateVolume "{\"name\": \"pvc-encrypted-restore\", $CAPS, \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$ESNAP\"}}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*is encrypted" "a restore from an encrypted snapshot without the key is refused ($CSI_OUT)"
csi Controller CreateVolume "{\"name\": \"pvc-encrypted-restore\", $CAPS, \"volume_content_source\": {\"snapshot\": {\"snapshot_id\": \"$ESNAP\"}}, $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "a restore from the encrypted snapshot with the key ($CSI_OUT)"
ERVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
ERURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
if [ "$HAVE_NBD" = 1 ]; then
  ERDIR=$TMP/encrypted-restored
  mkdir -p "$ERDIR"
  "$PORTALBD" --storage "$ERURL" --state-dir "$ERDIR" --socket "$ERDIR/ctl.sock" --nbd-address "" \
    --nbd-unix "$ERDIR/nbd.sock" --export-name "$ERVOL" --encryption-key-file "$TMP/csi.key" >"$ERDIR/portalbd.log" 2>&1 &
  ERPID=$!
  cleanup_fn kill -9 "$ERPID"
  for _ in $(seq 100); do [ -S "$ERDIR/nbd.sock" ] && break; sleep 0.1; done
  got=$("$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
print(h.pread(4096, 1 << 20) == (sys.argv[3] * 512).encode()[:4096]); h.shutdown()' "$ERDIR/nbd.sock" "$ERVOL" "$MARKER")
  assert_eq "$got" "True" "the restored volume, opened with the key, holds the marker"
  kill -TERM "$ERPID"; wait "$ERPID" || true
fi
# Where the stored objects are, as files: the file:// store, or s3rver's.
STORED=$TMP/store
[ "${CSI_STORE:-file}" = file ] || STORED=$TMP/s3rver
if [ "$HAVE_NBD" = 1 ]; then
  grep -rqa "$MARKER" "$STORED" && fail "the marker is in the clear in $STORED: $(grep -rla "$MARKER" "$STORED" | head -3)"
  ok "the marker appears in no stored object of the encrypted volume or its restore ($STORED)"
fi

csi Controller ControllerExpandVolume "{\"volume_id\": \"$EVOL\", \"capacity_range\": {\"required_bytes\": 134217728}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*volume $EVOL.*is encrypted" "ControllerExpandVolume without the key is refused ($CSI_OUT)"
csi Controller ControllerExpandVolume "{\"volume_id\": \"$EVOL\", \"capacity_range\": {\"required_bytes\": 134217728}, $KEY_SECRET}"
assert_eq "$(field "$CSI_OUT" 'd["capacity_bytes"]')" 134217728 "ControllerExpandVolume with the key grows it to 128 MiB ($CSI_OUT)"
csi Controller DeleteSnapshot "{\"snapshot_id\": \"$ESNAP\"}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*is encrypted" "DeleteSnapshot without the key is refused ($CSI_OUT)"
csi Controller DeleteSnapshot "{\"snapshot_id\": \"$ESNAP\", $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteSnapshot with the key ($CSI_OUT)"
objects_before=$(store_count "$EURL/")
csi Controller DeleteVolume "{\"volume_id\": \"$EVOL\"}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*volume $EVOL.*is encrypted" "DeleteVolume without the key is refused ($CSI_OUT)"
csi Controller DeleteVolume "{\"volume_id\": \"$EVOL\", $WRONG_SECRET}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*wrong encryption key" "DeleteVolume with a wrong key is refused ($CSI_OUT)"
assert_eq "$(store_count "$EURL/")" "$objects_before" "... its objects are all still there"
csi Controller DeleteVolume "{\"volume_id\": \"$EVOL\", $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteVolume with the key ($CSI_OUT)"
assert_eq "$(store_count "$EURL/")" 0 "... its objects are gone"
csi Controller DeleteVolume "{\"volume_id\": \"$ERVOL\", $KEY_SECRET}"
assert_eq "$CSI_RC" 0 "DeleteVolume of the restore with the key ($CSI_OUT)"

# A passphrase: scrypt in the driver and in the daemon give the same key,
# a trailing newline (a Secret made from a file) not part of it.
printf 'correct horse battery staple\n' >"$TMP/csi.pass"
csi Controller CreateVolume "{\"name\": \"pvc-passphrase\", $CAPS, \"secrets\": {\"encryptionPassphrase\": \"correct horse battery staple\\n\"}}"
assert_eq "$CSI_RC" 0 "CreateVolume with an encryptionPassphrase secret ($CSI_OUT)"
PVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
PURL=$(field "$CSI_OUT" 'd["volume"]["volume_context"]["storageUrl"]')
PDIR=$TMP/passphrase-daemon
mkdir -p "$PDIR"
"$PORTALBD" --storage "$PURL" --state-dir "$PDIR" --socket "$PDIR/ctl.sock" --nbd-address "" \
  --nbd-unix "$PDIR/nbd.sock" --export-name "$PVOL" --encryption-passphrase-file "$TMP/csi.pass" >"$PDIR/portalbd.log" 2>&1 &
PPID_=$!
cleanup_fn kill -9 "$PPID_"
for _ in $(seq 150); do [ -S "$PDIR/ctl.sock" ] || ! kill -0 "$PPID_" 2>/dev/null && break; sleep 0.1; done
[ -S "$PDIR/ctl.sock" ] || { cat "$PDIR/portalbd.log"; fail "portalbd with the passphrase file did not open the volume the driver made"; }
kill -TERM "$PPID_"; wait "$PPID_" || true
ok "the daemon opens it with the same passphrase in a file"
csi Controller CreateSnapshot "{\"name\": \"snap-passphrase\", \"source_volume_id\": \"$PVOL\", \"secrets\": {\"encryptionPassphrase\": \"correct horse battery stapler\"}}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*wrong encryption key.*the encryptionPassphrase secret" "a wrong passphrase is refused ($CSI_OUT)"
csi Controller DeleteVolume "{\"volume_id\": \"$PVOL\", \"secrets\": {\"encryptionPassphrase\": \"correct horse battery staple\"}}"
assert_eq "$CSI_RC" 0 "DeleteVolume with the passphrase ($CSI_OUT)"

# A key for a plain volume is refused too: it would not be encrypted.
csi Controller CreateVolume "{\"name\": \"pvc-plain\", $CAPS}"
PLVOL=$(field "$CSI_OUT" 'd["volume"]["volume_id"]')
csi Controller CreateSnapshot "{\"name\": \"snap-plain\", \"source_volume_id\": \"$PLVOL\", $KEY_SECRET}"
assert_match "$CSI_OUT" "^INVALID_ARGUMENT: .*volume $PLVOL.*is not encrypted" "a key for a plain volume is refused ($CSI_OUT)"
if [ "$HAVE_NBD" = 1 ]; then
  # The control for the marker check above: written to a plain volume, the
  # marker is found in the stored objects.
  PLURL=$(field "$(csi Controller ControllerGetVolume "{\"volume_id\": \"$PLVOL\"}"; echo "$CSI_OUT")" 'd["volume"]["volume_context"]["storageUrl"]')
  PLDIR=$TMP/plain-daemon
  mkdir -p "$PLDIR"
  "$PORTALBD" --storage "$PLURL" --state-dir "$PLDIR" --socket "$PLDIR/ctl.sock" --nbd-address "" \
    --nbd-unix "$PLDIR/nbd.sock" --export-name "$PLVOL" >"$PLDIR/portalbd.log" 2>&1 &
  PLPID=$!
  cleanup_fn kill -9 "$PLPID"
  for _ in $(seq 100); do [ -S "$PLDIR/nbd.sock" ] && break; sleep 0.1; done
  "$SYSPYTHON" -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
h.pwrite((sys.argv[3] * 512).encode()[:4096], 1 << 20); h.flush(); h.shutdown()' "$PLDIR/nbd.sock" "$PLVOL" "$MARKER"
  kill -TERM "$PLPID"; wait "$PLPID" || true
  grep -rqa "$MARKER" "$STORED" || fail "the marker written to a plain volume is not found in $STORED: the check above tells nothing"
  ok "written to a plain volume, the marker is found in $STORED: the check above can fail"
fi
csi Controller DeleteVolume "{\"volume_id\": \"$PLVOL\"}"
assert_eq "$CSI_RC" 0 "DeleteVolume of the plain volume"

kill -TERM "$CSI_PID"
wait "$CSI_PID" && rc=0 || rc=$?
assert_eq "$rc" 0 "portalbd-csi stops cleanly on SIGTERM"
[ ! -e "$CSI_SOCK" ] || fail "portalbd-csi left its socket behind"
ok "... and removes its socket"
