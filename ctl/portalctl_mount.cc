// `portalctl mount MOUNTPOINT` and `portalctl umount MOUNTPOINT`: the FUSE
// view of fuse/view.h. Unlike the other subcommands these run locally:
// mount asks the daemon (control socket `status`) where its NBD server
// listens, unless --nbd/--nbd-unix name it, then becomes the view process
// (in the background once mounted, unless --foreground). Under TLS the view
// uses the daemon's own credentials (from `status`), or --tls-certificates /
// --tls-psk for a server named by --nbd.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "ctl/control_client.h"
#include "ctl/exit_codes.h"
#include "ctl/portalctl_commands.h"
#include "fuse/mountpoint.h"
#include "fuse/view.h"

namespace portalbd::ctl {
namespace {

struct MountOptions {
  std::string mountpoint;
  std::string nbd_tcp;
  std::string nbd_unix;
  std::string export_name;
  std::string tls_certificates;
  std::string tls_psk;
  std::string tls_username;
  bool live = false;
  bool foreground = false;
  int connections = 8;
  double io_timeout_s = 30;
};

// Where the daemon at `socket` serves NBD: its unix socket when it has one
// (no TCP overhead), else its TCP address.
Result<fuse::ViewOptions> endpoint_from_daemon(const std::string& socket, fuse::ViewOptions view,
                                               CallFailure* failure) {
  auto status = call(socket, "status", nlohmann::json::object(), 10000, failure);
  if (!status.ok()) return status.status();
  const std::string unix_path = status->value("nbd_unix", "");
  const std::string tcp = status->value("nbd_address", "");
  if (view.export_name.empty()) view.export_name = status->value("export", "");
  fuse::NbdTls tls;
  tls.enabled = status->value("nbd_tls", "off") != "off";
  tls.certificates = status->value("nbd_tls_certificates", "");
  tls.psk_file = status->value("nbd_tls_psk", "");
  if (!unix_path.empty()) {
    view.endpoint = fuse::NbdEndpoint::unix_socket(unix_path);
  } else if (!tcp.empty()) {
    auto ep = fuse::NbdEndpoint::parse_tcp(tcp);
    if (!ep.ok()) return ep.status();
    view.endpoint = *ep;
  } else {
    return Status::NotSupported("the daemon at " + socket + " serves no NBD address");
  }
  view.endpoint.tls = tls;
  return view;
}

int run_mount(const MountOptions& o, const std::string& socket, std::ostream& err) {
  fuse::ViewOptions view;
  view.mountpoint = o.mountpoint;
  view.export_name = o.export_name;
  view.live = o.live;
  view.foreground = o.foreground;
  view.connections = o.connections;
  view.io_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.io_timeout_s * 1000));
  if (!o.nbd_unix.empty()) {
    view.endpoint = fuse::NbdEndpoint::unix_socket(o.nbd_unix);
  } else if (!o.nbd_tcp.empty()) {
    auto ep = fuse::NbdEndpoint::parse_tcp(o.nbd_tcp);
    if (!ep.ok()) {
      err << "portalctl: mount: --nbd " << ep.status().message() << "\n";
      return kExitUsage;
    }
    view.endpoint = *ep;
  }
  if (!o.nbd_unix.empty() || !o.nbd_tcp.empty()) {
    view.endpoint.tls.enabled = !o.tls_certificates.empty() || !o.tls_psk.empty();
    // Absolute: the view may go on in the background from another directory.
    auto absolute = [](const std::string& p) {
      return p.empty() ? p : std::filesystem::absolute(p).lexically_normal().string();
    };
    view.endpoint.tls.certificates = absolute(o.tls_certificates);
    view.endpoint.tls.psk_file = absolute(o.tls_psk);
    view.endpoint.tls.username = o.tls_username;
  } else {
    CallFailure failure = CallFailure::kNone;
    auto resolved = endpoint_from_daemon(socket, view, &failure);
    if (!resolved.ok()) {
      err << "portalctl: mount: " << resolved.status().message() << "\n";
      return exit_code_for(resolved.status(), failure);
    }
    view = *resolved;
  }
  Status st = fuse::run_view(view);
  if (!st.ok()) {
    err << "portalctl: mount: " << st.message() << "\n";
    return st.is(Status::Code::kUnavailable) && st.message().find("reach") != std::string::npos ? kExitUnreachable
                                                                                                : kExitFailed;
  }
  return kExitOk;
}

}  // namespace

void add_mount_commands(CLI::App* app, DaemonCommand* chosen) {
  auto o = std::make_shared<MountOptions>();
  CLI::App* mount =
      app->add_subcommand("mount", "show every snapshot as a read-only image file under MOUNTPOINT/snapshots (FUSE)");
  mount->add_option("MOUNTPOINT", o->mountpoint, "an existing, empty directory")->required();
  auto* tcp =
      mount->add_option("--nbd", o->nbd_tcp, "read from the NBD server at HOST:PORT instead of asking the daemon")
          ->option_text("HOST:PORT");
  mount->add_option("--nbd-unix", o->nbd_unix, "read from the NBD server on this unix socket")
      ->option_text("PATH")
      ->excludes(tcp);
  mount
      ->add_option("--tls-certificates", o->tls_certificates,
                   "with --nbd/--nbd-unix: connect with TLS, trusting DIR/ca-cert.pem (and presenting "
                   "DIR/client-cert.pem, client-key.pem if there)")
      ->option_text("DIR");
  mount
      ->add_option("--tls-psk", o->tls_psk,
                   "with --nbd/--nbd-unix: connect with TLS-PSK, a key from FILE (identity:hexkey lines)")
      ->option_text("FILE");
  mount->add_option("--tls-username", o->tls_username, "the PSK identity to use (default: FILE's first)")
      ->option_text("NAME");
  mount->add_option("--export", o->export_name, "the volume's export name (default: the one the server lists)")
      ->option_text("NAME");
  mount->add_flag("--live", o->live,
                  "also show live.img, the live volume READ-WRITE. Never mount a filesystem from it while it is "
                  "mounted anywhere else");
  mount->add_flag("-f,--foreground", o->foreground, "stay in the foreground (default: background once mounted)");
  mount->add_option("--connections", o->connections, "NBD connections per open image")
      ->check(CLI::Range(1, 64))
      ->option_text("N [8]");
  mount->add_option("--io-timeout", o->io_timeout_s, "seconds before a request to a silent daemon fails with EIO")
      ->check(CLI::Range(0.1, 3600.0))
      ->option_text("SECONDS [30]");
  mount->footer("Unmount with `portalctl umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`.");
  mount->callback([chosen, o] {
    chosen->cmd = "mount";  // local: no daemon command is sent
    chosen->run_local = [o](const std::string& socket, std::ostream&, std::ostream& err) {
      return run_mount(*o, socket, err);
    };
  });

  auto target = std::make_shared<std::string>();
  CLI::App* umount = app->add_subcommand("umount", "unmount a view mounted by `portalctl mount`");
  umount->add_option("MOUNTPOINT", *target, "where the view is mounted")->required();
  umount->callback([chosen, target] {
    chosen->cmd = "umount";
    chosen->run_local = [target](const std::string&, std::ostream&, std::ostream& err) {
      Status st = fuse::unmount_view(*target);
      if (st.ok()) return kExitOk;
      err << "portalctl: umount: " << st.message() << "\n";
      // Exit 4 means "no such snapshot"; a path with no view is just a
      // failed operation.
      return kExitFailed;
    };
  });
}

}  // namespace portalbd::ctl
