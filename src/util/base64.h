// Base64 decoding (RFC 4648, the standard alphabet), for secrets that travel
// as text: the CSI driver's encryptionKey.
//
// Thread-safety: a pure function.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace portalbd {

// The bytes `text` encodes; nullopt when it is not base64. Whitespace
// anywhere (a trailing newline from `base64`) is skipped, "=" padding is
// optional but only at the end, and the leftover bits of the last group
// must be zero.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace portalbd
