#!/usr/bin/env bash
# Builds the guest for the VM test: Debian's kernel and a small initramfs with
# busybox-static, the nbd, virtio-net and ext4 modules, nbd-client and
# e2fsprogs/fstrim with their shared libraries, and tests/vm/init as /init.
#
#   tests/vm/build-initramfs.sh OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz and OUTDIR/inputs (what they
# were built from). Does nothing when OUTDIR/inputs already matches: the inputs
# are this script, the init script, the kernel version and the versions of the
# packages that provide the guest's programs.
#
# Exit status: 0 built or up to date, 77 a required package is missing (the
# message says which), 1 anything else.
set -euo pipefail

OUT=${1:?usage: build-initramfs.sh OUTDIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"

# Modules, in load order (each one's dependencies are added before it from
# modules.dep). crc32c_generic is a crypto-API dependency of ext4/jbd2 that
# modules.dep cannot see.
MODULES=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  failover net_failover virtio_net nbd crc16 crc32c_generic jbd2 mbcache ext4)
# Programs the guest runs besides busybox, copied with their libraries.
PROGRAMS=(/usr/sbin/nbd-client /usr/sbin/mke2fs /usr/sbin/e2fsck /sbin/fstrim)
PACKAGES=(linux-image-amd64 busybox-static nbd-client e2fsprogs util-linux libc6)

missing() { echo "build-initramfs: $*" >&2; exit 77; }

for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing "Debian package $p is not installed (run packaging/deps.sh)"
done

# The newest kernel that has both an image and an nbd module.
KVER=
for dir in $(ls -d /lib/modules/*/ 2>/dev/null | sort -V -r); do
  v=$(basename "$dir")
  if [ -r "/boot/vmlinuz-$v" ] && grep -qE '/nbd\.ko(\.xz|\.zst)?:' "$dir/modules.dep"; then
    KVER=$v; break
  fi
done
[ -n "$KVER" ] || missing "no /boot/vmlinuz-* with an nbd module under /lib/modules (install linux-image-amd64)"
MODDIR=/lib/modules/$KVER

inputs=$({
  echo "kernel $KVER"
  sha256sum "$HERE/build-initramfs.sh" "$HERE/init" | sed "s|$HERE/||"
  dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}" "linux-image-$KVER"
})
if [ -s "$OUT/initramfs.cpio.gz" ] && [ -s "$OUT/vmlinuz" ] && [ "$(cat "$OUT/inputs" 2>/dev/null)" = "$inputs" ]; then
  echo "build-initramfs: $OUT is up to date (kernel $KVER)"
  exit 0
fi

ROOT=$(mktemp -d "$OUT/root.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,mnt,etc,lib/modules,lib64}

# ---- busybox and the init script
cp /bin/busybox "$ROOT/bin/busybox"
install -m 0755 "$HERE/init" "$ROOT/init"

# ---- programs and their shared libraries (paths kept as ldd prints them)
copy_with_libs() {
  local prog=$1 lib
  mkdir -p "$ROOT$(dirname "$prog")"
  cp -L "$prog" "$ROOT$prog"
  for lib in $(ldd "$prog" | grep -oE '/[^ ]+'); do
    [ -e "$ROOT$lib" ] && continue
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
}
for prog in "${PROGRAMS[@]}"; do copy_with_libs "$prog"; done
ln -s mke2fs "$ROOT/usr/sbin/mkfs.ext4"
cp /etc/mke2fs.conf "$ROOT/etc/mke2fs.conf"

# ---- kernel modules: resolve dependencies, decompress, record the load order
declare -A seen=()
order=()
module_path() {  # NAME -> path relative to MODDIR, or empty when built in
  grep -m1 -E "(^|/)$1\.ko(\.xz|\.zst)?:" "$MODDIR/modules.dep" | cut -d: -f1 || true
}
add_module() {  # PATH relative to MODDIR
  local rel=$1 dep
  [ -z "${seen[$rel]:-}" ] || return 0
  seen[$rel]=1
  for dep in $(grep -m1 -E "^$rel:" "$MODDIR/modules.dep" | cut -d: -f2-); do add_module "$dep"; done
  order+=("$rel")
}
for m in "${MODULES[@]}"; do
  rel=$(module_path "$m")
  if [ -z "$rel" ]; then
    grep -qE "/$m\.ko$" "$MODDIR/modules.builtin" || missing "kernel $KVER has no module $m"
    continue
  fi
  add_module "$rel"
done
: >"$ROOT/etc/modules.order"
for rel in "${order[@]}"; do
  name=$(basename "$rel"); name=${name%%.ko*}
  case "$rel" in
    *.ko.xz) xz -dc "$MODDIR/$rel" >"$ROOT/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$rel" >"$ROOT/lib/modules/$name.ko" ;;
    *) cp "$MODDIR/$rel" "$ROOT/lib/modules/$name.ko" ;;
  esac
  echo "$name" >>"$ROOT/etc/modules.order"
done

# ---- pack
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
cp "/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
echo "$inputs" >"$OUT/inputs"
echo "build-initramfs: built $OUT (kernel $KVER, ${#order[@]} modules, $(du -h "$OUT/initramfs.cpio.gz" | cut -f1))"
