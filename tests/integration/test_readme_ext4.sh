#!/usr/bin/env bash
# The README's ext4 flow, run as written (issue 24): the two shell blocks of
# README.md "ext4 with atomic snapshots" and "Look into a snapshot without
# restoring it" are read from the README itself, and every `$ ` line runs in
# order; the lines after a command that do not start with `$ ` must appear in
# its output. This host has no nbd kernel module, so `nbd-client ... /dev/nbd0`
# becomes nbdfuse + a loop device (what the README suggests for such hosts),
# and the paths become private ones. So a README that drifts from what works
# (`sync DIR` that leaves the file out of the snapshot, a restore whose stale
# cache hides the restored data, `mount -o ro,loop` of a snapshot taken while
# mounted) fails here.
source "$(dirname "$0")/lib.sh"
requires_root
requires nbdfuse fusermount3 losetup mkfs.ext4 mount umount blockdev
[ -c /dev/fuse ] || skip "/dev/fuse is not available"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"
requires_portalctl

README=$TOP/README.md
FUSE=$TMP/fuse
MNT=$TMP/portal
SNAPS=$TMP/portal-snaps
OLD=$TMP/old
mkdir -p "$FUSE" "$MNT" "$SNAPS" "$OLD"
DEV=

# `nbd-client -N portalbd 127.0.0.1 10809 /dev/nbd0` on this host. The loop
# device does direct I/O on the nbdfuse file, so that, as with /dev/nbd0,
# the block device's own cache is the only one (`blockdev --flushbufs` drops
# it); through the page cache of the FUSE file a second, stale copy would
# outlive it.
attach_nbd0() {
  nbdfuse_start "$FUSE/nbd" "$(nbd_uri)"
  DEV=$(losetup -f --show --direct-io=on -- "$FUSE/nbd") || fail "losetup --direct-io=on $FUSE/nbd failed"
  _loops+=("$DEV")
  [ "$(cat "/sys/block/${DEV#/dev/}/loop/dio")" = 1 ] || skip "the loop device cannot do direct I/O on the nbdfuse file"
}
# Whatever the README leaves mounted when a check fails.
cleanup_fn umount -l "$OLD"
cleanup_fn "$PORTALCTL" --socket "$CTL_SOCK" umount "$SNAPS"
cleanup_fn umount -l "$MNT"

# readme_block HEADING-PREFIX: the first ```sh block after the line that
# starts with HEADING-PREFIX.
readme_block() {
  awk -v start="$1" '
    index($0, start) == 1 { found = 1; next }
    found && !inblock && /^```sh$/ { inblock = 1; next }
    inblock && /^```$/ { exit }
    inblock { print }' "$README"
}

# run_block TEXT: run each `$ ` line of TEXT as the README reader would.
run_block() {
  local line cmd="" expected=() n=0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      '$ '*)
        [ -z "$cmd" ] || run_one "$cmd" "${expected[@]}"
        cmd=${line#\$ }
        expected=()
        n=$((n + 1))
        ;;
      '') ;;
      *) expected+=("$line") ;;
    esac
  done <<<"$1"
  [ -z "$cmd" ] || run_one "$cmd" "${expected[@]}"
  [ "$n" -gt 0 ] || fail "no commands found in the README block"
}

# run_one COMMAND EXPECTED-LINE...: the README's command on this host.
run_one() {
  local cmd=$1 shown=$1 out rc=0 want; shift
  if [[ "$cmd" == "nbd-client -N portalbd 127.0.0.1 10809 /dev/nbd0"* ]]; then
    attach_nbd0
    ok "\$ $shown  (nbdfuse + loop device: $DEV)"
    return
  fi
  cmd=${cmd//\/mnt\/portal-snaps/$SNAPS}
  cmd=${cmd//\/mnt\/portal/$MNT}
  cmd=${cmd//\/mnt\/old/$OLD}
  cmd=${cmd//\/dev\/nbd0/$DEV}
  out=$(eval "$cmd" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$out" | tail -10 | sed 's/^/    /'
    fail "\$ $shown exited $rc (ran: $cmd)"
  fi
  for want in "$@"; do
    grep -qxF -- "$want" <<<"$out" || {
      echo "$out" | tail -10 | sed 's/^/    /'
      fail "\$ $shown: the README shows '$want', the output has no such line"
    }
  done
  ok "\$ $shown${1:+  -> $*}"
}

start_portalbd --disk-size-gb 1

ext4_block=$(readme_block "ext4 with atomic snapshots")
[ -n "$ext4_block" ] || fail "README.md has no shell block after 'ext4 with atomic snapshots'"
run_block "$ext4_block"

view_block=$(readme_block "Look into a snapshot without restoring it")
[ -n "$view_block" ] || fail "README.md has no shell block after 'Look into a snapshot without restoring it'"
run_block "$view_block"

# The restored filesystem is consistent, and the restore kept the replaced
# state as an automatic snapshot.
umount "$MNT"
check "e2fsck -fn is clean on the restored filesystem" e2fsck -fn "$DEV"
list=$(portalctl --json snapshot list)
check "the restore kept the replaced state as pre-restore-*, shown as automatic" "$SYSPYTHON" -c '
import json, sys
snaps = json.loads(sys.argv[1])["snapshots"]
pre = [s for s in snaps if s["name"].startswith("pre-restore-")]
assert len(pre) == 1 and pre[0]["auto"] is True, snaps
' "$list"
assert_match "$(cat "$PORTALBD_LOG")" "clients are attached to the live export: .*blockdev --flushbufs" \
  "the daemon's restore warning says what an attached client must do"
loop_detach "$DEV"
nbdfuse_stop "$FUSE"
stop_portalbd
