#!/usr/bin/env bash
# The lock annotations hold: `make thread-safety` (clang -Wthread-safety
# -Werror, syntax only, over every library and program source and the
# header-only test helpers) passes. `make test` runs that target before the
# suite, so here it usually has nothing left to do; this script is what counts
# its result. Then a scratch file that breaks the annotations shows that the
# check can fail: a clang that quietly ignored them (or macros that expanded
# to nothing under clang) would pass everything.
source "$(dirname "$0")/lib.sh"

command -v clang++ >/dev/null || fail "clang++ not found (make deps installs it)"

rc=0
out=$(make -C "$TOP" --no-print-directory -j"$(nproc)" BUILD="$BUILD" thread-safety 2>&1) || rc=$?
if [ "$rc" -ne 0 ]; then
  grep 'error:' <<<"$out" | sort -u |
    awk 'NR <= 40 { print "    " $0 } END { if (NR > 40) print "    ... and " NR - 40 " more" }' || true
  fail "make thread-safety exited $rc: a lock annotation does not hold (above)"
fi
nstamps=$(find "$BUILD/tsa" -name '*.ok' | wc -l)
ok "make thread-safety: $nstamps files pass clang -Wthread-safety -Werror"

# The check can fail: a field read without its mutex, a REQUIRES helper
# called without it, and a read after the lock was dropped mid-scope.
cat >"$TMP/unguarded.cc" <<'CC'
#include "src/util/mutex.h"

class Counter {
 public:
  void add() {
    portalbd::MutexLock lock(&mu_);
    add_locked();
  }
  int peek() { return n_; }
  void twice() { add_locked(); }
  void wait_dropped() {
    portalbd::MutexLock lock(&mu_);
    lock.unlock();
    while (n_ == 0) cv_.wait(lock);
  }

 private:
  void add_locked() REQUIRES(mu_) { ++n_; }

  portalbd::Mutex mu_;
  portalbd::CondVar cv_;
  int n_ GUARDED_BY(mu_) = 0;
};
CC
rc=0
out=$(cd "$TOP" && clang++ -std=c++20 -fsyntax-only -Wthread-safety -Werror -I. "$TMP/unguarded.cc" 2>&1) || rc=$?
{ grep 'error:' <<<"$out" || true; } | sed 's/^/    /'
assert_ne "$rc" 0 "clang refuses a file that breaks the annotations"
assert_match "$out" "unguarded.cc:9:.*reading variable 'n_' requires holding mutex 'mu_'" \
  "a read without the mutex is named"
assert_match "$out" "unguarded.cc:10:.*calling function 'add_locked' requires holding mutex 'mu_'" \
  "a REQUIRES call without the mutex is named"
assert_match "$out" "unguarded.cc:14:.*reading variable 'n_' requires holding mutex 'mu_'" \
  "a read after unlock() is named"
# g++ ignores the annotations and builds the same file: they cost nothing there.
check "g++ compiles the annotated file" g++ -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$TOP" "$TMP/unguarded.cc"
