// KeyValueList: an aligned "label:  value" listing, with indented sections,
// for portalctl's human output:
//   export:       portalbd
//   size:         1 GiB (1073741824 bytes)
//   counters:
//     reads       1,234
// Labels at the same indent share one column width.
//
// Thread-safety: a value; one thread at a time.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace portalbd::ctl {

class KeyValueList {
 public:
  // "label:  value" at `indent` levels (two spaces each).
  void add(const std::string& label, const std::string& value, int indent = 0);
  // A heading line "label:" (or "label:  note") whose rows follow indented.
  void heading(const std::string& label, const std::string& note = "", int indent = 0);
  // A line printed as is after the indentation, outside the columns.
  void line(const std::string& text, int indent = 1);

  void print(std::ostream& out) const;

 private:
  enum class Kind { kPair, kHeading, kLine };
  struct Row {
    Kind kind;
    int indent;
    std::string label;
    std::string value;
  };
  std::vector<Row> rows_;
};

}  // namespace portalbd::ctl
