#!/usr/bin/env bash
# An idle volume costs (almost) nothing (issue 26): once its start-up work and
# the GC work its writes left are done, background GC and checkpoints send no
# request to the store. A daemon with a GC pass every second writes and
# overwrites 2 MiB (so a segment is doomed, waits out its grace period and is
# deleted), then sits idle for IDLE_S seconds; `portalctl --json status`
# before and after must show the same count of volume requests, and the log
# no GC pass (an unchanged volume's ticks are skipped). The writer
# lease's requests (keys under lock/) are counted apart; an idle volume's
# lease is renewed once per 20 minutes (writer_lease.h), so once its idle
# renewal is made, an IDLE_S stretch passes with no request at all.
# Runs on file:// and, at the same time, on s3:// (s3rver) when s3rver is
# installed.
# Also checks that `portalctl status` shows the request counts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires nbdcopy
requires_portalctl

IDLE_S=${IDLE_S:-20}

# field JSON BUCKET KEY: a store_requests/lease_requests counter from status JSON.
field() {
  "$SYSPYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]][sys.argv[3]])' "$1" "$2" "$3"
}

# idle_check STORAGE: the whole scenario on one store.
idle_check() {
  local storage=$1 status before after deadline
  # --journal off: each `nbdcopy --flush` below stores a segment, so the second
  # one makes the first garbage for GC (with the journal, file://'s default,
  # FLUSH stores nothing).
  start_portalbd --disk-size-gb 1 --storage "$storage" --gc-interval-s 1 --gc-grace-ms 2000 --journal off

  status=$(portalctl --json status)
  assert_match "$status" '"store_requests":\{' "status --json has store_requests"
  assert_match "$status" '"lease_requests":\{' "status --json has lease_requests"
  [ "$(field "$status" store_requests list)" -gt 0 ] || fail "start-up listed storage, yet store_requests.list is 0"
  ok "start-up requests are counted ($(field "$status" store_requests total) volume, $(field "$status" lease_requests total) lease)"
  case "$storage" in
    s3://*) assert_match "$status" '"s3":\{"' "status --json still has the S3 store's own HTTP metrics" ;;
  esac

  head -c $((2 * 1024 * 1024)) /dev/urandom >"$TMP/a.bin"
  nbdcopy --flush "$TMP/a.bin" "$(nbd_uri)"
  head -c $((2 * 1024 * 1024)) /dev/urandom >"$TMP/b.bin"
  nbdcopy --flush "$TMP/b.bin" "$(nbd_uri)"  # the first copy's segment is garbage now

  # GC dooms the overwritten segment, waits out the grace period, deletes it.
  deadline=$(( $(date +%s) + 30 ))
  while :; do
    status=$(portalctl --json status)
    [ "$(field "$status" store_requests remove)" -gt 0 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "GC deleted no segment within 30 s"
    sleep 0.5
  done
  sleep 2  # the pass after the one that deleted
  ok "GC deleted the overwritten segment"

  # Once the lease has made its idle renewal (at the first flusher tick, every
  # 15 s, after the last segment), nothing at all goes to the store: a
  # stretch of IDLE_S seconds with no request, volume or lease, must come
  # within the next 60 s. Before lazy renewal the lease alone sent a GET and
  # a PUT every 15 s, so no such stretch came.
  local passes_before passes_after since now vt lt vt0 lt0 start
  start=$(date +%s); since=$start
  status=$(portalctl --json status)
  vt0=$(field "$status" store_requests total); lt0=$(field "$status" lease_requests total)
  before=$status
  passes_before=$(grep -c 'gc pass ' "$PORTALBD_LOG" || true)
  while :; do
    sleep 1
    now=$(date +%s)
    status=$(portalctl --json status)
    vt=$(field "$status" store_requests total); lt=$(field "$status" lease_requests total)
    if [ "$vt" != "$vt0" ] || [ "$lt" != "$lt0" ]; then
      log "requests at +$((now - start)) s: volume $vt0 -> $vt, lease $lt0 -> $lt"
      vt0=$vt; lt0=$lt; since=$now; before=$status
      passes_before=$(grep -c 'gc pass ' "$PORTALBD_LOG" || true)
    fi
    [ $((now - since)) -ge "$IDLE_S" ] && break
    [ $((now - start)) -lt $((60 + IDLE_S)) ] || fail "no ${IDLE_S} s stretch without a store request within $((60 + IDLE_S)) s (volume $vt, lease $lt requests so far)"
  done
  after=$status
  passes_after=$(grep -c 'gc pass ' "$PORTALBD_LOG" || true)
  log "$storage idle: a ${IDLE_S} s stretch with no request after $((since - start)) s (a GC tick every second)"
  ok "an idle volume sends nothing, lease included, for ${IDLE_S} s (with a GC tick every second)"
  assert_eq "$((passes_after - passes_before))" 0 "no GC pass runs on the unchanged volume (ticks are skipped)"
  [ "$(field "$status" lease_requests total)" -gt 0 ] || fail "the lease's requests are not counted"

  local text
  text=$(portalctl status)
  assert_match "$text" 'store requests' "portalctl status shows the volume's store requests"
  assert_match "$text" 'lease requests' "portalctl status shows the lease's store requests"
  assert_match "$text" 'put=[0-9,]+ +put_if_absent=[0-9,]+ +get=' "portalctl status shows requests by type"

  # A write after the idle window is still uploaded, and counted.
  nbdcopy --flush "$TMP/a.bin" "$(nbd_uri)"
  status=$(portalctl --json status)
  [ $(( $(field "$status" store_requests put) + $(field "$status" store_requests put_if_absent) )) -gt \
    $(( $(field "$after" store_requests put) + $(field "$after" store_requests put_if_absent) )) ] ||
    fail "a write after idling sent no PUT"
  ok "a write after the idle window is uploaded and counted"
  stop_portalbd
}

idle_check_s3() {
  start_s3rver
  export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
  idle_check "s3://$S3_BUCKET/volumes/idle"
}

# The two halves mostly wait out the lease's renewals and the idle stretch:
# they run at once, each with its own daemon (in_parallel).
in_parallel file idle_check "file://$TMP/store"

# s3:// as well, when s3rver is there (another build dir may have it).
if [ ! -x "$S3RVER" ] && [ -x "$TOP/build/node/node_modules/.bin/s3rver" ]; then
  S3RVER=$TOP/build/node/node_modules/.bin/s3rver
fi
if [ -x "$S3RVER" ] && command -v node >/dev/null; then
  in_parallel s3 idle_check_s3
else
  log "SKIPPED the s3:// half: s3rver is not installed at $S3RVER (make deps)"
fi
wait_parallel
