// validate_config() and parse_host_port(): the checks that need the whole
// Config, after every source (defaults, file, flags) has been applied.
#include <charconv>

#include "src/config/config.h"
#include "src/config/config_keys.h"

namespace portalbd {

Result<HostPort> parse_host_port(const std::string& address) {
  auto bad = [&](const std::string& why) { return Status::InvalidArgument("expected host:port (" + why + ")"); };
  std::string host;
  std::string port_text;
  if (!address.empty() && address[0] == '[') {  // [v6addr]:port
    const auto close = address.find(']');
    if (close == std::string::npos) return bad("missing ']' after an IPv6 address");
    host = address.substr(1, close - 1);
    if (close + 1 >= address.size() || address[close + 1] != ':') return bad("missing ':port'");
    port_text = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) return bad("missing ':port'");
    host = address.substr(0, colon);
    if (host.find(':') != std::string::npos) return bad("write IPv6 addresses as [addr]:port");
    port_text = address.substr(colon + 1);
  }
  if (host.empty()) return bad("missing host; use 0.0.0.0 or [::] for every interface");
  unsigned port = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port < 1 || port > 65535) {
    return bad("port must be a number from 1 to 65535");
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

Status validate_config(const Config& cfg) {
  for (const ConfigKey& key : config_keys()) {
    // An unset size means "keep the existing volume's": nothing to check.
    if (key.set_marker != nullptr && !(cfg.*key.set_marker)) continue;
    Status st = check_config_key(key, cfg);
    if (!st.ok()) return st.With(std::string(key.name) + " = " + config_value_text(key, cfg));
  }
  if (cfg.write_buffer_bytes < cfg.segment_bytes) {
    return Status::InvalidArgument("lsm.write_buffer_bytes = " + std::to_string(cfg.write_buffer_bytes) +
                                   ": must be at least lsm.l0_sst_size_bytes (" + std::to_string(cfg.segment_bytes) +
                                   ") so that a full segment fits");
  }
  if (cfg.nbd_address.empty() && cfg.nbd_unix.empty()) {
    return Status::InvalidArgument("nbd.address and nbd.unix are both empty: no way for a client to connect");
  }
  if (cfg.tls != "off" && cfg.tls_certificates.empty() && cfg.tls_psk_file.empty()) {
    return Status::InvalidArgument("nbd.tls = " + quote_config_string(cfg.tls) +
                                   " needs nbd.tls_certificates or nbd.tls_psk (--tls-certificates DIR or "
                                   "--tls-psk FILE)");
  }
  if (cfg.tls_verify_peer && cfg.tls_certificates.empty()) {
    return Status::InvalidArgument("nbd.tls_verify_peer needs nbd.tls_certificates (the CA is ca-cert.pem there)");
  }
  if (!cfg.encryption_key_file.empty() && !cfg.encryption_passphrase_file.empty()) {
    return Status::InvalidArgument("encryption.key_file and encryption.passphrase_file are both set: choose one");
  }
  if (!cfg.serve_snapshot.empty()) {
    // A snapshot reader never writes to storage (src/engine/snapshot_reader.h).
    const char* conflict = cfg.take_over       ? "--take-over"
                           : cfg.repair        ? "storage.repair (--repair)"
                           : cfg.grow          ? "--grow"
                           : cfg.disk_size_set ? "device.disk_size_gb (--disk-size-gb)"
                                               : nullptr;
    if (conflict != nullptr) {
      return Status::InvalidArgument(std::string("nbd.serve_snapshot serves a snapshot read-only and writes nothing "
                                                 "to storage: ") +
                                     conflict + " does not go with it");
    }
  }
  if (cfg.control_socket.empty()) return Status::InvalidArgument("nbd.socket: the control socket path is empty");
  if (cfg.state_dir.empty()) return Status::InvalidArgument("daemon.state_dir is empty");
  if (!cfg.nbd_unix.empty() && cfg.nbd_unix == cfg.control_socket) {
    return Status::InvalidArgument("nbd.unix and nbd.socket are the same path '" + cfg.nbd_unix + "'");
  }
  return Status::OK();
}

}  // namespace portalbd
