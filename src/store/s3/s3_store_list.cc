// S3Store: ListObjectsV2 (paginated), DeleteObjects, and the access check.
#include <algorithm>

#include "src/store/s3/crypto.h"
#include "src/store/s3/s3_store.h"
#include "src/store/s3/xml.h"

namespace portalbd::s3 {

namespace {

constexpr size_t kDeleteBatch = 1000;  // DeleteObjects' limit per request

// One page of ListObjectsV2. Keys come URL-encoded when the server honours
// encoding-type=url (so that keys with control characters survive XML).
struct ListPage {
  std::vector<ObjectInfo> objects;  // full keys
  std::string next_token;           // "" on the last page
};

Result<ListPage> parse_list_page(const std::string& body, const std::string& bucket) {
  auto doc = parse_xml(body);
  if (!doc.ok()) return doc.status().With("S3 ListObjectsV2 bucket=" + bucket);
  if (doc->name != "ListBucketResult") {
    return Status::Corruption("S3 ListObjectsV2 bucket=" + bucket + ": unexpected <" + doc->name + "> answer");
  }
  bool url_encoded = doc->child_text("EncodingType") == "url";
  ListPage page;
  for (const XmlElement* c : doc->children_named("Contents")) {
    std::string key = c->child_text("Key");
    if (url_encoded) key = uri_decode(key);
    page.objects.push_back({std::move(key), std::strtoull(c->child_text("Size").c_str(), nullptr, 10)});
  }
  if (doc->child_text("IsTruncated") == "true") {
    page.next_token = doc->child_text("NextContinuationToken");
    if (page.next_token.empty()) {
      return Status::Corruption("S3 ListObjectsV2 bucket=" + bucket + ": truncated page without a continuation token");
    }
  }
  return page;
}

}  // namespace

Status S3Store::list(const std::string& prefix, std::vector<ObjectInfo>* out) {
  out->clear();
  const auto& o = client_->options();
  std::string base = o.prefix.empty() ? "" : o.prefix + "/";
  std::string token;
  do {
    S3Call call;
    call.kind = RequestKind::kList;
    call.op = "ListObjectsV2";
    call.query = {{"list-type", "2"},
                  {"prefix", base + prefix},
                  {"encoding-type", "url"},
                  {"max-keys", std::to_string(o.list_page_size)}};
    if (!token.empty()) call.query.emplace_back("continuation-token", token);
    HttpResponse resp;
    PBD_RETURN_IF_ERROR(client_->execute(call, &resp));
    auto page = parse_list_page(resp.body_text(), o.bucket);
    if (!page.ok()) return page.status();
    for (auto& obj : page->objects) {
      if (obj.key.compare(0, base.size(), base) != 0) continue;  // defensive: never leak foreign keys
      obj.key.erase(0, base.size());
      out->push_back(std::move(obj));
    }
    token = page->next_token;
  } while (!token.empty());
  // S3 lists in UTF-8 byte order already; compatibles are not all so careful.
  std::sort(out->begin(), out->end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return Status::OK();
}

Status S3Store::check_access() {
  const auto& o = client_->options();
  S3Call call;
  call.kind = RequestKind::kList;
  call.op = "ListObjectsV2";
  call.query = {{"list-type", "2"}, {"prefix", o.prefix.empty() ? "" : o.prefix + "/"}, {"max-keys", "1"}};
  HttpResponse resp;
  return client_->execute(call, &resp);
}

Status S3Store::remove_many(const std::vector<std::string>& keys) {
  const auto& o = client_->options();
  for (size_t start = 0; start < keys.size(); start += kDeleteBatch) {
    size_t end = std::min(keys.size(), start + kDeleteBatch);
    std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>";
    for (size_t i = start; i < end; ++i) {
      auto full = full_key(keys[i]);
      if (!full.ok()) return full.status();
      body += "<Object><Key>" + xml_escape(*full) + "</Key></Object>";
    }
    body += "</Delete>";
    S3Call call;
    call.kind = RequestKind::kPost;
    call.op = "DeleteObjects";
    call.method = "POST";
    call.query = {{"delete", ""}};
    call.headers = {{"Content-Type", "application/xml"}, {"Content-MD5", md5_base64(body)}};
    call.body = std::span<const std::byte>(reinterpret_cast<const std::byte*>(body.data()), body.size());
    HttpResponse resp;
    PBD_RETURN_IF_ERROR(client_->execute(call, &resp));
    // Quiet mode lists only the keys that failed.
    auto doc = parse_xml(resp.body_text());
    if (!doc.ok()) return doc.status().With("S3 DeleteObjects bucket=" + o.bucket);
    for (const XmlElement* err : doc->children_named("Error")) {
      std::string code = err->child_text("Code");
      if (code == "NoSuchKey") continue;
      return Status::IOError("S3 DeleteObjects bucket=" + o.bucket + " key=" + err->child_text("Key") + ": " + code +
                             " (" + err->child_text("Message") + ")");
    }
  }
  return Status::OK();
}

}  // namespace portalbd::s3
