#!/usr/bin/env bash
# Installs every Debian package that building and testing portalbd needs.
# Skips the work when everything is present; never prompts (CI-safe).
set -euo pipefail

PACKAGES=(
  # build
  g++ make pkg-config
  libsqlite3-dev liblz4-dev libzstd-dev libssl-dev libcurl4-openssl-dev
  libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev doctest-dev
  libnbd-dev libfuse3-dev
  # integration tests: real NBD clients, filesystems
  libnbd-bin python3 python3-libnbd qemu-utils fio fuse3 e2fsprogs util-linux nbdkit
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
