// The one place where portalbd Status codes become NBD error values.
//
// Engine calls return a Status; the NBD layer turns it into the number the
// protocol puts on the wire here and nowhere else, so the mapping is auditable
// in one screen (see the table in errors.cc).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "src/util/status.h"

namespace portalbd::nbd {

// NBD error value for a non-OK status (0 for OK).
uint32_t nbd_error_for(const Status& status);

// "EINVAL", "ENOSPC", ... for log lines; "E?" for numbers we never send.
const char* nbd_error_name(uint32_t error);

}  // namespace portalbd::nbd
