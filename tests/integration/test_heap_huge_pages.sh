#!/usr/bin/env bash
# Transparent huge pages are the user's choice (src/util/huge_pages.h): by
# default the daemon runs on small pages, its heap included; with
# GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in its environment glibc puts the heap
# on huge pages, the daemon keeps malloc to that one arena, and write payloads
# land on huge pages. Either way the daemon starts once (no re-execution) and
# serves the same bytes.
source "$(dirname "$0")/lib.sh"
requires nbdcopy

THP=/sys/kernel/mm/transparent_hugepage/enabled
mode=$(cat "$THP" 2>/dev/null || echo "absent")
case $mode in
  *"[madvise]"*) ;;
  *) skip "THP mode here is '$mode', not madvise: whether the heap is on huge pages is the kernel's choice, not the daemon's; nothing to check" ;;
esac

# KiB of the heap's mappings backed by huge pages.
heap_huge_kib() { awk '/\[heap\]/ { h = 1; next } /^[0-9a-f]+-/ { h = 0 } h && /^AnonHugePages:/ { s += $2 } END { print s + 0 }' "/proc/$PORTALBD_PID/smaps"; }
# KiB of every anonymous mapping backed by huge pages (segment objects are mmap'ed).
anon_huge_kib() { awk '/^AnonHugePages:/ { s += $2 } END { print s + 0 }' "/proc/$PORTALBD_PID/smaps"; }
write_64mib() { head -c $((64 << 20)) /dev/urandom >"$TMP/data" && nbdcopy --flush "$TMP/data" "$(nbd_uri)"; }
read_back() { cmp <(nbdcopy "$(nbd_uri)" - | head -c $((64 << 20))) "$TMP/data" || fail "64 MiB read back differ from what was written ($1)"; }

# The default: small pages everywhere.
# (--journal off: the FLUSH that ends the copy stores a segment object.)
start_portalbd --storage "file://$TMP/data-small" --disk-size-gb 1 --log-level debug --journal off
assert_match "$(cat "$PORTALBD_LOG")" "malloc heap on transparent huge pages: no" "by default the debug log says the heap is on small pages"
assert_eq "$(grep -c 'portalbd started' "$PORTALBD_LOG")" "1" "it started once: no re-execution"
write_64mib
read_back "small pages"
[ -n "$(ls "$TMP/data-small/segments" 2>/dev/null)" ] || fail "no segment object stored after the FLUSH"
assert_eq "$(anon_huge_kib)" "0" "by default no memory of the daemon is on huge pages after 64 MiB of writes"
stop_portalbd

# Asked for: the heap (and segment objects) on huge pages, the user's other
# tunables kept as they are.
GLIBC_TUNABLES=glibc.malloc.tcache_count=7:glibc.malloc.hugetlb=1 \
  start_portalbd --storage memory:// --disk-size-gb 1 --log-level debug
assert_match "$(cat "$PORTALBD_LOG")" "malloc heap on transparent huge pages: yes" \
  "with glibc.malloc.hugetlb=1 the debug log says the heap is on huge pages"
assert_match "$(cat "$PORTALBD_LOG")" 'GLIBC_TUNABLES="glibc.malloc.tcache_count=7:glibc.malloc.hugetlb=1"' \
  "the daemon runs with the tunables it was given"
assert_eq "$(grep -c 'portalbd started' "$PORTALBD_LOG")" "1" "it started once"
write_64mib
read_back "huge pages"
ok "64 MiB written and read back through NBD on a huge-page heap"
huge=$(heap_huge_kib)
[ "$huge" -ge $((32 << 10)) ] || fail "only $huge KiB of the heap on huge pages after 64 MiB of writes"
ok "the heap holds the writes on huge pages: $huge KiB"
stop_portalbd

# glibc.malloc.hugetlb=0, or a later setting of 0, is small pages.
GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0 start_portalbd --storage memory:// --disk-size-gb 1 --log-level debug
assert_match "$(cat "$PORTALBD_LOG")" "malloc heap on transparent huge pages: no" "the last hugetlb setting (0) wins"
write_64mib
assert_eq "$(heap_huge_kib)" "0" "with hugetlb=0 no heap memory is on huge pages"
stop_portalbd
