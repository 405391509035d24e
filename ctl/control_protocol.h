// The control protocol's wire format (see docs/control-protocol.md): one JSON object
// per line, each way.
//   request:  {"v":1,"cmd":"status","args":{...}[,"progress":true]}
//   progress: {"v":1,"progress":{"elapsed_ms":N[,"message":"..."]}}  (zero or more,
//             only to a request that asked for them, before its response)
//   response: {"v":1,"ok":true,"result":{...}}
//             {"v":1,"ok":false,"error":{"code":"NotFound","message":"..."}}
// Both ends build and parse lines only through these functions.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "src/util/status.h"

namespace portalbd::ctl {

inline constexpr int kProtocolVersion = 1;
// A request line longer than this is refused and the connection closed: no
// command needs more, and it bounds what a client can make the daemon buffer.
inline constexpr size_t kMaxRequestBytes = 1 << 20;
// Responses may be larger (a long snapshot list), but not unbounded.
inline constexpr size_t kMaxResponseBytes = 64 << 20;
// Arrays and objects nested deeper than this are refused before parsing: no
// message needs more than a few levels, and copying or printing a parsed
// value recurses once per level, so `[` x 100000 would overflow the stack.
inline constexpr size_t kMaxJsonDepth = 64;

// Encoders; each returns one line including the trailing '\n'.
// `want_progress` asks the daemon for progress lines (and heartbeats) while
// the command runs; a daemon that predates them ignores the field.
std::string encode_request(const std::string& cmd, const nlohmann::json& args, bool want_progress = false);
std::string encode_progress(const nlohmann::json& progress);
std::string encode_ok(const nlohmann::json& result);
std::string encode_error(const Status& status);

// Parses a request line. On success sets *cmd and *args (an object; {} when
// absent or null) and, if given, *want_progress. InvalidArgument says what
// is wrong with the line, including nesting deeper than kMaxJsonDepth.
Status parse_request(const std::string& line, std::string* cmd, nlohmann::json* args, bool* want_progress = nullptr);

// True when `line` is a progress line; then *progress is its object. False
// for anything else (a response, or a line parse_response() will refuse).
bool parse_progress(const std::string& line, nlohmann::json* progress);

// Parses a response line. Returns Corruption when the line is not a valid
// response. Otherwise OK, with *answer set to the result on success or to the
// daemon's error (its code and message) on failure.
Status parse_response(const std::string& line, nlohmann::json* result, Status* answer);

// The deepest nesting of arrays and objects in `text`, counting only
// brackets outside strings, as a JSON parser would see them; stops counting
// at `limit` + 1. Linear and iterative, for use before parsing.
size_t json_nesting_depth(const std::string& text, size_t limit);

// Status::CodeName() backwards; kIOError for names this build does not know.
Status::Code status_code_from_name(const std::string& name);

}  // namespace portalbd::ctl
