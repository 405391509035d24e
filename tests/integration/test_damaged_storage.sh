#!/usr/bin/env bash
# The damaged-storage matrix (docs/design.md, "Damaged storage: what open()
# checks"). Each case writes and flushes a volume on file://, stops the
# daemon, damages the objects with rm / truncate / dd / sed, and starts the
# daemon again with the old state dir and with a fresh one. Each start either
# refuses (exit status 1, a message naming the damaged object, storage left
# as it was) or serves the flushed data; never zeroes for flushed data
# without --repair, and never deletes an object it could not read.
source "$(dirname "$0")/lib.sh"
requires qemu-io truncate dd sha256sum

MiB=$((1024 * 1024))
# Each FLUSH below writes one segment: the mode without the local journal
# (with it, the segments would be whatever the uploads cut).
TEST_MODE_ARGS=(--journal off)

# new_volume NAME [SEGMENTS]: a volume in $TMP/NAME with SEGMENTS (default 4)
# flushed segments, segment i holding 1 MiB of byte i at (i-1) MiB. Sets
# STORE, BUCKET and STATE_DIR (the old state dir).
new_volume() {
  local name=$1 n=${2:-4} i cmds=()
  BUCKET=$TMP/$name/bucket
  STORE=file://$BUCKET
  STATE_DIR=$TMP/$name/state
  start_portalbd --storage "$STORE" --disk-size-gb 1
  for ((i = 1; i <= n; i++)); do cmds+=("write -P $i $(( (i - 1) * MiB )) 1M" "flush"); done
  qio "$(nbd_uri)" "${cmds[@]}"
  write_more
  stop_portalbd
}
write_more() { :; }  # a case's extra steps while the first daemon runs

