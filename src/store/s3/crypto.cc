#include "src/store/s3/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>

namespace portalbd::s3 {

namespace {

// The digest calls below only fail on allocation failure inside OpenSSL; a
// wrong signature would be worse than stopping, so treat it as fatal.
[[noreturn]] void crypto_failed() { std::abort(); }

}  // namespace

Sha256Digest sha256(std::span<const std::byte> data) {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) crypto_failed();
  return out;
}

Sha256Digest sha256(std::string_view data) {
  return sha256(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
}

Sha256Digest hmac_sha256(std::span<const uint8_t> key, std::string_view message) {
  Sha256Digest out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &len) == nullptr) {
    crypto_failed();
  }
  return out;
}

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

std::string md5_base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1) crypto_failed();
  std::string out(((len + 2) / 3) * 4 + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), digest, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace portalbd::s3
