// libFuzzer target: the XML reader for S3 answers (src/store/s3/xml.h). An
// answer comes from whatever answers at the endpoint (a proxy, a broken or
// hostile server): parsing must answer kCorruption or a tree, never crash,
// recurse without bound or over-read.
//
// Each input is parsed as a document and its tree walked the way the S3
// store reads one. Then the input's bytes, escaped with xml_escape() into an
// element, must parse back to exactly those bytes: what the store escapes
// (multipart part lists, DeleteObjects keys) the reader gets back.
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/store/s3/xml.h"

using namespace portalbd::s3;

namespace {

// Touches every element as the store's readers do; returns a count so the
// walk is not optimised away.
size_t walk(const XmlElement& e, int depth) {
  size_t n = e.name.size() + e.text.size() + e.child_text("Key").size();
  for (const XmlElement* c : e.children_named("Contents")) n += c->child_text("Size").size();
  if (const XmlElement* c = e.child("Error")) n += c->text.size();
  for (const XmlElement& c : e.children) n += walk(c, depth + 1);
  if (depth > 64) __builtin_trap();  // the reader bounds nesting at 32
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  auto doc = parse_xml(in);
  if (doc.ok()) {
    volatile size_t sink = walk(*doc, 0);
    (void)sink;
  }

  const std::string wrapped = "<Key>" + xml_escape(in) + "</Key>";
  auto back = parse_xml(wrapped);
  if (!back.ok() || back->name != "Key" || back->text != in || !back->children.empty()) __builtin_trap();
  return 0;
}
