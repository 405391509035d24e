#!/usr/bin/env bash
# memory:// is a RAM disk with snapshots (docs/design.md): writes stay in the
# buffers they arrived in, overwrites go into the live layer's own buffers in
# place, and a snapshot freezes the buffers it maps. fio verifies every block
# through two connections (4 KiB and 64 KiB blocks, written over twice so that
# the second pass overwrites in place); a snapshot taken between two such
# rounds must still read as the first round wrote it, through its own export,
# while the live volume reads as the second round wrote it.
source "$(dirname "$0")/lib.sh"
requires fio
requires nbdcopy
requires jq

fio --enghelp=nbd >/dev/null 2>&1 || skip "this fio has no nbd ioengine"

start_portalbd --storage memory:// --disk-size-gb 1

JOB_MiB=32  # per job; two jobs side by side
# write_round NAME URI SEED [fio args...]: two jobs of random 4k/64k writes,
# each region written twice over (loops=2), then read back and verified.
write_round() {
  local name=$1 uri=$2 seed=$3; shift 3
  local out=$TMP/fio.$name.out rc=0
  (cd "$TMP" && fio --name="$name" --ioengine=nbd --uri="$uri" --rw=randwrite --bssplit=4k/60:64k/40 \
    --iodepth=16 --size=${JOB_MiB}m --offset_increment=$((JOB_MiB + 8))m --numjobs=2 --loops=2 \
    --randrepeat=1 --randseed="$seed" --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
    "$@" --output="$out") >"$TMP/fio.$name.stderr" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || ! grep -qE 'err= *0' "$out" || grep -qiE 'verify failed|bad magic|mismatch' "$out"; then
    tail -n 20 "$out" "$TMP/fio.$name.stderr" | sed 's/^/    /'
    fail "$name: fio exited $rc or reported errors"
  fi
  ok "$name: fio wrote 2 x ${JOB_MiB} MiB twice over on two connections and verified every block"
}

in_place() { portalctl --json status | jq -r '.counters.overwrites_in_place'; }

write_round first "$(nbd_uri)" 1111
before=$(in_place)
[ "$before" -gt 0 ] || fail "no write went in place (overwrites_in_place=$before)"
ok "overwrites went into their own buffers in place: $before"

portalctl snapshot create first >/dev/null
sum_first=$(nbdcopy "$(nbd_uri)" - | sha256sum | cut -d' ' -f1)

write_round second "$(nbd_uri)" 2222
after=$(in_place)
[ "$after" -gt "$before" ] || fail "the second round wrote nothing in place ($before -> $after)"

snap_uri="nbd+unix:///$EXPORT_NAME@first?socket=$NBD_SOCK"
assert_eq "$(nbdcopy "$snap_uri" - | sha256sum | cut -d' ' -f1)" "$sum_first" \
  "the snapshot export reads exactly what the volume held when it was taken"
assert_ne "$(nbdcopy "$(nbd_uri)" - | sha256sum | cut -d' ' -f1)" "$sum_first" "the live volume moved on"

status=$(portalctl --json status)
assert_eq "$(jq -r '.counters.segments_written' <<<"$status")" 0 "memory:// wrote no segments"
assert_eq "$(jq -r '.counters.dirty_bytes' <<<"$status")" 0 "memory:// has nothing dirty"

# Restore: the live volume reads as the snapshot again, and the replaced
# state is kept as a snapshot of its own.
portalctl snapshot restore first >/dev/null
assert_eq "$(nbdcopy "$(nbd_uri)" - | sha256sum | cut -d' ' -f1)" "$sum_first" "restore brings the first round back"
write_round third "$(nbd_uri)" 3333
stop_portalbd
