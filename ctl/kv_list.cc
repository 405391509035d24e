#include "ctl/kv_list.h"

#include <algorithm>
#include <map>

namespace portalbd::ctl {

void KeyValueList::add(const std::string& label, const std::string& value, int indent) {
  rows_.push_back({Kind::kPair, indent, label, value});
}

void KeyValueList::heading(const std::string& label, const std::string& note, int indent) {
  rows_.push_back({Kind::kHeading, indent, label, note});
}

void KeyValueList::line(const std::string& text, int indent) { rows_.push_back({Kind::kLine, indent, "", text}); }

void KeyValueList::print(std::ostream& out) const {
  std::map<int, size_t> width;  // per indent level: longest "label:"
  for (const Row& r : rows_) {
    if (r.kind == Kind::kLine) continue;
    if (r.kind == Kind::kHeading && r.value.empty()) continue;  // a bare heading sets no column
    width[r.indent] = std::max(width[r.indent], r.label.size() + 1);
  }
  for (const Row& r : rows_) {
    std::string pad(static_cast<size_t>(r.indent) * 2, ' ');
    if (r.kind == Kind::kLine) {
      out << pad << r.value << "\n";
      continue;
    }
    std::string label = r.label + ":";
    if (r.kind == Kind::kHeading && r.value.empty()) {
      out << pad << label << "\n";
      continue;
    }
    out << pad << label << std::string(width[r.indent] - label.size() + 2, ' ') << r.value << "\n";
  }
}

}  // namespace portalbd::ctl
