// Status and Result: the one error type for fallible operations in portalbd.
//
// A Status is either OK or carries a Code plus a human-readable message. Codes
// say what went wrong in storage terms; the NBD layer and the CLI map them to
// errno values and exit codes at the edge (nbd/errors.h, ctl/), nowhere else.
// retryable() tells a caller whether trying the same call again may succeed.
//
// Thread-safety: values; a Status is safe to copy across threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace portalbd {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // the request itself is malformed (EINVAL)
    kOutOfRange,       // beyond the end of the device (EINVAL / ENOSPC)
    kNoSpace,          // write past the end, or a hard quota (ENOSPC)
    kNotFound,         // object / snapshot / key does not exist
    kAlreadyExists,    // name taken, conditional put lost
    kReadOnly,         // write to a read-only export (EPERM)
    kNotSupported,     // feature absent (ENOTSUP)
    kCorruption,       // checksum mismatch, bad format (EIO)
    kIOError,          // storage failed; may be transient (EIO)
    kUnavailable,      // storage unreachable / timed out: retryable (EIO)
    kFenced,           // another writer owns the volume (EIO, stop writing)
    kBusy,             // resource in use, try later
    kCancelled,        // shutting down
  };

  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {Code::kOutOfRange, std::move(m)}; }
  static Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status ReadOnly(std::string m) { return {Code::kReadOnly, std::move(m)}; }
  static Status NotSupported(std::string m) { return {Code::kNotSupported, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Fenced(std::string m) { return {Code::kFenced, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status Cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool is(Code c) const { return code_ == c; }
  // True when the same call may succeed later (transient storage trouble).
  bool retryable() const { return code_ == Code::kUnavailable || code_ == Code::kIOError || code_ == Code::kBusy; }

  // "IOError: put segments/0001.seg: connection refused"
  std::string ToString() const;
  static const char* CodeName(Code c);

  // Prefixes the message with context: s.With("flush") -> "flush: <msg>".
  Status With(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}                                  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace portalbd

// Returns early from the enclosing function when `expr` yields a non-OK Status.
#define PBD_RETURN_IF_ERROR(expr)        \
  do {                                   \
    ::portalbd::Status _pbd_st = (expr); \
    if (!_pbd_st.ok()) return _pbd_st;   \
  } while (0)
