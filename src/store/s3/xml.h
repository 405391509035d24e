// A small XML reader for S3 responses: ListBucketResult, Error,
// InitiateMultipartUploadResult, CompleteMultipartUploadResult, DeleteResult.
//
// S3 answers are small, flat, machine-written documents, so a full parser
// (DTDs, namespaces, mixed content) buys nothing: this one builds a tree of
// elements with their decoded text, skips the prolog, comments and
// processing instructions, ignores attributes and namespaces prefixes, and
// rejects malformed input instead of guessing.
//
// Values; an XmlElement owns its children. Thread-safe (no shared state).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "src/util/status.h"

namespace portalbd::s3 {

struct XmlElement {
  std::string name;  // local name, namespace prefix dropped
  std::string text;  // decoded character data directly inside (CDATA included)
  std::vector<XmlElement> children;

  // First child named `name`, or nullptr.
  const XmlElement* child(std::string_view name) const;
  // Text of the first child named `name`, or "" when absent.
  std::string child_text(std::string_view name) const;
  // Every child named `name`, in document order.
  std::vector<const XmlElement*> children_named(std::string_view name) const;
};

// Parses a document and returns its root element.
Result<XmlElement> parse_xml(std::string_view doc);

// Escapes text for element content (&, <, >, ", ').
std::string xml_escape(std::string_view text);

}  // namespace portalbd::s3
