// The doctest entry point for build/bin/unit_tests (every *_test.cc links here).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
