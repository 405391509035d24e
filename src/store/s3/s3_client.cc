#include "src/store/s3/s3_client.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "src/log/log.h"
#include "src/store/s3/s3_error.h"

namespace portalbd::s3 {

S3Client::S3Client(S3Options options, Endpoint endpoint)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      retry_{std::max(1, options_.max_attempts), options_.backoff_base_ms, options_.backoff_max_ms},
      http_(HttpOptions{options_.connect_timeout_ms, options_.stall_timeout_ms, options_.max_idle_connections,
                        options_.ca_file}) {
  signing_.region = options_.region;
  signing_.service = "s3";
  signing_.s3 = true;
}

HttpRequest S3Client::signed_request(const S3Call& call, std::time_t now) const {
  std::string path = call.key.empty() ? endpoint_.bucket_path() : endpoint_.object_path(call.key);
  std::string query = encode_query(call.query);
  // TLS already protects the body over https, where hashing 64 MiB segments
  // is wasted CPU; plain http always signs the hash.
  std::string payload_hash =
      endpoint_.https() && options_.unsigned_payload_over_https ? std::string(kUnsignedPayload) : sha256_hex(call.body);
  SignableRequest sreq{call.method, path, query, call.headers, std::move(payload_hash)};
  sreq.headers.push_back({"Host", endpoint_.authority});
  SigningResult signature = sign(&sreq, options_.credentials, now, signing_);
  HttpRequest req{call.method, endpoint_.url(path, query), std::move(sreq.headers), call.body};
  req.headers.push_back({"Authorization", signature.authorization});
  return req;
}

Status S3Client::execute(const S3Call& call, HttpResponse* response, int* attempts) {
  using namespace std::chrono;
  auto log = log::get("s3");
  Status st;
  int attempt = 0;
  const auto started = steady_clock::now();
  const bool bounded = options_.operation_timeout_ms > 0;
  const auto deadline = started + milliseconds(options_.operation_timeout_ms);
  auto left_ms = [&] { return duration_cast<milliseconds>(deadline - steady_clock::now()).count(); };
  bool out_of_time = false;
  for (;;) {
    ++attempt;
    uint64_t timeout_ms =
        attempt_timeout_ms(options_.request_timeout_ms, std::max<uint64_t>(call.body.size(), call.answer_bytes));
    if (bounded)
      timeout_ms = static_cast<uint64_t>(std::clamp<int64_t>(left_ms(), 1, static_cast<int64_t>(timeout_ms)));
    // Signed anew each time: the signature covers the time, and S3 refuses
    // one older than 15 minutes.
    HttpRequest req = signed_request(call, std::time(nullptr));
    if (log->should_log(spdlog::level::debug)) {
      std::string auth;
      for (const auto& h : req.headers) {
        if (h.name == "Authorization") auth = redact_authorization(h.value);
      }
      log->debug("S3 request op={} method={} url={} authorization=\"{}\" attempt={}", call.op, call.method, req.url,
                 auth, attempt);
    }

    metrics_.count(call.kind);
    if (attempt > 1) metrics_.retries.fetch_add(1, std::memory_order_relaxed);
    metrics_.bytes_up.fetch_add(call.body.size(), std::memory_order_relaxed);
    st = http_.perform(req, response, timeout_ms);
    if (st.ok()) {
      metrics_.bytes_down.fetch_add(response->body.size(), std::memory_order_relaxed);
      if (response->status >= 200 && response->status < 300) break;
      st = s3_status(call.op, endpoint_.bucket, call.key, *response);
    }
    bool retry = st.is(Status::Code::kUnavailable) && attempt < retry_.max_attempts;
    if (!retry) break;
    uint32_t wait_ms = retry_.backoff_ms(attempt);
    // No attempt starts past the deadline, nor one left too little to finish.
    if (bounded && left_ms() < static_cast<int64_t>(wait_ms) + 100) {
      out_of_time = true;
      break;
    }
    log->warn("S3 retry op={} key={} attempt={}/{} wait_ms={} error={}", call.op, log::quote(call.key), attempt,
              retry_.max_attempts, wait_ms, log::quote(st.message()));
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  }
  if (attempts != nullptr) *attempts = attempt;
  if (!st.ok()) {
    // Answers the caller expects (404 on remove, 416 past the end, 412 on a
    // conditional put) are not storage errors; the caller decides.
    bool expected = response->status == 404 || response->status == 416 || response->status == 412;
    if (!expected) metrics_.errors.fetch_add(1, std::memory_order_relaxed);
    if (st.is(Status::Code::kUnavailable) && (attempt > 1 || out_of_time)) {
      const auto took = duration_cast<milliseconds>(steady_clock::now() - started).count();
      return Status::Unavailable(
          st.message() + " (after " + std::to_string(attempt) + " attempts in " + std::to_string(took) + " ms" +
          (out_of_time ? ", past its deadline of " + std::to_string(options_.operation_timeout_ms) + " ms"
                       : std::string()) +
          ")");
    }
  }
  return st;
}

}  // namespace portalbd::s3
