#!/usr/bin/env bash
# portalbd-csi against a conformance client written from the CSI spec
# (tests/integration/csi_conformance.py): Identity, the Controller's
# provisioner / snapshotter / resizer sequences with every idempotency and
# error-code rule that applies, volumes attached through a running daemon
# (snapshots over its control socket, delete and expand refused), clones
# and restores checked block by block over NBD, and the Node service's
# argument checks. On file:// storage; the Python stubs are generated from
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
mkdir -p "$TMP/store"

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
  --storage-url "file://$TMP/store" --portalbd "$PORTALBD" >"$CSI_LOG" 2>&1 &
CSI_PID=$!
cleanup_fn kill "$CSI_PID"
for _ in $(seq 100); do [ -S "$CSI_SOCK" ] && break; sleep 0.1; done
[ -S "$CSI_SOCK" ] || { cat "$CSI_LOG"; fail "portalbd-csi did not listen on $CSI_SOCK (CSI_ENDPOINT)"; }
ok "portalbd-csi listens on the CSI_ENDPOINT socket"

if ! "$SYSPYTHON" "$TOP/tests/integration/csi_conformance.py" "$STUBS" "$CSI_SOCK" "$CSI_STATE" "$PORTALBD"; then
  echo "---- last 30 lines of $CSI_LOG ----"; tail -30 "$CSI_LOG"
  fail "the CSI conformance client found failures (above)"
fi
ok "the CSI conformance client passes"

kill -TERM "$CSI_PID"
wait "$CSI_PID" && rc=0 || rc=$?
assert_eq "$rc" 0 "portalbd-csi stops cleanly on SIGTERM"
[ ! -e "$CSI_SOCK" ] || fail "portalbd-csi left its socket behind"
ok "... and removes its socket"
