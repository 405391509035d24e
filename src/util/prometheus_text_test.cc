#include "src/util/prometheus_text.h"

#include <doctest/doctest.h>

#include <string>

namespace portalbd {

TEST_SUITE("util.prometheus_text") {
  TEST_CASE("a counter family: HELP, TYPE, then labelled samples") {
    PrometheusText w;
    w.family("portalbd_nbd_requests_total", MetricType::kCounter, "NBD requests answered");
    w.sample({{"command", "read"}}, 3);
    w.sample({{"command", "write"}}, 12345678901234.0);
    CHECK(w.text() ==
          "# HELP portalbd_nbd_requests_total NBD requests answered\n"
          "# TYPE portalbd_nbd_requests_total counter\n"
          "portalbd_nbd_requests_total{command=\"read\"} 3\n"
          "portalbd_nbd_requests_total{command=\"write\"} 12345678901234\n");
    CHECK(w.refused() == 0);
  }

  TEST_CASE("a gauge without labels, and values that are not integers") {
    PrometheusText w;
    w.family("portalbd_up", MetricType::kGauge, "one");
    w.sample(1);
    w.sample(0.25);
    w.sample(1.0 / 0.0);
    CHECK(w.text() ==
          "# HELP portalbd_up one\n# TYPE portalbd_up gauge\nportalbd_up 1\nportalbd_up 0.25\n"
          "portalbd_up +Inf\n");
  }

  TEST_CASE("help text and label values are escaped") {
    PrometheusText w;
    w.family("m", MetricType::kGauge, "a \\ b\nc \"q\"");
    w.sample({{"path", "C:\\x\n\"y\""}}, 1);
    CHECK(w.text() == "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{path=\"C:\\\\x\\n\\\"y\\\"\"} 1\n");
  }

  TEST_CASE("a histogram: cumulative buckets in seconds ending at +Inf, then _sum and _count") {
    LatencyHistogram h;
    h.record_ns(40'000);          // <= 50 us
    h.record_ns(2'000'000);       // <= 2.5 ms
    h.record_ns(20'000'000'000);  // +Inf
    PrometheusText w;
    w.family("portalbd_nbd_request_duration_seconds", MetricType::kHistogram, "latency");
    w.histogram({{"command", "write"}}, h.snapshot());
    const std::string& t = w.text();
    CHECK(t.find("portalbd_nbd_request_duration_seconds_bucket{command=\"write\",le=\"5e-05\"} 1\n") !=
          std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_bucket{command=\"write\",le=\"0.001\"} 1\n") !=
          std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_bucket{command=\"write\",le=\"0.0025\"} 2\n") !=
          std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_bucket{command=\"write\",le=\"10\"} 2\n") != std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_bucket{command=\"write\",le=\"+Inf\"} 3\n") !=
          std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_sum{command=\"write\"} 20.00204\n") != std::string::npos);
    CHECK(t.find("portalbd_nbd_request_duration_seconds_count{command=\"write\"} 3\n") != std::string::npos);
    // One line per bound, the +Inf bucket, _sum, _count, and the two comment lines.
    size_t lines = 0;
    for (char c : t) lines += c == '\n';
    CHECK(lines == 2 + HistogramSnapshot::kNumBounds + 1 + 2);
    CHECK(w.refused() == 0);
  }

  TEST_CASE("malformed families and samples are left out, not written") {
    PrometheusText w;
    w.family("bad-name", MetricType::kGauge, "x");
    w.sample(1);  // no open family
    w.family("ok_total", MetricType::kCounter, "x");
    w.family("ok_total", MetricType::kCounter, "again");  // twice
    w.family("g", MetricType::kGauge, "x");
    w.sample({{"__reserved", "v"}}, 1);
    w.sample({{"9bad", "v"}}, 1);
    w.sample({{"a", "1"}, {"a", "2"}}, 1);  // label twice
    w.histogram({}, HistogramSnapshot{});   // not a histogram family
    w.family("h", MetricType::kHistogram, "x");
    w.sample(1);  // plain sample in a histogram
    w.histogram({{"le", "1"}}, HistogramSnapshot{});
    CHECK(w.refused() == 9);
    CHECK(w.text().find("bad-name") == std::string::npos);
    CHECK(w.text().find("again") == std::string::npos);
    CHECK(w.text().find("\ng{") == std::string::npos);
    CHECK(w.text().find("\nh") == std::string::npos);
  }

  TEST_CASE("names") {
    CHECK(PrometheusText::valid_metric_name("portalbd_x:y_total"));
    CHECK_FALSE(PrometheusText::valid_metric_name("1x"));
    CHECK_FALSE(PrometheusText::valid_metric_name(""));
    CHECK(PrometheusText::valid_label_name("command"));
    CHECK_FALSE(PrometheusText::valid_label_name("a:b"));
  }
}

}  // namespace portalbd
