#!/usr/bin/env bash
# The local disk cache on s3:// (s3rver on loopback; issue 21): 128 MiB in
# (each uploaded frame kept in the disk cache), stop, the cache removed; a
# start reads it all (cold: ranged GETs, each frame kept on disk);
# kill -9; a start on the same state dir reads it all again from the disk
# cache, with at most a handful of GETs. The counts come from `portalctl
# --json status` (store_requests, counted by the daemon's CountingStore) and
# are printed. Then a cached frame is damaged on disk: the next start serves
# the right bytes (the frame fails its CRC, is dropped and fetched again) and
# counts the drop. file:// has no disk cache.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires nbdcopy sha256sum head
requires_portalbd
requires_portalctl

DATA_MiB=${DATA_MiB:-128}
start_s3rver
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
STORAGE="s3://$S3_BUCKET/volumes/disk-cache"
CACHE_DIR=$STATE_DIR/cache

head -c "${DATA_MiB}M" /dev/urandom >"$TMP/in.bin"
want=$(sha256 "$TMP/in.bin")
cat >"$TMP/cache.toml" <<TOML
[cache]
disk_bytes = 536870912
TOML

# status_field PYTHON-EXPR: a value of `portalctl --json status` (as s).
status_field() {
  portalctl --json status | "$SYSPYTHON" -c "import json,sys; s=json.load(sys.stdin); print($1)"
}
gets() { status_field 's["store_requests"]["get"] + s["store_requests"]["get_range"]'; }
# The cache's own thread writes uploaded and fetched frames after the upload
# or GET (their readers do not wait for it): wait until it has nothing queued.
wait_cache_written() {
  for _ in $(seq 1 100); do
    [ "$(status_field 's["disk_cache"]["pending_bytes"]')" = 0 ] && return 0
    sleep 0.1
  done
  fail "the disk cache still has $(status_field 's["disk_cache"]["pending_bytes"]') bytes to write after 10 s"
}

# read_all WHAT: reads the first DATA_MiB MiB of the device and compares.
read_all() {
  rm -f "$TMP/out.img"
  nbdcopy "$(nbd_uri)" "$TMP/out.img" || fail "$1: nbdcopy out failed"
  got=$(head -c "${DATA_MiB}M" "$TMP/out.img" | sha256sum | cut -d' ' -f1)
  assert_eq "$got" "$want" "$1: the ${DATA_MiB} MiB read back equal the input"
}

start_portalbd --storage "$STORAGE" --disk-size-gb 1 --config "$TMP/cache.toml"
nbdcopy "$TMP/in.bin" "$(nbd_uri)" || fail "nbdcopy into the s3:// export failed"
assert_eq "$(status_field 's["disk_cache"]["capacity_bytes"]')" 536870912 "status shows the disk cache and its size"
assert_eq "$(status_field 's["fetch"]["read_ahead_bytes"]')" 268435456 "s3:// reads ahead 256 MiB by default (status fetch.read_ahead_bytes)"
for _ in $(seq 1 600); do  # the flusher uploads within flush_interval_ms
  [ "$(status_field 's["dirty_bytes"]')" = 0 ] && break
  sleep 0.1
done
[ "$(status_field 's["dirty_bytes"]')" = 0 ] ||
  fail "the $DATA_MiB MiB written were not all uploaded after 60 s (dirty_bytes $(status_field 's["dirty_bytes"]'))"
wait_cache_written
inserted=$(status_field 's["disk_cache"]["inserts"]')
skipped=$(status_field 's["disk_cache"]["skipped"]')
# The cache's writer queues at most 128 MiB of uploaded segments; one that is
# stored while it is further behind (a busy machine: two 64 MiB segments are
# uploaded at once) is not kept, and counted in skipped (the unit tests pin
# that down). Every uploaded frame is one or the other, and the first segment
# queued is always kept.
[ $(( inserted + skipped )) -ge $(( DATA_MiB * 16 )) ] ||
  fail "uploading $DATA_MiB MiB put $inserted frames into the disk cache and skipped $skipped (expected $(( DATA_MiB * 16 )) in all)"
[ "$inserted" -gt 0 ] || fail "uploading $DATA_MiB MiB kept no frame in the disk cache ($skipped skipped)"
ok "uploaded frames are kept in the disk cache: $inserted frames ($skipped skipped while its writer was behind)"
stop_portalbd
# What the upload kept is not what this test reads cold: start without it.
rm -rf "$CACHE_DIR"

# Cold: the memory cache is empty and the disk cache holds nothing read yet.
start_portalbd --storage "$STORAGE" --config "$TMP/cache.toml"
before=$(gets)
read_all "cold read after a restart"
cold=$(( $(gets) - before ))
wait_cache_written  # before the kill -9 below: what is still queued would be lost, and fetched again
cold_misses=$(status_field 's["disk_cache"]["misses"]')
cold_bytes=$(status_field 's["disk_cache"]["bytes"]')
[ "$cold" -gt 10 ] || fail "the cold read made only $cold GETs: it did not read from storage"
[ "$cold_bytes" -ge $(( DATA_MiB * 1024 * 1024 )) ] ||
  fail "the disk cache holds $cold_bytes bytes after reading $DATA_MiB MiB"
ok "cold read: $cold GETs, $cold_misses frames missed the disk cache, $cold_bytes bytes now cached"
kill9_portalbd

# Warm: after kill -9, the disk cache answers (the reload found its records).
start_portalbd --storage "$STORAGE" --config "$TMP/cache.toml"
assert_match "$(cat "$PORTALBD_LOG")" 'disk cache open .*frames=[1-9]' "the restart reloads the cached frames"
before=$(gets)
read_all "warm read after kill -9 and a restart"
warm=$(( $(gets) - before ))
hits=$(status_field 's["disk_cache"]["hits"]')
log "GETs to read ${DATA_MiB} MiB: cold $cold, warm $warm (disk cache hits $hits)"
[ "$warm" -le 5 ] || fail "the warm read made $warm GETs (cold: $cold): expected at most a handful"
ok "warm read after kill -9: $warm GETs (cold: $cold), $hits frames from the disk cache"
stop_portalbd

# A damaged frame on disk is never served: fetched again, counted.
"$SYSPYTHON" - "$CACHE_DIR/frames" <<'PYEOF'
import sys
with open(sys.argv[1], "r+b") as f:
    for slot in range(8):
        f.seek(slot * 65536 + 100)
        b = f.read(1)
        f.seek(slot * 65536 + 100)
        f.write(bytes([b[0] ^ 0xff]))
PYEOF
start_portalbd --storage "$STORAGE" --config "$TMP/cache.toml"
before=$(gets)
read_all "read with 8 damaged cached frames"
again=$(( $(gets) - before ))
drops=$(status_field 's["disk_cache"]["crc_drops"]')
assert_eq "$drops" 8 "the 8 damaged frames failed their CRC and were dropped"
[ "$again" -ge 1 ] || fail "the damaged frames were not fetched from storage again"
assert_match "$(cat "$PORTALBD_LOG")" 'disk cache frame failed its crc' "a dropped frame is logged"
ok "8 damaged cached frames: dropped, fetched again with $again GETs, the read is right"
stop_portalbd

# file:// keeps no disk cache (its objects are on local disk already).
STATE_DIR=$TMP/state-file
start_portalbd --storage "file://$TMP/filestore" --config "$TMP/cache.toml"
assert_eq "$(status_field 's["disk_cache"]')" None "file:// has no disk cache"
[ ! -e "$STATE_DIR/cache" ] || fail "file:// made a disk cache directory"
stop_portalbd
