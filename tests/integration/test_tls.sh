#!/usr/bin/env bash
# NBD over TLS (issue 25): certificates and a PSK file made here with openssl;
# then real clients over nbds://: nbdinfo and nbdcopy with X.509, qemu-io with
# a tls-creds-x509 object, nbdinfo with PSK; under --tls require a plaintext
# client is refused with the protocol's error (not a hang), a client that
# does not trust the server's CA is refused, a client certificate from another
# CA is refused under --tls-verify-peer, and after each failed handshake the
# daemon still serves (and logged the peer and the reason).
source "$(dirname "$0")/lib.sh"
requires openssl nbdinfo nbdcopy qemu-io cmp

MiB=1048576
source "$(dirname "$0")/tls_lib.sh"
PKI=$TMP/pki
make_test_pki "$PKI"
check "the server certificate chains to the test CA" openssl verify -CAfile "$PKI/ca/ca-cert.pem" "$PKI/server/server-cert.pem"

PSK=$TMP/keys.psk
make_psk_file "$PSK" alice bob
BADPSK=$TMP/bad.psk
make_psk_file "$BADPSK" alice

x509_uri() { echo "nbds://127.0.0.1:$PORT/$EXPORT_NAME?tls-certificates=$1"; }
psk_uri() { echo "nbds://$2@127.0.0.1:$PORT/$EXPORT_NAME?tls-psk-file=$1"; }  # the user is the PSK identity

