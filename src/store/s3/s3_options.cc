#include "src/store/s3/s3_options.h"

#include <cstdlib>
#include <type_traits>

#include "src/store/s3/aws_config_file.h"
#include "src/store/s3/credentials_file.h"
#include "src/store/s3/uri.h"

namespace portalbd::s3 {

namespace {

Result<Addressing> parse_addressing(const std::string& v) {
  if (v == "path") return Addressing::kPath;
  if (v == "virtual" || v == "virtual-hosted") return Addressing::kVirtual;
  if (v == "auto" || v.empty()) return Addressing::kAuto;
  return Status::InvalidArgument("S3 addressing style '" + v + "' is not one of path, virtual, auto");
}

const char* addressing_name(Addressing a) {
  switch (a) {
    case Addressing::kPath: return "path";
    case Addressing::kVirtual: return "virtual";
    case Addressing::kAuto: break;
  }
  return "auto";
}

// Bucket names per S3's rules, loosely: 3-63 of [a-z0-9.-], so that a typo
// like "s3://My Bucket" fails here and not as a 400 at the first request.
bool valid_bucket(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) return false;
  }
  return true;
}

std::optional<std::string> non_empty(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

std::string active_profile(const S3Options& o, const EnvLookup& env) {
  return !o.profile.empty() ? o.profile : non_empty(env, "AWS_PROFILE").value_or("default");
}

// Fills the region and endpoint still unset from the active profile of the
// shared config file. A missing file or profile is not an error: the AWS CLI
// treats both as "nothing configured".
void apply_aws_config_file(S3Options* o, const EnvLookup& env) {
  std::string path = non_empty(env, "AWS_CONFIG_FILE").value_or("");
  if (path.empty()) {
    auto home = non_empty(env, "HOME");
    if (!home) return;
    path = *home + "/.aws/config";
  }
  auto settings = load_aws_config_file(path, active_profile(*o, env));
  if (!settings.ok()) return;
  if (o->region.empty()) o->region = settings->region;
  // The AWS CLI's switch for "ignore endpoint_url in config files".
  bool ignore_endpoint = non_empty(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").value_or("") == "true";
  if (o->endpoint.empty() && !ignore_endpoint) o->endpoint = settings->endpoint_url;
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

std::string S3Options::describe() const {
  std::string s = "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix);
  s += " endpoint=" + (endpoint.empty() ? std::string("aws") : endpoint);
  s += " region=" + region;
  s += std::string(" addressing=") + addressing_name(addressing);
  if (!credentials.access_key_id.empty()) s += " access_key_id=" + credentials.access_key_id;
  s += " connect_timeout_ms=" + std::to_string(connect_timeout_ms) +
       " stall_timeout_ms=" + std::to_string(stall_timeout_ms) +
       " request_timeout_ms=" + std::to_string(request_timeout_ms) +
       " operation_timeout_ms=" + std::to_string(operation_timeout_ms);
  return s;
}

Status resolve_credentials(S3Options* o, const EnvLookup& env) {
  if (!o->credentials.access_key_id.empty() && !o->credentials.secret_access_key.empty()) return Status::OK();
  auto id = non_empty(env, "AWS_ACCESS_KEY_ID");
  auto secret = non_empty(env, "AWS_SECRET_ACCESS_KEY");
  if (id && secret) {
    o->credentials = {*id, *secret, non_empty(env, "AWS_SESSION_TOKEN").value_or("")};
    return Status::OK();
  }
  if (id || secret) {
    return Status::InvalidArgument("only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set");
  }
  std::string profile = active_profile(*o, env);
  std::string path = o->credentials_file;
  if (path.empty()) path = non_empty(env, "AWS_SHARED_CREDENTIALS_FILE").value_or("");
  if (path.empty()) {
    auto home = non_empty(env, "HOME");
    if (home) path = *home + "/.aws/credentials";
  }
  if (path.empty()) {
    return Status::InvalidArgument(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or a shared credentials file");
  }
  auto creds = load_credentials_file(path, profile);
  if (!creds.ok()) {
    return Status::InvalidArgument("no S3 credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY unset and " +
                                   creds.status().message());
  }
  o->credentials = *creds;
  return Status::OK();
}

Result<S3Options> s3_options_from_url(const std::string& url, const EnvLookup& env) {
  static const std::string kScheme = "s3://";
  if (url.rfind(kScheme, 0) != 0) return Status::InvalidArgument("'" + url + "' is not an s3:// URL");
  std::string rest = url.substr(kScheme.size());
  std::string query;
  if (size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  S3Options o;
  o.region.clear();  // unset until a source below sets it; us-east-1 is the last resort
  size_t slash = rest.find('/');
  o.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) o.prefix = rest.substr(slash + 1);
  while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
  while (!o.prefix.empty() && o.prefix.front() == '/') o.prefix.erase(0, 1);
  if (!valid_bucket(o.bucket)) {
    return Status::InvalidArgument("'" + url + "': bucket name '" + o.bucket +
                                   "' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)");
  }

  if (auto v = non_empty(env, "AWS_ENDPOINT_URL_S3"))
    o.endpoint = *v;
  else if (auto v2 = non_empty(env, "AWS_ENDPOINT_URL"))
    o.endpoint = *v2;
  if (auto v = non_empty(env, "AWS_REGION"))
    o.region = *v;
  else if (auto v2 = non_empty(env, "AWS_DEFAULT_REGION"))
    o.region = *v2;
  if (auto v = non_empty(env, "AWS_S3_ADDRESSING_STYLE")) {
    auto a = parse_addressing(*v);
    if (!a.ok()) return a.status();
    o.addressing = *a;
  }
  if (auto v = non_empty(env, "PORTALBD_S3_MAX_ATTEMPTS")) {
    char* end = nullptr;
    long n = std::strtol(v->c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 100) {
      return Status::InvalidArgument("PORTALBD_S3_MAX_ATTEMPTS='" + *v + "' is not a number in 1..100");
    }
    o.max_attempts = static_cast<int>(n);
  }
  // Deadlines, in ms. A stall or request timeout of 0 would mean none: refused.
  auto ms_setting = [&](const char* name, uint64_t min, uint64_t max, auto* field) -> Status {
    auto v = non_empty(env, name);
    if (!v) return Status::OK();
    char* end = nullptr;
    unsigned long long n = std::strtoull(v->c_str(), &end, 10);
    if (*end != '\0' || v->front() == '-' || n < min || n > max) {
      return Status::InvalidArgument(std::string(name) + "='" + *v + "' is not a number of ms in " +
                                     std::to_string(min) + ".." + std::to_string(max));
    }
    *field = static_cast<std::remove_pointer_t<decltype(field)>>(n);
    return Status::OK();
  };
  constexpr uint64_t kHourMs = 3'600'000;
  PBD_RETURN_IF_ERROR(ms_setting("PORTALBD_S3_CONNECT_TIMEOUT_MS", 100, kHourMs, &o.connect_timeout_ms));
  PBD_RETURN_IF_ERROR(ms_setting("PORTALBD_S3_STALL_TIMEOUT_MS", 100, kHourMs, &o.stall_timeout_ms));
  PBD_RETURN_IF_ERROR(ms_setting("PORTALBD_S3_REQUEST_TIMEOUT_MS", 100, kHourMs, &o.request_timeout_ms));
  PBD_RETURN_IF_ERROR(ms_setting("PORTALBD_S3_OPERATION_TIMEOUT_MS", 0, 24 * kHourMs, &o.operation_timeout_ms));

  // URL query options override the environment.
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string part = query.substr(start, end - start);
    start = end + 1;
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string name = part.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : uri_decode(part.substr(eq + 1));
    if (name == "endpoint")
      o.endpoint = value;
    else if (name == "region")
      o.region = value;
    else if (name == "profile")
      o.profile = value;
    else if (name == "addressing") {
      auto a = parse_addressing(value);
      if (!a.ok()) return a.status();
      o.addressing = *a;
    } else {
      return Status::InvalidArgument("'" + url + "': unknown option '" + name +
                                     "' (known: endpoint, region, addressing, profile)");
    }
  }
  // Precedence, highest first: URL query, environment, shared config file, default.
  if (o.region.empty() || o.endpoint.empty()) apply_aws_config_file(&o, env);
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  if (o.region.empty()) o.region = "us-east-1";
  PBD_RETURN_IF_ERROR(resolve_credentials(&o, env));
  return o;
}

}  // namespace portalbd::s3
