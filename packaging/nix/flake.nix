# portalbd for Nix: the package, an overlay and the NixOS module.
#
# The flake lives in packaging/nix of the repository; use it as
#   nix build 'git+file:///path/to/portalbd?dir=packaging/nix'
#   inputs.portalbd.url = "git+https://.../portalbd?dir=packaging/nix";
# and in a NixOS configuration:
#   imports = [ portalbd.nixosModules.default ];
#   services.portalbd.instances.vol1 = { enable = true; settings.storage.url = "s3://b/vol1"; };
{
  description = "portalbd: block device in object storage, served over NBD, with atomic snapshots";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        portalbd = pkgs.callPackage ./package.nix { };
        default = portalbd;
      });

      overlays.default = final: _prev: { portalbd = final.callPackage ./package.nix { }; };

      nixosModules.portalbd = {
        imports = [ ./module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
      nixosModules.default = self.nixosModules.portalbd;
    };
}
