// open_object_store(): turns a storage URL into an ObjectStore.
#include <string>

#include "src/store/file_store.h"
#include "src/store/memory_store.h"
#include "src/store/object_store.h"
#include "src/store/s3/s3_store.h"

namespace portalbd {

Result<std::shared_ptr<ObjectStore>> open_object_store(const std::string& url,
                                                       const std::map<std::string, std::string>& settings) {
  auto sep = url.find("://");
  if (sep == std::string::npos) {
    return Status::InvalidArgument("storage URL '" + url + "' has no scheme (expected memory://, file:// or s3://)");
  }
  std::string scheme = url.substr(0, sep);
  std::string rest = url.substr(sep + 3);
  if (scheme == "memory") return std::shared_ptr<ObjectStore>(std::make_shared<MemoryStore>());
  if (scheme == "file") {
    auto store = FileStore::Open(rest);
    if (!store.ok()) return store.status();
    return std::shared_ptr<ObjectStore>(*store);
  }
  if (scheme == "s3") {
    auto env = [&settings](const std::string& name) -> std::optional<std::string> {
      if (auto it = settings.find(name); it != settings.end() && !it->second.empty()) return it->second;
      return s3::process_env(name);
    };
    auto options = s3::s3_options_from_url(url, env);
    if (!options.ok()) return options.status();
    auto store = s3::S3Store::Open(std::move(*options));
    if (!store.ok()) return store.status();
    return std::shared_ptr<ObjectStore>(*store);
  }
  return Status::InvalidArgument("unsupported storage URL scheme '" + scheme + "' in '" + url +
                                 "' (expected memory://, file:// or s3://)");
}

}  // namespace portalbd
