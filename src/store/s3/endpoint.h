// Endpoint: where requests for one bucket go, and how paths are spelled.
//
// Built once from S3Options (resolve_endpoint) and immutable after, so it is
// safe to share between threads. Paths it returns are wire form: keys are
// encoded with uri_encode_path(), exactly what is sent and signed.
#pragma once

#include <string>

#include "src/store/s3/s3_options.h"

namespace portalbd::s3 {

struct Endpoint {
  std::string scheme;     // "https" or "http"
  std::string authority;  // Host header: "s3.us-east-1.amazonaws.com", "bucket.s3...", "127.0.0.1:4568"
  std::string base_path;  // "" or a path prefix the endpoint URL carried ("/s3")
  std::string bucket;
  bool path_style = true;

  bool https() const { return scheme == "https"; }
  // Wire path of an object (`full_key` includes the store prefix).
  std::string object_path(const std::string& full_key) const;
  // Wire path of the bucket itself (ListObjectsV2, DeleteObjects).
  std::string bucket_path() const;
  // "scheme://authority" + path + ("?" + query when non-empty).
  std::string url(const std::string& path, const std::string& query) const;
};

// Applies the addressing rules of S3Options::addressing.
Result<Endpoint> resolve_endpoint(const S3Options& options);

}  // namespace portalbd::s3
