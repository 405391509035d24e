// portalbd: serves one volume over NBD with its data in object storage.
// Exit status: 0 clean stop (write buffer flushed), 1 runtime failure
// (including a final flush that failed), 2 usage or configuration error.
#include <csignal>
#include <cstdio>
#include <pthread.h>

#include "src/config/cli.h"
#include "src/config/version.h"
#include "src/daemon/daemon.h"
#include "src/log/log.h"

int main(int argc, char** argv) {
  using namespace portalbd;
  CliOutcome cli = parse_daemon_command_line(argc, argv, kVersion);
  if (cli.exit_code >= 0) return cli.exit_code;
  if (!log::init(cli.config.log_level)) {
    std::fprintf(stderr, "portalbd: unknown log level '%s'\n", cli.config.log_level.c_str());
    return 2;
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Daemon daemon(cli.config);
  Status st = daemon.start();
  if (!st.ok()) {
    daemon.abandon();  // release what started, quietly: the one line below says why
    std::fprintf(stderr, "portalbd: %s\n", st.message().c_str());
    return st.is(Status::Code::kInvalidArgument) ? 2 : 1;
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::get("portalbd")->info("received signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  st = daemon.stop();
  if (!st.ok()) {
    std::fprintf(stderr, "portalbd: final flush failed: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
