#!/usr/bin/env bash
# Object storage is the truth: a daemon started on a fresh state dir with only
# the storage URL finds the same volume (its size without --disk-size-gb, its
# flushed data, its snapshots) after a clean stop (journal on, file://'s
# default), and the last flushed state after a kill -9 (journal off: FLUSH
# waits for storage). SEED=N reproduces the random writes.
source "$(dirname "$0")/lib.sh"
requires nbdinfo truncate
requires_python_nbd
requires_portalctl

MiB=$((1024 * 1024)); GiB=$((1024 * MiB))
SIZE=$((2 * GiB))
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "SEED=$SEED (rerun with SEED=$SEED bash $0)"
STORE=file://$TMP/bucket
REGIONS=(--region "0:$((32 * MiB))" --region "$((SIZE - MiB)):$MiB")
truncate -s "$SIZE" "$TMP/model.img"

STATE_DIR=$TMP/state-a
start_portalbd --disk-size-gb 2 --storage "$STORE"
nbdmodel write "$(nbd_uri)" "$TMP/model.img" --seed "$SEED" --count 100 "${REGIONS[@]}" | sed 's/^/    /'
cp --sparse=always "$TMP/model.img" "$TMP/model-snap.img"
out=$(portalctl snapshot create before 2>&1) || fail "portalctl snapshot create before: $out"
ok "wrote and flushed, then took snapshot 'before'"
nbdmodel write "$(nbd_uri)" "$TMP/model.img" --seed $((SEED + 1)) --count 60 "${REGIONS[@]}" | sed 's/^/    /'
ok "more writes after the snapshot, flushed"
stop_portalbd

# ---- a fresh machine: new state dir, only the storage URL, no size
# The first daemon ran with file://'s default, the local journal: its clean
# stop uploaded everything. From here on the claim is "every answered FLUSH is
# in storage", which is the mode without the journal (with it, losing the
# state dir loses what was not uploaded yet: test_journal.sh checks that the
# rest is a prefix of the writes).
TEST_MODE_ARGS=(--journal off)
STATE_DIR=$TMP/state-b
start_portalbd --storage "$STORE"
assert_eq "$(nbdinfo --size "$(nbd_uri)")" "$SIZE" "fresh state dir, no --disk-size-gb: the volume's 2 GiB size comes from storage"
out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${REGIONS[@]}") || { echo "$out"; fail "the live volume differs after rebuilding from storage"; }
ok "fresh state dir: the live volume equals the model"
out=$(portalctl snapshot list 2>&1) || fail "portalctl snapshot list: $out"
assert_match "$out" 'before' "fresh state dir: snapshot 'before' is listed"
snap_uri="nbd+unix:///portalbd@before?socket=$NBD_SOCK"
out=$(nbdmodel verify "$snap_uri" "$TMP/model-snap.img" "${REGIONS[@]}") || { echo "$out"; fail "snapshot 'before' differs after rebuilding from storage"; }
ok "fresh state dir: the export portalbd@before equals the model at snapshot time"

# ---- crash, then a fresh machine again
nbdmodel_write_held "kill -9 round" "$(nbd_uri)" "$TMP/model.img" --seed $((SEED + 2)) --count 60 "${REGIONS[@]}" \
  --unflushed 10 --unflushed-region "$((64 * MiB)):$((16 * MiB))" --journal "$TMP/journal"
sed 's/^/    /' "$TMP/writer.out"
kill9_portalbd
nbdmodel_release
ok "writes, FLUSH, unflushed writes, kill -9"

STATE_DIR=$TMP/state-c
start_portalbd --storage "$STORE"
out=$(nbdmodel verify "$(nbd_uri)" "$TMP/model.img" "${REGIONS[@]}" --region "$((64 * MiB)):$((16 * MiB))" \
  --journal "$TMP/journal") || { echo "$out"; fail "after kill -9, a fresh state dir does not see the last flushed state"; }
echo "$out" | sed 's/^/    /'
ok "after kill -9, a fresh state dir sees every flushed byte"
out=$(nbdmodel verify "$snap_uri" "$TMP/model-snap.img" "${REGIONS[@]}") || { echo "$out"; fail "snapshot 'before' changed"; }
ok "snapshot 'before' is still intact"
stop_portalbd
