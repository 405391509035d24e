// S3Store::put_multipart: one object from parts uploaded in parallel.
//
//   CreateMultipartUpload ─▶ UploadPart × N (parallel, each retried) ─▶ CompleteMultipartUpload
//            │                        │ any part fails                        │ fails
//            ▼                        ▼                                        ▼
//          error            AbortMultipartUpload ◀────────────────────────────┘
//
// Parts are spans of the caller's buffer, so memory in flight is the
// caller's data plus curl's buffers, whatever the part count. Until Complete
// succeeds the object does not exist (a reader sees the old one or none).
#include <atomic>
#include <thread>

#include "src/log/log.h"
#include "src/store/s3/s3_store.h"
#include "src/store/s3/xml.h"

namespace portalbd::s3 {

namespace {

std::string bad_answer(const std::string& op, const std::string& bucket, const std::string& key,
                       const std::string& why) {
  return "S3 " + op + " bucket=" + bucket + " key=" + key + ": " + why;
}

}  // namespace

Status S3Store::put_multipart(const std::string& full, std::span<const std::byte> data) {
  const auto& o = client_->options();
  auto log = log::get("s3");
  client_->metrics().multipart_uploads.fetch_add(1, std::memory_order_relaxed);

  // 1. Create.
  S3Call create;
  create.kind = RequestKind::kPost;
  create.op = "CreateMultipartUpload";
  create.method = "POST";
  create.key = full;
  create.query = {{"uploads", ""}};
  create.headers = {{"Content-Type", "application/octet-stream"}};
  HttpResponse resp;
  PBD_RETURN_IF_ERROR(client_->execute(create, &resp));
  auto doc = parse_xml(resp.body_text());
  std::string upload_id = doc.ok() ? doc->child_text("UploadId") : "";
  if (upload_id.empty()) {
    return Status::IOError(bad_answer("CreateMultipartUpload", o.bucket, full, "no UploadId in the answer"));
  }

  // 2. Parts, `multipart_parallel_parts` at a time, claimed from a counter.
  const uint64_t part_bytes = o.multipart_part_bytes;
  const size_t parts = static_cast<size_t>((data.size() + part_bytes - 1) / part_bytes);
  std::vector<std::string> etags(parts);
  std::vector<Status> part_status(parts);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto worker = [&]() noexcept {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= parts || failed.load()) return;
      uint64_t off = i * part_bytes;
      S3Call part;
      part.kind = RequestKind::kPut;
      part.op = "UploadPart";
      part.method = "PUT";
      part.key = full;
      part.query = {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}};
      part.body = data.subspan(off, std::min<uint64_t>(part_bytes, data.size() - off));
      HttpResponse presp;
      Status st = client_->execute(part, &presp);
      if (st.ok()) {
        etags[i] = presp.header("etag");
        if (etags[i].empty()) st = Status::IOError(bad_answer("UploadPart", o.bucket, full, "no ETag"));
      }
      if (!st.ok()) {
        part_status[i] = st;
        failed.store(true);
      }
    }
  };
  size_t nthreads = std::min<size_t>(std::max<uint32_t>(1, o.multipart_parallel_parts), parts);
  Status st;
  try {
    std::vector<std::jthread> threads;
    for (size_t t = 1; t < nthreads; ++t) threads.emplace_back(worker);
    worker();                             // this thread works too
  } catch (const std::system_error& e) {  // thread creation failed; joined parts already ran
    st = Status::IOError(bad_answer("UploadPart", o.bucket, full, std::string("cannot start thread: ") + e.what()));
  }
  for (const Status& ps : part_status) {
    if (!ps.ok() && st.ok()) st = ps;
  }
  if (st.ok() && next.load() < parts) st = Status::IOError(bad_answer("UploadPart", o.bucket, full, "parts not sent"));

  // 3. Complete. S3 may answer 200 with an <Error> body after a long wait.
  if (st.ok()) {
    std::string body = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < parts; ++i) {
      body += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + xml_escape(etags[i]) +
              "</ETag></Part>";
    }
    body += "</CompleteMultipartUpload>";
    S3Call complete;
    complete.kind = RequestKind::kPost;
    complete.op = "CompleteMultipartUpload";
    complete.method = "POST";
    complete.key = full;
    complete.query = {{"uploadId", upload_id}};
    complete.headers = {{"Content-Type", "application/xml"}};
    complete.body = std::span<const std::byte>(reinterpret_cast<const std::byte*>(body.data()), body.size());
    HttpResponse cresp;
    st = client_->execute(complete, &cresp);
    if (st.ok()) {
      auto cdoc = parse_xml(cresp.body_text());
      if (!cdoc.ok() || cdoc->name != "CompleteMultipartUploadResult") {
        std::string code = cdoc.ok() ? cdoc->child_text("Code") : "unparseable answer";
        st = Status::Unavailable(bad_answer("CompleteMultipartUpload", o.bucket, full, "failed: " + code));
      }
    }
  }
  if (st.ok()) return st;

  // 4. Abort, so that the parts do not linger (and bill) forever.
  S3Call abort;
  abort.kind = RequestKind::kDelete;
  abort.op = "AbortMultipartUpload";
  abort.method = "DELETE";
  abort.key = full;
  abort.query = {{"uploadId", upload_id}};
  HttpResponse aresp;
  Status ast = client_->execute(abort, &aresp);
  if (!ast.ok() && !ast.is(Status::Code::kNotFound)) {
    log->warn("S3 multipart abort failed key={} error={} (a bucket lifecycle rule should expire it)", log::quote(full),
              log::quote(ast.message()));
  }
  return st;
}

}  // namespace portalbd::s3
