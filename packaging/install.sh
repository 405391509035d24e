#!/usr/bin/env bash
# Installs portalbd: `make install [PREFIX=/usr/local] [DESTDIR=]`.
#
#   $PREFIX/bin/portalbd, portalctl
#   $PREFIX/libexec/portalbd/portalbd-snapshot-cron
#   $PREFIX/share/man/man8/portalbd.8.gz, portalctl.8.gz; man5/portalbd.toml.5.gz
#   $PREFIX/share/bash-completion/completions/portalctl
#   $PREFIX/share/doc/portalbd/examples/portalbd.toml.example, portalbd-snapshot-cron,
#     grafana-portalbd.json (a Grafana dashboard of the [metrics] endpoint)
#   $UNITDIR/portalbd@.service, portalbd-snapshot@.service, portalbd-snapshot@.timer
#     (default $PREFIX/lib/systemd/system; paths in them point into $PREFIX)
#   $ETCDIR (default /etc/portalbd), created empty: the units read
#     /etc/portalbd/NAME.toml. ETCDIR= (empty) skips it (Nix builds).
#
# Environment: BUILD (default build), PREFIX (default /usr/local), DESTDIR,
# UNITDIR, ETCDIR, STRIP=1 strips the binaries.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
ETCDIR=${ETCDIR-/etc/portalbd}
PKG=$TOP/packaging

bindir=$PREFIX/bin
libexecdir=$PREFIX/libexec/portalbd
mandir=$PREFIX/share/man
docdir=$PREFIX/share/doc/portalbd

for b in portalbd portalctl; do
  [ -x "$BUILD/bin/$b" ] || { echo "install: $BUILD/bin/$b is missing (run make)" >&2; exit 1; }
done

d() { echo "$DESTDIR$1"; }
install -d "$(d "$bindir")" "$(d "$libexecdir")" "$(d "$mandir/man8")" "$(d "$mandir/man5")" \
  "$(d "$PREFIX/share/bash-completion/completions")" "$(d "$docdir/examples")" \
  "$(d "$UNITDIR")"
[ -z "$ETCDIR" ] || install -d "$(d "$ETCDIR")"

strip_flag=()
[ "${STRIP:-0}" = 0 ] || strip_flag=(--strip --strip-program=strip)
install -m 0755 "${strip_flag[@]}" "$BUILD/bin/portalbd" "$BUILD/bin/portalctl" "$(d "$bindir")/"
install -m 0755 "$PKG/examples/portalbd-snapshot-cron" "$(d "$libexecdir")/"

for page in "$PKG"/man/*.[0-9]; do
  section=${page##*.}
  gzip -9nc "$page" >"$(d "$mandir/man$section")/$(basename "$page").gz"
  chmod 0644 "$(d "$mandir/man$section")/$(basename "$page").gz"
done

install -m 0644 "$PKG/completion/portalctl.bash" "$(d "$PREFIX/share/bash-completion/completions")/portalctl"
install -m 0644 "$PKG/portalbd.toml.example" "$(d "$docdir/examples")/"
install -m 0755 "$PKG/examples/portalbd-snapshot-cron" "$(d "$docdir/examples")/"
install -m 0644 "$PKG/grafana/portalbd.json" "$(d "$docdir/examples")/grafana-portalbd.json"

# The units name /usr/bin and /usr/libexec; point them at this PREFIX.
for unit in "$PKG"/systemd/*.service "$PKG"/systemd/*.timer; do
  sed -e "s|/usr/bin/|$bindir/|g" -e "s|/usr/libexec/portalbd/|$libexecdir/|g" "$unit" \
    >"$(d "$UNITDIR")/$(basename "$unit")"
  chmod 0644 "$(d "$UNITDIR")/$(basename "$unit")"
done

echo "install: portalbd installed under $DESTDIR$PREFIX (units in $DESTDIR$UNITDIR)"
