// The cryptographic primitives client-side encryption uses, over OpenSSL:
// HKDF-SHA256 (subkeys), scrypt (passphrases), AES-256-GCM (sealing one
// chunk) and the system's random bytes. Nothing here knows about objects or
// volumes: see encrypted_store.h for the object format and
// volume_encryption.h for keys and volume.json.
//
// Errors: OpenSSL failures that cannot happen with valid input (allocation)
// come back as kIOError; a chunk that fails authentication is kCorruption.
// Thread-safety: every function is safe to call concurrently (no shared state).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/util/status.h"

namespace portalbd::aead {

inline constexpr size_t kKeyBytes = 32;    // AES-256
inline constexpr size_t kNonceBytes = 12;  // GCM's 96-bit IV
inline constexpr size_t kTagBytes = 16;
using Key = std::array<unsigned char, kKeyBytes>;
using Nonce = std::array<unsigned char, kNonceBytes>;

// HKDF-SHA256 (RFC 5869) of `ikm` with `salt` and `info`, kKeyBytes long.
Result<Key> hkdf(std::span<const unsigned char> ikm, std::span<const unsigned char> salt, const std::string& info);

// scrypt (RFC 7914) of `passphrase` with `salt`; n a power of two.
Result<Key> scrypt(const std::string& passphrase, std::span<const unsigned char> salt, uint64_t n, uint64_t r,
                   uint64_t p);

// Fills `out` from the operating system's CSPRNG (RAND_bytes).
Status random_bytes(std::span<unsigned char> out);

// Seals `plaintext` under `key`/`nonce`, binding `aad`: appends the
// ciphertext (same length) and the 16-byte tag to *out.
// REQUIRES: a (key, nonce) pair is never used twice.
Status seal(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad,
            std::span<const std::byte> plaintext, std::vector<std::byte>* out);
// The same into `out`, which is exactly plaintext.size() + kTagBytes long
// (kInvalidArgument otherwise): no allocation, nothing zero-filled first.
Status seal_into(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad,
                 std::span<const std::byte> plaintext, std::span<std::byte> out);

// Opens ciphertext-and-tag `sealed` (at least kTagBytes): appends the
// plaintext to *out, or returns kCorruption (nothing appended) when the tag
// does not match the key, nonce, aad and bytes.
Status open(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad, std::span<const std::byte> sealed,
            std::vector<std::byte>* out);

// Lowercase hex, and back (false on bad input).
std::string to_hex(std::span<const unsigned char> bytes);
bool from_hex(const std::string& text, std::vector<unsigned char>* out);

// Equal contents, in time independent of where they differ (CRYPTO_memcmp).
bool equal_secret(std::span<const unsigned char> a, std::span<const unsigned char> b);

}  // namespace portalbd::aead
