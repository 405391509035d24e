#!/usr/bin/env bash
# Space comes back (DESIGN invariant 5): a 256 MiB region is overwritten five
# times with a snapshot after each pass; two snapshots are deleted; after
# `portalctl gc --wait` the bytes stored are at most 1.3x the bytes some root
# still reaches, every remaining snapshot and the live volume read back
# exactly, and a rebuild from storage alone (fresh state dir) agrees.
source "$(dirname "$0")/lib.sh"
requires nbdcopy cksum
requires_portalctl

MiB=$((1024 * 1024))
REGION=$((256 * MiB))
STORE="file://$TMP/store"
start_portalbd --disk-size-gb 1 --storage "$STORE" --gc-interval-s 0 --gc-grace-ms 500

# region_sum EXPORT: CRC of the first 256 MiB of an export.
region_sum() {
  rm -f "$TMP/r.img"
  truncate -s 1G "$TMP/r.img"
  nbdcopy --destination-is-zero "nbd+unix:///$1?socket=$NBD_SOCK" "$TMP/r.img"
  truncate -s "$REGION" "$TMP/r.img"
  cksum -a crc <"$TMP/r.img" | cut -d' ' -f1,2
}

declare -A SUM
for gen in 1 2 3 4 5; do
  head -c "$REGION" /dev/urandom >"$TMP/gen.bin"
  nbdcopy --flush "$TMP/gen.bin" "$(nbd_uri)"
  portalctl snapshot create "gen$gen" >/dev/null
  SUM[gen$gen]=$(cksum -a crc <"$TMP/gen.bin" | cut -d' ' -f1,2)
done
LIVE=${SUM[gen5]}
portalctl snapshot delete gen2 >/dev/null
portalctl snapshot delete gen4 >/dev/null
ok "5 overwrites of 256 MiB with snapshots; gen2 and gen4 deleted"

before=$(portalctl --json status)
stored_before=$(sed -nE 's/.*"bytes_stored":([0-9]+).*/\1/p' <<<"$before")
out=$(portalctl gc --wait)
echo "$out" | sed 's/^/    /'
after=$(portalctl --json status)
stored=$(sed -nE 's/.*"bytes_stored":([0-9]+).*/\1/p' <<<"$after")
live=$(sed -nE 's/.*"bytes_live":([0-9]+).*/\1/p' <<<"$after")
on_disk=$(du -sb "$TMP/store/segments" | cut -f1)
log "stored before gc: $stored_before; after: $stored (on disk $on_disk); live: $live"
assert_eq "$live" "$((3 * REGION))" "live bytes are gen1, gen3 and gen5 (the live volume is gen5)"
[ "$stored" -lt "$stored_before" ] || fail "gc reclaimed nothing ($stored_before -> $stored)"
ok "gc reclaimed $(( (stored_before - stored) / MiB )) MiB"
[ "$((stored * 10))" -le "$((live * 13))" ] || fail "bytes stored $stored > 1.3 x live $live"
ok "bytes stored ($stored) <= 1.3 x bytes reachable ($live)"
[ "$((on_disk * 10))" -le "$((live * 13))" ] || fail "segment files $on_disk > 1.3 x live $live"
ok "segment files on disk ($on_disk) <= 1.3 x bytes reachable"

for g in gen1 gen3 gen5; do
  assert_eq "$(region_sum "$EXPORT_NAME@$g")" "${SUM[$g]}" "snapshot $g reads back exactly after gc"
done
assert_eq "$(region_sum "$EXPORT_NAME")" "$LIVE" "the live volume reads back exactly after gc"
stop_portalbd

# Rebuild from storage alone: checkpoint + newer segments.
STATE_DIR=$TMP/state-fresh
start_portalbd --storage "$STORE" --gc-interval-s 0
for g in gen1 gen3 gen5; do
  assert_eq "$(region_sum "$EXPORT_NAME@$g")" "${SUM[$g]}" "rebuilt from storage: $g intact"
done
assert_eq "$(region_sum "$EXPORT_NAME")" "$LIVE" "rebuilt from storage: live intact"
list=$(portalctl --json snapshot list)
assert_no_match "$list" '"name":"gen2"' "deleted snapshots stay deleted after the rebuild"
stop_portalbd
