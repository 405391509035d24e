#!/usr/bin/env bash
# FUSE view, life cycle and failures: snapshots appear and disappear without
# remounting; an open image survives its snapshot's deletion; mount errors
# (missing, busy, no permission, unreachable daemon) are one line and a
# non-zero exit; a reader gets EIO within the timeout when the daemon dies
# or hangs, and recovers when it is back.
source "$(dirname "$0")/lib.sh"
requires_root
requires fusermount3 setpriv dd findmnt
requires_python_nbd
[ -c /dev/fuse ] || skip "/dev/fuse is missing"

STORE=file://$TMP/store
start_portalbd --storage "$STORE" --disk-size-gb 1
MNT=$TMP/view
mkdir -p "$MNT"
IO_TIMEOUT_S=3

head -c $((8 << 20)) /dev/urandom >"$TMP/data"
nbdsh -u "$(nbd_uri)" -c "h.pwrite(open('$TMP/data', 'rb').read(), 0); h.flush()"
portalctl snapshot create a >/dev/null

view() { "$PORTALCTL" --socket "$CTL_SOCK" "$@"; }

# expect_one_line_error DESCRIPTION ERE CMD...: CMD fails with exactly one line matching ERE.
expect_one_line_error() {
  local what=$1 ere=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "$what: succeeded"
  [ "$(wc -l <<<"$out")" -eq 1 ] || fail "$what: expected one line, got: $out"
  grep -qE -- "$ere" <<<"$out" || fail "$what: '$out' does not match /$ere/"
  ok "$what (exit $rc: $out)"
}

# ---- mount errors
expect_one_line_error "missing mountpoint" "does not exist" view mount "$TMP/nope" --nbd-unix "$NBD_SOCK"
mkdir -p "$TMP/other"
t0=$(now_ms)
expect_one_line_error "unreachable daemon" "cannot reach" view mount "$TMP/other" --nbd-unix "$TMP/no-such.sock"
expect_one_line_error "unreachable daemon over TCP" "cannot reach" \
  view mount "$TMP/other" --nbd "127.0.0.1:$(pick_unused_port)"
[ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "unreachable daemon errors took too long"
check_fails "nothing was mounted on failure" findmnt "$TMP/other"
chmod 755 "$TMP"
mkdir -p "$TMP/rootonly" && chmod 755 "$TMP/rootonly"
expect_one_line_error "no permission (as nobody)" "permission" \
  setpriv --reuid=65534 --regid=65534 --clear-groups "$PORTALCTL" mount "$TMP/rootonly" --nbd-unix "$NBD_SOCK"

check "mount the view" view mount "$MNT" --nbd-unix "$NBD_SOCK" --io-timeout "$IO_TIMEOUT_S"
cleanup_fn fusermount3 -uz "$MNT"
expect_one_line_error "busy mountpoint" "busy" view mount "$MNT" --nbd-unix "$NBD_SOCK"

# ---- appear / disappear
wait_listing() {  # ERE PRESENT(1|0): poll the listing for up to 5 s
  local i
  for i in $(seq 1 50); do
    if ls "$MNT/snapshots" | grep -qE "$1"; then [ "$2" = 1 ] && return 0; else [ "$2" = 0 ] && return 0; fi
    sleep 0.1
  done
  return 1
}
portalctl snapshot create b >/dev/null
wait_listing '^b\.img$' 1 || fail "new snapshot b did not appear"
ok "a snapshot created after mounting appears"

# ---- an open file survives deletion; deletion shows in the listing
out=$("$SYSPYTHON" - "$MNT/snapshots/a.img" "$TMP/data" "$PORTALCTL" "$CTL_SOCK" <<'PY'
import hashlib, os, subprocess, sys, time
img, data, portalctl, sock = sys.argv[1:]
fd = os.open(img, os.O_RDONLY)
first = os.pread(fd, 4096, 0)
subprocess.run([portalctl, "--socket", sock, "snapshot", "delete", "a"], check=True, stdout=subprocess.DEVNULL)
for _ in range(50):
    if "a.img" not in os.listdir(os.path.dirname(img)):
        break
    time.sleep(0.1)
else:
    sys.exit("a.img still listed 5 s after deletion")
print("gone-from-listing")
# Read everything after the deletion: most of it was never read before.
got = b"".join(os.pread(fd, 1 << 20, off) for off in range(0, 8 << 20, 1 << 20))
want = open(data, "rb").read()
print("content-ok" if got == want and first == want[:4096] else "content-DIFFERS")
os.close(fd)
try:
    os.open(img, os.O_RDONLY)
    print("reopen-succeeded")
except FileNotFoundError:
    print("reopen-enoent")
PY
) || fail "open-file-survives-deletion script failed: $out"
assert_match "$out" '^gone-from-listing$' "a deleted snapshot disappears from the listing"
assert_match "$out" '^content-ok$' "an open image stays readable after its snapshot is deleted"
assert_match "$out" '^reopen-enoent$' "the deleted image cannot be opened again"

# ---- the daemon dies under a reader: EIO within the timeout, then recovery
exec 3<"$MNT/snapshots/b.img"
# pread(2) on the inherited fd 3, so every read uses the same open file (dd's
# skip= would move the shared offset) and its absolute offset.
read_at_mib() {
  "$SYSPYTHON" -c '
import os, sys
try:
    n = len(os.pread(3, 1 << 20, int(sys.argv[1]) << 20))
except OSError as e:
    sys.exit(os.strerror(e.errno))
sys.exit(0 if n == 1 << 20 else "short read: %d bytes" % n)' "$1"
}
check "read through the open image" read_at_mib 1
kill9_portalbd
t0=$(now_ms)
err=$(read_at_mib 600 2>&1) && fail "read succeeded with the daemon dead"
dt=$(( $(now_ms) - t0 ))
assert_match "$err" 'Input/output error' "read with the daemon dead fails with EIO"
[ "$dt" -le $(( 2 * IO_TIMEOUT_S * 1000 + 2000 )) ] || fail "EIO took $dt ms"
ok "EIO came after $dt ms (timeout ${IO_TIMEOUT_S}s)"
# The README is regenerated at most once a second (the listing cache): poll.
for _ in $(seq 1 50); do grep -qE '^reachable: +NO' "$MNT/README" && break; sleep 0.1; done
assert_match "$(cat "$MNT/README")" '^reachable: +NO' "README says the daemon is unreachable"

# Without fd 3: the daemon would inherit the open image and keep the view busy.
{ start_portalbd --storage "$STORE" --disk-size-gb 1; } 3<&-
recovered=0
for i in $(seq 1 20); do
  if read_at_mib 700 2>/dev/null; then recovered=1; break; fi
  sleep 0.5
done
[ "$recovered" = 1 ] || fail "reads did not recover after the daemon restarted"
ok "reads recover after the daemon restarts (same open file)"

# A hung daemon (SIGSTOP) must not hang the reader either.
kill -STOP "$PORTALBD_PID"
t0=$(now_ms)
err=$(read_at_mib 800 2>&1) && { kill -CONT "$PORTALBD_PID"; fail "read succeeded with the daemon stopped"; }
dt=$(( $(now_ms) - t0 ))
kill -CONT "$PORTALBD_PID"
assert_match "$err" 'Input/output error' "read with the daemon hung fails with EIO"
[ "$dt" -le $(( 2 * IO_TIMEOUT_S * 1000 + 2000 )) ] || fail "EIO from a hung daemon took $dt ms"
ok "EIO from a hung daemon came after $dt ms"
recovered=0
for i in $(seq 1 20); do
  if read_at_mib 900 2>/dev/null; then recovered=1; break; fi
  sleep 0.5
done
[ "$recovered" = 1 ] || fail "reads did not recover after SIGCONT"
ok "reads recover after the daemon resumes"
exec 3<&-

check "portalctl umount" view umount "$MNT"
check_fails "the view is unmounted" findmnt "$MNT"
stop_portalbd
