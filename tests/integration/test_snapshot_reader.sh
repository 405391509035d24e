#!/usr/bin/env bash
# Read-only snapshot readers (portalbd --serve-snapshot NAME; docs/design.md,
# "Read-only snapshot readers"): while the volume's writer keeps writing,
# snapshotting, deleting snapshots and collecting garbage on file://, two
# reader daemons (own state dirs, sockets and ports) serve snapshot s1
# byte for byte, refuse writes (EPERM) and mutating control commands, send
# storage no PUT or DELETE, and leave the writer's lease alone.
source "$(dirname "$0")/lib.sh"
# The writer's FLUSH puts data in storage, where the readers read it.
TEST_MODE_ARGS=(--journal off)
requires nbdinfo nbdcopy qemu-io sha256sum

STORE="file://$TMP/store"
start_portalbd --disk-size-gb 1 --storage "$STORE" --gc-grace-ms 0 --gc-interval-s 0
WRITER_CTL=$CTL_SOCK

# The pattern: 8 MiB of noise at the start of a 1 GiB device; the rest zero.
head -c $((8 << 20)) /dev/urandom >"$TMP/pattern"
cp "$TMP/pattern" "$TMP/expected.img"
truncate -s 1G "$TMP/expected.img"
EXPECTED=$(sha256sum <"$TMP/expected.img" | cut -d' ' -f1)
check "the writer takes the pattern" nbdcopy --flush "$TMP/expected.img" "$(nbd_uri)"
check "snapshot s1 is taken" portalctl snapshot create s1
qio "$(nbd_uri)" "write -P 0x33 0 8M" "flush"
ok "the writer overwrites the snapshot's blocks after it"
LEASE_PID_BEFORE=$(grep -o '"pid": *[0-9]*' "$TMP/store/lock/writer.json")

# reader N: its own state dir, unix sockets and TCP port.
start_reader() {
  local n=$1 port; port=$(pick_unused_port)
  "$PORTALBD" --serve-snapshot s1 --storage "$STORE" --state-dir "$TMP/reader$n" \
    --nbd-unix "$TMP/reader$n.nbd" --socket "$TMP/reader$n.ctl" --nbd-address "127.0.0.1:$port" \
    >"$TMP/reader$n.log" 2>&1 &
  eval "READER${n}_PID=$!"
  cleanup_fn kill -9 "$!"
}
reader_uri() { echo "nbd+unix:///$EXPORT_NAME?socket=$TMP/reader$1.nbd"; }
start_reader 1
start_reader 2
for n in 1 2; do
  for _ in $(seq 1 150); do nbdinfo --size "$(reader_uri $n)" >/dev/null 2>&1 && break; sleep 0.1; done
  check "reader $n serves s1" nbdinfo --size "$(reader_uri $n)"
done

# The writer works on while the readers are read: overwrites of the same
# blocks, snapshots taken and deleted, GC passes that delete segments.
(
  for i in $(seq 1 6); do
    qemu-io -f raw "$(nbd_uri)" -c "write -P $((0x40 + i)) 0 8M" -c "flush" >/dev/null
    "$PORTALCTL" --socket "$WRITER_CTL" snapshot create "t$i" >/dev/null
    if [ "$i" -gt 1 ]; then "$PORTALCTL" --socket "$WRITER_CTL" snapshot delete "t$((i - 1))" >/dev/null; fi
    "$PORTALCTL" --socket "$WRITER_CTL" gc --wait >/dev/null
  done
) >"$TMP/writer-work.log" 2>&1 &
WORK_PID=$!
cleanup_fn kill -9 "$WORK_PID"
for round in 1 2; do
  for n in 1 2; do
    rm -f "$TMP/copy$n.img"
    check "round $round: nbdcopy from reader $n" nbdcopy "$(reader_uri $n)" "$TMP/copy$n.img"
    assert_eq "$(sha256sum <"$TMP/copy$n.img" | cut -d' ' -f1)" "$EXPECTED" \
      "round $round: reader $n's copy of s1 is the pattern (sha256)"
  done
