#!/usr/bin/env bash
# Request traces (nbd/trace.h): the daemon started with --trace records every
# request it answers. Known qemu-io operations must show up exactly, with the
# right offsets, lengths, flags and errors; then the trace is replayed with
# bench/nbd_replay (build/bin/nbd_replay) against a fresh daemon, whose own
# trace must hold the same requests.
source "$(dirname "$0")/lib.sh"
requires qemu-io awk jq
requires_python_nbd

KiB=1024; MiB=$((1024 * KiB))
TRACE=$TMP/qemu-io.trace

# file://, so that FUA writes take real time (a segment and an fsync each)
# and the asynchronous writes below are still running when the next arrive;
# on memory:// a FUA write returns at once.
start_portalbd --storage "file://$TMP/bucket" --disk-size-gb 1 --trace "$TRACE"
# qemu-io opens with cache=writethrough: every write carries FUA, and it
# flushes once more when it closes.
qio "$(nbd_uri)" "write -P 0x11 0 $((64 * KiB))" "read -P 0x11 $((4 * KiB)) $((8 * KiB))" "flush" \
  "discard $MiB $((128 * KiB))" "write -z $((2 * MiB)) $((64 * KiB))" "write -P 0x22 $((3 * MiB)) 4096"
# A request the server refuses: past the end of the 1 GiB device (qemu-io
# would refuse it itself; libnbd does not once strict mode is off).
nbdsh -c 'h.set_strict_mode(0)' -c "h.connect_uri('$(nbd_uri)')" \
  -c 'try:
    h.pread(4096, 1 << 30)
except nbd.Error as e:
    print("refused:", e.errno)' -c 'h.shutdown()' >"$TMP/refused.out" 2>&1 || true
assert_match "$(cat "$TMP/refused.out")" '^refused: ' "the server refuses a read past the end"
# Something to replay with requests in flight together.
aio=()
for i in $(seq 0 15); do aio+=("aio_write -P $((i + 1)) $((8 * MiB + i * 256 * KiB)) $((128 * KiB))"); done
qio "$(nbd_uri)" "${aio[@]}" "aio_flush" "read -P 3 $((8 * MiB + 512 * KiB)) $((128 * KiB))"
stop_portalbd

assert_match "$(head -1 "$TRACE")" '^portalbd-nbd-trace v1 start_unix_ms=[0-9]+$' "the trace starts with a version-1 header"

# The qemu-io connections: the ones that did more than connect and leave
# (start_portalbd's readiness probes only send DISC).
busy=$(awk '!/^(#|portalbd)/ && $2 != "DISC" { print $1 }' "$TRACE" | sort -un | tr '\n' ' ')
set -- $busy
assert_eq "$#" 3 "three connections sent requests (qemu-io, nbdsh, qemu-io): $busy"
conn=$1 refused_conn=$2 aio_conn=$3
# Lines are in answer order; sorted by receive time they are the client's order.
sorted=$(grep -v '^[#p]' "$TRACE" | sort -s -k6,6n)
got=$(awk -v c="$conn" '$1 == c { print $2, $3, $4, $5, $8 }' <<<"$sorted")
want="WRITE 0 65536 1 0
READ 4096 8192 0 0
FLUSH 0 0 0 0
TRIM 1048576 131072 0 0
WRITE_ZEROES 2097152 65536 3 0
WRITE 3145728 4096 1 0
FLUSH 0 0 0 0
DISC 0 0 0 0"
assert_eq "$got" "$want" "the trace lists exactly the qemu-io requests: op offset length flags err"
got=$(awk -v c="$refused_conn" '$1 == c && $2 == "READ" { print $2, $3, $4, $8 }' "$TRACE")
assert_eq "$got" "READ 1073741824 4096 22" "a refused read past the end is recorded with EINVAL"
bad=$(awk '!/^(#|portalbd)/ && (NF != 8 || $7 < $6) { n++ } END { print n + 0 }' "$TRACE")
assert_eq "$bad" 0 "every line has 8 fields and is answered no earlier than received"
order=$(awk -v c="$conn" '$1 == c { if ($6 < last) bad = 1; last = $7 } END { print bad + 0 }' <<<"$sorted")
assert_eq "$order" 0 "qemu-io waits for each reply: every request arrives after the previous one was answered"
aio_writes=$(awk -v c="$aio_conn" '$1 == c && $2 == "WRITE" && $4 == 131072 { n++ } END { print n + 0 }' "$TRACE")
assert_eq "$aio_writes" 16 "the 16 asynchronous writes are all there"

