#include "src/store/s3/s3_options.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

#include "src/store/s3/credentials_file.h"
#include "src/store/s3/endpoint.h"

using namespace portalbd::s3;

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const std::map<std::string, std::string> kKeys = {{"AWS_ACCESS_KEY_ID", "AKID"}, {"AWS_SECRET_ACCESS_KEY", "SECRET"}};

std::map<std::string, std::string> with_keys(std::map<std::string, std::string> m) {
  m.insert(kKeys.begin(), kKeys.end());
  return m;
}

}  // namespace

TEST_SUITE("s3.options") {
  TEST_CASE("URL, environment and defaults") {
    auto o = s3_options_from_url("s3://my-bucket/vol/one/", fake_env(kKeys));
    REQUIRE(o.ok());
    CHECK(o->bucket == "my-bucket");
    CHECK(o->prefix == "vol/one");
    CHECK(o->region == "us-east-1");
    CHECK(o->endpoint.empty());
    CHECK(o->credentials.access_key_id == "AKID");
    CHECK(o->describe().find("SECRET") == std::string::npos);

    auto e = s3_options_from_url("s3://b12/p", fake_env(with_keys({{"AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"},
                                                                   {"AWS_DEFAULT_REGION", "eu-west-1"},
                                                                   {"AWS_SESSION_TOKEN", "TOK"}})));
    REQUIRE(e.ok());
    CHECK(e->endpoint == "http://127.0.0.1:9000");
    CHECK(e->region == "eu-west-1");
    CHECK(e->credentials.session_token == "TOK");

    auto q = s3_options_from_url("s3://bkt?endpoint=http%3A%2F%2Flocalhost%3A1&region=r1&addressing=virtual",
                                 fake_env(with_keys({{"AWS_REGION", "ignored"}})));
    REQUIRE(q.ok());
    CHECK(q->endpoint == "http://localhost:1");
    CHECK(q->region == "r1");
    CHECK(q->addressing == Addressing::kVirtual);
    CHECK(q->prefix.empty());
  }

  TEST_CASE("bad URLs and missing credentials are clear errors") {
    CHECK(s3_options_from_url("s3://", fake_env(kKeys)).status().is(portalbd::Status::Code::kInvalidArgument));
    CHECK_FALSE(s3_options_from_url("s3://UPPER/x", fake_env(kKeys)).ok());
    CHECK_FALSE(s3_options_from_url("s3://bkt?bogus=1", fake_env(kKeys)).ok());
    CHECK_FALSE(s3_options_from_url("s3://bkt", fake_env(with_keys({{"AWS_S3_ADDRESSING_STYLE", "diagonal"}}))).ok());
    auto none = s3_options_from_url("s3://bkt", fake_env({{"HOME", "/nonexistent"}}));
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().message().find("no S3 credentials") != std::string::npos);
  }

  TEST_CASE("shared credentials file with profiles") {
    const char* ini = "# comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key=S1\n"
                      "[profile work]\n aws_access_key_id=AK2 \naws_secret_access_key = S2\naws_session_token=T2\n";
    auto d = parse_credentials_ini(ini, "default", "test");
    REQUIRE(d.ok());
    CHECK(d->access_key_id == "AK1");
    CHECK(d->secret_access_key == "S1");
    auto w = parse_credentials_ini(ini, "work", "test");
    REQUIRE(w.ok());
    CHECK(w->session_token == "T2");
    CHECK(parse_credentials_ini(ini, "absent", "test").status().is(portalbd::Status::Code::kNotFound));

    auto path = std::filesystem::temp_directory_path() / ("pbd-creds-" + std::to_string(::getpid()));
    { std::ofstream(path) << ini; }
    auto o = s3_options_from_url("s3://bkt", fake_env({{"AWS_SHARED_CREDENTIALS_FILE", path.string()},
                                                       {"AWS_PROFILE", "work"}}));
    std::filesystem::remove(path);
    REQUIRE(o.ok());
    CHECK(o->credentials.access_key_id == "AK2");
  }

  TEST_CASE("addressing: virtual for AWS, path for custom endpoints and IPs") {
    S3Options o;
    o.bucket = "bkt";
    o.region = "eu-west-1";
    auto aws = resolve_endpoint(o);
    REQUIRE(aws.ok());
    CHECK(aws->authority == "bkt.s3.eu-west-1.amazonaws.com");
    CHECK(aws->object_path("p/a b") == "/p/a%20b");
    CHECK(aws->url(aws->bucket_path(), "list-type=2") == "https://bkt.s3.eu-west-1.amazonaws.com/?list-type=2");

    o.endpoint = "http://127.0.0.1:4568";
    auto ip = resolve_endpoint(o);
    REQUIRE(ip.ok());
    CHECK(ip->path_style);
    CHECK(ip->authority == "127.0.0.1:4568");
    CHECK(ip->object_path("k+1") == "/bkt/k%2B1");
    CHECK(ip->bucket_path() == "/bkt");

    o.endpoint = "https://minio.example.com/base/";
    auto custom = resolve_endpoint(o);
    REQUIRE(custom.ok());
    CHECK(custom->path_style);
    CHECK(custom->object_path("k") == "/base/bkt/k");
    o.addressing = Addressing::kVirtual;
    CHECK(resolve_endpoint(o)->authority == "bkt.minio.example.com");

    o.endpoint = "http://127.0.0.1:1";
    CHECK_FALSE(resolve_endpoint(o).ok());  // virtual on an IP
    o.endpoint = "ftp://host";
    o.addressing = Addressing::kAuto;
    CHECK_FALSE(resolve_endpoint(o).ok());

    o.endpoint.clear();
    o.bucket = "dotted.bucket";
    CHECK(resolve_endpoint(o)->path_style);  // a wildcard certificate covers one label only
  }
}
