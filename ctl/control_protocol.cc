#include "ctl/control_protocol.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace portalbd::ctl {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  // error_handler replace: a handler's invalid UTF-8 must not throw here.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Envelopes are assembled by hand so that "v" comes first on the wire (json
// objects sort their keys), which makes captured traffic easy to read.
std::string envelope(const std::string& fields) {
  return "{\"v\":" + std::to_string(kProtocolVersion) + "," + fields + "}\n";
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the
// tag means nothing to a user.
std::string strip_json_tag(const std::string& what) {
  if (what.rfind("[json.exception.", 0) == 0) {
    auto end = what.find("] ");
    if (end != std::string::npos) return what.substr(end + 2);
  }
  return what;
}

// Parses `text` as JSON unless it nests deeper than kMaxJsonDepth. *why
// says what is wrong, to follow "malformed request"; callers choose the code.
bool parse_bounded(const std::string& text, json* out, std::string* why) {
  if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    *why = "(nested deeper than " + std::to_string(kMaxJsonDepth) + " levels)";
    return false;
  }
  try {
    *out = json::parse(text);
  } catch (const json::exception& e) {
    *why = "(not JSON): " + strip_json_tag(e.what());
    return false;
  }
  return true;
}

}  // namespace

size_t json_nesting_depth(const std::string& text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::string encode_request(const std::string& cmd, const json& args, bool want_progress) {
  return envelope("\"cmd\":" + dump(cmd) + ",\"args\":" + dump(args.is_null() ? json::object() : args) +
                  (want_progress ? ",\"progress\":true" : ""));
}

std::string encode_progress(const json& progress) { return envelope("\"progress\":" + dump(progress)); }

std::string encode_ok(const json& result) { return envelope("\"ok\":true,\"result\":" + dump(result)); }

std::string encode_error(const Status& status) {
  return envelope("\"ok\":false,\"error\":" +
                  dump(json{{"code", Status::CodeName(status.code())}, {"message", status.message()}}));
}

Status parse_request(const std::string& text, std::string* cmd, json* args, bool* want_progress) {
  json req;
  std::string why;
  if (!parse_bounded(text, &req, &why)) return Status::InvalidArgument("malformed request " + why);
  if (!req.is_object()) return Status::InvalidArgument("malformed request: expected a JSON object");
  auto v = req.find("v");
  if (v == req.end() || !v->is_number_integer()) {
    return Status::InvalidArgument("malformed request: missing protocol version \"v\"");
  }
  if (v->get<long long>() != kProtocolVersion) {
    return Status::NotSupported("protocol version " + v->dump() + " is not supported (this daemon speaks " +
                                std::to_string(kProtocolVersion) + ")");
  }
  auto c = req.find("cmd");
  if (c == req.end() || !c->is_string() || c->get_ref<const std::string&>().empty()) {
    return Status::InvalidArgument("malformed request: \"cmd\" must be a non-empty string");
  }
  auto a = req.find("args");
  if (a != req.end() && !a->is_null() && !a->is_object()) {
    return Status::InvalidArgument("malformed request: \"args\" must be an object");
  }
  auto p = req.find("progress");
  if (p != req.end() && !p->is_boolean()) {
    return Status::InvalidArgument("malformed request: \"progress\" must be true or false");
  }
  *cmd = c->get<std::string>();
  *args = (a == req.end() || a->is_null()) ? json::object() : *a;
  if (want_progress != nullptr) *want_progress = p != req.end() && p->get<bool>();
  return Status::OK();
}

bool parse_progress(const std::string& text, json* progress) {
  // Progress lines are small and sent by hand-built envelopes: "progress"
  // comes right after "v". A cheap test first keeps a large answer from
  // being parsed twice.
  if (text.find("\"progress\"") == std::string::npos || text.size() > 65536) return false;
  json msg;
  std::string why;
  if (!parse_bounded(text, &msg, &why) || !msg.is_object() || msg.contains("ok")) return false;
  auto v = msg.find("v");
  auto p = msg.find("progress");
  if (v == msg.end() || !v->is_number_integer() || v->get<long long>() != kProtocolVersion) return false;
  if (p == msg.end() || !p->is_object()) return false;
  *progress = *p;
  return true;
}

Status parse_response(const std::string& text, json* result, Status* answer) {
  json resp;
  std::string why;
  if (!parse_bounded(text, &resp, &why)) return Status::Corruption("malformed response " + why);
  if (!resp.is_object()) return Status::Corruption("malformed response: expected a JSON object");
  auto v = resp.find("v");
  if (v == resp.end() || !v->is_number_integer() || v->get<long long>() != kProtocolVersion) {
    return Status::Corruption("response has protocol version " + (v == resp.end() ? "(none)" : v->dump()) +
                              ", expected " + std::to_string(kProtocolVersion));
  }
  auto ok = resp.find("ok");
  if (ok == resp.end() || !ok->is_boolean()) return Status::Corruption("malformed response: missing \"ok\"");
  if (ok->get<bool>()) {
    auto r = resp.find("result");
    *result = (r == resp.end() || r->is_null()) ? json::object() : *r;
    *answer = Status::OK();
    return Status::OK();
  }
  auto err = resp.find("error");
  if (err == resp.end() || !err->is_object()) return Status::Corruption("malformed response: missing \"error\"");
  auto code_it = err->find("code");
  auto message_it = err->find("message");
  const std::string code = (code_it != err->end() && code_it->is_string()) ? code_it->get<std::string>() : "IOError";
  std::string message =
      (message_it != err->end() && message_it->is_string()) ? message_it->get<std::string>() : "(no message)";
  Status::Code c = status_code_from_name(code);
  if (c == Status::Code::kOk) {  // an error must not read as success
    return Status::Corruption("malformed response: error with code \"OK\"");
  }
  *answer = Status(c, std::move(message));
  return Status::OK();
}

Status::Code status_code_from_name(const std::string& name) {
  // Codes are contiguous from kOk; CodeName() says "Unknown" past the last,
  // so codes added to status.h are picked up without touching this.
  for (int i = 0;; ++i) {
    auto code = static_cast<Status::Code>(i);
    const std::string known = Status::CodeName(code);
    if (known == "Unknown") break;
    if (name == known) return code;
  }
  return Status::Code::kIOError;
}

}  // namespace portalbd::ctl
