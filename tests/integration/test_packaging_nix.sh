#!/usr/bin/env bash
# The Nix packaging (packaging/nix): every file parses, the flake's outputs
# evaluate against a stub nixpkgs, and package.nix asks for the libraries the
# Makefile links. Nix cannot fetch nixpkgs on these machines, so nothing is
# built or evaluated against the real nixpkgs (see packaging/nix/README.md).
source "$(dirname "$0")/lib.sh"

requires nix-instantiate
NIX=$TOP/packaging/nix
# Debian's nix-bin names a build group that does not exist; nothing is built.
export NIX_CONFIG="build-users-group ="
export NIX_STATE_DIR=$TMP/nix-state NIX_LOG_DIR=$TMP/nix-log

for f in flake.nix module.nix package.nix; do
  check "nix-instantiate --parse packaging/nix/$f" nix-instantiate --parse "$NIX/$f"
done

nix_eval() { nix-instantiate --eval --strict --json -E "$1" 2>&1; }

# A stub nixpkgs: genAttrs and callPackage, enough for the flake's outputs.
stub='let
  flake = import '"$NIX"'/flake.nix;
  lib = { genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names); };
  pkgsFor = system: { callPackage = path: args: { stubPackage = builtins.attrNames (builtins.functionArgs (import path)); inherit system; }; };
  nixpkgs = { inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor; };
  self = flake.outputs { inherit self nixpkgs; };
in self'

out=$(nix_eval "builtins.attrNames ($stub)") || fail "flake outputs do not evaluate: $out"
assert_eq "$out" '["nixosModules","overlays","packages"]' "flake outputs: packages, overlays, nixosModules"
out=$(nix_eval "builtins.attrNames ($stub).packages.x86_64-linux") || fail "$out"
assert_eq "$out" '["default","portalbd"]' "flake packages.x86_64-linux: portalbd and default"
out=$(nix_eval "builtins.attrNames ($stub).nixosModules") || fail "$out"
assert_eq "$out" '["default","portalbd"]' "flake nixosModules: portalbd and default"
out=$(nix_eval "map builtins.baseNameOf ($stub).nixosModules.default.imports") || fail "$out"
assert_match "$out" 'module\.nix' "the NixOS module imports module.nix"

# Every pkg-config package the Makefile links must have its nixpkgs input.
args=$(nix_eval "builtins.attrNames (builtins.functionArgs (import $NIX/package.nix))") || fail "$args"
pkgs=$(sed -n 's/^PKGS *:= *//p' "$TOP/Makefile")
declare -A nixname=([sqlite3]=sqlite [liblz4]=lz4 [libisal]=isa-l [libzstd]=zstd [spdlog]=spdlog [fmt]=fmt
  [tomlplusplus]=tomlplusplus [nlohmann_json]=nlohmann_json [libnbd]=libnbd [libcurl]=curl
  [openssl]=openssl [fuse3]=fuse3)
for p in $pkgs; do
  n=${nixname[$p]:-}
  [ -n "$n" ] || fail "Makefile links pkg-config '$p': add it to package.nix and to this test's map"
  grep -q "\"$n\"" <<<"$args" || fail "package.nix lacks the input '$n' for pkg-config '$p'"
done
ok "package.nix has an input for every pkg-config package in the Makefile ($pkgs)"

out=$(nix_eval 'builtins.attrNames (builtins.functionArgs (import '"$NIX"'/module.nix))') || fail "$out"
assert_eq "$out" '["config","lib","pkgs"]' "module.nix is a NixOS module function { config, lib, pkgs }"
log "NOTE: not built or evaluated against nixpkgs (no network for Nix here); see packaging/nix/README.md"
