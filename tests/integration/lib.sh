# Shared helpers for the black-box tests in tests/integration/test_*.sh.
#
# Each test sources this file, then starts the real daemon and drives it with
# real NBD clients (nbdinfo, nbdcopy, qemu-io, fio, nbdfuse, libnbd from Python).
# Modelled on nbdkit's tests/functions.sh.in: `requires` skips (exit 77) loudly
# when a tool is missing, `cleanup_fn` registers teardown, `pick_unused_port`
# finds a free TCP port.
#
# What a test gets:
#   $TMP            a private temp dir, removed at exit (KEEP_TMP=1 keeps it)
#   $PORT           a free TCP port for --nbd-address 127.0.0.1:$PORT
#   $STATE_DIR      --state-dir for start_portalbd (default $TMP/state)
#   $PORTALBD_PID   pid of the running daemon, empty when none
#   $PORTALBD_LOG   log of the current daemon run (earlier runs are appended to
#                   $TMP/portalbd.earlier.log)
#
# Output: one line per check, "ok N - what" or "FAIL - what: why". A failing
# check exits 1 after printing the tail of the daemon log.
#
# Environment: BUILD (default build), PORTALBD / PORTALCTL (binaries),
# PORTALBD_START_TIMEOUT (seconds, default 30), KEEP_TMP=1.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
PORTALBD=${PORTALBD:-$BUILD/bin/portalbd}
PORTALCTL=${PORTALCTL:-$BUILD/bin/portalctl}
# The python3 on PATH may be a pyenv build without the libnbd bindings.
SYSPYTHON=/usr/bin/python3
NBDMODEL=$TOP/tests/integration/nbdmodel.py
EXPORT_NAME=${EXPORT_NAME:-portalbd}
PORTALBD_START_TIMEOUT=${PORTALBD_START_TIMEOUT:-30}
PORTALBD_STOP_TIMEOUT=${PORTALBD_STOP_TIMEOUT:-60}
TEST_NAME=$(basename "$0" .sh)

export LC_ALL=C

TMP=
PORTALBD_LOG=
PORTALBD_PID=
PORT=

_checks=0
_cleanup_fns=()
_failure_fns=()
_mounts=()
_loops=()
_fuse_mounts=()
_fuse_pids=()

# ---------------------------------------------------------------- reporting

log() { echo "# $*"; }

ok() {
  _checks=$((_checks + 1))
  echo "ok $_checks - $*"
}

# fail MESSAGE...: report a failed check and exit 1 (the exit trap shows the log).
fail() {
  echo "FAIL - $*"
  exit 1
}

skip() {
  echo "SKIP: $TEST_NAME: $*"
  exit 77
}

# check DESCRIPTION CMD...: run CMD; pass if it exits 0, else fail with its output.
check() {
  local what=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$out" | tail -20 | sed 's/^/    /'
    fail "$what (command exited $rc: $*)"
  fi
  ok "$what"
}

# check_fails DESCRIPTION CMD...: pass if CMD exits non-zero.
check_fails() {
  local what=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$out" | tail -20 | sed 's/^/    /'
    fail "$what (command succeeded but should have failed: $*)"
  fi
  ok "$what"
}

assert_eq() {  # ACTUAL EXPECTED DESCRIPTION
  if [ "$1" != "$2" ]; then
    fail "$3: got '$1', expected '$2'"
  fi
  ok "$3"
}

assert_ne() {  # ACTUAL UNEXPECTED DESCRIPTION
  if [ "$1" = "$2" ]; then
    fail "$3: got '$1', which it must not be"
  fi
  ok "$3"
}

# assert_match TEXT ERE DESCRIPTION: TEXT (may be multi-line) has a line matching ERE.
assert_match() {
  if ! grep -qE -- "$2" <<<"$1"; then
    echo "$1" | tail -20 | sed 's/^/    /'
    fail "$3: no line matches /$2/"
  fi
  ok "$3"
}

assert_no_match() {  # TEXT ERE DESCRIPTION
  local hit
  if hit=$(grep -E -m3 -- "$2" <<<"$1"); then
    echo "$hit" | sed 's/^/    /'
    fail "$3: unexpected line matching /$2/"
  fi
  ok "$3"
}

