#include "src/util/prometheus_text.h"

#include <charconv>
#include <cmath>

namespace portalbd {
namespace {

bool name_char(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

const char* type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

bool PrometheusText::valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, true)) return false;
  }
  return true;
}

bool PrometheusText::valid_label_name(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;  // "__" is reserved
  for (size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, false)) return false;
  }
  return true;
}

std::string PrometheusText::format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Counters are integers: write them exactly (up to 2^53), without exponent.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string PrometheusText::escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string PrometheusText::escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void PrometheusText::family(std::string_view name, MetricType type, std::string_view help) {
  name_.clear();
  if (!valid_metric_name(name) || seen_.count(name) != 0) {
    ++refused_;
    return;
  }
  seen_.emplace(name);
  name_ = name;
  type_ = type;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
}

bool PrometheusText::labels_ok(const MetricLabels& labels) const {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i].first)) return false;
    if (type_ == MetricType::kHistogram && labels[i].first == "le") return false;
    for (size_t j = 0; j < i; ++j) {
      if (labels[j].first == labels[i].first) return false;
    }
  }
  return true;
}

void PrometheusText::line(std::string_view name, const MetricLabels& labels,
                          const std::pair<std::string, std::string>* extra, const std::string& value) {
  out_ += name;
  if (!labels.empty() || extra != nullptr) {
    out_ += '{';
    bool first = true;
    auto one = [&](const std::pair<std::string, std::string>& label) {
      if (!first) out_ += ',';
      first = false;
      out_ += label.first;
      out_ += "=\"";
      out_ += escape_label_value(label.second);
      out_ += '"';
    };
    for (const auto& label : labels) one(label);
    if (extra != nullptr) one(*extra);
    out_ += '}';
  }
  out_ += ' ';
  out_ += value;
  out_ += '\n';
}

void PrometheusText::sample(const MetricLabels& labels, double value) {
  if (name_.empty() || type_ == MetricType::kHistogram || !labels_ok(labels)) {
    ++refused_;
    return;
  }
  line(name_, labels, nullptr, format_value(value));
}

void PrometheusText::histogram(const MetricLabels& labels, const HistogramSnapshot& h) {
  if (name_.empty() || type_ != MetricType::kHistogram || !labels_ok(labels)) {
    ++refused_;
    return;
  }
  const std::string bucket = name_ + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    const std::pair<std::string, std::string> le{
        "le", i < HistogramSnapshot::kNumBounds
                  ? format_value(static_cast<double>(HistogramSnapshot::kBoundsNs[i]) / 1e9)
                  : "+Inf"};
    line(bucket, labels, &le, std::to_string(cumulative));
  }
  line(name_ + "_sum", labels, nullptr, format_value(static_cast<double>(h.sum_ns) / 1e9));
  line(name_ + "_count", labels, nullptr, std::to_string(cumulative));
}

}  // namespace portalbd
