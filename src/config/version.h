// The one place that names portalbd's version. The daemon prints it for
// --version and in its status; portalctl prints it for --version.
//
// Thread-safety: a compile-time constant.
#pragma once

namespace portalbd {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace portalbd
