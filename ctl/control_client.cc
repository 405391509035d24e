#include "ctl/control_client.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ctl/control_protocol.h"
#include "ctl/line_io.h"
#include "ctl/unix_socket.h"

namespace portalbd::ctl {
namespace {

// How long to look for an answer the daemon sent before closing on us (it
// is already in our receive queue if it was sent at all).
constexpr int kClosedAnswerWaitMs = 1000;

std::string unreachable_hint(int err) {
  if (err == EACCES || err == EPERM) return " (run as the daemon's user, or join the socket's group)";
  if (err == ENAMETOOLONG) return "";
  return " (is the daemon running?)";
}

}  // namespace

Result<nlohmann::json> call(const std::string& socket_path, const std::string& cmd, const nlohmann::json& args,
                            int timeout_ms, CallFailure* failure, const ProgressCallback& on_progress) {
  CallFailure ignored;
  CallFailure& where = failure != nullptr ? *failure : ignored;
  where = CallFailure::kNone;
  Deadline deadline = deadline_after_ms(timeout_ms);

  int err = 0;
  UniqueFd fd = connect_unix(socket_path, &err);
  if (!fd) {
    where = CallFailure::kUnreachable;
    return Status::Unavailable("cannot reach portalbd at " + socket_path + ": " + std::strerror(err) +
                               unreachable_hint(err));
  }
  auto timed_out = [&] {
    where = CallFailure::kTimeout;
    const std::string ms = std::to_string(timeout_ms) + " ms";
    return Status::Unavailable(
        "portalbd at " + socket_path +
        (on_progress ? " sent nothing about '" + cmd + "' for " + ms : " did not answer '" + cmd + "' within " + ms));
  };
  Status st = send_with_deadline(fd.get(), encode_request(cmd, args, on_progress != nullptr), deadline);
  if (st.is(Status::Code::kUnavailable)) return timed_out();
  LineReader reader(fd.get(), kMaxResponseBytes);
  std::string line;
  if (!st.ok()) {
    // The daemon closed on us before our request went out. A daemon at its
    // connection limit answers Busy first and closes: that answer is still
    // ours to read. Without one, the daemon is going away.
    if (reader.next(&line, deadline_after_ms(kClosedAnswerWaitMs)) == LineReader::Outcome::kLine) {
      nlohmann::json ignored_result;
      Status answer;
      if (parse_response(line, &ignored_result, &answer).ok() && !answer.ok()) {
        where = CallFailure::kDaemon;
        return answer;
      }
    }
    where = CallFailure::kUnreachable;
    return Status::Unavailable("cannot reach portalbd at " + socket_path + ": " + st.message());
  }

  // Progress lines come first; each one restarts the clock.
  LineReader::Outcome outcome;
  nlohmann::json progress;
  while ((outcome = reader.next(&line, deadline)) == LineReader::Outcome::kLine && on_progress &&
         parse_progress(line, &progress)) {
    deadline = deadline_after_ms(timeout_ms);
    on_progress(progress);
  }
  switch (outcome) {
    case LineReader::Outcome::kLine: break;
    case LineReader::Outcome::kTimeout: return timed_out();
    case LineReader::Outcome::kEof:
      where = CallFailure::kProtocol;
      return Status::IOError("portalbd at " + socket_path + " closed the connection without answering '" + cmd + "'");
    case LineReader::Outcome::kTooLong:
      where = CallFailure::kProtocol;
      return Status::Corruption("answer from portalbd at " + socket_path + " is larger than " +
                                std::to_string(kMaxResponseBytes) + " bytes");
    case LineReader::Outcome::kError:
      where = CallFailure::kProtocol;
      return Status::IOError("reading from portalbd at " + socket_path + ": " + reader.error());
  }

  nlohmann::json result;
  Status answer;
  st = parse_response(line, &result, &answer);
  if (!st.ok()) {
    where = CallFailure::kProtocol;
    return st.With("portalbd at " + socket_path);
  }
  if (!answer.ok()) {
    where = CallFailure::kDaemon;
    return answer;
  }
  return result;
}

}  // namespace portalbd::ctl
