#!/usr/bin/env bash
# Installs every Debian package that building and testing portalbd needs.
# Skips the work when everything is present; never prompts (CI-safe).
set -euo pipefail

PACKAGES=(
  # build
  g++ make pkg-config
  libsqlite3-dev liblz4-dev libzstd-dev libisal-dev libssl-dev libcurl4-openssl-dev
  libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev doctest-dev
  libnbd-dev libfuse3-dev
  # the CSI driver (csi/): gRPC, protobuf, and the Python client of its conformance test
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
  # integration tests: real NBD clients, filesystems
  libnbd-bin python3 python3-libnbd qemu-utils fio fuse3 e2fsprogs util-linux nbdkit
  # TLS tests (test_tls.sh): certificates and PSK keys made with the openssl tool
  openssl
  # S3 tests: botocore signs requests as a second opinion on SigV4
  python3-botocore
  # clang: fuzzing (make fuzz, test_fuzz_short.sh) and the lock analysis (make thread-safety)
  clang libclang-rt-14-dev
  # VM test (real kernel nbd client) and packaging tests
  qemu-system-x86 linux-image-amd64 busybox-static nbd-client dpkg-dev systemd nix-bin
  # the CSI node test in the VM formats xfs too
  xfsprogs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# s3rver (npm): the S3-compatible server the S3 store tests run against.
# Installed project-locally under $BUILD/node (never committed); skipped when
# present. Without npm the S3 tests say so and skip.
NODE_DIR=${BUILD:-build}/node
S3RVER_VERSION=3.7.1
if [ -x "$NODE_DIR/node_modules/.bin/s3rver" ]; then
  echo "deps: s3rver present in $NODE_DIR"
elif command -v npm >/dev/null 2>&1; then
  echo "deps: installing s3rver@$S3RVER_VERSION into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "s3rver@$S3RVER_VERSION"
else
  echo "deps: npm not found; S3 tests against s3rver will be skipped"
fi
