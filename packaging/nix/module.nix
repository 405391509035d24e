# NixOS module: one portalbd daemon per volume.
#
#   services.portalbd.instances.vol1 = {
#     enable = true;
#     settings = {
#       device.disk_size_gb = 100;
#       storage.url = "s3://my-bucket/volumes/vol1";
#       nbd.address = "127.0.0.1:10809";
#     };
#     environmentFile = "/run/secrets/portalbd-vol1.env";  # AWS_ACCESS_KEY_ID=...
#     snapshots = { enable = true; keepDaily = 14; };
#   };
#
# Each instance runs as the unit portalbd-NAME.service with its control socket
# at /run/portalbd/NAME/portalbd.sock and its state in /var/lib/portalbd/NAME
# (the same layout as the Debian package's portalbd@NAME.service). Keys of
# `settings` are those of portalbd.toml(5); unknown keys are passed through
# and rejected by the daemon with a clear message.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf types mapAttrs' nameValuePair filterAttrs;
  toml = pkgs.formats.toml { };
  enabled = filterAttrs (_: inst: inst.enable) config.services.portalbd.instances;

  section = options: mkOption {
    type = types.submodule { freeformType = toml.type; inherit options; };
    default = { };
  };
  optional = type: description: mkOption { type = types.nullOr type; default = null; inherit description; };

  instanceModule = { name, ... }: {
    options = {
      enable = mkEnableOption "the portalbd daemon for volume ${name}";

      package = mkOption {
        type = types.package;
        default = pkgs.portalbd or (pkgs.callPackage ./package.nix { });
        defaultText = lib.literalExpression "pkgs.portalbd";
        description = "The portalbd package to run.";
      };

      settings = mkOption {
        description = ''
          portalbd.toml(5) settings. `nbd.socket` and `daemon.state_dir` are
          set by the unit (/run/portalbd/NAME/portalbd.sock,
          /var/lib/portalbd/NAME). Null values are left out (daemon default).
        '';
        default = { };
        type = types.submodule {
          freeformType = toml.type;
          options = {
            device = section {
              disk_size_gb = optional types.ints.positive "Device size in GiB (new volumes default to 1).";
              grow = optional types.bool "Allow disk_size_gb to grow an existing volume.";
            };
            storage = section {
              url = optional types.str "memory://, file:///dir or s3://bucket/prefix (default file://<state_dir>/data).";
            };
            nbd = section {
              address = optional types.str "NBD TCP listen address host:port; \"\" disables TCP (default 127.0.0.1:10809).";
              unix = optional types.str "NBD unix socket path; \"\" for none.";
              export_name = optional types.str "NBD export name; snapshots are <export>@<snapshot> (default portalbd).";
              trace_file = optional types.str "Record every NBD request (no data) to this absolute path; \"\" for none.";
              max_connections = optional types.ints.positive "Most NBD clients connected at once (default 128).";
              max_write_payload_bytes = optional types.ints.positive "WRITE payload bytes held in memory across all connections (default 256 MiB).";
            };
            lsm = section {
              flush_interval_ms = optional types.ints.positive "Upload buffered writes at least this often (default 1000).";
              l0_sst_size_bytes = optional types.ints.positive "Target size of one segment object (default 64 MiB).";
              write_buffer_bytes = optional types.ints.unsigned "Dirty bytes held before writers wait (default 256 MiB).";
            };
          };
        };
      };

      environmentFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "Environment file with storage secrets (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), kept out of the Nix store.";
      };

      snapshots = {
        enable = mkEnableOption "scheduled snapshots with pruning (portalbd-snapshot-cron)";
        calendar = mkOption { type = types.str; default = "hourly"; description = "systemd OnCalendar= schedule."; };
        prefix = mkOption { type = types.str; default = "auto-"; description = "Name prefix; only these are pruned."; };
        keepLast = mkOption { type = types.ints.unsigned; default = 24; description = "Keep the N newest."; };
        keepHourly = mkOption { type = types.ints.unsigned; default = 0; description = "Keep one per hour for N hours."; };
        keepDaily = mkOption { type = types.ints.unsigned; default = 7; description = "Keep one per day for N days."; };
        keepWeekly = mkOption { type = types.ints.unsigned; default = 4; description = "Keep one per week for N weeks."; };
      };
    };
  };

  # Drop nulls (and sections left empty) so the daemon's defaults apply.
  clean = attrs: lib.filterAttrs (_: v: v != null && v != { })
    (lib.mapAttrs (_: v: if builtins.isAttrs v then clean v else v) attrs);
  configFile = name: inst: toml.generate "portalbd-${name}.toml" (clean inst.settings);
  socket = name: "/run/portalbd/${name}/portalbd.sock";
in
{
  options.services.portalbd.instances = mkOption {
    type = types.attrsOf (types.submodule instanceModule);
    default = { };
    description = "portalbd volumes, one daemon each, keyed by volume name.";
  };

  config = mkIf (enabled != { }) {
    environment.systemPackages = lib.unique (lib.mapAttrsToList (_: inst: inst.package) enabled);

    systemd.services = mapAttrs' (name: inst: nameValuePair "portalbd-${name}" {
      description = "portalbd block device ${name}";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${inst.package}/bin/portalbd -c ${configFile name inst} --socket ${socket name} --state-dir /var/lib/portalbd/${name}";
        EnvironmentFile = lib.optional (inst.environmentFile != null) inst.environmentFile;
        TimeoutStartSec = "5min";
        KillSignal = "SIGTERM";
        KillMode = "mixed";
        TimeoutStopSec = "10min";
        Restart = "on-failure";
        RestartSec = "2s";
        LimitNOFILE = 65536;
        RuntimeDirectory = "portalbd/${name}";
        RuntimeDirectoryMode = "0750";
        StateDirectory = "portalbd/${name}";
        StateDirectoryMode = "0700";
        UMask = "0077";
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = "read-only";
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        SystemCallErrorNumber = "EPERM";
      };
    }) enabled
    // mapAttrs' (name: inst: nameValuePair "portalbd-snapshot-${name}" {
      description = "Snapshot and prune portalbd volume ${name}";
      requisite = [ "portalbd-${name}.service" ];
      after = [ "portalbd-${name}.service" ];
      path = [ inst.package pkgs.coreutils ];
      environment = {
        PORTALBD_SOCKET = socket name;
        SNAPSHOT_PREFIX = inst.snapshots.prefix;
        KEEP_LAST = toString inst.snapshots.keepLast;
        KEEP_HOURLY = toString inst.snapshots.keepHourly;
        KEEP_DAILY = toString inst.snapshots.keepDaily;
        KEEP_WEEKLY = toString inst.snapshots.keepWeekly;
      };
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${inst.package}/libexec/portalbd/portalbd-snapshot-cron";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateNetwork = true;
        CapabilityBoundingSet = [ "" ];
        RestrictAddressFamilies = [ "AF_UNIX" ];
      };
    }) (filterAttrs (_: inst: inst.snapshots.enable) enabled);

    systemd.timers = mapAttrs' (name: inst: nameValuePair "portalbd-snapshot-${name}" {
      description = "Scheduled snapshot of portalbd volume ${name}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = inst.snapshots.calendar;
        RandomizedDelaySec = "2min";
        Persistent = true;
      };
    }) (filterAttrs (_: inst: inst.snapshots.enable) enabled);
  };
}
