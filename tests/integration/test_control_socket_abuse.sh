#!/usr/bin/env bash
# A hostile or careless local client cannot take the control socket away:
#  1. deeply nested JSON (`[` x 100000, and a balanced 100000-deep value in
#     "args") is answered with an error, the daemon keeps running and
#     `portalctl status` still answers;
#  2. 70 connections that connect and send nothing: while they hold every
#     slot, portalctl says the daemon is busy (not "cannot reach"); the daemon
#     closes them after its idle timeout (default 10 s) and portalctl works
#     again without anyone closing them;
#  3. a command that runs longer than the idle timeout (gc --wait with a
#     grace period) keeps its connection (with its own daemon, at the same
#     time as 1 and 2).
source "$(dirname "$0")/lib.sh"
requires nbdinfo qemu-io
requires_portalctl

# ctl_raw SCRIPT ARGS...: run a python snippet with the control socket as argv[1].
ctl_raw() { local script=$1; shift; "$SYSPYTHON" -c "$script" "$CTL_SOCK" "$@"; }

# Sends argv[2] (a python expression for the bytes) on one connection and
# prints the first answer line, or "EOF" / "TIMEOUT".
SEND_ONE='
import socket, sys
payload = eval(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
try:
    s.sendall(payload)
except OSError as e:
    print("send failed:", e)
buf = b""
try:
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
except socket.timeout:
    print("TIMEOUT")
    sys.exit(0)
print(buf.split(b"\n")[0].decode(errors="replace") if buf else "EOF")
'

# ---- 3. a long command keeps its connection past the idle timeout
# (its own daemon, beside parts 1 and 2: in_parallel)
long_command() {
  printf '[daemon]\ncontrol_idle_timeout_ms = 500\n' >"$TMP/short-idle.toml"
  # --journal off: each FLUSH writes a segment, so the second one makes the first garbage.
  start_portalbd --disk-size-gb 1 -c "$TMP/short-idle.toml" --gc-grace-ms 2000 --journal off
  qio "$(nbd_uri)" 'write -P 0x11 0 1M' 'flush'
  qio "$(nbd_uri)" 'write -P 0x22 0 1M' 'flush'  # the first segment becomes garbage
  out=$(ctl_raw "$SEND_ONE" 'b""')
  assert_match "$out" 'no complete request within 500 ms' "the configured idle timeout (500 ms) closes an idle connection"
  t0=$(now_ms)
  out=$(portalctl --json gc --wait 2>&1) || fail "portalctl gc --wait failed with a 500 ms idle timeout: $out"
  elapsed=$(( $(now_ms) - t0 ))
  log "gc --wait: ${elapsed} ms: $out"
  # It waits out the 2 s grace of the overwritten segment; quicker means this
  # check proved nothing.
  [ "$elapsed" -ge 1000 ] || fail "gc --wait returned in ${elapsed} ms, within the idle timeout: nothing was tested"
  ok "gc --wait (${elapsed} ms) kept its connection past the 500 ms idle timeout"
  stop_portalbd
}
in_parallel long-command long_command

start_portalbd --disk-size-gb 1

# ---- 1. nested JSON
out=$(ctl_raw "$SEND_ONE" 'b"[" * 100000 + b"\n"')
log "answer to [ x 100000: ${out:0:200}"
assert_match "$out" '^\{"v":1,"ok":false,"error":\{"code":"InvalidArgument","message":"malformed request \(nested deeper than [0-9]+ levels\)"' \
  "[ x 100000 is answered with an InvalidArgument error naming the nesting"
portalbd_running || fail "portalbd died after [ x 100000"

out=$(ctl_raw "$SEND_ONE" 'b"{\"v\":1,\"cmd\":\"status\",\"args\":{\"x\":" + b"[" * 100000 + b"]" * 100000 + b"}}\n"')
log "answer to a 100000-deep args value: ${out:0:200}"
assert_match "$out" '"ok":false.*nested deeper than' "a balanced 100000-deep value in args is refused"
portalbd_running || fail "portalbd died after a 100000-deep args value (stack overflow copying it?)"
check "portalctl status answers after the nested JSON" portalctl status
ok "portalbd is still running after both"

# ---- 2. idle connections
HOLD_IDLE='
import json, socket, sys, time
n, ready = int(sys.argv[2]), sys.argv[3]
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    conns.append(s)
open(ready, "w").write("ready\n")
# What each connection hears before the daemon closes it (or 40 s pass).
outcome = {"busy": 0, "idle": 0, "other": 0, "still_open": 0}
deadline = time.monotonic() + 40
for s in conns:
    buf = b""
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        outcome["still_open"] += 1
        continue
    except OSError:
        pass
    text = buf.decode(errors="replace")
    if "\"Busy\"" in text:
        outcome["busy"] += 1
    elif "closing the idle connection" in text:
        outcome["idle"] += 1
    else:
        outcome["other"] += 1
print(json.dumps(outcome))
'
rm -f "$TMP/idle.ready"
ctl_raw "$HOLD_IDLE" 70 "$TMP/idle.ready" >"$TMP/idle.out" 2>&1 &
holder=$!
cleanup_fn kill -9 "$holder"
for _ in $(seq 1 500); do
  [ -s "$TMP/idle.ready" ] && break
  kill -0 "$holder" 2>/dev/null || break
  sleep 0.02
done
[ -s "$TMP/idle.ready" ] || { cat "$TMP/idle.out"; fail "could not open 70 control connections"; }
t0=$(now_ms)
ok "70 idle control connections open"

# While they hold every slot: busy, never "cannot reach" (exit 3).
rc=0
out=$(portalctl --timeout 5 status 2>&1) || rc=$?
log "portalctl status while 70 connections are idle: exit $rc: $out"
if [ "$rc" -ne 0 ]; then
  assert_match "$out" 'busy' "portalctl says the daemon is busy while every connection is taken"
  assert_no_match "$out" 'cannot reach' "portalctl does not claim the daemon is unreachable"
  assert_ne "$rc" 3 "portalctl's exit status is not 3 (unreachable)"
else
  fail "portalctl status succeeded with 70 idle connections open: the connection limit is not enforced"
fi

# Without anyone closing them, the daemon frees the slots after its idle timeout.
deadline=$(( $(date +%s) + 25 ))
served=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if out=$(portalctl --timeout 5 status 2>&1); then served=1; break; fi
  grep -q 'cannot reach' <<<"$out" && fail "portalctl could not reach the daemon while idle connections were open: $out"
  sleep 0.2
done
waited=$(( $(now_ms) - t0 ))
[ "$served" = 1 ] || fail "portalctl status still refused 25 s after 70 idle connections opened: $out"
[ "$waited" -ge 8000 ] || fail "portalctl got through after ${waited} ms, before the 10 s idle timeout could have freed a slot"
ok "portalctl status answers again ${waited} ms after the idle connections opened (idle timeout 10 s)"

wait "$holder" || fail "the idle-connection holder failed: $(cat "$TMP/idle.out")"
summary=$(tail -1 "$TMP/idle.out")
log "what the 70 idle connections heard: $summary"
assert_match "$summary" '"busy": [1-9]' "the connections past the limit were told the daemon is busy"
assert_match "$summary" '"idle": [1-9]' "the idle connections were told why they are closed"
assert_match "$summary" '"other": 0, "still_open": 0' "every idle connection was answered and closed"
portalbd_running || fail "portalbd died"
stop_portalbd

wait_parallel
