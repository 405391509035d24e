// ExportProvider: how the NBD server finds the devices it serves.
//
// The daemon implements this over the engine (daemon/exports.h): the live
// volume under the configured export name and every snapshot as a read-only
// export named "<export>@<snapshot>". The NBD layer only sees BlockDevice.
//
// Thread-safety: implementations must be safe to call from many connection
// threads at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "src/engine/block_device.h"
#include "src/util/status.h"

namespace portalbd::nbd {

struct ExportInfo {
  std::string name;
  std::string description;
};

class ExportProvider {
 public:
  virtual ~ExportProvider() = default;
  // Every export a client may open, for NBD_OPT_LIST.
  virtual std::vector<ExportInfo> list_exports() = 0;
  // The export an empty name ("") selects.
  virtual std::string default_export() = 0;
  // Opens `name` for one connection. kNotFound when there is no such export.
  // The returned device stays valid for as long as the connection holds it.
  virtual Result<std::shared_ptr<BlockDevice>> open_export(const std::string& name) = 0;
  // Description of one export (NBD_INFO_DESCRIPTION); empty when none.
  virtual std::string describe_export(const std::string& name) {
    (void)name;
    return {};
  }
};

}  // namespace portalbd::nbd
