#!/usr/bin/env bash
# packaging/completion/portalctl.bash in a plain bash without the
# bash-completion package (issue 24: it failed with `_init_completion: command
# not found`): every command is offered, gc and checkpoint included, options
# and snapshot names (asked from the running daemon) complete, and directories
# complete for mount.
source "$(dirname "$0")/lib.sh"
requires_portalctl

COMPLETION=$TOP/packaging/completion/portalctl.bash

# complete_words WORD...: what the completion offers for the last WORD, in a
# bash with no rc files, so nothing of bash-completion is loaded.
complete_words() {
  PATH="$(dirname "$PORTALCTL"):$PATH" bash --norc --noprofile -c '
    if declare -F _init_completion >/dev/null; then echo "bash-completion is loaded" >&2; exit 1; fi
    source "$1" || exit 1
    shift
    COMP_WORDS=(portalctl "$@"); COMP_CWORD=$#; _portalctl
    echo "${COMPREPLY[*]}"' complete "$COMPLETION" "$@" 2>&1
}

assert_eq "$(complete_words "")" "status snapshot gc checkpoint mount umount" "every command is offered at the start"
assert_eq "$(complete_words g)" "gc" "'portalctl g' completes to gc"
assert_eq "$(complete_words ch)" "checkpoint" "'portalctl ch' completes to checkpoint"
assert_eq "$(complete_words gc --)" "--wait" "'portalctl gc --' offers --wait"
assert_eq "$(complete_words --js)" "--json" "global options complete"
assert_eq "$(complete_words snapshot pr)" "prune" "'portalctl snapshot pr' completes to prune"
assert_eq "$(complete_words snapshot prune --keep-l)" "--keep-last" "prune options complete"
mkdir -p "$TMP/mnt-here"
assert_eq "$(complete_words mount "$TMP/mnt-h")" "$TMP/mnt-here" "mount completes directories"

assert_match "$(grep '^Recommends:' "$TOP/packaging/deb/control.in")" "bash-completion" \
  "the .deb recommends bash-completion (which loads the completion on demand)"

start_portalbd --storage memory:// --disk-size-gb 1
portalctl snapshot create from-daemon >/dev/null
assert_eq "$(complete_words --socket "$CTL_SOCK" snapshot restore from-)" "from-daemon" \
  "snapshot names come from the daemon"
assert_eq "$(complete_words --socket "$CTL_SOCK" snapshot delete nothing-like-)" "" "no name, no offer"
stop_portalbd