# refused WHAT CMD...: CMD fails within 20 s (a hang is a failure too).
refused() {
  local what=$1; shift
  local rc=0
  REFUSED_OUT=$(timeout 20 "$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "$what: the command succeeded"
  [ "$rc" -ne 124 ] || fail "$what: the command hung (killed after 20 s)"
  ok "$what (exit $rc)"
}

# ---- X.509 and PSK together, --tls require --tls-verify-peer
start_tls_portalbd "$(x509_uri "$PKI/client")" --storage memory:// --disk-size-gb 1 \
  --tls require --tls-certificates "$PKI/server" --tls-verify-peer --tls-psk "$PSK"

assert_eq "$(nbdinfo --size "$(x509_uri "$PKI/client")")" 1073741824 "nbdinfo over nbds:// with X.509: 1 GiB"
assert_match "$(cat "$PORTALBD_LOG")" 'NBD TLS established peer=127\.0\.0\.1:[0-9]+ identity="?x509:CN=tls-test-client"?' \
  "the log names the client certificate's subject and the peer"

head -c $((3 * MiB + 4096)) /dev/urandom >"$TMP/data.bin"
check "nbdcopy writes 3 MiB + 4 KiB over TLS (X.509)" nbdcopy "$TMP/data.bin" "$(x509_uri "$PKI/client")"
# nbdcopy has no length limit: the whole sparse 1 GiB comes back (holes skipped).
check "nbdcopy reads the device back over TLS" nbdcopy "$(x509_uri "$PKI/client")" "$TMP/back.img"
check "what was read over TLS is what was written" cmp -n $((3 * MiB + 4096)) "$TMP/data.bin" "$TMP/back.img"
head -c $MiB "$TMP/data.bin" >"$TMP/first-mib.bin"

qio_tls() {
  qemu-io --object "tls-creds-x509,id=tls0,endpoint=client,dir=$PKI/client" \
    --image-opts "driver=nbd,host=127.0.0.1,port=$PORT,export=$EXPORT_NAME,tls-creds=tls0" "$@" 2>&1
}
out=$(qio_tls -c "write -P 0x5a $((8 * MiB)) $MiB" -c "read -P 0x5a $((8 * MiB)) $MiB" -c "read -P 0 $((9 * MiB)) 4096")
assert_no_match "$out" 'fail|error|denied|invalid|Pattern verification' "qemu-io over TLS (tls-creds-x509): write, read back"
assert_match "$out" 'read 1048576/1048576' "qemu-io read the 1 MiB it wrote"

# While a TLS client is connected, `portalctl status` names its identity.
qio_tls -c "sleep 4000" >/dev/null &
qio_pid=$!
status=
for _ in $(seq 1 40); do
  status=$(portalctl --json status)
  grep -q '"tls":"x509:CN=tls-test-client"' <<<"$status" && break
  sleep 0.1
done
wait "$qio_pid" || true
assert_match "$status" '"peer":"127\.0\.0\.1:[0-9]+"[^}]*"tls":"x509:CN=tls-test-client"' \
  "portalctl status lists the connected client with its TLS identity"

assert_eq "$(nbdinfo --size "$(psk_uri "$PSK" alice)")" 1073741824 "nbdinfo over nbds:// with PSK identity alice"
assert_match "$(cat "$PORTALBD_LOG")" 'NBD TLS established peer=127\.0\.0\.1:[0-9]+ identity="?psk:alice"?' \
  "the log names the PSK identity"
check "nbdcopy reads the device over TLS with PSK identity bob" nbdcopy "$(psk_uri "$PSK" bob)" "$TMP/psk-back.img"
check "the PSK read matches what was written" cmp -n $MiB "$TMP/first-mib.bin" "$TMP/psk-back.img"

# Refusals: each one fast, each logged with the peer, none costing the daemon.
refused "plaintext nbdinfo against --tls require" nbdinfo --size "$(nbd_tcp_uri)"
assert_match "$REFUSED_OUT" 'TLS' "the plaintext client is told TLS is required: $(head -1 <<<"$REFUSED_OUT")"
refused "plaintext nbdinfo on the unix socket against --tls require" nbdinfo --size "$(nbd_uri)"
assert_match "$(cat "$PORTALBD_LOG")" 'reply=0x80000005' "the daemon answered NBD_REP_ERR_TLS_REQD"
refused "a client that trusts another CA" nbdinfo --size "$(x509_uri "$PKI/client-wrongca")"
n_before=$(grep -c 'NBD TLS handshake failed' "$PORTALBD_LOG" || true)
refused "a client certificate signed by another CA (--tls-verify-peer)" nbdinfo --size "$(x509_uri "$PKI/client-other")"
assert_match "$(cat "$PORTALBD_LOG")" 'NBD TLS handshake failed peer=127\.0\.0\.1:[0-9]+ reason="?[^"]*certificate' \
  "the failed handshake is logged with the peer and the reason"
refused "a PSK client with the wrong key" nbdinfo --size "$(psk_uri "$BADPSK" alice)"
refused "a PSK client with an unknown identity" nbdinfo --size "$(psk_uri "$PSK" mallory)"
n_after=$(grep -c 'NBD TLS handshake failed' "$PORTALBD_LOG" || true)
[ "$n_after" -ge $((n_before + 3)) ] || fail "expected 3 more 'TLS handshake failed' lines, got $((n_after - n_before))"
ok "each failed handshake logged ($n_before -> $n_after)"
check "the daemon is still running" portalbd_running
assert_eq "$(nbdinfo --size "$(x509_uri "$PKI/client")")" 1073741824 "the daemon still serves after the failed handshakes"
check "and reads over TLS still work" nbdcopy "$(x509_uri "$PKI/client")" "$TMP/back2.img"
check "byte-identical" cmp -n $MiB "$TMP/first-mib.bin" "$TMP/back2.img"
stop_portalbd

# ---- --tls on: TLS and plaintext clients both served; X.509 without client certificates
start_portalbd --storage memory:// --disk-size-gb 1 --tls on --tls-certificates "$PKI/server"
assert_eq "$(nbdinfo --size "$(nbd_tcp_uri)")" 1073741824 "--tls on: a plaintext client is served"
mkdir -p "$PKI/client-anon" && cp "$PKI/ca/ca-cert.pem" "$PKI/client-anon/"
assert_eq "$(nbdinfo --size "$(x509_uri "$PKI/client-anon")")" 1073741824 \
  "--tls on: a TLS client without a certificate is served"
assert_match "$(cat "$PORTALBD_LOG")" 'identity="?anonymous"?' "an anonymous TLS client is logged as such"
stop_portalbd

# ---- --tls off (the default): STARTTLS is refused, a TLS-only client fails
start_portalbd --storage memory:// --disk-size-gb 1
refused "nbds:// against a daemon without TLS" nbdinfo --size "$(x509_uri "$PKI/client")"
stop_portalbd

# ---- bad TLS settings stop the daemon at start, naming the problem
run_portalbd_expect_failure 20 --storage memory:// --nbd-address "127.0.0.1:$PORT" --socket "$CTL_SOCK" \
  --state-dir "$STATE_DIR" --tls require
assert_ne "$RUN_RC" 0 "--tls require without credentials is refused"
assert_match "$RUN_OUT" 'tls_certificates|tls-certificates' "the error names the missing setting"
run_portalbd_expect_failure 20 --storage memory:// --nbd-address "127.0.0.1:$PORT" --socket "$CTL_SOCK" \
  --state-dir "$STATE_DIR" --tls on --tls-certificates "$PKI/client"
assert_ne "$RUN_RC" 0 "a certificates directory without server-cert.pem is refused"
assert_match "$RUN_OUT" 'server-cert.pem' "the error names the file"
echo "garbage" >"$TMP/garbage.psk"
run_portalbd_expect_failure 20 --storage memory:// --nbd-address "127.0.0.1:$PORT" --socket "$CTL_SOCK" \
  --state-dir "$STATE_DIR" --tls on --tls-psk "$TMP/garbage.psk"
assert_ne "$RUN_RC" 0 "a malformed PSK file is refused"
assert_match "$RUN_OUT" 'line 1' "the error names the line"
