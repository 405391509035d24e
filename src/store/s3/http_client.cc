#include "src/store/s3/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>

namespace portalbd::s3 {

namespace {

// curl_global_init is not thread-safe in every libcurl build; do it once,
// before the first handle, and never clean up (the process owns it).
void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

// State the callbacks write into, for one perform().
struct Transfer {
  std::span<const std::byte> body;
  size_t body_pos = 0;
  HttpResponse* response = nullptr;
  // The stall deadline (HttpOptions::stall_timeout_ms): when a byte last moved.
  std::chrono::milliseconds stall_timeout{0};
  curl_off_t last_up = -1, last_down = -1;
  std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();
  bool stalled = false;
};

// Called by curl about once a second, and as bytes move. Curl's own
// low-speed limit averages over several seconds, so a burst (a PUT body the
// kernel buffers at once) would hide a stall for that long; this ends the
// request stall_timeout after the last byte moved, whichever way.
int progress_cb(void* userp, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) noexcept {
  auto* t = static_cast<Transfer*>(userp);
  const auto now = std::chrono::steady_clock::now();
  if (dlnow != t->last_down || ulnow != t->last_up) {
    t->last_down = dlnow;
    t->last_up = ulnow;
    t->last_progress = now;
    return 0;
  }
  if (now - t->last_progress >= t->stall_timeout) {
    t->stalled = true;
    return 1;  // CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

size_t write_cb(char* data, size_t size, size_t nmemb, void* userp) noexcept {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = size * nmemb;
  try {
    auto* p = reinterpret_cast<const std::byte*>(data);
    t->response->body.insert(t->response->body.end(), p, p + n);
  } catch (...) {
    return 0;  // out of memory: curl aborts the transfer with CURLE_WRITE_ERROR
  }
  return n;
}

size_t read_cb(char* buffer, size_t size, size_t nitems, void* userp) noexcept {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = std::min(size * nitems, t->body.size() - t->body_pos);
  std::memcpy(buffer, t->body.data() + t->body_pos, n);
  t->body_pos += n;
  return n;
}

// curl may rewind the upload when it retries on a fresh connection (e.g. the
// pooled connection was closed by the server); support it.
int seek_cb(void* userp, curl_off_t offset, int origin) noexcept {
  auto* t = static_cast<Transfer*>(userp);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > t->body.size()) return CURL_SEEKFUNC_FAIL;
  t->body_pos = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t header_cb(char* data, size_t size, size_t nitems, void* userp) noexcept {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = size * nitems;
  try {
    std::string line(data, n);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
      t->response->headers.clear();  // a new status line (after 100 Continue or a redirect)
      return n;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) return n;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    size_t v = line.find_first_not_of(" \t", colon + 1);
    std::string value = v == std::string::npos ? "" : line.substr(v);
    if (name == "content-length") {
      // Reserve the body once instead of growing it through many copies.
      unsigned long long len = std::strtoull(value.c_str(), nullptr, 10);
      if (len > 0 && len < (1ull << 31)) t->response->body.reserve(static_cast<size_t>(len));
    }
    t->response->headers.push_back({std::move(name), std::move(value)});
  } catch (...) {
    return 0;
  }
  return n;
}

Status transport_error(CURLcode code, const char* errbuf, const HttpRequest& req, const Transfer& t) {
  if (t.stalled) {
    return Status::Unavailable(req.method + " " + req.url + ": no data moved for " +
                               std::to_string(t.stall_timeout.count()) + " ms (storage.stall_timeout_ms)");
  }
  std::string what = req.method + " " + req.url + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(code));
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_AGAIN: return Status::Unavailable(what);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return Status::InvalidArgument(what);
    default: return Status::IOError(what);
  }
}

}  // namespace

struct HttpClient::Easy {
  std::unique_ptr<CURL, EasyDeleter> handle;
};

std::string HttpResponse::header(const std::string& lname) const {
  for (const auto& h : headers) {
    if (h.name == lname) return h.value;
  }
  return {};
}

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) { global_init_once(); }

HttpClient::~HttpClient() = default;

size_t HttpClient::handles_created() const {
  MutexLock lock(&mu_);
  return created_;
}

std::unique_ptr<HttpClient::Easy> HttpClient::acquire() {
  {
    MutexLock lock(&mu_);
    if (!idle_.empty()) {
      auto e = std::move(idle_.back());
      idle_.pop_back();
      return e;
    }
    ++created_;
  }
  auto e = std::make_unique<Easy>();
  e->handle.reset(curl_easy_init());
  return e;
}

void HttpClient::release(std::unique_ptr<Easy> easy) {
  MutexLock lock(&mu_);
  if (idle_.size() < options_.max_idle) idle_.push_back(std::move(easy));
}

Status HttpClient::perform(const HttpRequest& req, HttpResponse* resp, uint64_t timeout_ms) {
  auto easy = acquire();
  CURL* c = easy->handle.get();
  if (c == nullptr) return Status::IOError("curl_easy_init failed");
  // reset() clears options but keeps the connection cache: the point of pooling.
  curl_easy_reset(c);
  *resp = HttpResponse();
  Transfer t;
  t.body = req.body;
  t.response = resp;
  t.stall_timeout = std::chrono::milliseconds(std::max<uint32_t>(1, options_.stall_timeout_ms));
  char errbuf[CURL_ERROR_SIZE] = {0};

  Slist headers;
  auto add = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (next != nullptr) {
      (void)headers.release();
      headers.reset(next);
    }
  };
  for (const auto& h : req.headers) add(h.name + ": " + h.value);
  add("Expect:");  // no 100-continue round trip before every PUT
  if (req.method == "POST" && std::none_of(req.headers.begin(), req.headers.end(), [](const HttpHeader& h) {
        return strcasecmp(h.name.c_str(), "content-type") == 0;
      })) {
    add("Content-Type:");  // curl would add a form content type
  }

  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);    // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);  // keys may hold "./" or "../": send what was signed
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  uint64_t connect_ms = options_.connect_timeout_ms;
  if (timeout_ms > 0) connect_ms = std::min(connect_ms, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));  // 0: none
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);

  if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
  } else if (req.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, reinterpret_cast<const char*>(req.body.data()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }

  CURLcode rc = curl_easy_perform(c);
  Status st;
  if (rc != CURLE_OK) {
    st = transport_error(rc, errbuf, req, t);
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
  }
  // Drop the pointers into this call's stack before the handle goes back.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, nullptr);
  if (rc == CURLE_OK) {
    release(std::move(easy));
  }
  // After a transport error the handle's connection may be half-dead; let it
  // go rather than hand it to the next request.
  return st;
}

}  // namespace portalbd::s3
