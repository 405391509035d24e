#!/usr/bin/env bash
# Snapshot atomicity under load: three connections write sequence-stamped
# blocks while snapshots are taken; each snapshot must be a single cut (see
# snapshot_cut.py). Runs on file:// (the default store).
source "$(dirname "$0")/lib.sh"
requires_python_nbd
requires_portalctl

start_portalbd --disk-size-gb 1
out=$("$SYSPYTHON" "$TOP/tests/integration/snapshot_cut.py" "$NBD_SOCK" "$EXPORT_NAME" "$PORTALCTL" "$CTL_SOCK" 6) ||
  { echo "$out"; fail "a snapshot taken under load is not a consistent cut"; }
echo "$out" | sed 's/^/    /'
assert_eq "$(grep -c '^ok cut' <<<"$out")" "6" "6 snapshots taken under load, each a consistent cut"
stop_portalbd
