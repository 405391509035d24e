#include "src/util/base64.h"

#include <doctest/doctest.h>

namespace portalbd {

TEST_CASE("base64_decode: RFC 4648 test vectors, with and without padding") {
  CHECK(base64_decode("") == std::string());
  CHECK(base64_decode("Zg==") == std::string("f"));
  CHECK(base64_decode("Zm8=") == std::string("fo"));
  CHECK(base64_decode("Zm9v") == std::string("foo"));
  CHECK(base64_decode("Zm9vYg==") == std::string("foob"));
  CHECK(base64_decode("Zm9vYmE=") == std::string("fooba"));
  CHECK(base64_decode("Zm9vYmFy") == std::string("foobar"));
  CHECK(base64_decode("Zm9vYg") == std::string("foob"));
  CHECK(base64_decode("Zm9vYmE") == std::string("fooba"));
}

TEST_CASE("base64_decode: binary bytes and the output of base64(1)") {
  // head -c 32 /dev/urandom | base64: 44 characters and a newline.
  std::string bytes;
  for (int i = 0; i < 32; ++i) bytes.push_back(static_cast<char>(i * 37 + 200));
  auto decoded = base64_decode("yO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkM=\n");
  REQUIRE(decoded.has_value());
  CHECK(decoded->size() == 32);
  CHECK(*decoded == bytes);
  CHECK(base64_decode("+/+/") == std::string("\xfb\xff\xbf"));
}

TEST_CASE("base64_decode: refuses what is not base64") {
  CHECK_FALSE(base64_decode("Zm9v!").has_value());   // not in the alphabet
  CHECK_FALSE(base64_decode("Zm9v-_").has_value());  // the URL-safe alphabet is not this one
  CHECK_FALSE(base64_decode("Z").has_value());       // one digit holds no byte
  CHECK_FALSE(base64_decode("Zg=a").has_value());    // a digit after padding
  CHECK_FALSE(base64_decode("Zg=").has_value());     // padding short of a group
  CHECK_FALSE(base64_decode("Zh==").has_value());    // leftover bits set
  CHECK_FALSE(base64_decode("hunter2!").has_value());
}

}  // namespace portalbd
