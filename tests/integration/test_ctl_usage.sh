#!/usr/bin/env bash
# portalctl's first impression (issue 24, rough edges) against the real
# daemon: an unknown command is named with a suggestion, each --help shows the
# exit codes once, prune refuses negative counts, empty names and names that
# start with '-' are refused by portalctl and by the daemon, umount of a path
# with no view is exit 1 (not 4, "no such snapshot"), and pre-restore-*
# snapshots are listed as automatic.
source "$(dirname "$0")/lib.sh"
requires_portalctl

start_portalbd --storage memory:// --disk-size-gb 1

# expect RC ERE DESCRIPTION -- ARGS...: portalctl ARGS exits RC, its output matches ERE.
expect() {
  local want=$1 ere=$2 what=$3; shift 4
  local out rc=0
  out=$(portalctl "$@" 2>&1) || rc=$?
  if [ "$rc" != "$want" ] || ! grep -qE -- "$ere" <<<"$out"; then
    echo "$out" | tail -5 | sed 's/^/    /'
    fail "$what: portalctl $* exited $rc (expected $want), output must match /$ere/"
  fi
  ok "$what"
}

expect 2 "unknown command 'stauts'; did you mean 'status'\\?" "a misspelt command is named, with a suggestion" -- stauts
expect 2 "unknown command 'snapshot lsit'; did you mean 'snapshot list'\\?" "a misspelt subcommand too" -- snapshot lsit
for sub in "status" "snapshot create" "gc"; do
  # shellcheck disable=SC2086
  n=$(portalctl $sub --help | grep -c '^Exit status:')
  assert_eq "$n" 1 "portalctl $sub --help shows the exit codes once"
done

portalctl snapshot create keep-me >/dev/null
expect 2 "N must be 0 or more, not -1" "prune --keep-last -1 is refused" -- snapshot prune --keep-last -1
assert_match "$(portalctl snapshot list)" "keep-me" "and nothing was pruned"
expect 2 "must not be empty" "snapshot create \"\" is refused (not an automatic name)" -- snapshot create ""
expect 2 "must not start with '-'" "a name starting with '-' is refused" -- snapshot create -- -oops
check "the daemon itself refuses an empty name" "$SYSPYTHON" - "$CTL_SOCK" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"v":1,"cmd":"snapshot.create","args":{"name":""}}\n')
answer = json.loads(s.makefile().readline())
assert answer["ok"] is False and answer["error"]["code"] == "InvalidArgument", answer
EOF
assert_no_match "$(portalctl snapshot list)" "auto-|-oops" "no snapshot was made by the refused creates"

mkdir -p "$TMP/not-mounted"
expect 1 "no portalbd view is mounted at" "umount of a path with no view is exit 1" -- umount "$TMP/not-mounted"

portalctl snapshot restore keep-me >/dev/null
assert_match "$(portalctl snapshot list)" "^pre-restore-[0-9TZ]+ .* auto " "pre-restore-* is listed as automatic"
stop_portalbd
