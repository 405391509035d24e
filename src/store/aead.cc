#include "src/store/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>

namespace portalbd::aead {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

Status failed(const char* what) { return Status::IOError(std::string("OpenSSL ") + what + " failed"); }

const unsigned char* u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

// The cipher, fetched from the default provider once: OpenSSL 3 looks it up
// again at every init given EVP_aes_256_gcm(), and a 64 MiB object is 1024
// chunks, each its own init. Falls back to the built-in table where the
// fetch fails.
const EVP_CIPHER* aes_256_gcm() {
  static const EVP_CIPHER* const cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return fetched != nullptr ? fetched : EVP_aes_256_gcm();
  }();
  return cipher;
}

}  // namespace

Result<Key> hkdf(std::span<const unsigned char> ikm, std::span<const unsigned char> salt, const std::string& info) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  Key out{};
  size_t len = out.size();
  static const unsigned char kNoSalt = 0;
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.empty() ? &kNoSalt : salt.data(), static_cast<int>(salt.size())) <=
          0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), reinterpret_cast<const unsigned char*>(info.data()),
                                  static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) <= 0 || len != out.size()) {
    return failed("HKDF");
  }
  return out;
}

Result<Key> scrypt(const std::string& passphrase, std::span<const unsigned char> salt, uint64_t n, uint64_t r,
                   uint64_t p) {
  Key out{};
  // 128*r*n bytes for V, plus the rest: allow twice that.
  const uint64_t max_mem = 2 * 128 * r * n + (1u << 20);
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), salt.data(), salt.size(), n, r, p, max_mem, out.data(),
                     out.size()) != 1) {
    return failed("scrypt");
  }
  return out;
}

Status random_bytes(std::span<unsigned char> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) return failed("RAND_bytes");
  return Status::OK();
}

Status seal_into(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad,
                 std::span<const std::byte> plaintext, std::span<std::byte> out) {
  if (out.size() != plaintext.size() + kTagBytes) return Status::InvalidArgument("AES-GCM seal: wrong output size");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (ctx == nullptr || EVP_EncryptInit_ex(ctx.get(), aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return failed("AES-GCM seal");
  }
  int total = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), u8(out.data()), &len, u8(plaintext.data()), static_cast<int>(plaintext.size())) !=
        1) {
      return failed("AES-GCM seal");
    }
    total = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), u8(out.data() + total), &len) != 1 ||
      static_cast<size_t>(total + len) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, out.data() + plaintext.size()) != 1) {
    return failed("AES-GCM seal");
  }
  return Status::OK();
}

Status seal(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad,
            std::span<const std::byte> plaintext, std::vector<std::byte>* out) {
  const size_t at = out->size();
  out->resize(at + plaintext.size() + kTagBytes);
  Status st = seal_into(key, nonce, aad, plaintext, std::span<std::byte>(*out).subspan(at));
  if (!st.ok()) out->resize(at);
  return st;
}

Status open(const Key& key, const Nonce& nonce, std::span<const unsigned char> aad, std::span<const std::byte> sealed,
            std::vector<std::byte>* out) {
  if (sealed.size() < kTagBytes) return Status::Corruption("sealed chunk shorter than its tag");
  const size_t text_bytes = sealed.size() - kTagBytes;
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (ctx == nullptr || EVP_DecryptInit_ex(ctx.get(), aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return failed("AES-GCM open");
  }
  const size_t at = out->size();
  out->resize(at + text_bytes);
  int total = 0;
  if (text_bytes > 0) {
    if (EVP_DecryptUpdate(ctx.get(), u8(out->data() + at), &len, u8(sealed.data()), static_cast<int>(text_bytes)) !=
        1) {
      out->resize(at);
      return failed("AES-GCM open");
    }
    total = len;
  }
  unsigned char tag[kTagBytes];
  std::memcpy(tag, sealed.data() + text_bytes, kTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1) {
    out->resize(at);
    return failed("AES-GCM open");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), u8(out->data() + at + total), &len) <= 0) {
    out->resize(at);  // never hand out unauthenticated bytes
    return Status::Corruption("authentication failed");
  }
  return Status::OK();
}

std::string to_hex(std::span<const unsigned char> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

bool from_hex(const std::string& text, std::vector<unsigned char>* out) {
  if (text.size() % 2 != 0) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = digit(text[i]), lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return true;
}

bool equal_secret(std::span<const unsigned char> a, std::span<const unsigned char> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace portalbd::aead
