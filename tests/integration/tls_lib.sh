# Test certificates for the TLS tests (source after lib.sh; needs openssl).
#
# make_test_pki DIR makes, all with P-256 keys valid for two days:
#   DIR/ca/            the test CA (ca-cert.pem, ca-key.pem)
#   DIR/otherca/       an unrelated CA
#   DIR/server/        server-cert.pem (CN=localhost, SAN 127.0.0.1 and
#                      localhost), server-key.pem, ca-cert.pem: a portalbd
#                      --tls-certificates directory
#   DIR/client/        ca-cert.pem, client-cert.pem (CN=tls-test-client),
#                      client-key.pem: a libnbd/qemu client directory
#   DIR/client-other/  the same, but the client certificate is otherca's
#   DIR/client-wrongca/ the client's certificate, but trusting otherca

# make_ca DIR CN: a self-signed CA in DIR/ca-cert.pem, DIR/ca-key.pem.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$1/ca-key.pem" -out "$1/ca-cert.pem" 2>/dev/null || fail "openssl could not make the CA $2"
}

# make_cert CA_DIR OUT_CERT OUT_KEY CN EXTENSIONS: a key and a certificate signed by the CA.
make_cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$4" \
    -keyout "$3" -out "$TMP/req.csr" 2>/dev/null || fail "openssl could not make a key for $4"
  printf '%b' "$5" >"$TMP/ext.cnf"
  openssl x509 -req -in "$TMP/req.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" -CAcreateserial -days 2 \
    -extfile "$TMP/ext.cnf" -out "$2" 2>/dev/null || fail "openssl could not sign the certificate of $4"
}

make_test_pki() {
  local pki=$1
  mkdir -p "$pki"/{ca,otherca,server,client,client-other,client-wrongca}
  make_ca "$pki/ca" "portalbd test CA"
  make_ca "$pki/otherca" "some other CA"
  make_cert "$pki/ca" "$pki/server/server-cert.pem" "$pki/server/server-key.pem" localhost \
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n'
  cp "$pki/ca/ca-cert.pem" "$pki/server/"
  local client_ext='extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n'
  make_cert "$pki/ca" "$pki/client/client-cert.pem" "$pki/client/client-key.pem" tls-test-client "$client_ext"
  cp "$pki/ca/ca-cert.pem" "$pki/client/"
  make_cert "$pki/otherca" "$pki/client-other/client-cert.pem" "$pki/client-other/client-key.pem" intruder \
    "$client_ext"
  cp "$pki/ca/ca-cert.pem" "$pki/client-other/"
  cp "$pki/client/client-"*.pem "$pki/client-wrongca/"
  cp "$pki/otherca/ca-cert.pem" "$pki/client-wrongca/"
}

# make_psk_file FILE IDENTITY...: one random 32-byte key per identity.
make_psk_file() {
  local file=$1 id
  shift
  : >"$file"
  for id in "$@"; do echo "$id:$(openssl rand -hex 32)" >>"$file"; done
}

# start_tls_portalbd URI ARGS...: start the daemon with ARGS, ready once
# nbdinfo answers on URI (the default readiness probe is plaintext).
start_tls_portalbd() {
  local uri=$1; shift
  portalbd_default_args
  spawn_portalbd "${DEFAULT_ARGS[@]}" "$@"
  wait_portalbd_ready "$uri" "$NBD_SOCK" "$CTL_SOCK"
  log "portalbd started (pid $PORTALBD_PID): $*"
}
