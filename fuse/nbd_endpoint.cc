#include "fuse/nbd_endpoint.h"

namespace portalbd::fuse {

std::string NbdEndpoint::describe() const {
  const std::string with_tls = tls.enabled ? " (TLS)" : "";
  if (!unix_path.empty()) return "unix:" + unix_path + with_tls;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port + with_tls;
  return host + ":" + port + with_tls;
}

NbdEndpoint NbdEndpoint::unix_socket(std::string path) {
  NbdEndpoint e;
  e.unix_path = std::move(path);
  return e;
}

Result<NbdEndpoint> NbdEndpoint::parse_tcp(const std::string& host_port) {
  NbdEndpoint e;
  std::string rest;
  if (!host_port.empty() && host_port[0] == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("'" + host_port + "': missing ']'");
    e.host = host_port.substr(1, close - 1);
    rest = host_port.substr(close + 1);
  } else {
    const size_t colon = host_port.rfind(':');
    e.host = host_port.substr(0, colon);
    if (colon != std::string::npos) rest = host_port.substr(colon);
  }
  if (rest.empty()) {
    e.port = "10809";
  } else if (rest[0] != ':' || rest.size() == 1 || rest.find_first_not_of("0123456789", 1) != std::string::npos ||
             rest.size() > 6) {
    return Status::InvalidArgument("'" + host_port + "' is not HOST:PORT");
  } else {
    e.port = rest.substr(1);
  }
  if (e.host.empty()) return Status::InvalidArgument("'" + host_port + "' has no host");
  return e;
}

}  // namespace portalbd::fuse
