// The project's S3 requests against botocore's, byte for byte: URL (key and
// query encoding) and Authorization (canonical request, signature), over the
// table tests/integration/sigv4_botocore.py makes. The committed table is
// tests/data/sigv4/botocore-s3.json; test_s3_sigv4_botocore.sh recomputes it
// with the installed botocore and passes it in S3_BOTOCORE_TABLE.
#include <doctest/doctest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/store/s3/s3_client.h"

namespace fs = std::filesystem;
using namespace portalbd::s3;

namespace {

fs::path table_path() {
  if (const char* env = std::getenv("S3_BOTOCORE_TABLE")) return env;
  if (const char* data = std::getenv("PORTALBD_TEST_DATA")) return fs::path(data) / "sigv4/botocore-s3.json";
  fs::path rel = "tests/data/sigv4/botocore-s3.json";
  if (fs::exists(rel)) return rel;
  return fs::path(__FILE__).parent_path() / "../../.." / rel;
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

TEST_SUITE("s3.sigv4") {
  TEST_CASE("S3 requests signed like botocore, byte for byte") {
    fs::path path = table_path();
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "botocore table not found at " << path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    auto table = nlohmann::json::parse(ss.str());
    std::tm tm{};
    std::istringstream ts(table["timestamp"].get<std::string>());
    ts >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
    std::time_t now = timegm(&tm);

    int checked = 0;
    for (const auto& row : table["cases"]) {
      const auto& c = row["input"];
      const auto& ep = c["endpoint"];
      INFO("case " << c["name"].get<std::string>());
      S3Options o;
      o.bucket = ep["bucket"];
      o.region = ep["region"];
      o.credentials = {table["credentials"]["access_key_id"], table["credentials"]["secret_access_key"],
                       c.value("session_token", "")};
      Endpoint endpoint;
      endpoint.scheme = ep["scheme"];
      endpoint.authority = ep["authority"];
      endpoint.bucket = ep["bucket"];
      endpoint.path_style = ep["path_style"];
      S3Client client(o, endpoint);

      std::string body = c["body"];
      S3Call call;
      call.method = c["method"];
      call.key = c["key"];
      for (const auto& q : c["query"]) call.query.emplace_back(q[0], q[1]);
      for (const auto& h : c["headers"]) call.headers.push_back({h[0], h[1]});
      call.body = bytes_of(body);
      HttpRequest req = client.signed_request(call, now);

      auto header = [&](const std::string& name) {
        for (const auto& h : req.headers) {
          if (h.name == name) return h.value;
        }
        return std::string();
      };
      CHECK(req.url == row["botocore"]["url"].get<std::string>());
      CHECK(header("Authorization") == row["botocore"]["authorization"].get<std::string>());
      CHECK(header("x-amz-content-sha256") == row["botocore"]["x_amz_content_sha256"].get<std::string>());
      ++checked;
    }
    CHECK(checked >= 60);
    MESSAGE(checked << " S3 requests compared with botocore " << table["botocore_version"].get<std::string>());
  }
}