assert_files_equal() {  # FILE1 FILE2 DESCRIPTION
  local diff
  if ! diff=$(cmp -- "$1" "$2" 2>&1); then
    fail "$3: $diff"
  fi
  ok "$3"
}

sha256() { sha256sum -- "$1" | cut -d' ' -f1; }

# now_ms: monotonic-enough wall clock in milliseconds, for timing checks.
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- requirements

# requires CMD...: skip the test (exit 77) unless every CMD is on PATH or executable.
requires() {
  local c
  for c in "$@"; do
    if ! command -v "$c" >/dev/null 2>&1; then
      skip "required command '$c' is not installed"
    fi
  done
}

# requires_run CMD ARGS...: skip unless CMD ARGS runs successfully.
requires_run() {
  if ! "$@" >/dev/null 2>&1; then
    skip "requirement not met: '$*' failed"
  fi
}

requires_root() {
  if [ "$(id -u)" -ne 0 ]; then skip "must run as root"; fi
}

requires_python_nbd() {
  if ! [ -x "$SYSPYTHON" ] || ! "$SYSPYTHON" -c 'import nbd' >/dev/null 2>&1; then
    skip "$SYSPYTHON with the libnbd bindings (python3-libnbd) is required"
  fi
}

# The daemon itself is never a skip: `make test` builds it first, so a missing
# binary is a failure.
requires_portalbd() {
  [ -x "$PORTALBD" ] || fail "daemon binary $PORTALBD is missing (run make)"
}

requires_portalctl() {
  [ -x "$PORTALCTL" ] || fail "control binary $PORTALCTL is missing (run make)"
}

# ---------------------------------------------------------------- ports

# pick_unused_port: print a TCP port on 127.0.0.1 that nothing listens on now,
# outside the kernel's ephemeral range: outgoing connections (curl to s3rver,
# TCP NBD clients, of this test or one beside it) take their local ports from
# there, and one took a port picked there before the daemon bound it (a CI
# run: "bind 127.0.0.1:45652: Address already in use").
pick_unused_port() {
  local p i lo=32768 hi=60999 base span
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ -n "${PORTALBD_TEST_PORTS:-}" ]; then
    # run_all.sh gives each script running beside others its own range.
    read -r base span <<<"$PORTALBD_TEST_PORTS"
  elif [ "$lo" -gt 11024 ]; then
    base=10000 span=$(( lo - 10000 ))
  else
    base=$(( hi + 1 )) span=$(( 65535 - hi ))
  fi
  for i in $(seq 1 50); do
    p=$(( (RANDOM << 8 | RANDOM) % span + base ))
    if _port_bindable "$p"; then
      echo "$p"
      return 0
    fi
  done
  fail "pick_unused_port: no free port found"
}

_port_bindable() {
  "$SYSPYTHON" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.close()
EOF
}

# ---------------------------------------------------------------- URIs

nbd_uri() { echo "nbd+unix:///$EXPORT_NAME?socket=$NBD_SOCK"; }
nbd_tcp_uri() { echo "nbd://127.0.0.1:$PORT/$EXPORT_NAME"; }

# ---------------------------------------------------------------- the daemon

# Arguments every start_portalbd run gets (a test may change the variables).
# A test whose claim is about one mode of the daemon names it once in
# TEST_MODE_ARGS, e.g. (--journal off) for "every answered FLUSH is in storage".
TEST_MODE_ARGS=()
portalbd_default_args() {
  DEFAULT_ARGS=(--nbd-address "127.0.0.1:$PORT" --nbd-unix "$NBD_SOCK"
    --socket "$CTL_SOCK" --state-dir "$STATE_DIR" "${TEST_MODE_ARGS[@]}")
}

