// new_uuid(): a random (version 4) UUID string for volumes and snapshots.
#pragma once

#include <string>

namespace portalbd {

std::string new_uuid();

}  // namespace portalbd
