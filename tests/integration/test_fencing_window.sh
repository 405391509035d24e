#!/usr/bin/env bash
# The fencing window (issue 18; WriterLease L5-L6 and rule U7 in volume.h):
# daemon A's segment PUT is held 3 s by a proxy; daemon B starts with
# --take-over meanwhile, writes and flushes. A's FLUSH must fail (EIO, FENCED
# in its log), never answer OK; B then writes and flushes again; and a daemon
# started afterwards on a fresh state dir sees everything A and B
# acknowledged. A's refused write may or may not be there (it was answered,
# but never made durable), and it is never counted as acknowledged.
#
# Runs on s3rver (ignores conditional PUTs: fencing by the lease alone) and on
# moto_server (enforces If-None-Match, as AWS S3 does), both at once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires qemu-io nbdinfo curl
requires_portalbd

HOLD_MS=3000

# proxy_stat URL FIELD: one counter of the fault proxy.
proxy_stat() {
  curl -sf "$1/__fault_proxy_stats" | "$SYSPYTHON" -c "import json, sys; print(json.load(sys.stdin)['$2'])"
}

# wait_served NBD_SOCKET PID LOG: until the daemon answers NBD, or fail.
wait_served() {
  local deadline=$(( $(date +%s) + 30 ))
  until nbdinfo --size "nbd+unix:///portalbd?socket=$1" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || { tail -20 "$3"; fail "daemon $2 exited during startup"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "daemon $2 not serving within 30 s"
    sleep 0.1
  done
}

# reads_as URI OFFSET PATTERN: true when the 64 KiB at OFFSET read as PATTERN
# (qemu-io reports a mismatch in its output, not its exit status).
reads_as() {
  local out
  out=$(qemu-io -f raw "$1" -c "read -P $3 $2 64k" 2>&1) || return 1
  ! grep -qiE "verification failed|error" <<<"$out"
}

expect_bytes() {  # URI OFFSET PATTERN WHAT
  reads_as "$1" "$2" "$3" || fail "$4: the 64 KiB at $2 do not read as $3"
  ok "$4"
}

run_window() {  # NAME BACKEND_ENDPOINT
  local name=$1 backend=$2 dir="$TMP/$1"
  mkdir -p "$dir"
  S3_ENDPOINT=$backend start_fault_proxy --rate 0
  local proxy=$FAULT_PROXY_URL storage="s3://$S3_BUCKET/volumes/window-$name"
  log "--- $name: storage $storage; A through the proxy $proxy, B direct to $backend"

  # A: its PUTs go through the proxy.
  export AWS_ENDPOINT_URL=$proxy
  STATE_DIR=$dir/state-a
  start_portalbd --storage "$storage" --disk-size-gb 1 --flush-interval-ms 3600000
  local a_uri; a_uri=$(nbd_uri)
  local a_log=$PORTALBD_LOG
  qio "$a_uri" "write -P 0x11 0 64k" "flush"
  ok "$name: A writes and flushes 0x11 at 0 (acknowledged)"

  # A's next segment PUT waits 3 s in the proxy, then lands.
  curl -sf "$proxy/__fault_proxy_hold?match=/segments/&ms=$HOLD_MS&count=1" >/dev/null || fail "cannot arm the proxy"
  (rc=0; qemu-io -f raw "$a_uri" -c "write -P 0x22 64k 64k" -c "flush" >"$dir/a-io.out" 2>&1 || rc=$?
   echo "$rc" >"$dir/a-io.rc") &
  local a_io=$!
  cleanup_fn kill -9 "$a_io"
  local deadline=$(( $(date +%s) + 20 ))
  until [ "$(proxy_stat "$proxy" holding)" = 1 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name: A's segment PUT never reached the proxy"
    sleep 0.05
  done
  local held_at; held_at=$(now_ms)
  ok "$name: A's segment PUT is held in the proxy"

  # B takes the volume over meanwhile, straight to the store.
  local b_port; b_port=$(pick_unused_port)
  local b_sock="$dir/b-nbd.sock" b_log="$dir/b.log"
  AWS_ENDPOINT_URL=$backend "$PORTALBD" --storage "$storage" --take-over --state-dir "$dir/state-b" \
    --nbd-unix "$b_sock" --nbd-address "127.0.0.1:$b_port" --socket "$dir/b-ctl.sock" \
    --flush-interval-ms 3600000 >"$b_log" 2>&1 &
  local b_pid=$!
  cleanup_fn kill -9 "$b_pid"
  wait_served "$b_sock" "$b_pid" "$b_log"
  local b_uri="nbd+unix:///portalbd?socket=$b_sock"
  grep -q "taking over the volume" "$b_log" || log "$name: B's log does not say it took over the lease"
  qio "$b_uri" "write -P 0x33 128k 64k" "flush"
  local during; during=$(proxy_stat "$proxy" holding)
  if [ "$during" = 1 ]; then
    ok "$name: B wrote and flushed 0x33 at 128k while A's PUT was still held ($(( $(now_ms) - held_at )) ms in)"
  else
    ok "$name: B wrote and flushed 0x33 at 128k (A's PUT had landed by then)"
  fi

  # A's FLUSH: never OK.
  wait "$a_io" || true
  local a_rc; a_rc=$(cat "$dir/a-io.rc")
  local a_out; a_out=$(cat "$dir/a-io.out")
  log "$name: A's qemu-io exited $a_rc after $(( $(now_ms) - held_at )) ms: $(tr '\n' ' ' <<<"$a_out")"
  assert_eq "$(proxy_stat "$proxy" held)" 1 "$name: the proxy held exactly one PUT"
  assert_match "$a_out" "flush failed|Input/output error" "$name: A's FLUSH after the take-over fails with EIO"
  assert_match "$(cat "$a_log")" "FENCED" "$name: A logs FENCED"
  assert_match "$(qemu-io -f raw "$a_uri" -c "write -P 0x55 256k 64k" -c "flush" 2>&1 || true)" \
    "failed|Input/output error" "$name: A writes nothing more"

  # B goes on; then the volume is rebuilt from storage alone.
  qio "$b_uri" "write -P 0x44 192k 64k" "flush"
  ok "$name: B writes and flushes 0x44 at 192k after A was refused"
  expect_bytes "$b_uri" 0 0x11 "$name: B reads A's acknowledged 0x11 at 0"
  kill -TERM "$b_pid"
  local b_rc=0
  wait "$b_pid" || b_rc=$?
  assert_eq "$b_rc" 0 "$name: B stops cleanly"
  kill9_portalbd

  STATE_DIR=$dir/state-c
  start_portalbd --storage "$storage"
  local c_uri; c_uri=$(nbd_uri)
  expect_bytes "$c_uri" 0 0x11 "$name: fresh state: A's acknowledged write"
  expect_bytes "$c_uri" 128k 0x33 "$name: fresh state: B's write flushed during the window"
  expect_bytes "$c_uri" 192k 0x44 "$name: fresh state: B's write flushed after it"
  local refused
  if reads_as "$c_uri" 64k 0x22; then
    refused="present (written, never acknowledged)"
  elif reads_as "$c_uri" 64k 0; then
    refused="absent"
  else
    fail "$name: A's refused write at 64k reads as neither zeroes nor what A wrote"
  fi
  ok "$name: A's refused write at 64k is $refused in the rebuilt volume"
  expect_bytes "$c_uri" 256k 0 "$name: fresh state: nothing of A's after it was fenced"
  stop_portalbd
  unset AWS_ENDPOINT_URL
}

# The two stores' windows run at once, each with its own daemons (in_parallel).
window_s3rver() {
  start_s3rver
  run_window s3rver "$S3_ENDPOINT"
}
window_moto() {
  start_moto_server
  run_window moto "$MOTO_ENDPOINT"
}
export AWS_REGION=us-east-1
in_parallel s3rver window_s3rver
in_parallel moto window_moto
wait_parallel
