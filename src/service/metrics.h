// Process metrics in the Prometheus text format (version 0.0.4). Counters and histograms are
// recorded here by the HTTP layer and the scheduler; gauges that belong to other components
// (queue depth, documents per collection, engine memory) are appended at render time.
//
// Thread safety: every method may be called from any thread (one mutex; the recorded events
// are per request or per batch, never per token).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace qsearch {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends name_bucket{labels,le=...}, name_sum and name_count lines.
  void render(std::string* out, const std::string& name, const std::string& labels) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // non-cumulative counts per bound; +Inf is count_
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One HTTP request: route is the route pattern (e.g. "/collections/{name}/search").
  void observe_request(const std::string& method, const std::string& route, int status,
                       double seconds);
  // One engine batch of a task ("embed" or "rerank"; scheduler.h Task).
  void observe_batch(const std::string& backend, const std::string& task, int64_t tokens,
                     int64_t sequences, double seconds);
  // Sequences dropped before embedding because their client went away.
  void add_dropped(int64_t sequences);
  // Requests refused because the queue was full.
  void add_rejected();
  // Documents written by upsert (after embedding) and searches served.
  void add_documents_written(int64_t n);
  void add_search();
  // Rerank requests (/v1/rerank and reranked searches): pairs scored.
  void add_rerank(int64_t pairs, bool from_search);

  int64_t tokens_embedded() const;
  int64_t tokens_reranked() const;
  int64_t dropped() const;

  // The metrics above in Prometheus text format.
  std::string render() const;

  // Helpers for gauges rendered by others: "# HELP", "# TYPE" and one sample line.
  static void render_header(std::string* out, const std::string& name, const std::string& type,
                            const std::string& help);
  static void render_sample(std::string* out, const std::string& name, const std::string& labels,
                            double value);
  // Escapes a label value (backslash, quote, newline).
  static std::string label_value(const std::string& v);
  // qsearch_build_info{version,commit} 1 and the standard process metrics of the Prometheus
  // client libraries, read from /proc: process_cpu_seconds_total,
  // process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
  // process_max_fds, process_start_time_seconds (those /proc cannot give are left out).
  static void render_process(std::string* out);

 private:
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;  // method, route, status
  std::map<std::string, Histogram> latency_;                                 // by route
  Histogram batch_tokens_;
  Histogram batch_sequences_;
  Histogram batch_seconds_;
  std::map<std::pair<std::string, std::string>, uint64_t> batches_;  // by backend, task
  int64_t tokens_embedded_ = 0;
  int64_t sequences_embedded_ = 0;
  int64_t dropped_ = 0;
  int64_t rejected_ = 0;
  int64_t documents_written_ = 0;
  int64_t searches_ = 0;
  int64_t tokens_reranked_ = 0;
  int64_t rerank_requests_ = 0;
  int64_t reranked_searches_ = 0;
  int64_t pairs_reranked_ = 0;
};

}  // namespace qsearch
