// Session: what the handshake agreed with one client, handed to the
// transmission phase. Built once by Handshake::run (nbd/handshake.h), then
// read-only for the rest of the connection.
//
// Ownership: holds a reference on the export's device for as long as the
// connection lives (ExportProvider's contract: the device stays valid while
// held).
// Thread-safety: immutable after the handshake; shared by the connection's
// reader and worker threads without locking.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/engine/block_device.h"

namespace portalbd::nbd {

struct Session {
  std::string export_name;              // resolved name ("" -> default export)
  std::shared_ptr<BlockDevice> device;  // never null once in transmission
  uint64_t size_bytes = 0;              // fixed for the session, as advertised
  uint16_t transmission_flags = 0;      // exactly what the client was told
  bool structured_replies = false;      // NBD_OPT_STRUCTURED_REPLY acked
  bool base_allocation = false;         // "base:allocation" selected by SET_META_CONTEXT
  uint32_t max_request_bytes = 0;       // largest READ/WRITE payload accepted
  std::string tls_identity;             // "" in the clear; else TlsTransport::identity()
};

// The transmission flags for `device`, given what was negotiated.
uint16_t transmission_flags_for(const BlockDevice& device, bool structured_replies);

}  // namespace portalbd::nbd