# spawn_portalbd ARGS...: start the daemon in the background with exactly ARGS,
# logging to $PORTALBD_LOG. Does not wait for it to be ready.
spawn_portalbd() {
  requires_portalbd
  [ -z "$PORTALBD_PID" ] || fail "spawn_portalbd: daemon already running (pid $PORTALBD_PID)"
  if [ -s "$PORTALBD_LOG" ]; then
    { echo "===== earlier run ====="; cat "$PORTALBD_LOG"; } >>"$TMP/portalbd.earlier.log"
  fi
  : >"$PORTALBD_LOG"
  echo "+ portalbd $*" >>"$TMP/commands.log"
  # A background job of a non-interactive shell inherits SIGINT/SIGQUIT as
  # ignored; reset them so the daemon sees signals as it would in a terminal.
  env --default-signal=INT,QUIT "$PORTALBD" "$@" >>"$PORTALBD_LOG" 2>&1 &
  PORTALBD_PID=$!
}

# wait_portalbd_ready [URI [FILE...]]: wait until FILEs exist and nbdinfo
# answers on URI (defaults: the unix NBD socket and the control socket, and
# then the TCP address too).
# Fails with the log tail if the daemon exits or the timeout passes.
wait_portalbd_ready() {
  local uri=${1:-$(nbd_uri)}
  shift || true
  local files=("$@")
  if [ $# -eq 0 ]; then files=("$NBD_SOCK" "$CTL_SOCK"); fi
  local deadline=$(( $(date +%s) + PORTALBD_START_TIMEOUT ))
  local f ready
  while :; do
    if ! kill -0 "$PORTALBD_PID" 2>/dev/null; then
      local rc=0
      wait "$PORTALBD_PID" || rc=$?
      PORTALBD_PID=
      fail "portalbd exited with status $rc during startup"
    fi
    ready=1
    for f in "${files[@]}"; do [ -S "$f" ] || ready=0; done
    if [ "$ready" = 1 ] && timeout 10 nbdinfo --size "$uri" >/dev/null 2>&1; then
      if [ $# -gt 0 ] || timeout 10 nbdinfo --size "$(nbd_tcp_uri)" >/dev/null 2>&1; then
        return 0
      fi
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for f in "${files[@]}"; do [ -S "$f" ] || echo "    missing socket: $f"; done
      fail "portalbd not ready within ${PORTALBD_START_TIMEOUT}s (nbdinfo $uri)"
    fi
    sleep 0.1
  done
}

# start_portalbd [ARGS...]: start the daemon with the default sockets, port and
# state dir plus ARGS, and wait until it serves.
start_portalbd() {
  local t0; t0=$(now_ms)
  portalbd_default_args
  spawn_portalbd "${DEFAULT_ARGS[@]}" "$@"
  wait_portalbd_ready
  log "portalbd started (pid $PORTALBD_PID, $(( $(now_ms) - t0 )) ms): $*"
}

portalbd_running() { [ -n "$PORTALBD_PID" ] && kill -0 "$PORTALBD_PID" 2>/dev/null; }

# stop_portalbd [SIGNAL]: send SIGNAL (default TERM), wait for the exit, and
# check that the daemon exited with status 0 in time.
stop_portalbd() {
  local sig=${1:-TERM}
  [ -n "$PORTALBD_PID" ] || fail "stop_portalbd: no daemon running"
  local pid=$PORTALBD_PID t0; t0=$(now_ms)
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + PORTALBD_STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      PORTALBD_PID=
      fail "portalbd did not exit within ${PORTALBD_STOP_TIMEOUT}s of SIG$sig"
    fi
    sleep 0.05
  done
  local rc=0
  wait "$pid" || rc=$?
  PORTALBD_PID=
  if [ "$rc" -ne 0 ]; then
    fail "portalbd exited with status $rc after SIG$sig (expected 0)"
  fi
  ok "portalbd exited 0 after SIG$sig ($(( $(now_ms) - t0 )) ms)"
}

# kill9_portalbd: simulate a crash.
kill9_portalbd() {
  [ -n "$PORTALBD_PID" ] || fail "kill9_portalbd: no daemon running"
  kill -9 "$PORTALBD_PID" 2>/dev/null || true
  wait "$PORTALBD_PID" 2>/dev/null || true
  PORTALBD_PID=
  log "portalbd killed with SIGKILL"
}

# run_portalbd_expect_failure SECONDS ARGS...: run the daemon in the foreground
# and set RUN_RC, RUN_OUT (stdout+stderr) and RUN_MS. Never fails by itself.
run_portalbd_expect_failure() {
  requires_portalbd
  local secs=$1; shift
  local t0; t0=$(now_ms)
  echo "+ portalbd $*" >>"$TMP/commands.log"
  RUN_RC=0
  RUN_OUT=$(timeout --kill-after=5 "$secs" "$PORTALBD" "$@" 2>&1 </dev/null) || RUN_RC=$?
  RUN_MS=$(( $(now_ms) - t0 ))
}

portalctl() {
  requires_portalctl
  "$PORTALCTL" --socket "$CTL_SOCK" "$@"
}

# ---------------------------------------------------------------- clients

# qio URI QEMU-IO-COMMAND...: run the commands in one qemu-io session; fail on
# a non-zero exit or any error/verification message in the output.
qio() {
  local uri=$1; shift
  local args=() c out rc=0
  for c in "$@"; do args+=(-c "$c"); done
  out=$(qemu-io -f raw "$uri" "${args[@]}" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || grep -qiE 'fail|error|denied|invalid' <<<"$out"; then
    grep -iE 'fail|error|denied|invalid' <<<"$out" | head -20 | sed 's/^/    /'
    local shown="$*"
    [ ${#shown} -le 300 ] || shown="${shown:0:300}..."
    fail "qemu-io on $uri exited $rc; $# commands: $shown"
  fi
  QIO_OUT=$out
}

# nbdsh ARGS...: /usr/bin/nbdsh runs `python3 -m nbd` from PATH, which may be
# a python without the libnbd bindings.
nbdsh() { "$SYSPYTHON" -m nbd "$@"; }

# nbdmodel ARGS...: the libnbd model driver (see nbdmodel.py).
nbdmodel() { "$SYSPYTHON" "$NBDMODEL" "$@"; }

# nbdmodel_write_held WHAT ARGS...: runs `nbdmodel write ARGS... --hold` in
# the background and returns as soon as it has done its writes and holds its
# connection open (a client still attached when the daemon dies); its output
# is in $TMP/writer.out. Fails naming WHAT when the writer does not get there
# within 60 s. End it with nbdmodel_release.
nbdmodel_write_held() {
  local what=$1; shift
  rm -f "$TMP/ready"
  "$SYSPYTHON" "$NBDMODEL" write "$@" --hold "$TMP/ready" </dev/null >"$TMP/writer.out" 2>&1 &
  HELD_WRITER=$!
  cleanup_fn kill -9 "$HELD_WRITER"
  for _ in $(seq 1 3000); do
    [ -s "$TMP/ready" ] && return 0
    kill -0 "$HELD_WRITER" 2>/dev/null || break
    sleep 0.02
  done
  [ -s "$TMP/ready" ] || { cat "$TMP/writer.out"; fail "$what: the writer did not finish its writes"; }
}
# nbdmodel_release: ends the writer of nbdmodel_write_held (kill -9: a client
# that vanishes).
nbdmodel_release() { kill -9 "$HELD_WRITER" 2>/dev/null || true; wait "$HELD_WRITER" 2>/dev/null || true; }

# loop_attach FILE: attach FILE to a free loop device, set LOOP_DEV.
loop_attach() {
  LOOP_DEV=$(losetup -f --show -- "$1") || fail "losetup -f --show $1 failed"
  _loops+=("$LOOP_DEV")
}

loop_detach() {
  losetup -d "$1" || fail "losetup -d $1 failed"
  _forget _loops "$1"
}

mount_track() {  # mount ARGS... where the last argument is the mountpoint
  mount "$@" || fail "mount $* failed"
  _mounts+=("${!#}")
}

umount_track() {
  umount "$1" || fail "umount $1 failed"
  _forget _mounts "$1"
}

# nbdfuse_start MOUNTPOINT[/FILE] URI: run nbdfuse in the background, wait until
# it serves (pidfile written).
nbdfuse_start() {
  local target=$1 uri=$2 dir
  case "$target" in */*) dir=$(dirname "$target") ;; *) dir=$target ;; esac
  [ -d "$target" ] && dir=$target
  mkdir -p "$dir"
  rm -f "$TMP/nbdfuse.pid"
  nbdfuse -P "$TMP/nbdfuse.pid" "$target" "$uri" >>"$TMP/nbdfuse.log" 2>&1 &
  local pid=$!
  _fuse_pids+=("$pid")
  _fuse_mounts+=("$dir")
  local i
  for i in $(seq 1 200); do
    [ -s "$TMP/nbdfuse.pid" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/nbdfuse.log"; fail "nbdfuse exited early"; }
    sleep 0.05
  done
  fail "nbdfuse did not become ready"
}

# nbdfuse_stop MOUNTPOINT: unmount and wait for nbdfuse to exit.
nbdfuse_stop() {
  local dir=$1 pid
  fusermount3 -u "$dir" || fail "fusermount3 -u $dir failed"
  _forget _fuse_mounts "$dir"
  for pid in "${_fuse_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  _fuse_pids=()
}

_forget() {  # ARRAY-NAME VALUE: remove VALUE from the named array
  local -n arr=$1
  local keep=() v
  for v in "${arr[@]}"; do [ "$v" = "$2" ] || keep+=("$v"); done
  arr=("${keep[@]}")
}

# ---------------------------------------------------------------- cleanup

# cleanup_fn CMD ARGS...: run at exit, most recently registered first.
cleanup_fn() {
  local q
  q=$(printf '%q ' "$@")
  _cleanup_fns+=("$q")
}

# on_failure CMD ARGS...: run when the test fails, before the teardown (so the
# helpers it looks at are still there); its output goes to the test's output.
# For helpers whose own state explains a failure: a server that died, say.
on_failure() {
  local q
  q=$(printf '%q ' "$@")
  _failure_fns+=("$q")
}

_run_failure_fns() {
  local i
  for (( i=${#_failure_fns[@]}-1; i>=0; i-- )); do
    eval "${_failure_fns[$i]}" 2>&1
  done
}

# process_alive PID: true while PID runs (a zombie, dead but not yet reaped by
# this shell, is not alive).
process_alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# _teardown: runs the cleanup_fns, undoes the mounts, loops and nbdfuses, and
# kills the daemon (set +e first).
_teardown() {
  local i m
  for (( i=${#_cleanup_fns[@]}-1; i>=0; i-- )); do
    eval "${_cleanup_fns[$i]}" >/dev/null 2>&1
  done
  for (( i=${#_mounts[@]}-1; i>=0; i-- )); do
    m=${_mounts[$i]}
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for m in "${_loops[@]}"; do losetup -d "$m" 2>/dev/null; done
  for m in "${_fuse_mounts[@]}"; do
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
  done
  for m in "${_fuse_pids[@]}"; do kill "$m" 2>/dev/null; done
  if [ -n "$PORTALBD_PID" ]; then
    kill -9 "$PORTALBD_PID" 2>/dev/null
    wait "$PORTALBD_PID" 2>/dev/null
  fi
}

_cleanup() {
  local rc=$1
  set +e
  trap - EXIT INT TERM ERR
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then _run_failure_fns; fi
  _teardown
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    if [ -s "$PORTALBD_LOG" ]; then
      echo "---- last 40 lines of the daemon log ($PORTALBD_LOG) ----"
      tail -40 "$PORTALBD_LOG"
      echo "----"
    fi
    echo "$TEST_NAME: FAILED (exit $rc) after $_checks passing checks"
  elif [ "$rc" -eq 0 ]; then
    echo "$TEST_NAME: PASS ($_checks checks, ${SECONDS}s)"
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "# kept $TMP"
  else
    # Anything still mounted below $TMP must not be descended into.
    rm -rf --one-file-system "$TMP"
  fi
  exit "$rc"
}

# ---------------------------------------------------------------- concurrent scenarios

# in_parallel NAME CMD [ARGS...]: runs CMD in the background, in a subshell
# with a daemon of its own: TMP is $TMP/NAME, and PORT, NBD_SOCK, CTL_SOCK,
# STATE_DIR and PORTALBD_LOG are fresh ones in it. Its cleanup_fns, mounts and
# daemon are torn down when it exits. For a script's independent scenarios
# (its file:// and s3:// halves, say) that mostly wait on timers: they overlap
# instead of adding up. Output goes to $TMP/NAME.out until wait_parallel.
_parallel_pids=()
_parallel_names=()
_parallel_ports=()
in_parallel() {
  local name=$1; shift
  local port; port=$(pick_unused_port)
  while [[ " $PORT ${_parallel_ports[*]} " == *" $port "* ]]; do port=$(pick_unused_port); done
  _parallel_ports+=("$port")
  mkdir "$TMP/$name"
  # Its own process group (set -m), so that _parallel_stop ends whatever it
  # is waiting for too, and its EXIT trap runs at once.
  set -m
  (
    set +m
    _cleanup_fns=(); _failure_fns=(); _mounts=(); _loops=(); _fuse_mounts=(); _fuse_pids=()
    _checks=0
    TMP=$TMP/$name
    PORT=$port STATE_DIR=$TMP/state NBD_SOCK=$TMP/nbd.sock CTL_SOCK=$TMP/ctl.sock
    PORTALBD_LOG=$TMP/portalbd.log PORTALBD_PID=
    trap '_parallel_exit $?' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    "$@"
  ) >"$TMP/$name.out" 2>&1 &
  set +m
  _parallel_pids+=("$!")
  _parallel_names+=("$name")
  cleanup_fn _parallel_stop "$!"
}

_parallel_exit() {  # RC: the EXIT trap of an in_parallel subshell
  local rc=$1
  set +e
  trap - EXIT INT TERM ERR
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then _run_failure_fns; fi
  _teardown
  echo "$_checks" >"$TMP/.checks"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "$PORTALBD_LOG" ]; then
    echo "---- last 40 lines of the daemon log ($PORTALBD_LOG) ----"
    tail -40 "$PORTALBD_LOG"
    echo "----"
  fi
  exit "$rc"
}

_parallel_stop() {  # PID: at exit, ends an in_parallel subshell still running
  kill -- "-$1" 2>/dev/null && wait "$1" 2>/dev/null
}

# wait_parallel: waits for every in_parallel scenario, shows each one's output
# in the order they were started (each numbers its checks from 1; they count
# toward the script's), and fails naming those that failed. When none failed
# but one skipped (exit 77, saying why in its output), the script skips.
wait_parallel() {
  local i rc name n failed=() skipped=()
  for i in "${!_parallel_pids[@]}"; do
    rc=0
    wait "${_parallel_pids[$i]}" || rc=$?
    name=${_parallel_names[$i]}
    log "---- $name (exit $rc) ----"
    cat "$TMP/$name.out"
    n=$(cat "$TMP/$name/.checks" 2>/dev/null || echo 0)
    _checks=$((_checks + n))
    case "$rc" in
      0) ;;
      77) skipped+=("$name") ;;
      *) failed+=("$name (exit $rc)") ;;
    esac
  done
  _parallel_pids=(); _parallel_names=()
  [ ${#failed[@]} -eq 0 ] || fail "concurrent scenario failed: ${failed[*]}"
  [ ${#skipped[@]} -eq 0 ] || skip "concurrent scenario skipped: ${skipped[*]}"
}

# ---------------------------------------------------------------- setup

# An unexpected failing command (set -e) names itself before the exit.
set -E
trap '_rc=$?; case "$BASH_COMMAND" in exit*) ;; *) echo "# error: exit $_rc at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2 ;; esac' ERR
trap '_cleanup $?' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
TMP=$(mktemp -d "/tmp/portalbd-$TEST_NAME.XXXXXX")
STATE_DIR=$TMP/state
NBD_SOCK=$TMP/nbd.sock
CTL_SOCK=$TMP/ctl.sock
PORTALBD_LOG=$TMP/portalbd.log
PORT=$(pick_unused_port)