# ---- replay (bench/nbd_replay) against a fresh daemon that traces too
REPLAY=${NBD_REPLAY:-$BUILD/bin/nbd_replay}
[ -x "$REPLAY" ] || fail "build $REPLAY first (make $BUILD/bin/nbd_replay)"
TRACE2=$TMP/replayed.trace
# file:// as for the recording: FUA writes take real time, so the replayed
# requests overlap (on memory:// FLUSH and FUA run inline, one at a time).
start_portalbd --storage "file://$TMP/bucket2" --disk-size-gb 1 --trace "$TRACE2"
"$REPLAY" --json "$TRACE" "$(nbd_uri)" >"$TMP/replay.json" 2>"$TMP/replay.err" ||
  { cat "$TMP/replay.err"; fail "nbd_replay exited $?"; }
log "replay: $(cat "$TMP/replay.json")"
"$REPLAY" --timed "$TRACE" "$(nbd_uri)" >"$TMP/replay-timed.out" 2>&1 ||
  { cat "$TMP/replay-timed.out"; fail "nbd_replay --timed failed"; }
"$REPLAY" --json --connections 1 --repeat 2 "$TRACE" "$(nbd_uri)" >"$TMP/replay-one.json" 2>&1 ||
  { cat "$TMP/replay-one.json"; fail "nbd_replay --connections 1 --repeat 2 failed"; }
stop_portalbd

# What a replay must send: every request that succeeded, DISC aside.
counts() { awk '!/^(#|portalbd)/ && $2 != "DISC" && $8 == 0 { n[$2]++ } END { for (o in n) print o, n[o] }' "$1" | sort; }
want_counts=$(counts "$TRACE")
ops=$(jq -r '.ops' "$TMP/replay.json")
assert_eq "$ops" "$(awk '{ s += $2 } END { print s }' <<<"$want_counts")" "nbd_replay reports one op per recorded request"
assert_eq "$(jq -r '.errors' "$TMP/replay.json")" 0 "no replayed request failed"
assert_eq "$(jq -r '.per_op | to_entries[] | "\(.key) \(.value)"' "$TMP/replay.json" | sort)" "$want_counts" \
  "nbd_replay's per-op counts match the trace"
assert_eq "$(jq -r '.ops' "$TMP/replay-one.json")" "$((2 * ops))" "--repeat 2 replays every request twice"
# The second daemon saw four passes: as fast as possible, timed, and twice on one connection.
times4=$(awk '{ print $1, $2 * 4 }' <<<"$want_counts")
assert_eq "$(counts "$TRACE2")" "$times4" "the replaying daemon's own trace holds the same requests, four times"
one_conn=$(awk '!/^(#|portalbd)/ && $2 != "DISC" { c[$1] = 1 } END { print length(c) }' "$TRACE2")
assert_eq "$one_conn" 5 "the replays used the two recorded connections (twice), then one"
# Requests that arrived while an earlier one of the same connection was still running.
overlaps() {  # TRACE
  grep -v '^[#p]' "$1" | sort -s -k1,1n -k6,6n |
    awk '$1 != c { c = $1; m = 0 } { if ($6 < m) n++; if ($7 > m) m = $7 } END { print n + 0 }'
}
log "overlapping requests: recorded $(overlaps "$TRACE"), replayed (all runs) $(overlaps "$TRACE2")"
[ "$(overlaps "$TRACE")" -gt 0 ] || fail "the aio writes should have overlapped when recorded"
[ "$(overlaps "$TRACE2")" -gt 0 ] || fail "the replay sent every request one at a time: concurrency lost"
ok "the replay keeps requests in flight together"
bytes=$(awk '!/^(#|portalbd)/ && $2 == "WRITE" && $8 == 0 { s += $4 } END { print s }' "$TRACE")
assert_eq "$(jq -r '.bytes_written' "$TMP/replay.json")" "$bytes" "replayed write bytes match the trace"

# Offsets past the target's end are refused, never clamped.
{ head -2 "$TRACE"; echo "1 WRITE $((2 * 1024 * MiB)) 4096 0 1 2 0"; } >"$TMP/big.trace"
start_portalbd --storage memory:// --disk-size-gb 1
rc=0; "$REPLAY" "$TMP/big.trace" "$(nbd_uri)" >"$TMP/big.out" 2>&1 || rc=$?
stop_portalbd
assert_eq "$rc" 2 "a trace reaching past the end of the target exits 2"
assert_match "$(cat "$TMP/big.out")" "reaches byte 2147487744 but .* is only 1073741824 bytes" "and says why"
