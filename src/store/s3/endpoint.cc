#include "src/store/s3/endpoint.h"

#include <arpa/inet.h>

#include "src/store/s3/uri.h"

namespace portalbd::s3 {

namespace {

bool is_ip_literal(const std::string& host) {
  if (!host.empty() && host.front() == '[') return true;  // [::1]
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string Endpoint::object_path(const std::string& full_key) const {
  std::string path = base_path + (path_style ? "/" + uri_encode_path(bucket) : "");
  return path + "/" + uri_encode_path(full_key);
}

std::string Endpoint::bucket_path() const {
  return path_style ? base_path + "/" + uri_encode_path(bucket) : base_path + "/";
}

std::string Endpoint::url(const std::string& path, const std::string& query) const {
  std::string u = scheme + "://" + authority + path;
  if (!query.empty()) u += "?" + query;
  return u;
}

Result<Endpoint> resolve_endpoint(const S3Options& options) {
  Endpoint ep;
  ep.bucket = options.bucket;
  std::string endpoint = options.endpoint;
  bool custom = !endpoint.empty();
  if (!custom) endpoint = "https://s3." + options.region + ".amazonaws.com";

  size_t sep = endpoint.find("://");
  if (sep == std::string::npos) {
    return Status::InvalidArgument("S3 endpoint '" + endpoint + "' needs a scheme (https:// or http://)");
  }
  ep.scheme = endpoint.substr(0, sep);
  if (ep.scheme != "https" && ep.scheme != "http") {
    return Status::InvalidArgument("S3 endpoint '" + endpoint + "': scheme must be https or http");
  }
  std::string rest = endpoint.substr(sep + 3);
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) {
    ep.base_path = rest.substr(slash);
    while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  }
  if (authority.empty() || authority.find('@') != std::string::npos || authority.find('?') != std::string::npos) {
    return Status::InvalidArgument("S3 endpoint '" + endpoint + "' has no usable host");
  }
  std::string host = authority;
  if (host.front() != '[') host = host.substr(0, host.find(':'));

  bool aws_host = ends_with(host, ".amazonaws.com");
  bool dotted_bucket_over_tls = ep.https() && options.bucket.find('.') != std::string::npos;
  switch (options.addressing) {
    case Addressing::kPath: ep.path_style = true; break;
    case Addressing::kVirtual: ep.path_style = false; break;
    case Addressing::kAuto:
      ep.path_style = (custom && !aws_host) || is_ip_literal(host) || host == "localhost" || dotted_bucket_over_tls;
      break;
  }
  if (!ep.path_style && (is_ip_literal(host))) {
    return Status::InvalidArgument("S3 endpoint '" + endpoint +
                                   "' is an IP address: virtual-hosted addressing impossible");
  }
  ep.authority = ep.path_style ? authority : options.bucket + "." + authority;
  return ep;
}

}  // namespace portalbd::s3
