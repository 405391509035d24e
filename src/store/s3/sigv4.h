// AWS Signature Version 4: turns a request into its Authorization header.
//
//   canonical request = METHOD \n canonical URI \n canonical query \n
//                       canonical headers \n signed header names \n payload hash
//   string to sign    = "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(SHA256(canonical request))
//   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")
//   signature         = hex(HMAC(signing key, string to sign))
//
// Two dialects share the algorithm. S3 (SigningOptions::s3 = true) signs the
// path exactly as sent, already encoded once by uri_encode_path(), and never
// normalizes it (a key may hold "//" or "./"). Every other service (and the
// generic AWS test suite) normalizes the path (removes "." and ".." segments,
// collapses "//") and encodes the wire path a second time.
//
// sign() adds X-Amz-Date, X-Amz-Content-Sha256 and X-Amz-Security-Token to the
// request and returns the Authorization value; it never logs. The secret key
// lives only in Credentials, which the caller owns.
//
// Pure functions on values; thread-safe.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "src/store/s3/crypto.h"

namespace portalbd::s3 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
  bool empty() const { return access_key_id.empty() && secret_access_key.empty(); }
};

struct HttpHeader {
  std::string name;
  std::string value;
};

// A request as it goes on the wire.
struct SignableRequest {
  std::string method;               // "GET"
  std::string path;                 // as sent: "/bucket/a%20b" (never empty; "/" at least)
  std::string query;                // as sent, without '?': "list-type=2&prefix=a%2F"
  std::vector<HttpHeader> headers;  // must hold Host; names in any case
  std::string payload_hash;         // hex SHA-256 of the body, or kUnsignedPayload
};

inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view kEmptyPayloadHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct SigningOptions {
  std::string region = "us-east-1";
  std::string service = "s3";
  bool s3 = true;                         // S3 dialect (see the header comment)
  bool normalize_path = true;             // generic dialect only
  bool add_content_sha256_header = true;  // S3 requires it; generic vectors may omit it
  bool sign_session_token = true;         // false: token header added after signing
};

// What sign() computed; the intermediate strings are kept for tests and for
// debugging SignatureDoesNotMatch (they hold no secret).
struct SigningResult {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;
  std::string authorization;  // the Authorization header value
};

// "20150830T123600Z" for a UTC time.
std::string amz_date(std::time_t t);

std::string canonical_uri(std::string_view wire_path, const SigningOptions& opts);
std::string canonical_query(std::string_view wire_query);
// Fills *signed_headers ("host;x-amz-date") and returns the header block, each
// line "name:value\n": names lowercased and sorted, values trimmed with inner
// whitespace runs collapsed, repeated names joined with ','.
std::string canonical_headers(const std::vector<HttpHeader>& headers, std::string* signed_headers);
std::string canonical_request(const SignableRequest& req, const SigningOptions& opts);
std::string credential_scope(std::string_view date8, const SigningOptions& opts);
Sha256Digest signing_key(std::string_view secret, std::string_view date8, const SigningOptions& opts);

// REQUIRES: req->headers holds Host; creds non-empty.
// Adds the x-amz-* headers to req->headers, then signs. `now` is UTC seconds.
SigningResult sign(SignableRequest* req, const Credentials& creds, std::time_t now, const SigningOptions& opts);

// Query signing (a presigned URL): appends X-Amz-Algorithm, -Credential,
// -Date, -SignedHeaders, -Expires, (-Security-Token) and -Signature to
// req->query; the headers are signed but unchanged. Lets a tool hand out a
// time-limited URL to a snapshot object without credentials.
// REQUIRES: req->headers holds Host; creds non-empty.
SigningResult presign(SignableRequest* req, const Credentials& creds, std::time_t now, int expires_s,
                      const SigningOptions& opts);

// "AWS4-HMAC-SHA256 Credential=AKID/..., SignedHeaders=..., Signature=<redacted>"
// for log lines: the signature is a credential for 15 minutes.
std::string redact_authorization(std::string_view authorization);

}  // namespace portalbd::s3
