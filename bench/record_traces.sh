#!/usr/bin/env bash
# Re-creates the request traces in bench/traces/ (see its README.md): real
# tools on an ext4 that lives on portalbd, reached through nbdfuse and a loop
# device (the kernel has no NBD client here), with the daemon started with
# --trace. Not a test and never part of `make test`; needs root, /dev/fuse and
# a free loop device, and takes about five minutes.
#
#   mkfs      mkfs.ext4 of a 4 GiB device (memory://)
#   pgbench   PostgreSQL 15 on that ext4: initdb, pgbench -i -s 10, then
#             pgbench -c 4 -j 2 -T $PGBENCH_S (flush-heavy: every commit fsyncs)
#   untar     tar -x of /usr/share (made beforehand on the local disk), then sync
#
# For pgbench and untar the filesystem is made by an untraced daemon run on a
# file:// store, so the trace starts at the mount.
#
# Usage: bench/record_traces.sh [NAME...]   (default: all three)
# Env: BUILD (default build), OUT (default bench/traces), PGBENCH_S (60),
#      MAX_ZST_BYTES (5000000: a larger trace keeps its first requests only).
source "$(dirname "$0")/../tests/integration/lib.sh"
requires_root
requires nbdfuse fusermount3 losetup mkfs.ext4 mount umount zstd tar
[ -c /dev/fuse ] || skip "/dev/fuse is not available"
losetup -f >/dev/null 2>&1 || skip "no free loop device"

OUT=${OUT:-$TOP/bench/traces}
PGBENCH_S=${PGBENCH_S:-60}
MAX_ZST_BYTES=${MAX_ZST_BYTES:-5000000}
NAMES=${*:-mkfs pgbench untar}
DISK_GB=4
FUSE=$TMP/fuse
MNT=$TMP/mnt
mkdir -p "$OUT" "$FUSE" "$MNT"
chmod 755 "$TMP"  # postgres must reach its data directory below it

attach() {  # sets LOOP_DEV
  nbdfuse_start "$FUSE/nbd" "$(nbd_uri)"
  loop_attach "$FUSE/nbd"
}
detach() {
  loop_detach "$LOOP_DEV"
  nbdfuse_stop "$FUSE"
}

# A fresh ext4 on a file:// store, made without tracing.
make_ext4() {
  rm -rf --one-file-system "$TMP/data" "$STATE_DIR"
  mkdir -p "$TMP/data"
  start_portalbd --storage "file://$TMP/data" --disk-size-gb "$DISK_GB" --log-level warn
  attach
  mkfs.ext4 -q -F "$LOOP_DEV"
  detach
  stop_portalbd
}

# Compresses TRACE into $OUT/NAME.trace.zst; past MAX_ZST_BYTES, keeps the
# first requests by arrival (halving until it fits) and says so.
ship() {  # NAME TRACE
  local name=$1 trace=$2 dst=$OUT/$1.trace.zst keep
  zstd -q -19 -f "$trace" -o "$dst"
  if [ "$(stat -c %s "$dst")" -gt "$MAX_ZST_BYTES" ]; then
    keep=$(grep -vc '^[#p]' "$trace")
    while [ "$(stat -c %s "$dst")" -gt "$MAX_ZST_BYTES" ]; do
      keep=$((keep / 2))
      { head -2 "$trace"; echo "# cut: the first $keep requests by arrival"; grep -v '^[#p]' "$trace" | sort -s -k6,6n | head -n "$keep"; } |
        zstd -q -19 -f -o "$dst"
    done
    log "$name: trace cut to its first $keep requests to stay under $MAX_ZST_BYTES bytes"
  fi
  summary "$name" "$trace" "$dst"
}

