// portalctl entry point; everything lives in ctl/portalctl.h.
#include <iostream>

#include "ctl/portalctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return portalbd::ctl::run_portalctl(args, portalbd::ctl::PortalctlEnvironment::current(), std::cout, std::cerr);
}
