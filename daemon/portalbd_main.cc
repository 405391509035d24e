// portalbd: serves one volume over NBD with its data in object storage.
// Exit status: 0 clean stop (write buffer flushed), 1 runtime failure
// (including a final flush that failed), 2 usage or configuration error.
#include <malloc.h>
#include <pthread.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "daemon/daemon.h"
#include "src/config/cli.h"
#include "src/config/version.h"
#include "src/log/log.h"
#include "src/util/huge_pages.h"

int main(int argc, char** argv) {
  using namespace portalbd;
  // Everything the daemon creates (state dir, index, file:// objects, trace,
  // sockets before their chmod) is its owner's alone, whatever umask it was
  // started with; the control socket's mode is set explicitly.
  ::umask(077);
  // The data path allocates and frees buffers of 4 KiB to a few MiB at a
  // high rate (request payloads, decoded frames). glibc's defaults hand
  // memory back to the kernel eagerly and take it again page fault by page
  // fault; keep up to 64 MiB of freed memory for reuse instead, and serve
  // everything under 32 MiB from the heap (segment objects above that are
  // mmap'ed). Every thread allocates from the one main arena: a buffer is
  // often freed by another thread than the one that allocated it, and with an
  // arena per thread the freed memory piled up where its next user was not
  // (file:// RSS 1.0-1.9 GiB under fio instead of 0.34-0.65); it is also the
  // only arena glibc puts on huge pages when asked to (huge_pages.h).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_ARENA_MAX, 1);
  const bool huge_heap = heap_on_huge_pages();
  CliOutcome cli = parse_daemon_command_line(argc, argv, kVersion);
  if (cli.exit_code >= 0) return cli.exit_code;
  if (!log::init(cli.config.log_level)) {
    std::fprintf(stderr, "portalbd: unknown log level '%s'\n", cli.config.log_level.c_str());
    return 2;
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  log::get("portalbd")
      ->debug("malloc heap on transparent huge pages: {} GLIBC_TUNABLES=\"{}\"", huge_heap ? "yes" : "no",
              tunables != nullptr ? tunables : "");

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
