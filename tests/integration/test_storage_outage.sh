#!/usr/bin/env bash
# Graceful degradation (issue 7): the daemon on s3:// (s3rver) through a
# forwarding proxy that the test stops, so storage refuses connections, and
# starts again on the same port.
#
# While storage is down:
#   - writes are answered from the write buffer (8 MiB here);
#   - a FLUSH retries for lsm.flush_timeout_ms (6 s here), then gets EIO;
#   - status shows storage_failing_since and the last error;
#   - once the buffer is full, further writes wait (back-pressure);
# When storage is back, with no restart:
#   - the waiting writes complete, the next FLUSH succeeds, status is healthy;
#   - every answered write reads back, and again after a restart that rebuilds
#     the index from storage alone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires_portalbd
requires_python_nbd
requires jq

start_s3rver
PROXY_PORT=$(pick_unused_port)
start_proxy() {
  "$SYSPYTHON" "$TOP/tests/integration/s3_fault_proxy.py" --listen "$PROXY_PORT" --upstream "$S3_ENDPOINT" \
    --rate 0 >>"$TMP/proxy.log" 2>&1 7>&- &
  PROXY_PID=$!
  cleanup_fn kill "$PROXY_PID"
  local deadline=$(( $(date +%s) + 20 ))
  until _port_open "$PROXY_PORT"; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$TMP/proxy.log"; fail "proxy did not start"; }
    sleep 0.1
  done
}
stop_proxy() {
  kill "$PROXY_PID" && wait "$PROXY_PID" 2>/dev/null || true
  ! _port_open "$PROXY_PORT" || fail "the proxy still accepts connections"
}
start_proxy

# Two attempts per S3 request: the engine's own retry loop is what is tested.
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT AWS_REGION=us-east-1 PORTALBD_S3_MAX_ATTEMPTS=2
# Not the default (60 s): what is tested is that a FLUSH waits this long, then
# fails, and the test waits it out once.
FLUSH_TIMEOUT_MS=6000
cat >"$TMP/outage.toml" <<EOF
[storage]
url = "s3://$S3_BUCKET/volumes/outage"
[lsm]
flush_interval_ms = 200
l0_sst_size_bytes = 1048576
write_buffer_bytes = 8388608
flush_timeout_ms = $FLUSH_TIMEOUT_MS
EOF
start_portalbd -c "$TMP/outage.toml" --disk-size-gb 1 --gc-interval-s 0

# The client: one python libnbd process driven step by step through a FIFO,
# so the test can stop and start storage between steps.
cat >"$TMP/client.py" <<'PYEOF'
import hashlib, json, sys, threading, time
import nbd

MiB = 1 << 20
uri = sys.argv[1]
h = nbd.NBD(); h.connect_uri(uri)

def block(tag, i, n=MiB):
    seed = hashlib.sha256(f"{tag}-{i}".encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]

answered = {}  # offset -> bytes the server answered OK for
def say(**kv):
    print(json.dumps(kv), flush=True)

writer_state = {"done": 0, "errors": [], "thread": None}
def writer(count):
    w = nbd.NBD(); w.connect_uri(uri)
    for i in range(count):
        off = 64 * MiB + i * MiB
        data = block("held", i)
        try:
            w.pwrite(data, off)
        except nbd.Error as e:
            writer_state["errors"].append(f"{off}: {e}")
            return
        answered[off] = data
        writer_state["done"] += 1
    w.shutdown()

for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "write":            # write TAG FIRST_MiB COUNT
        tag, first, count = cmd[1], int(cmd[2]), int(cmd[3])
        t0 = time.monotonic()
        for i in range(count):
            data = block(tag, i)
            h.pwrite(data, (first + i) * MiB)
            answered[(first + i) * MiB] = data
        say(step="write", ms=int((time.monotonic() - t0) * 1000))
    elif cmd[0] == "flush":
        t0 = time.monotonic()
        err = None
        try:
            h.flush()
        except nbd.Error as e:
            err = e.errno if e.errno else str(e)
        say(step="flush", ms=int((time.monotonic() - t0) * 1000), error=err)
    elif cmd[0] == "start_writer":   # start_writer COUNT: 1 MiB writes from 64 MiB on
        t = threading.Thread(target=writer, args=(int(cmd[1]),))
        t.start(); writer_state["thread"] = t
        say(step="start_writer")
    elif cmd[0] == "writer_progress":
        say(step="writer_progress", done=writer_state["done"], errors=writer_state["errors"])
    elif cmd[0] == "join_writer":
        t0 = time.monotonic()
        writer_state["thread"].join(60)
        say(step="join_writer", done=writer_state["done"], errors=writer_state["errors"],
            alive=writer_state["thread"].is_alive(), ms=int((time.monotonic() - t0) * 1000))
    elif cmd[0] == "verify":
        bad = [off for off, data in answered.items() if h.pread(len(data), off) != data]
        say(step="verify", blocks=len(answered), bad=len(bad))
    elif cmd[0] == "quit":
        break
    elif cmd[0] == "save":           # save FILE: the answered map, to verify after a restart
        with open(cmd[1], "w") as f:
            json.dump({str(off): hashlib.sha256(d).hexdigest() for off, d in answered.items()}, f)
        say(step="save")
