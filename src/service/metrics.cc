#include "service/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/build_info.h"

namespace qsearch {
namespace {

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(bounds_.size(), 0) {}

void Histogram::observe(double v) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++buckets_[i];
      break;
    }
  }
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string* out, const std::string& name,
                       const std::string& labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i];
    *out += name + "_bucket{" + labels + sep + "le=\"" + format_number(bounds_[i]) + "\"} " +
            std::to_string(cumulative) + "\n";
  }
  *out += name + "_bucket{" + labels + sep + "le=\"+Inf\"} " + std::to_string(count_) + "\n";
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + braces + " " + format_number(sum_) + "\n";
  *out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : batch_tokens_({16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536}),
      batch_sequences_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512}),
      batch_seconds_(kLatencyBounds) {}

void Metrics::observe_request(const std::string& method, const std::string& route, int status,
                              double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{method, route, status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) it = latency_.emplace(route, Histogram(kLatencyBounds)).first;
  it->second.observe(seconds);
}

void Metrics::observe_batch(const std::string& backend, const std::string& task, int64_t tokens,
                            int64_t sequences, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  batch_tokens_.observe(static_cast<double>(tokens));
  batch_sequences_.observe(static_cast<double>(sequences));
  batch_seconds_.observe(seconds);
  ++batches_[{backend, task}];
  if (task == "rerank") {
    tokens_reranked_ += tokens;
  } else {
    tokens_embedded_ += tokens;
    sequences_embedded_ += sequences;
  }
}

void Metrics::add_rerank(int64_t pairs, bool from_search) {
  std::lock_guard<std::mutex> lock(mu_);
  pairs_reranked_ += pairs;
  if (from_search)
    ++reranked_searches_;
  else
    ++rerank_requests_;
}

int64_t Metrics::tokens_reranked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_reranked_;
}

void Metrics::add_dropped(int64_t sequences) {
  std::lock_guard<std::mutex> lock(mu_);
  dropped_ += sequences;
}

void Metrics::add_rejected() {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejected_;
}

void Metrics::add_documents_written(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  documents_written_ += n;
}

void Metrics::add_search() {
  std::lock_guard<std::mutex> lock(mu_);
  ++searches_;
}

int64_t Metrics::tokens_embedded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_embedded_;
}

int64_t Metrics::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

std::string Metrics::label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void Metrics::render_header(std::string* out, const std::string& name, const std::string& type,
                            const std::string& help) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Metrics::render_sample(std::string* out, const std::string& name, const std::string& labels,
                            double value) {
  *out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + format_number(value) + "\n";
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  render_header(&out, "qsearch_http_requests_total", "counter",
                "HTTP requests by method, route and status.");
  for (const auto& [key, n] : requests_) {
    const auto& [method, route, status] = key;
    render_sample(&out, "qsearch_http_requests_total",
                  "method=\"" + label_value(method) + "\",route=\"" + label_value(route) +
                      "\",status=\"" + std::to_string(status) + "\"",
                  static_cast<double>(n));
  }
  render_header(&out, "qsearch_http_request_duration_seconds", "histogram",
                "HTTP request latency by route.");
  for (const auto& [route, h] : latency_)
    h.render(&out, "qsearch_http_request_duration_seconds", "route=\"" + label_value(route) + "\"");

  render_header(&out, "qsearch_batch_tokens", "histogram", "Tokens per engine batch.");
  batch_tokens_.render(&out, "qsearch_batch_tokens", "");
  render_header(&out, "qsearch_batch_sequences", "histogram", "Sequences per engine batch.");
  batch_sequences_.render(&out, "qsearch_batch_sequences", "");
  render_header(&out, "qsearch_batch_duration_seconds", "histogram",
                "Engine time per batch.");
  batch_seconds_.render(&out, "qsearch_batch_duration_seconds", "");
  render_header(&out, "qsearch_batches_total", "counter",
                "Engine batches by backend and task (embed, rerank).");
  for (const auto& [key, n] : batches_)
    render_sample(&out, "qsearch_batches_total",
                  "backend=\"" + label_value(key.first) + "\",task=\"" + label_value(key.second) +
                      "\"",
                  static_cast<double>(n));

  render_header(&out, "qsearch_tokens_embedded_total", "counter",
                "Tokens run through the embedding model.");
  render_sample(&out, "qsearch_tokens_embedded_total", "", static_cast<double>(tokens_embedded_));
  render_header(&out, "qsearch_sequences_embedded_total", "counter", "Texts embedded.");
  render_sample(&out, "qsearch_sequences_embedded_total", "",
                static_cast<double>(sequences_embedded_));
  render_header(&out, "qsearch_dropped_sequences_total", "counter",
                "Texts dropped before embedding because their client disconnected.");
  render_sample(&out, "qsearch_dropped_sequences_total", "", static_cast<double>(dropped_));
  render_header(&out, "qsearch_rejected_requests_total", "counter",
                "Requests refused with 429 because the queue was full.");
  render_sample(&out, "qsearch_rejected_requests_total", "", static_cast<double>(rejected_));
  render_header(&out, "qsearch_documents_written_total", "counter", "Documents upserted.");
  render_sample(&out, "qsearch_documents_written_total", "",
                static_cast<double>(documents_written_));
  render_header(&out, "qsearch_searches_total", "counter", "Searches served.");
  render_sample(&out, "qsearch_searches_total", "", static_cast<double>(searches_));
  render_header(&out, "qsearch_rerank_requests_total", "counter",
                "Rerank requests served, by source (/v1/rerank, search with \"rerank\").");
  render_sample(&out, "qsearch_rerank_requests_total", "source=\"rerank\"",
                static_cast<double>(rerank_requests_));
  render_sample(&out, "qsearch_rerank_requests_total", "source=\"search\"",
                static_cast<double>(reranked_searches_));
  render_header(&out, "qsearch_rerank_pairs_total", "counter",
                "(query, document) pairs scored by the reranker.");
  render_sample(&out, "qsearch_rerank_pairs_total", "", static_cast<double>(pairs_reranked_));
  render_header(&out, "qsearch_rerank_tokens_total", "counter",
                "Tokens run through the reranker model.");
  render_sample(&out, "qsearch_rerank_tokens_total", "", static_cast<double>(tokens_reranked_));
  return out;
}

}  // namespace qsearch

