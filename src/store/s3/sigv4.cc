#include "src/store/s3/sigv4.h"

#include <algorithm>
#include <map>

#include "src/store/s3/uri.h"

namespace portalbd::s3 {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Trims and turns every inner run of whitespace (folded lines included) into
// one space, as the canonical header value requires.
std::string squash_spaces(std::string_view v) {
  std::string out;
  bool pending_space = false;
  for (char c : v) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

// RFC 3986 remove_dot_segments, plus collapsing empty segments ("//"), which
// the generic SigV4 dialect also requires. A trailing '/' is kept.
std::string normalize_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    start = end + 1;
  }
  std::string out;
  for (auto seg : parts) {
    out.push_back('/');
    out.append(seg);
  }
  if (out.empty()) return "/";
  if (path.back() == '/') out.push_back('/');
  return out;
}

void set_header(std::vector<HttpHeader>* headers, std::string name, std::string value) {
  std::string lname = lower(name);
  std::erase_if(*headers, [&](const HttpHeader& h) { return lower(h.name) == lname; });
  headers->push_back({std::move(name), std::move(value)});
}

}  // namespace

std::string amz_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_uri(std::string_view wire_path, const SigningOptions& opts) {
  if (wire_path.empty()) return "/";
  if (opts.s3) return std::string(wire_path);
  std::string path = opts.normalize_path ? normalize_path(wire_path) : std::string(wire_path);
  return uri_encode_path(path);
}

std::string canonical_query(std::string_view wire_query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start < wire_query.size()) {
    size_t end = wire_query.find('&', start);
    if (end == std::string_view::npos) end = wire_query.size();
    std::string_view part = wire_query.substr(start, end - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string_view name = part.substr(0, eq);
      std::string_view value = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
      // Decode first so that an already-encoded name is not encoded twice.
      params.emplace_back(uri_encode(uri_decode(name)), uri_encode(uri_decode(value)));
    }
    start = end + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out += name + "=" + value;
  }
  return out;
}

std::string canonical_headers(const std::vector<HttpHeader>& headers, std::string* signed_headers) {
  std::map<std::string, std::string> merged;  // sorted by lowercase name
  for (const auto& h : headers) {
    std::string name = lower(squash_spaces(h.name));
    std::string value = squash_spaces(h.value);
    auto [it, inserted] = merged.emplace(name, value);
    if (!inserted) it->second += "," + value;
  }
  std::string block;
  signed_headers->clear();
  for (const auto& [name, value] : merged) {
    block += name + ":" + value + "\n";
    if (!signed_headers->empty()) signed_headers->push_back(';');
    signed_headers->append(name);
  }
  return block;
}

std::string canonical_request(const SignableRequest& req, const SigningOptions& opts) {
  std::string signed_headers;
  std::string headers = canonical_headers(req.headers, &signed_headers);
  return req.method + "\n" + canonical_uri(req.path, opts) + "\n" + canonical_query(req.query) + "\n" + headers + "\n" +
         signed_headers + "\n" + req.payload_hash;
}

std::string credential_scope(std::string_view date8, const SigningOptions& opts) {
  return std::string(date8) + "/" + opts.region + "/" + opts.service + "/aws4_request";
}

Sha256Digest signing_key(std::string_view secret, std::string_view date8, const SigningOptions& opts) {
  std::string k_secret = "AWS4" + std::string(secret);
  auto as_key = [](const std::string& s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  Sha256Digest k = hmac_sha256(as_key(k_secret), date8);
  k = hmac_sha256(k, opts.region);
  k = hmac_sha256(k, opts.service);
  return hmac_sha256(k, "aws4_request");
}

SigningResult sign(SignableRequest* req, const Credentials& creds, std::time_t now, const SigningOptions& opts) {
  std::string date = amz_date(now);
  std::string date8 = date.substr(0, 8);
  set_header(&req->headers, "X-Amz-Date", date);
  if (opts.add_content_sha256_header) set_header(&req->headers, "x-amz-content-sha256", req->payload_hash);
  bool has_token = !creds.session_token.empty();
  if (has_token && opts.sign_session_token) set_header(&req->headers, "X-Amz-Security-Token", creds.session_token);

  SigningResult r;
  r.canonical_request = canonical_request(*req, opts);
  std::string scope = credential_scope(date8, opts);
  r.string_to_sign = "AWS4-HMAC-SHA256\n" + date + "\n" + scope + "\n" + sha256_hex(r.canonical_request);
  Sha256Digest key = signing_key(creds.secret_access_key, date8, opts);
  r.signature = hex(hmac_sha256(key, r.string_to_sign));
  std::string signed_headers;
  (void)canonical_headers(req->headers, &signed_headers);
  r.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + scope +
                    ", SignedHeaders=" + signed_headers + ", Signature=" + r.signature;
  // A token added after signing rides along unsigned (the generic
  // "post-sts-header-after" case); S3 always signs it.
  if (has_token && !opts.sign_session_token) set_header(&req->headers, "X-Amz-Security-Token", creds.session_token);
  return r;
}

SigningResult presign(SignableRequest* req, const Credentials& creds, std::time_t now, int expires_s,
                      const SigningOptions& opts) {
  std::string date = amz_date(now);
  std::string date8 = date.substr(0, 8);
  std::string scope = credential_scope(date8, opts);
  std::string signed_headers;
  (void)canonical_headers(req->headers, &signed_headers);
  bool has_token = !creds.session_token.empty();
  auto append = [&](const std::string& name, const std::string& value) {
    if (!req->query.empty()) req->query.push_back('&');
    req->query += uri_encode(name) + "=" + uri_encode(value);
  };
  append("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
  append("X-Amz-Credential", creds.access_key_id + "/" + scope);
  append("X-Amz-Date", date);
  append("X-Amz-SignedHeaders", signed_headers);
  append("X-Amz-Expires", std::to_string(expires_s));
  if (has_token && opts.sign_session_token) append("X-Amz-Security-Token", creds.session_token);

  SigningResult r;
  r.canonical_request = canonical_request(*req, opts);
  r.string_to_sign = "AWS4-HMAC-SHA256\n" + date + "\n" + scope + "\n" + sha256_hex(r.canonical_request);
  r.signature = hex(hmac_sha256(signing_key(creds.secret_access_key, date8, opts), r.string_to_sign));
  if (has_token && !opts.sign_session_token) append("X-Amz-Security-Token", creds.session_token);
  append("X-Amz-Signature", r.signature);
  return r;
}

std::string redact_authorization(std::string_view authorization) {
  size_t pos = authorization.find("Signature=");
  if (pos == std::string_view::npos) return "<redacted>";
  return std::string(authorization.substr(0, pos)) + "Signature=<redacted>";
}

}  // namespace portalbd::s3
