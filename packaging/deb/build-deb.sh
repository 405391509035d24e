#!/usr/bin/env bash
# Builds build/deb/portalbd_VERSION_ARCH.deb with dpkg-deb (`make deb`): the
# stripped binaries, systemd units, man pages, bash completion and examples,
# installed by packaging/install.sh with PREFIX=/usr. Depends is computed from
# the binaries' shared libraries by dpkg-shlibdeps.
#
# Environment: BUILD (default build).
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
HERE=$TOP/packaging/deb
OUT=$BUILD/deb

for tool in dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg-dev)" >&2; exit 1; }
done

version=$("$BUILD/bin/portalbd" --version | awk '{print $2}')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "build-deb: bad version '$version' from portalbd --version" >&2; exit 1; }
arch=$(dpkg --print-architecture)

rm -rf "$OUT/root" "$OUT/shlibs"
mkdir -p "$OUT/root/DEBIAN"
ROOT=$OUT/root
BUILD=$BUILD PREFIX=/usr DESTDIR=$ROOT UNITDIR=/lib/systemd/system STRIP=1 \
  bash "$TOP/packaging/install.sh" >/dev/null
install -m 0644 "$HERE/copyright" "$ROOT/usr/share/doc/portalbd/copyright"

# dpkg-shlibdeps wants to run in a source tree with debian/control.
mkdir -p "$OUT/shlibs/debian"
printf 'Source: portalbd\n\nPackage: portalbd\nArchitecture: any\n' >"$OUT/shlibs/debian/control"
depends=$(cd "$OUT/shlibs" && dpkg-shlibdeps -O -e"$ROOT/usr/bin/portalbd" -e"$ROOT/usr/bin/portalctl" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

installed_kb=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@DEPENDS@|$depends|" \
  -e "s|@INSTALLED_SIZE@|$installed_kb|" "$HERE/control.in" >"$ROOT/DEBIAN/control"
install -m 0755 "$HERE/postinst" "$HERE/postrm" "$ROOT/DEBIAN/"

deb=$OUT/portalbd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$deb" >/dev/null
echo "build-deb: $deb ($(du -h "$deb" | cut -f1)); Depends: $depends"
