#!/usr/bin/env bash
# An idle volume costs (almost) nothing (issue 26): once its start-up work and
# the GC work its writes left are done, background GC and checkpoints send no
# request to the store. A daemon with a GC pass every second writes and
# overwrites 2 MiB (so a segment is doomed, waits out its grace period and is
# deleted), then sits idle for IDLE_S seconds; `portalctl --json status`
# before and after must show the same count of volume requests, and the log
# no GC pass (an unchanged volume's ticks are skipped). The writer
# lease's requests (keys under lock/) are counted apart and only reported:
# lazy lease renewal is later work of issue 26.
# Runs on file://, then on s3:// (s3rver) when s3rver is installed.
# Also checks that `portalctl status` shows the request counts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3_lib.sh"
requires nbdcopy
requires_portalctl

IDLE_S=${IDLE_S:-10}

# field JSON BUCKET KEY: a store_requests/lease_requests counter from status JSON.
field() {
  "$SYSPYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]][sys.argv[3]])' "$1" "$2" "$3"
}

# idle_check STORAGE: the whole scenario on one store.
idle_check() {
  local storage=$1 status before after deadline
  start_portalbd --disk-size-gb 1 --storage "$storage" --gc-interval-s 1 --gc-grace-ms 2000

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

  local passes_before passes_after
  passes_before=$(grep -c 'gc pass ' "$PORTALBD_LOG" || true)
  before=$(portalctl --json status)
  sleep "$IDLE_S"
  after=$(portalctl --json status)
  passes_after=$(grep -c 'gc pass ' "$PORTALBD_LOG" || true)
  local op b a
  for op in put put_if_absent get get_range head list remove; do
    b=$(field "$before" store_requests $op)
    a=$(field "$after" store_requests $op)
    [ "$a" = "$b" ] || log "store_requests.$op: $b -> $a"
  done
  local vb va lb la
  vb=$(field "$before" store_requests total)
  va=$(field "$after" store_requests total)
  lb=$(field "$before" lease_requests total)
  la=$(field "$after" lease_requests total)
  log "$storage idle ${IDLE_S} s, a GC tick every second: volume requests $((va - vb)), lease requests $((la - lb))"
  assert_eq "$((va - vb))" 0 "background GC and checkpoints send nothing over ${IDLE_S} s idle"
  assert_eq "$((passes_after - passes_before))" 0 "no GC pass runs on the unchanged volume (ticks are skipped)"

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

idle_check "file://$TMP/store"

# s3:// as well, when s3rver is there (another build dir may have it).
if [ ! -x "$S3RVER" ] && [ -x "$TOP/build/node/node_modules/.bin/s3rver" ]; then
  S3RVER=$TOP/build/node/node_modules/.bin/s3rver
fi
if [ -x "$S3RVER" ] && command -v node >/dev/null; then
  start_s3rver
  export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_REGION=us-east-1
  STATE_DIR=$TMP/state-s3
  idle_check "s3://$S3_BUCKET/volumes/idle"
else
  log "SKIPPED the s3:// half: s3rver is not installed at $S3RVER (make deps)"
fi
