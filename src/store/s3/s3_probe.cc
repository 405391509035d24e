// S3Store::probe_conditional_put: does this server enforce If-None-Match?
//
// AWS S3 (since 2024), MinIO and R2 refuse a PUT with If-None-Match: * when
// the key exists (412); s3rver and some older compatibles silently overwrite.
// Fencing a second writer relies on that refusal, so the engine must know.
#include <random>

#include "src/log/log.h"
#include "src/store/s3/crypto.h"
#include "src/store/s3/s3_store.h"

namespace portalbd::s3 {

Result<bool> S3Store::probe_conditional_put() {
  std::random_device rd;
  uint8_t nonce[8];
  for (auto& b : nonce) b = static_cast<uint8_t>(rd());
  std::string key = std::string(kStoreProbePrefix) + "conditional-put-" + hex(nonce);
  auto as_bytes = [](const std::string& s) {
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size());
  };
  std::string first = "first " + key, second = "second " + key;

  Status st = put_if_absent(key, as_bytes(first));
  if (st.is(Status::Code::kNotSupported)) {
    conditional_put_enforced_.store(false);
    return false;  // 501: the server says it does not do conditional writes
  }
  if (!st.ok()) return st;
  Status again = put_if_absent(key, as_bytes(second));
  bool enforced = again.is(Status::Code::kAlreadyExists);
  Status cleanup = remove(key);
  if (!again.ok() && !enforced && !again.is(Status::Code::kNotSupported)) return again;
  if (!cleanup.ok()) {
    log::get("s3")->warn("S3 conditional PUT probe could not remove key={} error={}", log::quote(key),
                         log::quote(cleanup.message()));
  }
  conditional_put_enforced_.store(enforced);
  return enforced;
}

}  // namespace portalbd::s3
