#!/usr/bin/env bash
# The FUSE view under --tls require (issue 25): the daemon's own view ([fuse]
# mountpoint) connects to its listener with the daemon's PSK; `portalctl
# mount` takes the daemon's TLS settings from `status` (X.509 here); and
# `portalctl mount --nbd HOST:PORT` connects with --tls-psk. Each view reads a
# snapshot's bytes back byte-identical; a view without TLS credentials is
# refused, and nothing is served in the clear.
source "$(dirname "$0")/lib.sh"
requires_root
requires openssl fusermount3 nbdcopy nbdinfo cksum findmnt
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
source "$(dirname "$0")/tls_lib.sh"

PKI=$TMP/pki
make_test_pki "$PKI"
PSK=$TMP/keys.psk
make_psk_file "$PSK" carol
psk_uri="nbds://carol@127.0.0.1:$PORT/$EXPORT_NAME?tls-psk-file=$PSK"
view() { "$PORTALCTL" --socket "$CTL_SOCK" "$@"; }

# wait_file FILE: up to 6 s for FILE to appear.
wait_file() {
  local i
  for i in $(seq 1 30); do [ -e "$1" ] && return 0; sleep 0.2; done
  return 1
}

# ---- the daemon's own view, PSK, --tls require
MNT=$TMP/daemon-view
mkdir -p "$MNT"
cleanup_fn umount -l "$MNT"
cat >"$TMP/portalbd.toml" <<TOML
[nbd]
tls = "require"
tls_psk = "$PSK"

[fuse]
mountpoint = "$MNT"
TOML
start_tls_portalbd "$psk_uri" --storage memory:// -c "$TMP/portalbd.toml"
check "the daemon mounted its view under --tls require" grep -q " $MNT " /proc/self/mountinfo
head -c 4M /dev/urandom >"$TMP/data"
check "nbdcopy writes 4 MiB over TLS-PSK" nbdcopy --flush "$TMP/data" "$psk_uri"
view snapshot create first >/dev/null
check "the snapshot appears in the daemon's view" wait_file "$MNT/snapshots/first.img"
want=$(cksum <"$TMP/data")
assert_eq "$(head -c 4M "$MNT/snapshots/first.img" | cksum)" "$want" "the daemon's view reads the snapshot over TLS"
assert_match "$(cat "$PORTALBD_LOG")" 'NBD client connected peer=unix:pid=[0-9]+ export=portalbd@first tls="?psk:carol' \
  "the view's connections are TLS (PSK identity carol)"
assert_no_match "$(cat "$PORTALBD_LOG")" 'tls=off' "no connection was served in the clear"

# ---- portalctl mount --nbd with --tls-psk; and without credentials it fails
MNT2=$TMP/nbd-view
mkdir -p "$MNT2"
out=$(timeout 30 "$PORTALCTL" mount "$MNT2" --nbd "127.0.0.1:$PORT" 2>&1) && fail "a view without TLS mounted: $out"
ok "portalctl mount --nbd without TLS credentials is refused: $(head -1 <<<"$out")"
assert_match "$out" 'require TLS' "the error says the server may require TLS"
check_fails "nothing was mounted" findmnt "$MNT2"
check "portalctl mount --nbd --tls-psk" view mount "$MNT2" --nbd "127.0.0.1:$PORT" --tls-psk "$PSK"
cleanup_fn fusermount3 -uz "$MNT2"
check "the snapshot appears in the --nbd view" wait_file "$MNT2/snapshots/first.img"
assert_eq "$(head -c 4M "$MNT2/snapshots/first.img" | cksum)" "$want" "the --nbd view reads the snapshot over TLS"
check "portalctl umount" view umount "$MNT2"
stop_portalbd
check_fails "the daemon unmounted its view at stop" grep -q " $MNT " /proc/self/mountinfo

# ---- portalctl mount asks the daemon: X.509, --tls require
start_tls_portalbd "nbds+unix:///$EXPORT_NAME?socket=$NBD_SOCK&tls-certificates=$PKI/client" \
  --storage memory:// --tls require --tls-certificates "$PKI/server"
check "nbdcopy writes 4 MiB over TLS (X.509, unix socket)" nbdcopy --flush "$TMP/data" \
  "nbds+unix:///$EXPORT_NAME?socket=$NBD_SOCK&tls-certificates=$PKI/client"
view snapshot create second >/dev/null
MNT3=$TMP/ctl-view
mkdir -p "$MNT3"
check "portalctl mount (TLS settings from the daemon's status)" view mount "$MNT3"
cleanup_fn fusermount3 -uz "$MNT3"
check "the snapshot appears in portalctl's view" wait_file "$MNT3/snapshots/second.img"
assert_eq "$(head -c 4M "$MNT3/snapshots/second.img" | cksum)" "$want" "portalctl's view reads the snapshot over TLS"
assert_match "$(cat "$PORTALBD_LOG")" 'export=portalbd@second tls="?anonymous' "the view's connections are X.509 TLS"
check "portalctl umount" view umount "$MNT3"
stop_portalbd
