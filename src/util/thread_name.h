// Names the calling thread, as `top -H`, `ps -L`, gdb and /proc/PID/task/*/comm
// show it: "nbd-worker", "upload", "tls-send". Linux keeps 15 bytes; a longer
// name is cut. Naming is best effort and never fails the caller.
#pragma once

#include <pthread.h>

#include <cstring>

namespace portalbd {

inline void name_this_thread(const char* name) {
  char cut[16];
  std::strncpy(cut, name, sizeof cut - 1);
  cut[sizeof cut - 1] = '\0';
  (void)pthread_setname_np(pthread_self(), cut);
}

}  // namespace portalbd
