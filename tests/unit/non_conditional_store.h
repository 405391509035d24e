// NonConditionalStore: an ObjectStore decorator for unit tests that behaves
// like s3rver: put_if_absent() writes whether or not the key exists, and
// supports_conditional_put() says so. An optional hook runs after every PUT
// of a key, to let a test slip a racing writer's object in right behind it.
// Thread-safety: as the inner store; set the hook before sharing the store.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "src/store/object_store.h"

namespace portalbd::testing {

class NonConditionalStore final : public ObjectStore {
 public:
  explicit NonConditionalStore(std::shared_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  // Runs after each put()/put_if_absent() of any key, with the key.
  std::function<void(const std::string&)> after_put;

  Status put(const std::string& key, std::span<const std::byte> data) override {
    Status st = inner_->put(key, data);
    if (after_put) after_put(key);
    return st;
  }
  Status put_if_absent(const std::string& key, std::span<const std::byte> data) override { return put(key, data); }
  bool supports_conditional_put() const override { return false; }
  Status get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) override {
    return inner_->get_range(key, offset, length, out);
  }
  Status get(const std::string& key, std::vector<std::byte>* out) override { return inner_->get(key, out); }
  Result<ObjectInfo> head(const std::string& key) override { return inner_->head(key); }
  Status list(const std::string& prefix, std::vector<ObjectInfo>* out) override { return inner_->list(prefix, out); }
  Status remove(const std::string& key) override { return inner_->remove(key); }
  std::string url() const override { return "noncond+" + inner_->url(); }
  bool persistent() const override { return inner_->persistent(); }

 private:
  const std::shared_ptr<ObjectStore> inner_;
};

}  // namespace portalbd::testing
