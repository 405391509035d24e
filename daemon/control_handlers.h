// The daemon's control-socket commands (protocol: docs/control-protocol.md):
//   status, snapshot.create|list|show|delete|restore|prune, gc, checkpoint
// A snapshot reader (--serve-snapshot) answers status, snapshot.list and
// snapshot.show, and refuses the rest.
// Each is one function in control_handlers.cc, named in a table there: it
// validates its arguments, calls the engine, and returns JSON.
// Thread-safety: handlers run on control-socket threads; everything they
// touch (Volume, nbd::Server) is thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "src/config/config.h"

namespace portalbd {

class Volume;
class SnapshotReader;
class ObjectStore;
class CountingStore;
namespace nbd {
class Server;
}
namespace ctl {
class ControlServer;
}

struct ControlContext {
  const Config* config = nullptr;
  Volume* volume = nullptr;
  ObjectStore* store = nullptr;             // the store as opened (its url, its own metrics)
  const CountingStore* requests = nullptr;  // the same store, counting requests; may be null
  nbd::Server* nbd = nullptr;
  std::chrono::steady_clock::time_point started;
  // Set with --serve-snapshot (volume is then null): every command runs on
  // the reader's current volume, and those that change the volume are
  // refused (kReadOnly, naming the snapshot served).
  SnapshotReader* reader = nullptr;
};

void register_control_handlers(ctl::ControlServer* server, ControlContext ctx);

}  // namespace portalbd
