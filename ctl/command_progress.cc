#include "ctl/command_progress.h"

#include <nlohmann/json.hpp>

#include "ctl/control_protocol.h"
#include "ctl/line_io.h"
#include "src/log/log.h"
#include "src/util/thread_name.h"

namespace portalbd::ctl {

ProgressChannel::ProgressChannel(int fd, int heartbeat_ms)
    : fd_(fd), heartbeat_(heartbeat_ms), started_(std::chrono::steady_clock::now()) {
  {
    MutexLock lock(&mu_);
    last_sent_ = started_;
  }
  heartbeat_thread_ = std::thread([this] {
    name_this_thread("progress");
    heartbeat_loop();
  });
}

ProgressChannel::~ProgressChannel() { (void)finish(); }

void ProgressChannel::note(const std::string& message) {
  MutexLock lock(&mu_);
  if (finished_) return;
  send_locked(message);
}

bool ProgressChannel::finish() {
  {
    MutexLock lock(&mu_);
    finished_ = true;
  }
  wake_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  MutexLock lock(&mu_);
  return !broken_;
}

void ProgressChannel::send_locked(const std::string& message) {
  if (broken_) return;
  const auto now = std::chrono::steady_clock::now();
  nlohmann::json progress = {
      {"elapsed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count()}};
  if (!message.empty()) progress["message"] = message;
  Status st = send_with_deadline(fd_, encode_progress(progress), deadline_after_ms(kProgressSendTimeoutMs));
  last_sent_ = std::chrono::steady_clock::now();
  if (!st.ok()) {
    // Gone, or not reading: either way a line may be half-sent, so nothing
    // more goes on this stream. The command itself is not ours to stop.
    broken_ = true;
    log::get("ctl")->info("control client stopped listening; the command runs on error={}", log::quote(st.message()));
  }
}

void ProgressChannel::heartbeat_loop() {
  MutexLock lock(&mu_);
  while (!finished_ && !broken_) {
    const auto due = last_sent_ + heartbeat_;
    if (std::chrono::steady_clock::now() < due) {
      (void)wake_.wait_until(lock, due);
      continue;
    }
    send_locked("");
  }
}

}  // namespace portalbd::ctl
