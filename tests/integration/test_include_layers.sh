#!/usr/bin/env bash
# Lower folders never include higher ones. The allowed include directions are
# the table in docs/design.md, "Folders and include directions"; this test
# reads them from there and checks every #include in every *.h and *.cc of the
# tree, printing each violation as "file:line: folder X may not include Y".
# It then plants forbidden includes in a scratch tree, to show it can fail.
source "$(dirname "$0")/lib.sh"

RULES=$TOP/docs/design.md

# include_violations ROOT: print every include under ROOT that the rules
# forbid, as file:line: ...; exit 1 if there is any.
include_violations() (
  cd "$1" || return 2
  find . \( -path './.*' -o -path './build*' -o -path ./node_modules \) -prune -o \
    -type f \( -name '*.h' -o -name '*.cc' \) -printf '%P\n' | sort |
    xargs awk -v rules="$RULES" '
    # within(p, t): p is t or lies below folder t.
    function within(p, t) { return p == t || substr(p, 1, length(t) + 1) == t "/" }
    BEGIN {
      while ((getline line < rules) > 0) {
        if (line ~ /^## /) { insec = (line == "## Folders and include directions"); continue }
        if (!insec) continue
        if (line ~ /^```/) { fence++; continue }
        if (fence != 1) continue
        n = split(line, f, " ")
        if (n == 0 || f[1] == "folder") continue
        nrows++; row[f[1]] = 1; allow[f[1]] = ""
        for (i = 2; i <= n; i++) {
          if (f[i] == "-") continue
          allow[f[1]] = allow[f[1]] " " f[i]
          if (f[i] ~ /^</) guarded[f[i]] = 1
        }
      }
      if (nrows == 0) { print "no include rules found in " rules; bad = 1; exit 1 }
    }
    FNR == 1 {
      subj = ""
      for (r in row) if (within(FILENAME, r) && length(r) > length(subj)) subj = r
      if (subj == "") {
        split(FILENAME, top, "/")
        print FILENAME ":1: folder " top[1] " has no row in docs/design.md"; bad = 1
      }
      file_row = subj ~ /\.(h|cc)$/
      is_test = FILENAME ~ /_test\.cc$/
      dir = FILENAME; sub(/\/[^\/]*$/, "", dir)
    }
    subj != "" && /^[ \t]*#[ \t]*include[ \t]*[<"]/ {
      inc = $0; sub(/^[ \t]*#[ \t]*include[ \t]*/, "", inc)
      system_inc = inc ~ /^</
      sub(/^[<"]/, "", inc); sub(/[>"].*$/, "", inc)
      ok = 0
      if (system_inc) {
        shown = "<" inc ">"
        ok = 1
        for (g in guarded) {
          lib = substr(g, 2, length(g) - 2)
          if (inc == lib || (lib ~ /\/$/ && index(inc, lib) == 1)) ok = 0
        }
        if (!ok) {
          n = split(allow[subj], a, " ")
          for (i = 1; i <= n; i++) {
            if (a[i] == "*") ok = 1
            lib = substr(a[i], 2, length(a[i]) - 2)
            if (a[i] ~ /^</ && (inc == lib || (lib ~ /\/$/ && index(inc, lib) == 1))) ok = 1
          }
        }
      } else {
        shown = inc
        if (index(inc, "/") == 0) inc = dir "/" inc   # "x.h" is found beside the file
        if (!file_row && within(inc, subj)) ok = 1
        if (is_test && within(inc, "tests/unit")) ok = 1
        n = split(allow[subj], a, " ")
        for (i = 1; i <= n; i++) if (a[i] == "*" || within(inc, a[i])) ok = 1
      }
      if (!ok) { print FILENAME ":" FNR ": folder " subj " may not include " shown; bad = 1 }
    }
    END { exit bad }' || exit 1
)

out=$(include_violations "$TOP") || { echo "$out"; fail "the tree breaks the include rules of docs/design.md (above)"; }
nfiles=$(cd "$TOP" && find . \( -path './.*' -o -path './build*' -o -path ./node_modules \) -prune -o \
  -type f \( -name '*.h' -o -name '*.cc' \) -print | wc -l)
ok "no forbidden include in the $nfiles *.h and *.cc files of the tree"

# The check can fail: a scratch tree with one forbidden include of each kind.
mkdir -p "$TMP/tree/nbd" "$TMP/tree/src/format" "$TMP/tree/src/engine" "$TMP/tree/meta" "$TMP/tree/newdir"
printf '#include "nbd/protocol.h"\n#include "src/util/status.h"\n#include "meta/index.h"\n' >"$TMP/tree/nbd/a.h"
printf '#include <cstdint>\n#include <sqlite3.h>\n' >"$TMP/tree/nbd/b.cc"
printf '#include "src/engine/volume.h"\n' >"$TMP/tree/src/format/c.h"
printf '#include "src/format/extent_state.h"\n#include "src/engine/volume.h"\n' >"$TMP/tree/src/engine/block_device.h"
printf '#include "tests/unit/temp_dir.h"\n' >"$TMP/tree/meta/d.cc"
printf '#include "tests/unit/temp_dir.h"\n' >"$TMP/tree/meta/d_test.cc"
printf '// a folder with no row\n' >"$TMP/tree/newdir/e.h"
rc=0
out=$(include_violations "$TMP/tree") || rc=$?
echo "$out" | sed 's/^/    /'
assert_eq "$rc" 1 "a tree with forbidden includes fails"
expected='meta/d.cc:1: folder meta may not include tests/unit/temp_dir.h
nbd/a.h:3: folder nbd may not include meta/index.h
nbd/b.cc:2: folder nbd may not include <sqlite3.h>
newdir/e.h:1: folder newdir has no row in docs/design.md
src/engine/block_device.h:2: folder src/engine/block_device.h may not include src/engine/volume.h
src/format/c.h:1: folder src/format may not include src/engine/volume.h'
assert_eq "$out" "$expected" "each forbidden include is named, and nothing else"
