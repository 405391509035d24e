#!/usr/bin/env bash
# The guest of the CSI node test: the VM test's initramfs (build-initramfs.sh)
# with a second cpio archive appended (the kernel unpacks concatenated
# archives in order) holding portalbd-csi, portalbd and the tools the node
# service runs that busybox lacks or does differently (util-linux mount,
# umount, blkid, blockdev; resize2fs; mkfs.xfs, xfs_growfs), with their shared
# libraries, and the xfs module (/lib/modules/xfs.ko, libcrc32c.ko: the test
# loads them).
#
#   tests/vm/build-csi-initramfs.sh OUTDIR BINDIR
#
# Writes OUTDIR/csi-initramfs.cpio.gz. Exit status as build-initramfs.sh's.
set -euo pipefail
OUT=${1:?usage: build-csi-initramfs.sh OUTDIR BINDIR}
BINDIR=${2:?usage: build-csi-initramfs.sh OUTDIR BINDIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

bash "$HERE/build-initramfs.sh" "$OUT"

PROGRAMS=("$BINDIR/portalbd-csi" "$BINDIR/portalbd" /bin/mount /bin/umount /sbin/blkid /sbin/blockdev
  /sbin/resize2fs /sbin/mkfs.xfs /usr/sbin/xfs_growfs)
for p in "${PROGRAMS[@]}"; do
  [ -x "$p" ] || { echo "build-csi-initramfs: $p is missing" >&2; exit 77; }
done

ROOT=$(mktemp -d "$OUT/csi-root.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/local/bin" "$ROOT/bin" "$ROOT/sbin"
copy_libs() {
  local lib
  for lib in $(ldd "$1" | grep -oE '/[^ ]+'); do
    [ -e "$ROOT$lib" ] && continue
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
}
for p in "${PROGRAMS[@]}"; do
  case "$p" in
    "$BINDIR"/*) cp -L "$p" "$ROOT/usr/local/bin/"; strip --strip-debug "$ROOT/usr/local/bin/$(basename "$p")" ;;
    *) mkdir -p "$ROOT$(dirname "$p")"; cp -L "$p" "$ROOT$p" ;;
  esac
  copy_libs "$p"
done
# The xfs module of the guest's kernel (build-initramfs.sh chose it).
KVER=$(sed -n 's/^kernel //p' "$OUT/inputs")
mkdir -p "$ROOT/lib/modules"
for m in kernel/lib/libcrc32c kernel/fs/xfs/xfs; do
  src=$(ls "/lib/modules/$KVER/$m".ko* 2>/dev/null | head -1)
  [ -n "$src" ] || { echo "build-csi-initramfs: kernel $KVER has no $m module" >&2; exit 77; }
  case "$src" in
    *.xz) xz -dc "$src" >"$ROOT/lib/modules/$(basename "$m").ko" ;;
    *.zst) zstd -qdc "$src" >"$ROOT/lib/modules/$(basename "$m").ko" ;;
    *) cp "$src" "$ROOT/lib/modules/$(basename "$m").ko" ;;
  esac
done
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT/csi-extra.cpio.gz"
cat "$OUT/initramfs.cpio.gz" "$OUT/csi-extra.cpio.gz" >"$OUT/csi-initramfs.cpio.gz.tmp"
mv "$OUT/csi-initramfs.cpio.gz.tmp" "$OUT/csi-initramfs.cpio.gz"
echo "build-csi-initramfs: built $OUT/csi-initramfs.cpio.gz ($(du -h "$OUT/csi-initramfs.cpio.gz" | cut -f1))"
