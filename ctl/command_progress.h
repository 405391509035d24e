// What a running control command may tell its client before the answer.
//
// Progress: the interface a handler sees. note() is for people ("pass 2:
// ..."); it never fails the command and never blocks it for long.
//
// ProgressChannel: the ControlServer's implementation for a request that
// asked for progress ("progress":true, docs/control-protocol.md). It sends
// each note as a progress line, and a heartbeat line (no message) whenever
// nothing was sent for heartbeat_ms, so that a client can tell a long command
// from a stuck daemon and wait for as long as the command runs. A client that
// goes away (a send fails, or does not finish within kProgressSendTimeoutMs)
// only stops the lines: the command runs on, and its answer is dropped.
//
// Ownership: borrows the connection's fd; the connection keeps it open until
// finish() has returned. Thread-safety: note() from the handler's thread,
// while the channel's own thread sends heartbeats; mu_ keeps lines whole.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "src/util/mutex.h"

namespace portalbd::ctl {

class Progress {
 public:
  virtual ~Progress() = default;
  virtual void note(const std::string& message) = 0;
};

// For requests that did not ask for progress: notes go nowhere.
class NoProgress final : public Progress {
 public:
  void note(const std::string&) override {}
};

// How long one progress line may take to reach the client's socket buffer.
inline constexpr int kProgressSendTimeoutMs = 2000;

class ProgressChannel final : public Progress {
 public:
  // Starts the heartbeat thread. REQUIRES: heartbeat_ms > 0.
  ProgressChannel(int fd, int heartbeat_ms);
  ~ProgressChannel() override;  // finish()
  ProgressChannel(const ProgressChannel&) = delete;
  ProgressChannel& operator=(const ProgressChannel&) = delete;

  void note(const std::string& message) override EXCLUDES(mu_);

  // Stops and joins the heartbeat thread; nothing is sent after it returns.
  // Returns false when the stream is unusable (the client is gone, or a line
  // went out half-sent): then the answer must not be sent either.
  bool finish() EXCLUDES(mu_);

 private:
  void send_locked(const std::string& message) REQUIRES(mu_);
  void heartbeat_loop() EXCLUDES(mu_);

  const int fd_;
  const std::chrono::milliseconds heartbeat_;
  const std::chrono::steady_clock::time_point started_;
  Mutex mu_;
  CondVar wake_;
  bool finished_ GUARDED_BY(mu_) = false;
  bool broken_ GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point last_sent_ GUARDED_BY(mu_);
  std::thread heartbeat_thread_;
};

}  // namespace portalbd::ctl
