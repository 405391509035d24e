#!/usr/bin/env bash
# Timeouts that hold (issue 21): the daemon on s3:// (s3rver) with the store
# hung, not down: s3rver is SIGSTOPped, so connections are accepted by the
# kernel and nothing is ever answered. Without the local journal a FLUSH goes
# to storage, and it must get EIO within lsm.flush_timeout_ms (3 s here) plus
# a few seconds, however the S3 retry loop is doing (before: 8 attempts of
# curl's 30 s low-speed limit, about 11.5 minutes). Meanwhile status says
# storage is failing, buffered writes still read back, and a read of data
# in neither cache gets EIO within the same deadline. After SIGCONT,
# with no restart, the next FLUSH succeeds and every answered write reads
# back, and again after a clean restart.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires_portalbd
requires_python_nbd
requires jq

start_s3rver
# If the test fails while s3rver is stopped, wake it so that it can be killed
# (cleanups run last-registered first).
cleanup_fn kill -CONT "$S3RVER_PID"
export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
unset PORTALBD_S3_MAX_ATTEMPTS
STORAGE="s3://$S3_BUCKET/volumes/hang"
TIMEOUT_MS=3000
DAEMON_ARGS=(--storage "$STORAGE" --disk-size-gb 1 --journal off --flush-timeout-ms "$TIMEOUT_MS" --gc-interval-s 0)
start_portalbd "${DAEMON_ARGS[@]}"

# client.py URI ANSWERED_JSON CMD...: one NBD connection per step; prints one
# JSON line. Writes that were answered OK are added to ANSWERED_JSON.
cat >"$TMP/client.py" <<'PYEOF'
import hashlib, json, os, sys, time
import nbd

MiB = 1 << 20
uri, answered_file, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
answered = json.load(open(answered_file)) if os.path.exists(answered_file) else {}

def block(tag, i):
    seed = hashlib.sha256(f"{tag}-{i}".encode()).digest()
    return (seed * (MiB // len(seed) + 1))[:MiB]

def errno_of(e):
    return e.errno if e.errno else str(e)

h = nbd.NBD()
h.connect_uri(uri)
out = {"step": cmd[0]}
t0 = time.monotonic()
if cmd[0] == "write":            # write TAG FIRST_MiB COUNT
    tag, first, count = cmd[1], int(cmd[2]), int(cmd[3])
    for i in range(count):
        h.pwrite(block(tag, i), (first + i) * MiB)
        answered[str((first + i) * MiB)] = [tag, i]
elif cmd[0] == "flush":
    try:
        h.flush()
        out["error"] = None
    except nbd.Error as e:
        out["error"] = errno_of(e)
elif cmd[0] == "read":           # read MiB: one 1 MiB read, its error if any
    try:
        h.pread(MiB, int(cmd[1]) * MiB)
        out["error"] = None
    except nbd.Error as e:
        out["error"] = errno_of(e)
elif cmd[0] == "verify":         # verify [OFFSETS_TAG]: every answered write, or those of one tag
    bad, n = [], 0
    for off, (tag, i) in answered.items():
        if len(cmd) > 1 and tag != cmd[1]:
            continue
        n += 1
        if h.pread(MiB, int(off)) != block(tag, i):
            bad.append(off)
    out.update(blocks=n, bad=len(bad))
out["ms"] = int((time.monotonic() - t0) * 1000)
json.dump(answered, open(answered_file, "w"))
try:
    h.shutdown()
except nbd.Error:
    pass
print(json.dumps(out), flush=True)
PYEOF
step() {
  R=$(timeout 300 "$SYSPYTHON" "$TMP/client.py" "$(nbd_uri)" "$TMP/answered.json" "$@") ||
    fail "the client failed at: $* ($R)"
}
jf() { jq -r "$1" <<<"$R"; }
status_field() { portalctl status --json | jq -r "$1"; }

step write base 0 4
step flush
assert_eq "$(jf .error)" "null" "a FLUSH with storage answering succeeds ($(jf .ms) ms)"
# A restart without the disk cache: the base blocks are in no cache now.
stop_portalbd
rm -rf "$STATE_DIR/cache"
start_portalbd "${DAEMON_ARGS[@]}"

log "s3rver is stopped (SIGSTOP): connections are accepted, nothing is answered"
kill -STOP "$S3RVER_PID"
step write hung 16 3
check "writes are answered from the buffer while the store hangs ($(jf .ms) ms for 3 MiB)" [ "$(jf .ms)" -lt 5000 ]
step flush
hung_ms=$(jf .ms)
log "FLUSH against the hung store: $R"
echo "# measured: FLUSH against a SIGSTOPped s3rver failed after $hung_ms ms (flush_timeout_ms=$TIMEOUT_MS)"
assert_match "$(jf .error)" '^(EIO|5)$' "the FLUSH got EIO"
check "the FLUSH failed within flush_timeout_ms + 4 s ($hung_ms ms)" \
  test "$hung_ms" -ge $((TIMEOUT_MS - 500)) -a "$hung_ms" -le $((TIMEOUT_MS + 4000))
step flush
log "a second FLUSH against the hung store: $R"
assert_match "$(jf .error)" '^(EIO|5)$' "a second FLUSH gets EIO too"
check "the second FLUSH also failed within flush_timeout_ms + 4 s ($(jf .ms) ms)" \
  test "$(jf .ms)" -le $((TIMEOUT_MS + 4000))
since=$(status_field .storage_failing_since)
check "status shows storage failing since $since" [ "$since" != "null" ] 
err=$(status_field .last_storage_error)
log "last_storage_error: $err"
check "status names the last storage error" [ -n "$err" -a "$err" != "null" ]
step verify hung
assert_eq "$(jf .bad)" "0" "the buffered writes read back while the store hangs ($(jf .blocks) MiB, $(jf .ms) ms)"
step read 1
read_ms=$(jf .ms)
echo "# measured: a read of data in no cache against a SIGSTOPped s3rver failed after $read_ms ms"
assert_match "$(jf .error)" '^(EIO|5)$' "a read of data in no cache gets EIO while the store hangs"
check "the read failed within flush_timeout_ms + 4 s ($read_ms ms)" \
  test "$read_ms" -ge $((TIMEOUT_MS - 500)) -a "$read_ms" -le $((TIMEOUT_MS + 4000))

log "s3rver continues (SIGCONT)"
kill -CONT "$S3RVER_PID"
step flush
log "FLUSH after SIGCONT: $R"
assert_eq "$(jf .error)" "null" "the FLUSH after the store returns succeeds, with no restart ($(jf .ms) ms)"
assert_eq "$(status_field .storage_failing_since)" "null" "status: storage healthy again"
assert_eq "$(status_field .dirty_bytes)" "0" "nothing is left in the write buffer"
step write after 32 2
step flush
assert_eq "$(jf .error)" "null" "writes and FLUSHes go on after the hang"
step verify
assert_eq "$(jf .bad)" "0" "every answered write reads back ($(jf .blocks) MiB)"

stop_portalbd
log "clean restart"
start_portalbd "${DAEMON_ARGS[@]}"
step verify
assert_eq "$(jf .bad)" "0" "after a restart every answered write reads back ($(jf .blocks) MiB)"
stop_portalbd
