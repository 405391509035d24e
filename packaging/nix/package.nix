# The portalbd package: builds the two binaries with the repository's Makefile
# and installs them with packaging/install.sh (units, man pages, completion).
{ lib
, stdenv
, pkg-config
, sqlite
, lz4
, isa-l
, zstd
, spdlog
, fmt
, tomlplusplus
, nlohmann_json
, libnbd
, curl
, openssl
, fuse3
, cli11
}:

stdenv.mkDerivation {
  pname = "portalbd";
  version = "0.1.0";

  # The repository root (this file is packaging/nix/package.nix).
  src = lib.cleanSourceWith {
    src = ../..;
    filter = path: type: baseNameOf path != "build";
  };

  nativeBuildInputs = [ pkg-config ];
  buildInputs = [ sqlite lz4 isa-l zstd spdlog fmt tomlplusplus nlohmann_json libnbd curl openssl fuse3 cli11 ];

  enableParallelBuilding = true;
  # Only the binaries: the unit tests need the test-only dependencies.
  buildFlags = [ "build/bin/portalbd" "build/bin/portalctl" ];

  installPhase = ''
    runHook preInstall
    BUILD=build PREFIX=$out ETCDIR= bash packaging/install.sh
    runHook postInstall
  '';

  meta = {
    description = "Block device in object storage, served over NBD, with atomic snapshots";
    platforms = lib.platforms.linux;
    mainProgram = "portalbd";
  };
}
