#!/usr/bin/env bash
# Request traces (nbd/trace.h): the daemon started with --trace records every
# request it answers. Known qemu-io operations must show up exactly, with the
# right offsets, lengths, flags and errors; then the trace is replayed with
# bench/nbd_replay against a fresh daemon, whose own trace must hold the same
# requests.
source "$(dirname "$0")/lib.sh"
requires qemu-io awk
requires_python_nbd

KiB=1024; MiB=$((1024 * KiB))
TRACE=$TMP/qemu-io.trace

start_portalbd --storage memory:// --disk-size-gb 1 --trace "$TRACE"
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
stop_portalbd

assert_match "$(head -1 "$TRACE")" '^portalbd-nbd-trace v1 start_unix_ms=[0-9]+$' "the trace starts with a version-1 header"

# The qemu-io connections: the ones that did more than connect and leave
# (start_portalbd's readiness probes only send DISC).
busy=$(awk '!/^(#|portalbd)/ && $2 != "DISC" { print $1 }' "$TRACE" | sort -un | tr '\n' ' ')
set -- $busy
assert_eq "$#" 2 "two connections sent requests (qemu-io, then nbdsh): $busy"
conn=$1 refused_conn=$2
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