summary() {  # NAME TRACE ZST
  awk -v name="$1" -v zst="$(stat -c %s "$3")" '
    /^[#p]/ { next }
    $2 != "DISC" { n++; ops[$2]++; if ($2 == "WRITE") w += $4; if ($2 == "READ") r += $4
                   if (first == "" || $6 < first) first = $6; if ($7 > last) last = $7 }
    END { printf "%s: %d requests over %.1f s, read %.1f MiB, written %.1f MiB, %d bytes compressed;", name, n,
            (last - first) / 1e6, r / 1048576, w / 1048576, zst
          for (o in ops) printf " %s=%d", o, ops[o]; printf "\n" }' "$2" | tee -a "$TMP/summary"
}

record_mkfs() {
  start_portalbd --storage memory:// --disk-size-gb "$DISK_GB" --log-level warn --trace "$TMP/mkfs.trace"
  attach
  mkfs.ext4 -F "$LOOP_DEV" >"$TMP/mkfs.out" 2>&1 || { cat "$TMP/mkfs.out"; fail "mkfs.ext4"; }
  detach
  stop_portalbd
  ship mkfs "$TMP/mkfs.trace"
}

record_pgbench() {
  local pgbin=/usr/lib/postgresql/15/bin sock=$TMP/pgsock
  [ -x "$pgbin/initdb" ] || { apt-get install -y -q postgresql >/dev/null; }
  [ -x "$pgbin/initdb" ] || fail "no PostgreSQL 15 in $pgbin"
  make_ext4
  start_portalbd --storage "file://$TMP/data" --log-level warn --trace "$TMP/pgbench.trace"
  attach
  mount_track "$LOOP_DEV" "$MNT"
  mkdir -p "$MNT/pg" "$sock" && chown postgres: "$MNT/pg" "$sock"
  as_pg() { su postgres -s /bin/bash -c "$*"; }
  as_pg "$pgbin/initdb -D $MNT/pg/data" >"$TMP/pg.out" 2>&1 || { cat "$TMP/pg.out"; fail initdb; }
  as_pg "$pgbin/pg_ctl -D $MNT/pg/data -l $MNT/pg/log -o \"-k $sock -c listen_addresses=''\" -w start" >>"$TMP/pg.out"
  cleanup_fn as_pg "$pgbin/pg_ctl -D $MNT/pg/data -m immediate stop"
  as_pg "$pgbin/pgbench -h $sock -q -i -s 10 postgres" >>"$TMP/pg.out" 2>&1 || { cat "$TMP/pg.out"; fail "pgbench -i"; }
  as_pg "$pgbin/pgbench -h $sock -c 4 -j 2 -T $PGBENCH_S postgres" >"$TMP/pgbench.out" 2>&1 ||
    { cat "$TMP/pgbench.out"; fail pgbench; }
  grep -E '^(tps|number of transactions actually processed|latency average)' "$TMP/pgbench.out" | tee -a "$TMP/summary"
  as_pg "$pgbin/pg_ctl -D $MNT/pg/data -m fast -w stop" >>"$TMP/pg.out"
  umount_track "$MNT"
  detach
  stop_portalbd
  ship pgbench "$TMP/pgbench.trace"
}

record_untar() {
  log "tar of /usr/share on the local disk"
  tar -C /usr -cf "$TMP/share.tar" share 2>/dev/null || true  # a few unreadable files are fine
  log "$(du -h "$TMP/share.tar" | cut -f1), $(tar -tf "$TMP/share.tar" | wc -l) entries" | tee -a "$TMP/summary"
  make_ext4
  start_portalbd --storage "file://$TMP/data" --log-level warn --trace "$TMP/untar.trace"
  attach
  mount_track "$LOOP_DEV" "$MNT"
  tar -C "$MNT" -xf "$TMP/share.tar"
  sync
  umount_track "$MNT"
  detach
  stop_portalbd
  rm -f "$TMP/share.tar"
  ship untar "$TMP/untar.trace"
}

: >"$TMP/summary"
for name in $NAMES; do
  log "recording $name ($(date -u +%FT%TZ))"
  "record_$name"
  ok "recorded $name"
done
echo "---- summary"; cat "$TMP/summary"
