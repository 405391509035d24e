// Helpers the controller's RPC files share (controller_service.cc,
// controller_snapshots.cc): paging tokens, "operation pending", times.
// Include only from those files.
#pragma once

#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <stdexcept>
#include <string>

#include "csi/capabilities.h"
#include "src/util/status.h"

namespace portalbd::csi::controller_detail {

// The paging token of List*: the index of the next entry, in decimal.
// kCancelled for one this driver did not issue (the RPC answers ABORTED):
// only digits, as std::to_string writes them (stoul alone would take " 1",
// "+1" and "-1").
inline Result<size_t> parse_token(const std::string& token, size_t total) {
  if (token.empty()) return size_t{0};
  size_t pos = 0;
  try {
    if (token.find_first_not_of("0123456789") != std::string::npos) throw std::invalid_argument("not digits");
    pos = std::stoul(token);
  } catch (const std::exception&) {
    return Status::Cancelled("starting_token '" + token + "' was not issued by this driver");
  }
  if (pos > total) return Status::Cancelled("starting_token '" + token + "' is past the end of the list");
  return pos;
}

inline grpc::Status token_error(const Status& st) { return grpc_error(grpc::StatusCode::ABORTED, st.message()); }

inline grpc::Status pending(const std::string& key) {
  return grpc_error(grpc::StatusCode::ABORTED, "an operation on " + key + " is in progress; try again");
}

inline void set_time(int64_t unix_ms, google::protobuf::Timestamp* ts) {
  ts->set_seconds(unix_ms / 1000);
  ts->set_nanos(static_cast<int32_t>((unix_ms % 1000) * 1000000));
}

}  // namespace portalbd::csi::controller_detail
