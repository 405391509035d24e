// portalbd-csi: the Kubernetes CSI driver for portalbd volumes (issue 22).
// Serves the Identity service and, by --mode, the Controller service
// (volumes, snapshots, clones, expansion on object storage) and the Node
// service (a portalbd daemon per staged volume, attached with the kernel's
// NBD client) on one unix socket. Exit status: 0 after SIGTERM/SIGINT,
// 1 runtime failure, 2 usage error.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "csi/controller_service.h"
#include "csi/identity_service.h"
#include "csi/node_service.h"
#include "src/config/version.h"
#include "src/log/log.h"

int main(int argc, char** argv) {
  using namespace portalbd;
  const char* env_endpoint = std::getenv("CSI_ENDPOINT");
  std::string endpoint = env_endpoint != nullptr ? env_endpoint : "unix:///csi/csi.sock";
  std::string node_id, state_dir = "/var/lib/portalbd-csi", storage_url, mode = "all", log_level = "info";
  std::string portalbd_bin;
  int max_volumes_per_node = 16;
  int mailbox_poll_ms = 2000, mailbox_timeout_ms = 30000;
  portalbd::csi::NbdTls tls;

  CLI::App app("portalbd-csi " + std::string(kVersion) +
               ": Kubernetes CSI driver for portalbd volumes (identity, controller and node services)");
  app.set_version_flag("--version", std::string(kVersion));
  app.add_option("--endpoint", endpoint,
                 "unix:///path/csi.sock to serve on, or tcp://HOST:PORT for tests (default: $CSI_ENDPOINT)")
      ->capture_default_str();
  app.add_option("--node-id", node_id, "this node's name (required for the node service)");
  app.add_option("--state-dir", state_dir, "local state: controller indexes, staged volumes' daemons")
      ->capture_default_str();
  app.add_option("--storage-url", storage_url,
                 "file:///DIR or s3://BUCKET/PREFIX: new volumes live under <url>/<volume-id>, the registry under "
                 "<url>/_csi/ (required for the controller service)");
  app.add_option("--mode", mode, "services to serve besides identity: controller, node or all")
      ->check(CLI::IsMember({"controller", "node", "all"}))
      ->capture_default_str();
  app.add_option("--portalbd", portalbd_bin, "the portalbd daemon binary (default: beside this program, else PATH)");
  app.add_option("--max-volumes-per-node", max_volumes_per_node, "NBD devices this node may attach")
      ->capture_default_str();
  app.add_option("--mailbox-poll-ms", mailbox_poll_ms,
                 "node: look this often in storage for the controller's snapshot requests about volumes staged "
                 "here (0: never)")
      ->capture_default_str();
  app.add_option("--mailbox-timeout-ms", mailbox_timeout_ms,
                 "controller: wait this long for the node where a volume is staged to take its snapshot "
                 "(0: refuse snapshots of volumes staged on another node)")
      ->capture_default_str();
  app.add_option("--tls-certificates", tls.certificates,
                 "TLS between nbd-client and the volumes' daemons: a directory holding ca-cert.pem, "
                 "server-cert.pem, server-key.pem (the daemons', --tls require --tls-verify-peer) and "
                 "client-cert.pem, client-key.pem (nbd-client's); default: plaintext on the local unix socket")
      ->check(CLI::ExistingDirectory);
  app.add_option("--tls-hostname", tls.hostname, "the name in the daemons' certificate that nbd-client checks")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!log::init(log_level)) {
    std::fprintf(stderr, "portalbd-csi: unknown log level '%s'\n", log_level.c_str());
    return 2;
  }
  auto logger = log::get("csi");
  // Stop on SIGTERM/SIGINT: blocked here, before gRPC starts any thread (a
  // thread started later inherits the mask), and taken by one waiting thread
  // that shuts the server down. Children get an empty mask (command.cc).
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // unix:///path, as kubelet and the sidecars use; tcp://HOST:PORT for a
  // test client outside the machine (the VM test), never for production:
  // the CSI socket has no authentication.
  std::string socket_path, listen_address;
  if (endpoint.rfind("unix://", 0) == 0) {
    socket_path = endpoint.substr(std::string("unix://").size());
    listen_address = "unix://" + socket_path;
  } else if (endpoint.rfind("tcp://", 0) == 0) {
    listen_address = endpoint.substr(std::string("tcp://").size());
  } else {
    std::fprintf(stderr, "portalbd-csi: --endpoint must be unix:///path or tcp://HOST:PORT (got '%s')\n",
                 endpoint.c_str());
    return 2;
  }
  const bool want_controller = mode != "node", want_node = mode != "controller";
  if (want_controller && storage_url.empty()) {
    std::fprintf(stderr, "portalbd-csi: the controller service needs --storage-url\n");
    return 2;
  }
  if (want_node && node_id.empty()) {
    std::fprintf(stderr, "portalbd-csi: the node service needs --node-id\n");
    return 2;
  }
  if (!tls.certificates.empty()) {
    tls.certificates = std::filesystem::absolute(tls.certificates).lexically_normal().string();
    for (const char* name : {"ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem"}) {
      if (!std::filesystem::exists(tls.certificates + "/" + name)) {
        std::fprintf(stderr, "portalbd-csi: --tls-certificates %s has no %s\n", tls.certificates.c_str(), name);
        return 2;
      }
    }
  }
  if (portalbd_bin.empty()) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    auto beside = self.parent_path() / "portalbd";
    portalbd_bin = !ec && std::filesystem::exists(beside) ? beside.string() : "portalbd";
  }
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    std::fprintf(stderr, "portalbd-csi: cannot create --state-dir %s: %s\n", state_dir.c_str(), ec.message().c_str());
    return 1;
  }

  portalbd::csi::IdentityService identity(want_controller);
  std::unique_ptr<portalbd::csi::ControllerService> controller;
  if (want_controller) {
    auto c = portalbd::csi::ControllerService::Create({storage_url, state_dir, mailbox_timeout_ms, tls});
    if (!c.ok()) {
      std::fprintf(stderr, "portalbd-csi: %s\n", c.status().message().c_str());
      return 2;
    }
    controller = std::move(*c);
  }
  std::unique_ptr<portalbd::csi::NodeService> node;
  if (want_node) {
    portalbd::csi::NodeOptions no;
    no.node_id = node_id;
    no.state_dir = state_dir;
    no.portalbd_bin = portalbd_bin;
    no.max_volumes = max_volumes_per_node;
    no.mailbox_poll_ms = mailbox_poll_ms;
    no.tls_certificates = tls.certificates;
    no.tls_hostname = tls.hostname;
    node = std::make_unique<portalbd::csi::NodeService>(no);
  }

  if (!socket_path.empty()) {
    std::filesystem::create_directories(std::filesystem::path(socket_path).parent_path(), ec);
    std::filesystem::remove(socket_path, ec);  // a stale socket from an earlier run
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen_address, grpc::InsecureServerCredentials());
  builder.RegisterService(&identity);
  if (controller) builder.RegisterService(controller.get());
  if (node) builder.RegisterService(node.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "portalbd-csi: cannot listen on %s\n", endpoint.c_str());
    return 1;
  }
  logger->info("portalbd-csi {} serving endpoint={} mode={} node_id={} storage={} state_dir={} nbd_tls={}", kVersion,
               log::quote(endpoint), mode, log::quote(node_id), log::quote(storage_url), log::quote(state_dir),
               tls.certificates.empty() ? "off" : log::quote(tls.certificates));

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop, &sig);
    logger->info("signal {}: stopping", sig);
    server->Shutdown();
  });
  server->Wait();
  waiter.join();
  if (!socket_path.empty()) std::filesystem::remove(socket_path, ec);
  return 0;
}