// ---- process metrics ----------------------------------------------------------------------

namespace qsearch {
namespace {

std::string read_small_file(const char* path) {
  std::string out;
  if (FILE* f = std::fopen(path, "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// Boot time in Unix seconds (the "btime" line of /proc/stat), 0 if unknown.
double boot_time() {
  std::string stat = read_small_file("/proc/stat");
  size_t p = stat.find("\nbtime ");
  return p == std::string::npos ? 0 : std::atof(stat.c_str() + p + 7);
}

}  // namespace

void Metrics::render_process(std::string* out) {
  render_header(out, "qsearch_build_info", "gauge",
                "Always 1; the labels say which build is running.");
  render_sample(out, "qsearch_build_info",
                "version=\"" + label_value(version()) + "\",commit=\"" +
                    label_value(build_commit()) + "\"",
                1);
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // /proc/self/stat: the fields after the parenthesised command name, from field 3 (state).
  std::string stat = read_small_file("/proc/self/stat");
  size_t paren = stat.rfind(')');
  if (paren != std::string::npos && ticks > 0) {
    std::vector<std::string> f;
    size_t i = paren + 2;
    while (i < stat.size()) {
      size_t j = stat.find(' ', i);
      if (j == std::string::npos) j = stat.size();
      f.push_back(stat.substr(i, j - i));
      i = j + 1;
    }
    // f[0] is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
    if (f.size() > 21) {
      double cpu = (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / ticks;
      render_header(out, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
      render_sample(out, "process_cpu_seconds_total", "", cpu);
      render_header(out, "process_virtual_memory_bytes", "gauge",
                    "Virtual memory size in bytes.");
      render_sample(out, "process_virtual_memory_bytes", "", std::atof(f[20].c_str()));
      render_header(out, "process_resident_memory_bytes", "gauge",
                    "Resident memory size in bytes.");
      render_sample(out, "process_resident_memory_bytes", "", std::atof(f[21].c_str()) * page);
      if (double boot = boot_time(); boot > 0) {
        render_header(out, "process_start_time_seconds", "gauge",
                      "Start time of the process since unix epoch in seconds.");
        render_sample(out, "process_start_time_seconds", "",
                      std::floor((boot + std::atof(f[19].c_str()) / ticks) * 100) / 100);
      }
    }
  }
  std::error_code ec;
  int64_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++fds;
  if (!ec) {
    render_header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    render_sample(out, "process_open_fds", "", static_cast<double>(fds));
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    render_header(out, "process_max_fds", "gauge",
                  "Maximum number of open file descriptors.");
    render_sample(out, "process_max_fds", "",
                  rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(rl.rlim_cur));
  }
}

}  // namespace qsearch
