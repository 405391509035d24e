#include "ctl/control_client.h"

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "ctl/control_protocol.h"
#include "ctl/line_io.h"
#include "ctl/unix_socket.h"

namespace portalbd::ctl {
namespace {

std::string unreachable_hint(int err) {
  if (err == EACCES || err == EPERM) return " (run as the daemon's user, or join the socket's group)";
  if (err == ENAMETOOLONG) return "";
  return " (is the daemon running?)";
}

}  // namespace

Result<nlohmann::json> call(const std::string& socket_path, const std::string& cmd, const nlohmann::json& args,
                            int timeout_ms, CallFailure* failure) {
  CallFailure ignored;
  CallFailure& where = failure != nullptr ? *failure : ignored;
  where = CallFailure::kNone;
  const Deadline deadline = deadline_after_ms(timeout_ms);

  int err = 0;
  UniqueFd fd = connect_unix(socket_path, &err);
  if (!fd.valid()) {
    where = CallFailure::kUnreachable;
    return Status::Unavailable("cannot reach portalbd at " + socket_path + ": " + std::strerror(err) +
                               unreachable_hint(err));
  }
  auto timed_out = [&] {
    where = CallFailure::kTimeout;
    return Status::Unavailable("portalbd at " + socket_path + " did not answer '" + cmd + "' within " +
                               std::to_string(timeout_ms) + " ms");
  };
  Status st = write_all(fd.get(), encode_request(cmd, args), deadline);
  if (st.is(Status::Code::kUnavailable)) return timed_out();
  if (!st.ok()) {
    // The daemon closed on us between connect and send: it is going away.
    where = CallFailure::kUnreachable;
    return Status::Unavailable("cannot reach portalbd at " + socket_path + ": " + st.message());
  }

  LineReader reader(fd.get(), kMaxResponseBytes);
  std::string line;
  switch (reader.next(&line, deadline)) {
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
