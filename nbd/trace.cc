#include "nbd/trace.h"

#include <fcntl.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <vector>

#include "nbd/protocol.h"
#include "src/util/clock.h"
#include "src/util/thread_name.h"

namespace portalbd::nbd {
namespace {

constexpr std::array<const char*, 8> kOpNames = {"READ", "WRITE", "DISC",         "FLUSH",
                                                 "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS"};

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <typename T>
void append_number(std::string* out, T v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // 24 digits hold any 64-bit value
  out->append(buf, end);
}

// Splits `line` on single spaces into exactly `fields.size()` tokens.
template <size_t N>
bool split_fields(std::string_view line, std::array<std::string_view, N>* fields) {
  size_t i = 0;
  while (!line.empty()) {
    if (i == N) return false;
    size_t sp = line.find(' ');
    (*fields)[i++] = line.substr(0, sp);
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  return i == N;
}

template <typename T>
bool parse_number(std::string_view s, T* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

bool parse_op(std::string_view s, uint16_t* type) {
  for (size_t i = 0; i < kOpNames.size(); ++i) {
    if (s == kOpNames[i]) {
      *type = static_cast<uint16_t>(i);
      return true;
    }
  }
  return s.starts_with("CMD") && parse_number(s.substr(3), type);
}

}  // namespace

std::string trace_op_name(uint16_t type) {
  if (type < kOpNames.size()) return kOpNames[type];
  return "CMD" + std::to_string(type);
}

std::string format_trace_line(const TraceRecord& r) {
  std::string line;
  line.reserve(64);
  append_number(&line, r.conn);
  line += ' ';
  line += r.type < kOpNames.size() ? std::string_view(kOpNames[r.type]) : std::string_view(trace_op_name(r.type));
  for (uint64_t v :
       {uint64_t{r.offset}, uint64_t{r.length}, uint64_t{r.flags}, r.t_recv_us, r.t_done_us, uint64_t{r.error}}) {
    line += ' ';
    append_number(&line, v);
  }
  line += '\n';
  return line;
}

bool parse_trace_line(std::string_view line, TraceRecord* out) {
  if (line.empty() || line[0] == '#') return false;
  std::array<std::string_view, 8> f;
  if (!split_fields(line, &f)) return false;
  TraceRecord r;
  bool ok = parse_number(f[0], &r.conn) && parse_op(f[1], &r.type) && parse_number(f[2], &r.offset) &&
            parse_number(f[3], &r.length) && parse_number(f[4], &r.flags) && parse_number(f[5], &r.t_recv_us) &&
            parse_number(f[6], &r.t_done_us) && parse_number(f[7], &r.error);
  if (!ok) return false;
  *out = r;
  return true;
}

bool is_trace_header(std::string_view line) {
  std::string prefix = std::string(kTraceMagic) + " v" + std::to_string(kTraceVersion);
  return line == prefix || line.starts_with(prefix + " ");
}

Result<std::shared_ptr<TraceRecorder>> TraceRecorder::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::IOError("cannot open trace file " + path + ": " + std::strerror(errno));
  std::string header = std::string(kTraceMagic) + " v" + std::to_string(kTraceVersion) +
                       " start_unix_ms=" + std::to_string(now_unix_ms()) +
                       "\n# conn op offset length flags t_recv_us t_done_us err\n";
  Status st = write_all(fd.get(), std::as_bytes(std::span(header)));
  if (!st.ok()) return Status::IOError("cannot write trace file " + path + ": " + st.ToString());
  return std::shared_ptr<TraceRecorder>(new TraceRecorder(path, std::move(fd)));
}

TraceRecorder::TraceRecorder(std::string path, UniqueFd fd)
    : path_(std::move(path)), start_steady_ns_(steady_ns()), fd_(std::move(fd)) {
  writer_ = std::thread([this] {
    name_this_thread("nbd-trace");
    writer_main();
  });
}

TraceRecorder::~TraceRecorder() { (void)close(); }

uint32_t TraceRecorder::new_connection() {
  MutexLock lock(&mu_);
  return ++connections_;
}

uint64_t TraceRecorder::now_us() const { return static_cast<uint64_t>(steady_ns() - start_steady_ns_) / 1000; }

void TraceRecorder::record(const TraceRecord& r) {
  std::string line = format_trace_line(r);  // outside the lock
  bool wake = false;
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    if (pending_.size() + line.size() > kMaxPendingBytes) {
      ++dropped_;
      return;
    }
    pending_ += line;
    wake = pending_.size() >= kWakeBytes;
  }
  if (wake) wake_.notify_one();
}

uint64_t TraceRecorder::dropped() const {
  MutexLock lock(&mu_);
  return dropped_;
}

void TraceRecorder::writer_main() {
  std::string batch;
  MutexLock lock(&mu_);
  for (;;) {
    // Up to a second, less once there is a batch to write or the recorder closes.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!closed_ && pending_.size() < kWakeBytes) {
      if (wake_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
    batch.swap(pending_);
    const bool last = closed_;
    if (last && dropped_ > 0) batch += "# dropped " + std::to_string(dropped_) + "\n";
    if (!batch.empty()) {
      lock.unlock();
      Status st = write_all(fd_.get(), std::as_bytes(std::span(batch)));
      batch.clear();
      lock.lock();
      if (!st.ok() && write_status_.ok()) write_status_ = st;
    }
    if (last) return;
  }
}

Status TraceRecorder::close() {
  MutexLock close_lock(&close_mu_);
  if (!writer_.joinable()) return close_status_;
  {
    MutexLock lock(&mu_);
    closed_ = true;
  }
  wake_.notify_one();
  writer_.join();
  Status st;
  {
    MutexLock lock(&mu_);
    st = write_status_;
  }
  if (::close(fd_.release()) != 0 && st.ok()) st = Status::IOError(std::string("close: ") + std::strerror(errno));
  close_status_ = st.ok() ? st : Status::IOError("trace file " + path_ + ": " + st.ToString());
  return close_status_;
}

}  // namespace portalbd::nbd
