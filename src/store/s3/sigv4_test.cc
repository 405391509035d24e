// SigV4 signing against the AWS test suite (tests/data/sigv4, generic dialect)
// and against the S3 documentation's worked examples (S3 dialect).
#include "src/store/s3/sigv4.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/store/s3/uri.h"

namespace fs = std::filesystem;
using namespace portalbd::s3;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The vectors live in tests/data/sigv4 of the source tree; tests run from the
// top (run_all.sh) or from anywhere given PORTALBD_TEST_DATA.
fs::path sigv4_dir() {
  if (const char* env = std::getenv("PORTALBD_TEST_DATA")) return fs::path(env) / "sigv4";
  fs::path here = fs::path(__FILE__).parent_path();  // src/store/s3 (relative when built by make)
  for (fs::path candidate : {fs::path("tests/data/sigv4"), here / "../../../tests/data/sigv4"}) {
    if (fs::is_directory(candidate)) return candidate;
  }
  return "tests/data/sigv4";
}

struct ParsedRequest {
  SignableRequest req;
  std::string body;
};

// request.txt: "METHOD PATH HTTP/1.1", "Name:value" lines (a line starting
// with whitespace continues the previous value), a blank line, the body.
ParsedRequest parse_request(const std::string& text) {
  ParsedRequest out;
  size_t eol = text.find('\n');
  std::string first = text.substr(0, eol);
  size_t sp = first.find(' ');
  size_t proto = first.rfind(" HTTP/");
  out.req.method = first.substr(0, sp);
  std::string target = first.substr(sp + 1, proto - sp - 1);  // paths may hold spaces
  size_t q = target.find('?');
  out.req.path = target.substr(0, q);
  if (q != std::string::npos) out.req.query = target.substr(q + 1);
  size_t pos = eol == std::string::npos ? text.size() : eol + 1;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      if (pos < text.size()) out.body = text.substr(pos);
      break;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !out.req.headers.empty()) {
      out.req.headers.back().value += "\n" + line;
      continue;
    }
    size_t colon = line.find(':');
    out.req.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
  }
  return out;
}

std::time_t parse_iso8601(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return timegm(&tm);
}

// The query of the request line of query-signed-request.txt.
std::string expected_query(const std::string& signed_request) {
  std::string first = signed_request.substr(0, signed_request.find('\n'));
  size_t q = first.find('?');
  size_t proto = first.rfind(" HTTP/");
  return q == std::string::npos ? "" : first.substr(q + 1, proto - q - 1);
}

// The Authorization line of header-signed-request.txt.
std::string expected_authorization(const std::string& signed_request) {
  std::istringstream in(signed_request);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Authorization:", 0) == 0) return line.substr(14);
  }
  return {};
}

}  // namespace