done
wait "$WORK_PID" || fail "the writer's work failed: $(cat "$TMP/writer-work.log")"
ok "the writer wrote, snapshotted, deleted snapshots and collected garbage meanwhile"
assert_match "$(portalctl gc)" "." "gc runs on the writer"
for n in 1 2; do
  rm -f "$TMP/copy$n.img"
  nbdcopy "$(reader_uri $n)" "$TMP/copy$n.img"
  assert_eq "$(sha256sum <"$TMP/copy$n.img" | cut -d' ' -f1)" "$EXPECTED" "after GC: reader $n still reads s1"
done

# Read-only, to NBD and to the control socket.
assert_match "$(nbdinfo --json "$(reader_uri 1)")" '"is_read_only": *true' "the reader's export is read-only"
out=$(qemu-io -f raw "$(reader_uri 1)" -c "write -P 0x55 0 4096" 2>&1) || true
assert_match "$out" "Operation not permitted|read-only|Permission denied" "a write to a reader fails"
rc=0
out=$("$PORTALCTL" --socket "$TMP/reader1.ctl" snapshot create x 2>&1) || rc=$?
assert_ne "$rc" "0" "portalctl snapshot create against a reader exits non-zero"
assert_match "$out" "read-only.*--serve-snapshot" "and says the reader is read-only"
for cmd in "snapshot delete s1" "snapshot restore s1" "gc" "checkpoint"; do
  rc=0
  # shellcheck disable=SC2086
  "$PORTALCTL" --socket "$TMP/reader2.ctl" $cmd >/dev/null 2>&1 || rc=$?
  assert_ne "$rc" "0" "portalctl $cmd against a reader is refused"
done
status=$("$PORTALCTL" --socket "$TMP/reader1.ctl" --json status)
assert_match "$status" '"mode": *"snapshot-reader"' "reader status says it is a snapshot reader"
assert_match "$status" '"name": *"s1"' "reader status names the snapshot it serves"
for n in 1 2; do
  requests=$("$PORTALCTL" --socket "$TMP/reader$n.ctl" --json status)
  assert_match "$requests" '"store_requests": *\{[^}]*"put": *0,' "reader $n sent storage no PUT"
  assert_match "$requests" '"store_requests": *\{[^}]*"remove": *0,' "reader $n sent storage no DELETE"
  assert_match "$requests" '"lease_requests": *\{[^}]*"total": *0[,}]' "reader $n never touched the writer lease"
done

# The writer is unaffected: same lease holder, still writes and flushes.
assert_eq "$(grep -o '"pid": *[0-9]*' "$TMP/store/lock/writer.json")" "$LEASE_PID_BEFORE" "the writer still holds its lease"
qio "$(nbd_uri)" "write -P 0x66 0 64k" "flush" "read -P 0x66 0 64k"
ok "the writer still writes and flushes"
assert_match "$(portalctl --json status)" '"mode": *"writer"' "writer status says writer"

# A reader of a snapshot that does not exist, or of an empty store, refuses clearly.
run_portalbd_expect_failure 30 --serve-snapshot nope --storage "$STORE" --state-dir "$TMP/reader3" \
  --nbd-unix "$TMP/reader3.nbd" --socket "$TMP/reader3.ctl" --nbd-address ""
assert_ne "$RUN_RC" "0" "a reader of an unknown snapshot exits non-zero"
assert_match "$RUN_OUT" "snapshot 'nope' is not in" "and names the snapshot"
run_portalbd_expect_failure 30 --serve-snapshot s1 --storage "file://$TMP/empty" --state-dir "$TMP/reader4" \
  --nbd-unix "$TMP/reader4.nbd" --socket "$TMP/reader4.ctl" --nbd-address ""
assert_ne "$RUN_RC" "0" "a reader of a store without a volume exits non-zero"
assert_match "$RUN_OUT" "no volume.json" "and says there is no volume"
if [ -e "$TMP/empty/volume.json" ]; then fail "the reader created a volume"; fi
ok "the reader created nothing in the empty store"

for n in 1 2; do
  pid_var="READER${n}_PID"
  kill -TERM "${!pid_var}"
  wait "${!pid_var}" || fail "reader $n exited non-zero: $(tail -5 "$TMP/reader$n.log")"
  ok "reader $n stopped cleanly"
done
stop_portalbd
