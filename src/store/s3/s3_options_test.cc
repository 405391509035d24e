#include "src/store/s3/s3_options.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "src/store/s3/aws_config_file.h"
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

// A file under the temp directory, removed when the guard goes.
struct TempFile {
  std::filesystem::path path;
  TempFile(const std::string& tag, const std::string& text)
      : path(std::filesystem::temp_directory_path() / ("pbd-" + tag + "-" + std::to_string(::getpid()))) {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

// Sets (or with nullptr unsets) a process environment variable and puts the
// old value back when the guard goes.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(std::string n, const char* value) : name(std::move(n)), old(process_env(name)) {
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }
  ~ScopedEnv() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

const char* kAwsConfig =
    "[default]\nregion = eu-west-1\n"
    "[profile minio]\nregion=eu-central-2\nendpoint_url = http://127.0.0.1:9000/\n"
    "s3 =\n  endpoint_url = http://nested.invalid\n  addressing_style = path\n"
    "[sso-session corp]\nregion = ap-south-1\n"
    "[bare]\nregion = us-west-2\n";

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
    const char* ini =
        "# comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key=S1\n"
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
    auto o = s3_options_from_url("s3://bkt",
                                 fake_env({{"AWS_SHARED_CREDENTIALS_FILE", path.string()}, {"AWS_PROFILE", "work"}}));
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

  TEST_CASE("AWS config file: [default] and [profile NAME] sections") {
    auto d = parse_aws_config_ini(kAwsConfig, "default", "test");
    REQUIRE(d.ok());
    CHECK(d->region == "eu-west-1");
    CHECK(d->endpoint_url.empty());
    auto m = parse_aws_config_ini(kAwsConfig, "minio", "test");
    REQUIRE(m.ok());
    CHECK(m->region == "eu-central-2");
    CHECK(m->endpoint_url == "http://127.0.0.1:9000/");  // the nested s3 block does not override it
    // Neither an sso-session nor a bare [NAME] (credentials-file spelling) is a profile here.
    CHECK(parse_aws_config_ini(kAwsConfig, "corp", "test").status().is(portalbd::Status::Code::kNotFound));
    CHECK(parse_aws_config_ini(kAwsConfig, "bare", "test").status().is(portalbd::Status::Code::kNotFound));
    CHECK(load_aws_config_file("/nonexistent/config", "default").status().is(portalbd::Status::Code::kNotFound));
  }

  TEST_CASE("region precedence: URL > AWS_REGION > AWS_DEFAULT_REGION > config file > us-east-1") {
    TempFile config("awsconfig", kAwsConfig);
    auto env = [&](std::map<std::string, std::string> extra) {
      extra["AWS_CONFIG_FILE"] = config.path.string();
      return fake_env(with_keys(std::move(extra)));
    };
    auto from_file = s3_options_from_url("s3://bkt", env({}));
    REQUIRE(from_file.ok());
    CHECK(from_file->region == "eu-west-1");
    CHECK(from_file->endpoint.empty());

    auto profile = s3_options_from_url("s3://bkt", env({{"AWS_PROFILE", "minio"}}));
    REQUIRE(profile.ok());
    CHECK(profile->region == "eu-central-2");
    CHECK(profile->endpoint == "http://127.0.0.1:9000");
    CHECK(s3_options_from_url("s3://bkt?profile=minio", env({}))->region == "eu-central-2");

    CHECK(s3_options_from_url("s3://bkt", env({{"AWS_DEFAULT_REGION", "r-default"}}))->region == "r-default");
    CHECK(
        s3_options_from_url("s3://bkt", env({{"AWS_REGION", "r-env"}, {"AWS_DEFAULT_REGION", "r-default"}}))->region ==
        "r-env");
    CHECK(s3_options_from_url("s3://bkt?region=r-url", env({{"AWS_REGION", "r-env"}}))->region == "r-url");
    // An empty variable counts as unset, as for the AWS CLI.
    CHECK(s3_options_from_url("s3://bkt", env({{"AWS_REGION", ""}}))->region == "eu-west-1");

    // Endpoint: the environment wins over the file; the CLI's opt-out is honoured.
    auto env_endpoint =
        s3_options_from_url("s3://bkt", env({{"AWS_PROFILE", "minio"}, {"AWS_ENDPOINT_URL", "http://127.0.0.1:1"}}));
    CHECK(env_endpoint->endpoint == "http://127.0.0.1:1");
    CHECK(env_endpoint->region == "eu-central-2");
    CHECK(s3_options_from_url("s3://bkt",
                              env({{"AWS_PROFILE", "minio"}, {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"}}))
              ->endpoint.empty());

    // A profile missing from the file, or no file at all: the default region.
    CHECK(s3_options_from_url("s3://bkt", env({{"AWS_PROFILE", "absent"}}))->region == "us-east-1");
    CHECK(s3_options_from_url("s3://bkt", fake_env(with_keys({{"AWS_CONFIG_FILE", "/nonexistent/config"}})))->region ==
          "us-east-1");
  }

  TEST_CASE("AWS config file found through the process environment (~/.aws/config)") {
    auto home = std::filesystem::temp_directory_path() / ("pbd-home-" + std::to_string(::getpid()));
    std::filesystem::create_directories(home / ".aws");
    { std::ofstream(home / ".aws" / "config") << kAwsConfig; }
    {
      ScopedEnv h("HOME", home.c_str()), c("AWS_CONFIG_FILE", nullptr), r("AWS_REGION", nullptr),
          dr("AWS_DEFAULT_REGION", nullptr), p("AWS_PROFILE", "minio"), e1("AWS_ENDPOINT_URL", nullptr),
          e2("AWS_ENDPOINT_URL_S3", nullptr), i("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", nullptr),
          k("AWS_ACCESS_KEY_ID", "AKID"), s("AWS_SECRET_ACCESS_KEY", "SECRET");
      auto o = s3_options_from_url("s3://bkt");
      REQUIRE(o.ok());
      CHECK(o->region == "eu-central-2");
      CHECK(o->endpoint == "http://127.0.0.1:9000");
      ScopedEnv r2("AWS_REGION", "r-env");
      CHECK(s3_options_from_url("s3://bkt")->region == "r-env");
    }
    std::filesystem::remove_all(home);
  }
}
