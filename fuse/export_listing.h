// query_exports(): asks an NBD server which exports it has (NBD_OPT_LIST) and
// how big the live volume is (NBD_OPT_INFO), in one short connection that
// never opens an export. The snapshot catalog refreshes itself with this, so
// the view needs nothing but the NBD endpoint (no control socket): it works
// against a daemon on another host too.
//
// Thread-safety: a free function with no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fuse/nbd_connection.h"
#include "fuse/nbd_endpoint.h"
#include "src/util/status.h"

namespace portalbd::fuse {

struct ExportEntry {
  std::string name;
  std::string description;
};

struct ExportListing {
  std::string live_export;           // the volume's own export (no '@' in its name)
  uint64_t size_bytes = 0;           // size of live_export; snapshots have the same size
  std::vector<ExportEntry> exports;  // as listed, live export included
};

// `live_export` "" picks the first listed export without '@'.
// Errors: Unavailable (unreachable, timed out), NotFound (no such live export).
Result<ExportListing> query_exports(const NbdEndpoint& endpoint, const std::string& live_export, Deadline deadline);

}  // namespace portalbd::fuse