h.shutdown()
PYEOF

mkfifo "$TMP/to_client"
# The answers' file exists before the client starts: the client's shell opens
# the FIFO first, and creates this file only once the `exec 7>` below has
# opened the FIFO's other end, which may be after the first step's `wc -l`
# has looked for it (seen once in CI on a loaded machine).
: >"$TMP/from_client"
"$SYSPYTHON" "$TMP/client.py" "$(nbd_uri)" <"$TMP/to_client" >"$TMP/from_client" 2>"$TMP/client.err" &
CLIENT_PID=$!
cleanup_fn kill "$CLIENT_PID"
exec 7>"$TMP/to_client"
# step CMD...: send one command, wait for its one-line JSON answer, put it in $R.
seen=0
step() {
  echo "$*" >&7
  local deadline=$(( $(date +%s) + 90 ))
  while [ "$(wc -l <"$TMP/from_client")" -le "$seen" ]; do
    kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$TMP/client.err"; fail "the client died at: $*"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "no answer from the client to: $*"
    sleep 0.05
  done
  seen=$((seen + 1))
  R=$(sed -n "${seen}p" "$TMP/from_client")
}
jf() { jq -r "$1" <<<"$R"; }
status_field() { portalctl status --json | jq -r "$1"; }

step write base 0 2
step flush
assert_eq "$(jf .error)" "null" "a FLUSH with storage up succeeds"
assert_eq "$(status_field .storage_failing_since)" "null" "status: storage healthy at the start"

log "storage goes away (the proxy stops: connections are refused)"
stop_proxy
step write outage 8 3
check "writes are answered from the buffer while storage is down ($(jf .ms) ms for 3 MiB)" [ "$(jf .ms)" -lt 5000 ]
step flush
log "FLUSH during the outage: $R"
assert_match "$(jf .error)" '^(EIO|5)$' "the FLUSH got EIO once flush_timeout_ms passed"
check "the FLUSH waited out lsm.flush_timeout_ms ($FLUSH_TIMEOUT_MS ms) first: $(jf .ms) ms" \
  test "$(jf .ms)" -ge $((FLUSH_TIMEOUT_MS - 500)) -a "$(jf .ms)" -lt $((FLUSH_TIMEOUT_MS + 25000))
since=$(status_field .storage_failing_since)
check "status shows storage failing since $since" [ "$since" != "null" ]
assert_match "$(status_field .last_storage_error)" "upload" "status names the failing upload"
check "the log says storage is failing" grep -q "storage is failing" "$PORTALBD_LOG"

# Back-pressure: 12 MiB of writes into what is left of an 8 MiB buffer.
step start_writer 12
sleep 1.5
step writer_progress
held=$(jf .done)
log "after 1.5 s with storage down the writer has $held of 12 MiB answered"
check "back-pressure: the writer is held back by the full buffer ($held of 12 answered)" [ "$held" -lt 12 ]
assert_eq "$(jf '.errors | length')" "0" "held-back writes are waiting, not failing"

log "storage comes back (the proxy starts again on the same port)"
start_proxy
step join_writer
assert_eq "$(jf .alive)" "false" "the held-back writer finished"
assert_eq "$(jf '.errors | length')" "0" "every held-back write was answered OK once storage returned ($(jf .ms) ms)"
assert_eq "$(jf .done)" "12" "all 12 writes answered"
step flush
assert_eq "$(jf .error)" "null" "the FLUSH after the outage succeeds, with no restart"
assert_eq "$(status_field .storage_failing_since)" "null" "status: storage healthy again"
assert_eq "$(status_field .dirty_bytes)" "0" "nothing is left in the write buffer"
check "the log says uploads resumed" grep -q "storage accepts uploads again" "$PORTALBD_LOG"
step verify
assert_eq "$(jf .bad)" "0" "all $(jf .blocks) answered MiB read back (outage writes included)"
step save "$TMP/answered.json"
echo quit >&7
exec 7>&-
wait "$CLIENT_PID" || fail "the client exited with an error: $(tail -3 "$TMP/client.err")"

stop_portalbd
log "restart with a fresh state dir: the index is rebuilt from storage alone"
STATE_DIR=$TMP/state2
start_portalbd -c "$TMP/outage.toml" --disk-size-gb 1 --gc-interval-s 0
"$SYSPYTHON" - "$(nbd_uri)" "$TMP/answered.json" <<'PYEOF' || fail "answered writes differ after the rebuild"
import hashlib, json, sys
import nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
want = json.load(open(sys.argv[2]))
bad = [off for off, digest in want.items() if hashlib.sha256(h.pread(1 << 20, int(off))).hexdigest() != digest]
print(f"    {len(want)} MiB checked, {len(bad)} differ")
sys.exit(1 if bad else 0)
PYEOF
ok "every answered write survived the outage and a rebuild from storage"
stop_portalbd
