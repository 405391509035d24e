// NbdEndpoint: where the FUSE view finds the NBD server: a unix socket path or
// a TCP host and port. The view is a plain NBD client, so the server may be a
// portalbd on another host (`portalctl mount --nbd HOST:PORT`).
//
// Ownership: a value. Thread-safety: immutable after construction; share freely.
#pragma once

#include <string>

#include "src/util/status.h"

namespace portalbd::fuse {

// TLS toward the server (libnbd's nbd_set_tls and friends), for a server run
// with --tls on|require. Enabled means required: never a plaintext fallback.
struct NbdTls {
  bool enabled = false;
  // X.509: a directory holding ca-cert.pem, which the server's certificate
  // must chain to (and client-cert.pem, client-key.pem for a server that
  // verifies clients).
  std::string certificates;
  // PSK: identity:hexkey lines (psktool's format); used instead of the
  // certificates when set.
  std::string psk_file;
  std::string username;  // the PSK identity; "" = the file's first
};

struct NbdEndpoint {
  std::string unix_path;  // non-empty: connect over this unix socket
  std::string host;       // otherwise TCP to host:port
  std::string port;
  NbdTls tls;

  // "unix:/run/portalbd/nbd.sock" or "127.0.0.1:10809", for messages.
  std::string describe() const;

  // "HOST:PORT", "[V6ADDR]:PORT" or "HOST" (port 10809, the NBD default).
  static Result<NbdEndpoint> parse_tcp(const std::string& host_port);
  static NbdEndpoint unix_socket(std::string path);
};

}  // namespace portalbd::fuse
