#!/usr/bin/env bash
# packaging/examples/portalbd-snapshot-cron against a live daemon: each run
# takes one snapshot named PREFIX<UTC time> and prunes by the policy in its
# environment; what stays is exactly what the policy keeps, snapshots outside
# the prefix are never touched, DRY_RUN deletes nothing, and an unreachable
# daemon is exit status 3.
source "$(dirname "$0")/lib.sh"

requires_portalctl
CRON=$TOP/packaging/examples/portalbd-snapshot-cron

start_portalbd --storage memory://

# names: every snapshot name, sorted, space-separated.
names() {
  portalctl --json snapshot list |
    "$SYSPYTHON" -c 'import json, sys; print(" ".join(sorted(s["name"] for s in json.load(sys.stdin)["snapshots"])))'
}

# cron KEY=VALUE...: one run of the script with a policy (unset rules are 0).
cron() {
  env PORTALBD_SOCKET="$CTL_SOCK" PORTALCTL="$PORTALCTL" SNAPSHOT_PREFIX=cron- \
    KEEP_LAST=0 KEEP_HOURLY=0 KEEP_DAILY=0 KEEP_WEEKLY=0 "$@" sh "$CRON" >>"$TMP/cron.log" 2>&1
}

# newest_cron: the name of the newest cron- snapshot.
newest_cron() {
  portalctl --json snapshot list | "$SYSPYTHON" -c '
import json, sys
s = [x for x in json.load(sys.stdin)["snapshots"] if x["name"].startswith("cron-")]
print(max(s, key=lambda x: x["created_unix_ms"])["name"])'
}

check "a snapshot taken by hand (outside the prefix)" portalctl snapshot create manual-keep

created=()
for i in 1 2 3 4 5; do
  cron KEEP_LAST=3 || fail "run $i of portalbd-snapshot-cron exited $? (see $TMP/cron.log)"
  created+=("$(newest_cron)")
done
ok "5 runs with KEEP_LAST=3 (two runs in one second get a .N suffix)"
expected=$(printf '%s\n' manual-keep "${created[@]:2}" | sort | tr '\n' ' '); expected=${expected% }
assert_eq "$(names)" "$expected" "KEEP_LAST=3 keeps the 3 newest cron- snapshots and the manual one"
assert_match "${created[*]}" '^cron-[0-9]{8}T[0-9]{6}Z' "names are cron-<UTC time>"

before=$(names)
cron KEEP_LAST=1 DRY_RUN=1 || fail "dry run exited $?"
newest=$(newest_cron)
assert_eq "$(names)" "$(printf '%s\n' $before "$newest" | sort | tr '\n' ' ' | sed 's/ $//')" \
  "DRY_RUN=1 snapshots but deletes nothing"
assert_match "$(cat "$TMP/cron.log")" "${created[2]}" "DRY_RUN=1 prints what it would delete"

cron KEEP_DAILY=1 || fail "daily run exited $?"
assert_eq "$(names)" "$(printf '%s\n' manual-keep "$(newest_cron)" | sort | tr '\n' ' ' | sed 's/ $//')" \
  "KEEP_DAILY=1 keeps only today's newest cron- snapshot (and the manual one)"

# Name clashes are retried quietly: nothing on stderr for cron to mail.
stamp=$(date -u +%Y%m%dT%H%M%SZ)
for n in "" .2 .3; do portalctl snapshot create "quiet-$stamp$n" >/dev/null; done
env PORTALBD_SOCKET="$CTL_SOCK" PORTALCTL="$PORTALCTL" SNAPSHOT_PREFIX=quiet- KEEP_LAST=100 \
  sh "$CRON" >/dev/null 2>"$TMP/clash.err" || fail "a run with taken names exited $?"
if [ "$(date -u +%Y%m%dT%H%M%SZ)" = "$stamp" ]; then
  assert_eq "$(cat "$TMP/clash.err")" "" "name clashes are retried without a word on stderr"
  assert_match "$(names)" "quiet-$stamp\.4" "the run took the next free name (.4)"
else
  log "the second changed during the clash check; its stderr check is moot this run"
  assert_eq "$(cat "$TMP/clash.err")" "" "the run printed nothing on stderr"
fi

rc=0
err=$(env PORTALBD_SOCKET="$TMP/no-such.sock" PORTALCTL="$PORTALCTL" sh "$CRON" 2>&1 >/dev/null) || rc=$?
assert_eq "$rc" 3 "an unreachable daemon is exit status 3"
assert_match "$err" "cannot reach portalbd" "and other errors are still printed on stderr"

stop_portalbd
