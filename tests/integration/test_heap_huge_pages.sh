#!/usr/bin/env bash
# The daemon puts its malloc heap on transparent huge pages (huge_pages.h):
# where the kernel's THP mode is "madvise", it executes itself again, once,
# with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, keeping its PID, its arguments
# and the user's other tunables; write payloads then land on huge pages. A
# user's own glibc.malloc.hugetlb setting wins (the opt-out), and the daemon
# then runs as started, on small pages.
#
# (/proc/PID/environ is no witness here: glibc 2.36 cuts GLIBC_TUNABLES short
# in the original environment block while it parses it, so the test reads the
# value the daemon sees from its debug log line.)
source "$(dirname "$0")/lib.sh"
requires nbdcopy

THP=/sys/kernel/mm/transparent_hugepage/enabled
mode=$(cat "$THP" 2>/dev/null || echo "absent")
case $mode in
  *"[madvise]"*) ;;
  *) skip "THP mode here is '$mode', not madvise: the daemon rightly leaves its heap alone, nothing to check" ;;
esac

tunables_seen() { sed -n 's/.*malloc heap on transparent huge pages: .* GLIBC_TUNABLES="\(.*\)"$/\1/p' "$PORTALBD_LOG"; }
# KiB of the heap's mappings backed by huge pages.
heap_huge_kib() { awk '/\[heap\]/ { h = 1; next } /^[0-9a-f]+-/ { h = 0 } h && /^AnonHugePages:/ { s += $2 } END { print s + 0 }' "/proc/$PORTALBD_PID/smaps"; }
write_64mib() { head -c $((64 << 20)) /dev/urandom >"$TMP/data" && nbdcopy "$TMP/data" "$(nbd_uri)"; }

start_portalbd --storage memory:// --disk-size-gb 1 --log-level debug
assert_eq "$(tunables_seen)" "glibc.malloc.hugetlb=1" "the daemon runs with the heap tunable set"
assert_match "$(cat "$PORTALBD_LOG")" "malloc heap on transparent huge pages: yes" "the debug log says the heap is on huge pages"
assert_eq "$(grep -c 'portalbd started' "$PORTALBD_LOG")" "1" "it started once: one re-execution, no loop"
thp_fds=$(find "/proc/$PORTALBD_PID/fd" -lname '*transparent_hugepage*' 2>/dev/null | wc -l)
assert_eq "$thp_fds" 0 "the THP mode file read before the re-execution is not kept open"
write_64mib
cmp <(nbdcopy "$(nbd_uri)" - | head -c $((64 << 20))) "$TMP/data" || fail "64 MiB read back differ from what was written"
ok "64 MiB written and read back through NBD after the re-execution"
assert_match "$(tr '\0' ' ' <"/proc/$PORTALBD_PID/cmdline")" "portalbd .*--storage memory:// --disk-size-gb 1 --log-level debug" \
  "the process started is the daemon, with the arguments it was given"
huge=$(heap_huge_kib)
[ "$huge" -ge $((32 << 10)) ] || fail "only $huge KiB of the heap on huge pages after 64 MiB of writes"
ok "the heap holds the writes on huge pages: $huge KiB"
stop_portalbd

# The user's other tunables are kept.
GLIBC_TUNABLES=glibc.malloc.tcache_count=7 start_portalbd --storage memory:// --disk-size-gb 1 --log-level debug
assert_eq "$(tunables_seen)" "glibc.malloc.tcache_count=7:glibc.malloc.hugetlb=1" "a user's tunables stay, the heap one is added"
stop_portalbd

# The opt-out: a hugetlb setting of the user's own is left as it is.
GLIBC_TUNABLES=glibc.malloc.hugetlb=0 start_portalbd --storage memory:// --disk-size-gb 1 --log-level debug
assert_eq "$(tunables_seen)" "glibc.malloc.hugetlb=0" "GLIBC_TUNABLES=glibc.malloc.hugetlb=0 is left alone"
assert_match "$(cat "$PORTALBD_LOG")" "malloc heap on transparent huge pages: no" "the debug log says the heap is on small pages"
write_64mib
assert_eq "$(heap_huge_kib)" "0" "with the opt-out, no heap memory is on huge pages"
stop_portalbd