# segment N: the key of the N-th segment in the bucket (1-based, by sequence).
segment() { (cd "$BUCKET" && ls segments/*.seg | sed -n "${1}p"); }

# fingerprint: every object's key, size and hash: what a refusal must not change.
fingerprint() { (cd "$BUCKET" && find . -type f ! -path './lock/*' -print0 | sort -z | xargs -0 sha256sum); }

# refused WHAT DESCRIPTION [ARGS...]: a start with the current STATE_DIR fails
# with status 1 and a message containing WHAT, leaving storage as it was.
refused() {
  local what=$1 desc=$2; shift 2
  local before; before=$(fingerprint)
  portalbd_default_args
  run_portalbd_expect_failure 60 "${DEFAULT_ARGS[@]}" --storage "$STORE" "$@"
  [ "$RUN_RC" -eq 1 ] || { echo "$RUN_OUT" | tail -5 | sed 's/^/    /'; fail "$desc: exit status $RUN_RC, expected 1"; }
  assert_match "$RUN_OUT" "$what" "$desc: refused, naming $what"
  assert_eq "$(fingerprint)" "$before" "$desc: storage unchanged by the refusal"
}

# serves I...: segments I... read back as written (the rest is not checked).
serves() {
  local i cmds=()
  for i in "$@"; do cmds+=("read -P $i $(( (i - 1) * MiB )) 1M"); done
  qio "$(nbd_uri)" "${cmds[@]}"
}
zeroes() { qio "$(nbd_uri)" "read -P 0 $(( ($1 - 1) * MiB )) 1M"; }

fresh_state() { STATE_DIR=$TMP/$1/state-fresh-$2; }

# ---- 1. a segment missing from the middle of the log
new_volume missing
gone=$(segment 2)
rm "$BUCKET/$gone"
refused "$gone" "missing segment, old state dir"
fresh_state missing 1
refused "$gone" "missing segment, fresh state dir"
refused "--repair" "missing segment, fresh state dir (the refusal offers --repair)"
start_portalbd --storage "$STORE" --repair
assert_match "$(cat "$PORTALBD_LOG")" "repair: segment lost.*$gone" "--repair logs the lost segment"
serves 1 3 4
zeroes 2
stop_portalbd
fresh_state missing 2
start_portalbd --storage "$STORE"
serves 1 3 4
ok "after --repair, a later start from storage alone needs no --repair"
stop_portalbd

# ---- 2. a torn segment in the middle of the log: refused, never deleted
new_volume torn
torn=$(segment 2)
truncate -s $(( $(stat -c %s "$BUCKET/$torn") / 2 )) "$BUCKET/$torn"
refused "$torn" "torn segment, old state dir"
fresh_state torn 1
refused "$torn" "torn segment, fresh state dir"
[ -f "$BUCKET/$torn" ] || fail "the torn segment was deleted"
start_portalbd --storage "$STORE" --repair
[ -f "$BUCKET/quarantine/$torn" ] || fail "--repair did not keep the torn segment under quarantine/"
[ ! -e "$BUCKET/$torn" ] || fail "--repair left the torn segment in place"
ok "--repair moved the torn segment to quarantine/$torn"
serves 1 3 4
stop_portalbd

# ---- 3. a segment's trailer overwritten (dd) in the middle of the log
new_volume trailer
hit=$(segment 3)
dd if=/dev/urandom of="$BUCKET/$hit" bs=1 count=40 seek=$(( $(stat -c %s "$BUCKET/$hit") - 40 )) conv=notrunc status=none
fresh_state trailer 1
refused "$hit" "overwritten trailer, fresh state dir"
# The old index maps the blocks straight to their frames, which are whole.
STATE_DIR=$TMP/trailer/state
start_portalbd --storage "$STORE"
serves 1 2 3 4
ok "overwritten trailer, old state dir: every flushed byte served"
stop_portalbd

# ---- 4. the newest segment torn
new_volume tail
last=$(segment 4)
truncate -s 100 "$BUCKET/$last"
refused "$last" "torn newest segment, old state dir (the index knows it was committed)"
# From storage alone it is an upload a crash cut short: the tail of the log.
fresh_state tail 1
start_portalbd --storage "$STORE"
[ -f "$BUCKET/quarantine/$last" ] || fail "the torn tail segment was not kept under quarantine/"
assert_match "$(cat "$PORTALBD_LOG")" "quarantined .*$last" "torn newest segment, fresh state dir: quarantined and logged"
serves 1 2 3
stop_portalbd

# ---- 5. a roots record missing: a snapshot and the writes after it
write_more() {
  out=$(portalctl snapshot create s1 2>&1) || fail "portalctl snapshot create s1: $out"
  qio "$(nbd_uri)" "write -P 9 0 1M" "flush"
}
new_volume roots 2
write_more() { :; }
record=$(cd "$BUCKET" && ls roots/*.json | tail -1)
rm "$BUCKET/$record"
refused "$record" "missing roots record, old state dir"
fresh_state roots 1
refused "layer 2" "missing roots record, fresh state dir (segments name a layer nothing knows)"
STATE_DIR=$TMP/roots/state
start_portalbd --storage "$STORE" --repair
out=$(portalctl snapshot list 2>&1) || fail "portalctl snapshot list: $out"
assert_match "$out" 's1' "--repair with the old state dir keeps snapshot s1"
qio "$(nbd_uri)" "read -P 9 0 1M" "read -P 2 $MiB 1M"
stop_portalbd
fresh_state roots 2
start_portalbd --storage "$STORE"
qio "$(nbd_uri)" "read -P 9 0 1M" "read -P 2 $MiB 1M"
out=$(portalctl snapshot list 2>&1) || fail "portalctl snapshot list: $out"
assert_match "$out" 's1' "after that repair, storage alone has s1 again"
stop_portalbd

# ---- 6. volume.json missing over a volume's objects
new_volume manifest
rm "$BUCKET/volume.json"
refused "no volume.json in $STORE, but it holds 4 segments" "missing volume.json, old state dir"
fresh_state manifest 1
refused "no volume.json" "missing volume.json, fresh state dir"
[ ! -e "$BUCKET/volume.json" ] || fail "a new volume.json was written over the volume"
ok "no new volume.json was written"

# ---- 7. volume.json's size below the written data
new_volume shrunk
sed -i 's/"size_bytes": [0-9]*/"size_bytes": 2097152/' "$BUCKET/volume.json"
refused "size_bytes=2097152" "shrunken size_bytes, old state dir"
fresh_state shrunk 1
refused "holds data up to byte $((4 * MiB))" "shrunken size_bytes, fresh state dir"

# ---- 8. a damaged checkpoint: skipped, quarantined, the data served
write_more() {
  out=$(portalctl checkpoint 2>&1) || fail "portalctl checkpoint: $out"
  qio "$(nbd_uri)" "write -P 5 $((4 * MiB)) 1M" "flush"
}
new_volume checkpoint
write_more() { :; }
ckpt=$(cd "$BUCKET" && ls checkpoints/*.zst | tail -1)
dd if=/dev/zero of="$BUCKET/$ckpt" bs=1 count=16 seek=$(( $(stat -c %s "$BUCKET/$ckpt") / 2 )) conv=notrunc status=none
start_portalbd --storage "$STORE"
serves 1 2 3 4 5
ok "damaged checkpoint, old state dir: served (the index does not need it)"
stop_portalbd
fresh_state checkpoint 1
start_portalbd --storage "$STORE"
assert_match "$(cat "$PORTALBD_LOG")" "skipping a damaged checkpoint object=$ckpt" "damaged checkpoint, fresh state dir: a warning names it"
[ -f "$BUCKET/quarantine/$ckpt" ] || fail "the damaged checkpoint was not kept under quarantine/"
serves 1 2 3 4 5
ok "damaged checkpoint, fresh state dir: rebuilt from the segments, served"
stop_portalbd

# ---- 9. a corrupt index.sqlite: moved aside, rebuilt
new_volume index
dd if=/dev/urandom of="$STATE_DIR/index.sqlite" bs=4096 count=2 conv=notrunc status=none
start_portalbd --storage "$STORE"
assert_match "$(cat "$PORTALBD_LOG")" "index is unreadable, moved it aside" "corrupt index: one log line"
ls "$STATE_DIR"/index.sqlite.corrupt-* >/dev/null 2>&1 || fail "the corrupt index was not moved aside"
serves 1 2 3 4
ok "corrupt index: moved aside, rebuilt from storage, served"
stop_portalbd