TEST_SUITE("s3.sigv4") {
  TEST_CASE("every header-signing vector of the AWS SigV4 test suite") {
    fs::path dir = sigv4_dir();
    REQUIRE_MESSAGE(fs::is_directory(dir), "test vectors not found at " << dir.string());
    int cases = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_directory()) continue;
      const fs::path& d = entry.path();
      INFO("vector " << d.filename().string());
      auto ctx = nlohmann::json::parse(slurp(d / "context.json"));
      ParsedRequest pr = parse_request(slurp(d / "request.txt"));
      Credentials creds{ctx["credentials"]["access_key_id"], ctx["credentials"]["secret_access_key"],
                        ctx["credentials"].value("token", "")};
      SigningOptions opts;
      opts.s3 = false;
      opts.region = ctx["region"];
      opts.service = ctx["service"];
      opts.normalize_path = ctx.value("normalize", true);
      opts.add_content_sha256_header = ctx.value("sign_body", false);
      opts.sign_session_token = !ctx.value("omit_session_token", false);
      pr.req.payload_hash = sha256_hex(pr.body);
      SigningResult r = sign(&pr.req, creds, parse_iso8601(ctx["timestamp"]), opts);
      CHECK(r.canonical_request == slurp(d / "header-canonical-request.txt"));
      CHECK(r.string_to_sign == slurp(d / "header-string-to-sign.txt"));
      CHECK(r.signature == slurp(d / "header-signature.txt"));
      CHECK(r.authorization == expected_authorization(slurp(d / "header-signed-request.txt")));
      ++cases;
    }
    CHECK(cases >= 38);
    MESSAGE(cases << " SigV4 header-signing vectors checked");
  }

  TEST_CASE("every query-signing (presigned URL) vector of the AWS SigV4 test suite") {
    fs::path dir = sigv4_dir();
    REQUIRE_MESSAGE(fs::is_directory(dir), "test vectors not found at " << dir.string());
    int cases = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_directory()) continue;
      const fs::path& d = entry.path();
      INFO("vector " << d.filename().string());
      auto ctx = nlohmann::json::parse(slurp(d / "context.json"));
      ParsedRequest pr = parse_request(slurp(d / "request.txt"));
      Credentials creds{ctx["credentials"]["access_key_id"], ctx["credentials"]["secret_access_key"],
                        ctx["credentials"].value("token", "")};
      SigningOptions opts;
      opts.s3 = false;
      opts.region = ctx["region"];
      opts.service = ctx["service"];
      opts.normalize_path = ctx.value("normalize", true);
      opts.sign_session_token = !ctx.value("omit_session_token", false);
      pr.req.payload_hash = sha256_hex(pr.body);
      SigningResult r = presign(&pr.req, creds, parse_iso8601(ctx["timestamp"]), ctx["expiration_in_seconds"], opts);
      CHECK(r.canonical_request == slurp(d / "query-canonical-request.txt"));
      CHECK(r.string_to_sign == slurp(d / "query-string-to-sign.txt"));
      CHECK(r.signature == slurp(d / "query-signature.txt"));
      std::string want_query = expected_query(slurp(d / "query-signed-request.txt"));
      // The suite writes a raw UTF-8 query as given; compare what is appended.
      CHECK(pr.req.query.substr(pr.req.query.find("X-Amz-Algorithm")) ==
            want_query.substr(want_query.find("X-Amz-Algorithm")));
      ++cases;
    }
    CHECK(cases >= 38);
  }

  // The worked examples of the S3 SigV4 documentation ("Signature Calculations
  // for the Authorization Header: Transferring Payload in a Single Chunk").
  TEST_CASE("S3 dialect: the S3 documentation examples") {
    Credentials creds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
    SigningOptions opts;  // S3 defaults
    std::time_t t = parse_iso8601("2013-05-24T00:00:00Z");

    SUBCASE("GET object with Range") {
      SignableRequest req{"GET",
                          "/test.txt",
                          "",
                          {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}},
                          std::string(kEmptyPayloadHash)};
      SigningResult r = sign(&req, creds, t, opts);
      CHECK(r.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
      CHECK(r.authorization ==
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    }
    SUBCASE("PUT object with a '$' in the key") {
      SignableRequest req{"PUT",
                          "/" + uri_encode_path("test$file.text"),
                          "",
                          {{"Host", "examplebucket.s3.amazonaws.com"},
                           {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                           {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                          sha256_hex(std::string_view("Welcome to Amazon S3."))};
      SigningResult r = sign(&req, creds, t, opts);
      CHECK(req.path == "/test%24file.text");
      CHECK(r.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    }
    SUBCASE("GET bucket lifecycle (a query name without a value)") {
      SignableRequest req{
          "GET", "/", "lifecycle", {{"Host", "examplebucket.s3.amazonaws.com"}}, std::string(kEmptyPayloadHash)};
      SigningResult r = sign(&req, creds, t, opts);
      CHECK(r.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    }
    SUBCASE("list objects (query sorted)") {
      SignableRequest req{"GET",
                          "/",
                          "prefix=J&max-keys=2",
                          {{"Host", "examplebucket.s3.amazonaws.com"}},
                          std::string(kEmptyPayloadHash)};
      SigningResult r = sign(&req, creds, t, opts);
      CHECK(r.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    }
  }

  TEST_CASE("S3 dialect keeps the path as sent; generic normalizes and encodes again") {
    SigningOptions s3opts;
    SigningOptions generic;
    generic.s3 = false;
    CHECK(canonical_uri("/bucket/a%20b//./c", s3opts) == "/bucket/a%20b//./c");
    CHECK(canonical_uri("/bucket/a%20b//./c", generic) == "/bucket/a%2520b/c");
    CHECK(canonical_uri("", s3opts) == "/");
  }

  TEST_CASE("S3 key encoding: segments encoded, '/' kept, unreserved kept") {
    CHECK(uri_encode_path("a b/c+d=e~f_g.h-i") == "a%20b/c%2Bd%3De~f_g.h-i");
    CHECK(uri_encode_path("caf\xc3\xa9/\xe1\x88\xb4") == "caf%C3%A9/%E1%88%B4");
    CHECK(uri_encode("a/b") == "a%2Fb");
    CHECK(uri_decode("a%2Fb%zz%4") == "a/b%zz%4");
    CHECK(encode_query({{"prefix", "a b/"}, {"delimiter", ""}}) == "prefix=a%20b%2F&delimiter=");
  }

  TEST_CASE("canonical query: sorted by name then value, empty values kept") {
    CHECK(canonical_query("b=2&a=&a=1&c") == "a=&a=1&b=2&c=");
    CHECK(canonical_query("list-type=2&continuation-token=1%2Fx%3D%3D") ==
          "continuation-token=1%2Fx%3D%3D&list-type=2");
    CHECK(canonical_query("") == "");
  }

  TEST_CASE("redaction keeps the credential scope, drops the signature") {
    std::string auth =
        "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=abcdef";
    CHECK(redact_authorization(auth) ==
          "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, "
          "Signature=<redacted>");
  }
}
