#!/usr/bin/env bash
# Snapshot generations (issue: snapshots): fill, snapshot, overwrite, snapshot ...
# six times; every snapshot export and every restore reads back exactly the
# device recorded at its snapshot; restore an old one then a newer one; undo a
# restore through its pre-restore snapshot; snapshots and their contents
# survive kill -9 and a restart.
source "$(dirname "$0")/lib.sh"
requires nbdcopy qemu-io cksum
requires_portalctl
requires_python_nbd

MiB=$((1024 * 1024))
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "SEED=$SEED (rerun with SEED=$SEED bash $0)"
RANDOM=$SEED

start_portalbd --disk-size-gb 1 --flush-interval-ms 200

# device_sum EXPORT: CRC and size of the whole 1 GiB device (copied sparse to a
# file first: piping a gigabyte of zeros into a hash is what would be slow).
device_sum() {
  rm -f "$TMP/dev.img"
  truncate -s 1G "$TMP/dev.img"
  nbdcopy --destination-is-zero "nbd+unix:///$1?socket=$NBD_SOCK" "$TMP/dev.img"
  cksum -a crc "$TMP/dev.img" | cut -d' ' -f1,2
}

declare -A SUM
GENS=(g1 g2 g3 g4 g5 g6)
for i in "${!GENS[@]}"; do
  g=${GENS[$i]}
  # Each generation rewrites a random 8 MiB region with random bytes, and
  # zeroes or trims a random other one.
  off=$(( (RANDOM % 120) * MiB ))
  head -c $((8 * MiB)) /dev/urandom >"$TMP/gen.bin"
  "$SYSPYTHON" - "$NBD_SOCK" "$EXPORT_NAME" "$TMP/gen.bin" "$off" <<'PY'
import nbd, sys
h = nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1])
data = open(sys.argv[3], "rb").read()
h.pwrite(data, int(sys.argv[4])); h.flush(); h.shutdown()
PY
  qio "$(nbd_uri)" "write -P $((i + 0x40)) $((off + 3 * MiB + 17)) 70000" \
    "write -z $(( (RANDOM % 120) * MiB )) $((2 * MiB))" "discard $(( (RANDOM % 120) * MiB )) $MiB"
  SUM[$g]=$(device_sum "$EXPORT_NAME")
  out=$(portalctl snapshot create "$g")
  assert_match "$out" "$g" "snapshot $g created"
done
# Change the live device once more after the last snapshot.
qio "$(nbd_uri)" "write -P 0x99 0 $((4 * MiB))"
LIVE_SUM=$(device_sum "$EXPORT_NAME")
assert_ne "$LIVE_SUM" "${SUM[g6]}" "the live device moved on after the last snapshot"

for g in "${GENS[@]}"; do
  assert_eq "$(device_sum "$EXPORT_NAME@$g")" "${SUM[$g]}" "export $EXPORT_NAME@$g reads the device as it was at $g"
done

# kill -9, restart: snapshots and contents intact.
kill9_portalbd
start_portalbd --disk-size-gb 1 --flush-interval-ms 200
list=$(portalctl --json snapshot list)
for g in "${GENS[@]}"; do assert_match "$list" "\"name\":\"$g\"" "snapshot $g listed after kill -9 and restart"; done
assert_eq "$(device_sum "$EXPORT_NAME@g3")" "${SUM[g3]}" "g3 contents intact after kill -9"
assert_eq "$(device_sum "$EXPORT_NAME")" "$LIVE_SUM" "live contents intact after kill -9 (the snapshot command flushed them)"

# Restore every generation, in a random order, and compare the whole device.
order=($(printf '%s\n' "${GENS[@]}" | shuf --random-source=<(yes "$SEED" 2>/dev/null || true)))
for g in "${order[@]}"; do
  out=$(portalctl snapshot restore --discard-current "$g")
  assert_eq "$(device_sum "$EXPORT_NAME")" "${SUM[$g]}" "after restore of $g the device equals $g"
done
# An old one, then a newer one.
portalctl snapshot restore --discard-current g1 >/dev/null
portalctl snapshot restore --discard-current g5 >/dev/null
assert_eq "$(device_sum "$EXPORT_NAME")" "${SUM[g5]}" "restore g1 then g5: the device equals g5"

# Undo a restore: the state it replaced is kept as pre-restore-<time>.
qio "$(nbd_uri)" "write -P 0x5a $((7 * MiB)) $MiB"
BEFORE_UNDO=$(device_sum "$EXPORT_NAME")
out=$(portalctl --json snapshot restore g2)
pre=$(sed -nE 's/.*"pre_restore":"([^"]+)".*/\1/p' <<<"$out")
assert_match "$pre" '^pre-restore-[0-9]{8}T[0-9]{6}Z' "restore kept the replaced state as $pre"
assert_eq "$(device_sum "$EXPORT_NAME")" "${SUM[g2]}" "the device equals g2"
portalctl snapshot restore --discard-current "$pre" >/dev/null
assert_eq "$(device_sum "$EXPORT_NAME")" "$BEFORE_UNDO" "restoring $pre undid the restore"
count=$(portalctl --json snapshot list | grep -o '"name":' | wc -l)
assert_eq "$count" "7" "restores deleted no snapshot (6 generations + 1 pre-restore)"
stop_portalbd
