#include "src/store/s3/xml.h"

#include <charconv>

namespace portalbd::s3 {

namespace {

constexpr int kMaxDepth = 32;  // S3 documents are 3 deep; bounds recursion on hostile input

class Parser {
 public:
  explicit Parser(std::string_view doc) : s_(doc) {}

  Result<XmlElement> document() {
    skip_misc();
    if (!at("<")) return error("no root element");
    XmlElement root;
    PBD_RETURN_IF_ERROR(element(&root, 0));
    skip_misc();
    if (pos_ != s_.size()) return error("content after the root element");
    return root;
  }

 private:
  bool at(std::string_view t) const { return s_.substr(pos_, t.size()) == t; }
  Status error(const std::string& what) const {
    return Status::Corruption("malformed XML at byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) ++pos_;
  }
  // Skips a construct that ends with `close`; false when it never ends.
  bool skip_until(std::string_view close) {
    size_t e = s_.find(close, pos_);
    if (e == std::string_view::npos) return false;
    pos_ = e + close.size();
    return true;
  }
  // Whitespace, <?...?>, <!--...-->, <!DOCTYPE ...> outside the root.
  void skip_misc() {
    for (;;) {
      skip_space();
      if (at("<?")) {
        if (!skip_until("?>")) return;
      } else if (at("<!--")) {
        if (!skip_until("-->")) return;
      } else if (at("<!")) {
        if (!skip_until(">")) return;
      } else
        return;
    }
  }

  std::string_view name() {
    size_t b = pos_;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '>' || c == '/' || c == '=') break;
      ++pos_;
    }
    return s_.substr(b, pos_ - b);
  }

  static std::string_view local(std::string_view qname) {
    size_t colon = qname.find(':');
    return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
  }

  Status decode_entity(std::string* out) {
    size_t semi = s_.find(';', pos_);
    if (semi == std::string_view::npos || semi - pos_ > 12) return error("bad entity");
    std::string_view ent = s_.substr(pos_ + 1, semi - pos_ - 1);
    pos_ = semi + 1;
    if (ent == "amp")
      out->push_back('&');
    else if (ent == "lt")
      out->push_back('<');
    else if (ent == "gt")
      out->push_back('>');
    else if (ent == "quot")
      out->push_back('"');
    else if (ent == "apos")
      out->push_back('\'');
    else if (!ent.empty() && ent[0] == '#') {
      // Digits only (no sign, space or tail), and a character XML allows:
      // not NUL, not a surrogate, within Unicode.
      const bool hex = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X');
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      unsigned long cp = 0;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || cp == 0 || cp > 0x10FFFF ||
          (cp >= 0xD800 && cp <= 0xDFFF)) {
        return error("bad character reference &" + std::string(ent) + ";");
      }
      append_utf8(cp, out);
    } else {
      return error("unknown entity &" + std::string(ent) + ";");
    }
    return Status::OK();
  }

  static void append_utf8(unsigned long cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // At '<' of a start tag; parses through the matching end tag.
  Status element(XmlElement* el, int depth) {
    if (depth > kMaxDepth) return error("nesting too deep");
    ++pos_;  // '<'
    std::string_view qname = name();
    if (qname.empty()) return error("empty element name");
    el->name = std::string(local(qname));
    // Attributes: S3 uses none we need (xmlns only); skip them, quotes aware.
    for (;;) {
      skip_space();
      if (pos_ >= s_.size()) return error("unterminated start tag");
      if (at("/>")) {
        pos_ += 2;
        return Status::OK();
      }
      if (s_[pos_] == '>') {
        ++pos_;
        break;
      }
      name();
      skip_space();
      if (!at("=")) return error("attribute without value");
      ++pos_;
      skip_space();
      if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'')) return error("unquoted attribute");
      char quote = s_[pos_++];
      size_t e = s_.find(quote, pos_);
      if (e == std::string_view::npos) return error("unterminated attribute");
      pos_ = e + 1;
    }
    // Content.
    for (;;) {
      if (pos_ >= s_.size()) return error("unterminated element <" + el->name + ">");
      char c = s_[pos_];
      if (c == '&') {
        PBD_RETURN_IF_ERROR(decode_entity(&el->text));
      } else if (c != '<') {
        el->text.push_back(c);
        ++pos_;
      } else if (at("</")) {
        pos_ += 2;
        std::string_view close = name();
        if (local(close) != el->name) return error("</" + std::string(close) + "> closes <" + el->name + ">");
        skip_space();
        if (!at(">")) return error("bad end tag");
        ++pos_;
        return Status::OK();
      } else if (at("<![CDATA[")) {
        size_t b = pos_ + 9;
        size_t e = s_.find("]]>", b);
        if (e == std::string_view::npos) return error("unterminated CDATA");
        el->text.append(s_.substr(b, e - b));
        pos_ = e + 3;
      } else if (at("<!--")) {
        if (!skip_until("-->")) return error("unterminated comment");
      } else if (at("<?")) {
        if (!skip_until("?>")) return error("unterminated processing instruction");
      } else {
        el->children.emplace_back();
        PBD_RETURN_IF_ERROR(element(&el->children.back(), depth + 1));
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

const XmlElement* XmlElement::child(std::string_view n) const {
  for (const auto& c : children) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

std::string XmlElement::child_text(std::string_view n) const {
  const XmlElement* c = child(n);
  return c ? c->text : std::string();
}

std::vector<const XmlElement*> XmlElement::children_named(std::string_view n) const {
  std::vector<const XmlElement*> out;
  for (const auto& c : children) {
    if (c.name == n) out.push_back(&c);
  }
  return out;
}

Result<XmlElement> parse_xml(std::string_view doc) { return Parser(doc).document(); }

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace portalbd::s3
