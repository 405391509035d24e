// TempDir: a fresh directory under /tmp for one unit test, removed with it.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace portalbd::testing {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/pbd-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace portalbd::testing
