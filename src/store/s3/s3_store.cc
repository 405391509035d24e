#include "src/store/s3/s3_store.h"

#include <algorithm>
#include <cstring>
#include <ctime>

#include "src/log/log.h"
#include "src/store/s3/endpoint.h"

namespace portalbd::s3 {
namespace {

// "Wed, 21 Oct 2015 07:28:00 GMT" (RFC 9110 IMF-fixdate) as Unix ms; 0 when
// absent or unreadable.
int64_t parse_http_date_ms(const std::string& date) {
  struct tm tm {};
  const char* end = ::strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (date.empty() || end == nullptr) return 0;
  return static_cast<int64_t>(::timegm(&tm)) * 1000;
}

}  // namespace

Result<std::shared_ptr<S3Store>> S3Store::Open(S3Options options) {
  PBD_RETURN_IF_ERROR(resolve_credentials(&options));
  if (options.multipart_part_bytes < (5ull << 20)) {
    return Status::InvalidArgument("S3 multipart part size must be at least 5 MiB");
  }
  auto endpoint = resolve_endpoint(options);
  if (!endpoint.ok()) return endpoint.status();
  std::string described = options.describe();
  bool probe = options.probe_on_open;
  auto client = std::make_unique<S3Client>(std::move(options), std::move(*endpoint));
  std::shared_ptr<S3Store> store(new S3Store(std::move(client)));
  auto log = log::get("s3");
  if (probe) {
    Status access = store->check_access();
    if (!access.ok()) return access.With("cannot use " + store->url());
    auto enforced = store->probe_conditional_put();
    if (!enforced.ok()) return enforced.status().With("conditional PUT probe on " + store->url());
    log->info("S3 store opened {} conditional_put={} fencing={}", described, *enforced ? "enforced" : "ignored",
              *enforced ? "conditional-put" : "lease");
  } else {
    log->info("S3 store opened {} (not probed)", described);
  }
  return store;
}

std::string S3Store::url() const {
  const auto& o = client_->options();
  return "s3://" + o.bucket + (o.prefix.empty() ? "" : "/" + o.prefix);
}

std::optional<StoreMetrics> S3Store::metrics() const {
  const S3MetricsSnapshot m = s3_metrics();
  return StoreMetrics{"s3",
                      {{"requests_put", m.requests_put},
                       {"requests_get", m.requests_get},
                       {"requests_head", m.requests_head},
                       {"requests_delete", m.requests_delete},
                       {"requests_list", m.requests_list},
                       {"requests_post", m.requests_post},
                       {"bytes_up", m.bytes_up},
                       {"bytes_down", m.bytes_down},
                       {"retries", m.retries},
                       {"errors", m.errors},
                       {"multipart_uploads", m.multipart_uploads}}};
}

Result<std::string> S3Store::full_key(const std::string& key) const {
  // S3 allows nearly any key, but an empty one names the bucket, and a
  // leading '/' would create an empty path segment under the prefix.
  if (key.empty() || key.front() == '/' || key.size() > 900) {
    return Status::InvalidArgument("bad object key '" + key + "'");
  }
  const std::string& prefix = client_->options().prefix;
  return prefix.empty() ? key : prefix + "/" + key;
}

Status S3Store::put_single(const std::string& full, std::span<const std::byte> data, bool if_absent, int* attempts) {
  S3Call call;
  call.kind = RequestKind::kPut;
  call.op = "PutObject";
  call.method = "PUT";
  call.key = full;
  call.body = data;
  call.headers.push_back({"Content-Type", "application/octet-stream"});
  if (if_absent) call.headers.push_back({"If-None-Match", "*"});
  HttpResponse resp;
  return client_->execute(call, &resp, attempts);
}

Status S3Store::put(const std::string& key, std::span<const std::byte> data) {
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  if (data.size() > client_->options().multipart_threshold_bytes) return put_multipart(*full, data);
  return put_single(*full, data, false, nullptr);
}

Status S3Store::put_if_absent(const std::string& key, std::span<const std::byte> data) {
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  int attempts = 0;
  Status st = put_single(*full, data, true, &attempts);
  if (st.is(Status::Code::kAlreadyExists) && attempts > 1) {
    // An earlier attempt may have reached S3 and created the object before
    // its answer was lost; then the 412 is our own write. The object holds
    // exactly our bytes in that case (fencing objects carry a unique writer
    // id, so another writer's object differs).
    std::vector<std::byte> existing;
    if (get(key, &existing).ok() && existing.size() == data.size() &&
        std::equal(existing.begin(), existing.end(), data.begin())) {
      return Status::OK();
    }
  }
  return st;
}

Status S3Store::get_range(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>* out) {
  out->clear();
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  if (length == 0) {
    auto info = head(key);  // still report a missing key as kNotFound
    return info.ok() ? Status::OK() : info.status();
  }
  S3Call call;
  call.kind = RequestKind::kGet;
  call.op = "GetObject";
  call.key = *full;
  call.headers.push_back({"Range", "bytes=" + std::to_string(offset) + "-" + std::to_string(offset + length - 1)});
  call.answer_bytes = length;
  HttpResponse resp;
  Status st = client_->execute(call, &resp);
  if (!st.ok()) {
    // 416: the range starts at or past the end; the contract says "the bytes
    // that exist", which is none.
    if (resp.status == 416) return Status::OK();
    return st;
  }
  if (resp.status == 206) {
    *out = std::move(resp.body);
  } else {
    // A server that ignores Range sends the whole object (200): cut it here.
    if (offset < resp.body.size()) {
      uint64_t end = std::min<uint64_t>(resp.body.size(), offset + length);
      out->assign(resp.body.begin() + static_cast<ptrdiff_t>(offset), resp.body.begin() + static_cast<ptrdiff_t>(end));
    }
  }
  if (out->size() > length) out->resize(length);
  return Status::OK();
}

Status S3Store::get(const std::string& key, std::vector<std::byte>* out) {
  out->clear();
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  S3Call call;
  call.kind = RequestKind::kGet;
  call.op = "GetObject";
  call.key = *full;
  HttpResponse resp;
  PBD_RETURN_IF_ERROR(client_->execute(call, &resp));
  *out = std::move(resp.body);
  return Status::OK();
}

Result<ObjectInfo> S3Store::head(const std::string& key) {
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  S3Call call;
  call.kind = RequestKind::kHead;
  call.op = "HeadObject";
  call.method = "HEAD";
  call.key = *full;
  HttpResponse resp;
  PBD_RETURN_IF_ERROR(client_->execute(call, &resp));
  std::string len = resp.header("content-length");
  char* end = nullptr;
  unsigned long long size = std::strtoull(len.c_str(), &end, 10);
  if (len.empty() || *end != '\0') {
    return Status::IOError("S3 HeadObject bucket=" + client_->options().bucket + " key=" + *full +
                           ": no usable Content-Length");
  }
  return ObjectInfo{key, size, parse_http_date_ms(resp.header("last-modified"))};
}

Status S3Store::remove(const std::string& key) {
  auto full = full_key(key);
  if (!full.ok()) return full.status();
  S3Call call;
  call.kind = RequestKind::kDelete;
  call.op = "DeleteObject";
  call.method = "DELETE";
  call.key = *full;
  HttpResponse resp;
  Status st = client_->execute(call, &resp);
  if (st.is(Status::Code::kNotFound)) return Status::OK();  // idempotent by contract
  return st;
}

}  // namespace portalbd::s3
