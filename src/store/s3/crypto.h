// SHA-256 and HMAC-SHA256 over OpenSSL, in the shapes SigV4 needs.
//
// Pure functions on values; no state, no ownership. OpenSSL 3's one-shot
// EVP/HMAC calls are thread-safe, so every function here may be called from
// any thread at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace portalbd::s3 {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::span<const std::byte> data);
Sha256Digest sha256(std::string_view data);
Sha256Digest hmac_sha256(std::span<const uint8_t> key, std::string_view message);

// Lowercase hex, as SigV4 writes every hash ("e3b0c442...").
std::string hex(std::span<const uint8_t> bytes);
inline std::string sha256_hex(std::string_view data) { return hex(sha256(data)); }
inline std::string sha256_hex(std::span<const std::byte> data) { return hex(sha256(data)); }

// Base64 of the MD5 of `data` (the Content-MD5 header DeleteObjects requires).
std::string md5_base64(std::string_view data);

}  // namespace portalbd::s3
