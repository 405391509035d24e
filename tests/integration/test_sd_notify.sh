#!/usr/bin/env bash
# systemd Type=notify without systemd: the daemon sends READY=1 to
# $NOTIFY_SOCKET only once NBD answers, and STOPPING=1 after SIGTERM.
source "$(dirname "$0")/lib.sh"
requires_python_nbd
requires nbdinfo

"$SYSPYTHON" - "$TMP/notify.sock" "$TMP/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a") as log:
    for _ in range(2):
        msg = s.recv(4096).decode()
        log.write(msg.replace("\n", " ") + "\n")
        log.flush()
PY
listener=$!
cleanup_fn kill "$listener"
for _ in $(seq 1 50); do [ -S "$TMP/notify.sock" ] && break; sleep 0.1; done
export NOTIFY_SOCKET=$TMP/notify.sock
start_portalbd --storage memory://
for _ in $(seq 1 50); do [ -s "$TMP/notify.log" ] && break; sleep 0.1; done
first=$(head -1 "$TMP/notify.log")
assert_match "$first" "^READY=1 STATUS=serving portalbd \(1073741824 bytes\)" "READY=1 arrives with a status line"
assert_match "$first" "MAINPID=$PORTALBD_PID" "it names the main pid"
stop_portalbd
for _ in $(seq 1 50); do [ "$(wc -l <"$TMP/notify.log")" -ge 2 ] && break; sleep 0.1; done
assert_match "$(sed -n 2p "$TMP/notify.log")" "^STOPPING=1" "STOPPING=1 arrives after SIGTERM"
