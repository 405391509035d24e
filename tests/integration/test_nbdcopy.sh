#!/usr/bin/env bash
# Bulk copies with nbdcopy: 256 MiB of random data in, then out again over the
# unix socket and TCP with equal sha256; the rest of the device reads as zeros;
# after a SIGTERM restart on the same file:// store the data is still there.
source "$(dirname "$0")/lib.sh"
requires nbdcopy nbdsh sha256sum cmp head dd
requires_python_nbd

MiB=$((1024 * 1024)); GiB=$((1024 * MiB))
DATA_MiB=256

head -c "${DATA_MiB}M" /dev/urandom >"$TMP/in.bin"
want=$(sha256 "$TMP/in.bin")
log "input: ${DATA_MiB} MiB, sha256 $want"

# copy_out URI FILE: the whole device to FILE.
copy_out() {
  rm -f "$2"
  nbdcopy "$1" "$2" || fail "nbdcopy $1 $2 failed"
}

# check_image FILE WHAT: the first 256 MiB equal the input, the rest are zeros.
check_image() {
  local size got
  size=$(stat -c %s "$1")
  assert_eq "$size" "$GiB" "$2: copied-out image has the device size"
  got=$(head -c "${DATA_MiB}M" "$1" | sha256sum | cut -d' ' -f1)
  assert_eq "$got" "$want" "$2: sha256 of the first ${DATA_MiB} MiB equals the input"
  if ! cmp -s -n $((GiB - DATA_MiB * MiB)) <(tail -c +$((DATA_MiB * MiB + 1)) "$1") /dev/zero; then
    fail "$2: the device beyond ${DATA_MiB} MiB is not all zeros"
  fi
  ok "$2: the device beyond ${DATA_MiB} MiB reads as zeros"
}

start_portalbd --disk-size-gb 1   # default storage: file://<state-dir>/data

t0=$(now_ms)
nbdcopy "$TMP/in.bin" "$(nbd_uri)" || fail "nbdcopy into the export failed"
ms=$(( $(now_ms) - t0 ))
ok "nbdcopy of ${DATA_MiB} MiB into the export (${ms} ms, $(( DATA_MiB * 1000 / (ms + 1) )) MiB/s)"

t0=$(now_ms)
copy_out "$(nbd_uri)" "$TMP/out.img"
ok "nbdcopy of the 1 GiB device out over the unix socket ($(( $(now_ms) - t0 )) ms)"
check_image "$TMP/out.img" "unix socket, same session"

copy_out "$(nbd_tcp_uri)" "$TMP/out.img"
ok "nbdcopy of the device out over TCP"
check_image "$TMP/out.img" "TCP"

stop_portalbd

n=$(find "$STATE_DIR/data" -type f 2>/dev/null | wc -l)
bytes=$(du -sb "$STATE_DIR/data" 2>/dev/null | cut -f1)
[ "$n" -gt 0 ] || fail "the default store file://$STATE_DIR/data holds no objects after the copy"
ok "the default store file://\$STATE_DIR/data holds $n objects, ${bytes:-?} bytes"

start_portalbd --disk-size-gb 1
copy_out "$(nbd_uri)" "$TMP/out.img"
ok "nbdcopy out after restart on the same store"
check_image "$TMP/out.img" "after restart"

# 8 MiB more at an offset, over TCP with nbdsh; after another restart the
# device must show both copies.
head -c 8M /dev/urandom >"$TMP/in2.bin"
dd if="$TMP/in2.bin" of="$TMP/in.bin" bs=1M seek=100 conv=notrunc status=none
want=$(sha256 "$TMP/in.bin")
nbdsh -u "$(nbd_tcp_uri)" -c "h.pwrite(open('$TMP/in2.bin', 'rb').read(), $((100 * MiB)))" -c 'h.flush()' ||
  fail "nbdsh: writing 8 MiB at offset 100 MiB failed"
ok "8 MiB more copied in at offset 100 MiB over TCP"
stop_portalbd
start_portalbd --disk-size-gb 1
copy_out "$(nbd_uri)" "$TMP/out.img"
check_image "$TMP/out.img" "after the second copy and restart"
stop_portalbd
