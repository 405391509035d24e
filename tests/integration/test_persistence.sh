#!/usr/bin/env bash
# Durability across restarts on the same state dir and file:// store:
#  1. patterns written and FLUSHed survive SIGTERM + restart;
#  2. three seeded rounds of random writes / zero writes / trims, FLUSH, then
#     more writes that are never flushed, then kill -9 under the open session:
#     after restart every flushed byte is intact and the unflushed writes that
#     survived are whole and a prefix of the write order (SEED=N reproduces);
#  3. a smaller --disk-size-gb than the volume's is refused (non-zero exit and
#     a message), --grow to a larger size works, the data stays intact.
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdinfo truncate
requires_python_nbd

MiB=$((1024 * 1024)); GiB=$((1024 * MiB))
SIZE=$((2 * GiB))
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "SEED=$SEED (rerun with SEED=$SEED bash $0)"
truncate -s "$SIZE" "$TMP/model.img"

# apply WRITE-COMMANDS...: the same qemu-io commands on the export and the model.
apply() {
  qio "$(nbd_uri)" "$@"
  local c m=()
  for c in "$@"; do [ "$c" = flush ] || m+=("$c"); done
  qio "$TMP/model.img" "${m[@]}"
}

# ---- 1. FLUSH, SIGTERM, restart
start_portalbd --disk-size-gb 2
apply "write -P 0x11 0 65536" "write -P 0x22 $((MiB + 1)) 12345" "write -P 0x33 $((SIZE - 4096)) 4096" \
  "write -z 4096 4096" "flush"
ok "patterns written and flushed"
stop_portalbd
start_portalbd --disk-size-gb 2
qio "$(nbd_uri)" "read -P 0x11 0 4096" "read -P 0 4096 4096" "read -P 0x11 8192 57344" \
  "read -P 0x22 $((MiB + 1)) 12345" "read -P 0 $MiB 1" "read -P 0x33 $((SIZE - 4096)) 4096"
ok "after SIGTERM and restart the patterns read back"

# ---- 2. crash rounds: flushed data must survive kill -9
REGIONS=(--region "0:$((64 * MiB))" --region "$((SIZE - MiB)):$MiB")
verify_regions=("${REGIONS[@]}")
for round in 0 1 2; do
  seed=$((SEED + round))
  unflushed_region="$((256 * MiB + round * 16 * MiB)):$((16 * MiB))"
  nbdmodel_write_held "round $round (seed $seed)" "$(nbd_uri)" "$TMP/model.img" --seed "$seed" --count 80 \
    "${REGIONS[@]}" --unflushed 12 --unflushed-region "$unflushed_region" --journal "$TMP/journal.$round"
  sed 's/^/    /' "$TMP/writer.out"
  kill9_portalbd
  nbdmodel_release
  ok "round $round (seed $seed): writes, FLUSH, unflushed writes, then kill -9 under the open session"
  [ -S "$NBD_SOCK" ] && log "the crashed daemon left $NBD_SOCK behind; the restart must cope"

  start_portalbd --disk-size-gb 2
  verify_regions+=(--region "$unflushed_region")
  out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${verify_regions[@]}" --journal "$TMP/journal.$round") ||
    { echo "$out"; fail "round $round (seed $seed): the device after kill -9 and restart differs from the model"; }
  echo "$out" | sed 's/^/    /'
  ok "round $round (seed $seed): after kill -9 and restart every flushed byte is intact"
done

# ---- 3. size: smaller refused, --grow works
stop_portalbd
portalbd_default_args
run_portalbd_expect_failure 30 "${DEFAULT_ARGS[@]}" --disk-size-gb 1
echo "$RUN_OUT" | tail -5 | sed 's/^/    /'
[ "$RUN_RC" -ne 124 ] && [ "$RUN_RC" -ne 137 ] || fail "portalbd with a smaller --disk-size-gb 1 was still running after 30 s"
assert_ne "$RUN_RC" 0 "starting a 2 GiB volume with --disk-size-gb 1 is refused (exit $RUN_RC)"
assert_match "$RUN_OUT" '[Ss]ize|[Ss]maller|[Ss]hrink|GiB|GB' "the refusal says why (the size)"

start_portalbd --disk-size-gb 2
out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${verify_regions[@]}") || { echo "$out"; fail "data changed after the refused start"; }
ok "the refused start left the volume intact"
stop_portalbd

start_portalbd --disk-size-gb 3 --grow
assert_eq "$(nbdinfo --size "$(nbd_uri)")" $((3 * GiB)) "--grow --disk-size-gb 3: nbdinfo shows 3 GiB"
out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${verify_regions[@]}") || { echo "$out"; fail "data changed by --grow"; }
ok "the data is intact after --grow"
qio "$(nbd_uri)" "read -P 0 $SIZE $MiB" "read -P 0 $((3 * GiB - MiB)) $MiB" \
  "write -P 0x44 $((3 * GiB - 4096)) 4096" "read -P 0x44 $((3 * GiB - 4096)) 4096" "flush"
ok "the grown part reads as zeros and its last block takes writes"
stop_portalbd

start_portalbd --disk-size-gb 3
assert_eq "$(nbdinfo --size "$(nbd_uri)")" $((3 * GiB)) "restart at the grown size: 3 GiB"
qio "$(nbd_uri)" "read -P 0x44 $((3 * GiB - 4096)) 4096"
ok "the last block of the grown volume persisted"
out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${verify_regions[@]}") || { echo "$out"; fail "data changed after the restart at the grown size"; }
ok "the old data is intact at the grown size"
stop_portalbd

run_portalbd_expect_failure 30 "${DEFAULT_ARGS[@]}" --disk-size-gb 2
[ "$RUN_RC" -ne 124 ] && [ "$RUN_RC" -ne 137 ] || fail "portalbd with --disk-size-gb 2 was still running after 30 s"
assert_ne "$RUN_RC" 0 "after growing to 3 GiB, --disk-size-gb 2 is refused (exit $RUN_RC)"
