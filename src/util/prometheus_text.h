// PrometheusText: writes metrics in the Prometheus text exposition format,
// version 0.0.4 (what GET /metrics answers, daemon/metrics_server.h).
//
// A metric family is opened with family() (its # HELP and # TYPE lines),
// then its samples follow with sample() or histogram(). The writer checks
// what a scraper would reject: a family named twice, a bad metric or label
// name, a histogram sample in a non-histogram family. Those are programming
// errors: the offending lines are left out and counted (refused()), so one
// bad series never breaks the whole scrape; the unit tests assert none.
//
// Escaping: HELP text escapes '\' and newline; label values escape '\', '"'
// and newline. Values are written as integers when integral, else in
// shortest round-trip form; +Inf, -Inf and NaN as the format spells them.
//
// Thread-safety: one writer per thread (no shared state).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/util/latency_histogram.h"

namespace portalbd {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

class PrometheusText {
 public:
  // Opens a family: writes "# HELP name help" and "# TYPE name type".
  // Counters' names end in _total, by convention (not checked).
  void family(std::string_view name, MetricType type, std::string_view help);
  // One sample of the open family (counter or gauge).
  void sample(const MetricLabels& labels, double value);
  void sample(double value) { sample({}, value); }
  // The _bucket, _sum and _count samples of one histogram series of the open
  // family, in seconds; `labels` must not use "le".
  void histogram(const MetricLabels& labels, const HistogramSnapshot& h);

  const std::string& text() const { return out_; }
  // Families and samples left out as malformed.
  size_t refused() const { return refused_; }
  std::string take() { return std::move(out_); }

  // Exposed for tests.
  static bool valid_metric_name(std::string_view name);
  static bool valid_label_name(std::string_view name);
  static std::string format_value(double value);
  static std::string escape_label_value(std::string_view value);
  static std::string escape_help(std::string_view help);

 private:
  // Writes one sample line: name{labels[,extra]} value.
  void line(std::string_view name, const MetricLabels& labels, const std::pair<std::string, std::string>* extra,
            const std::string& value);
  bool labels_ok(const MetricLabels& labels) const;

  std::string out_;
  std::string name_;  // the open family; "" when none (or it was refused)
  MetricType type_ = MetricType::kGauge;
  std::set<std::string, std::less<>> seen_;
  size_t refused_ = 0;
};

}  // namespace portalbd
