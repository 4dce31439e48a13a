// qsearch-bench-gpu-index: the "gpu" index (exact search on the GPU, issue 14) against FAISS on
// the CPU, on N x dim unit vectors; row i depends only on (seed, i), generated in parallel
// blocks, never all held at once here (an int8 index keeps its own fp32 copy for rescoring):
//   --data uniform   (default) i.i.d. uniform components, normalised;
//   --data clustered a Gaussian mixture as bench_filter.cc's (--clusters centres, unit normal
//                    directions, noise 0.5/sqrt(dim) a component around them, normalised);
//                    queries are fresh samples of the same mixture.
// The gpu index: --gpus 0,0 (one shard per entry; an ordinal may repeat), --precision bf16|int8
// (int8: --rescore rows rescored exactly, default 64).
//
// For each size of --sizes (ascending; the rows of a smaller size are the first rows of the
// next, so the index grows in place): the load rate, then
//   - one query at a time (--queries of them): latency P50/P99/mean;
//   - --concurrency threads, each one query at a time, for --seconds: QPS and P50/P99 under load
//     (the index batches concurrent searches into one product);
//   - recall@k of --recall-queries queries against exact neighbours computed here on the CPU
//     (fp32, OpenBLAS over the regenerated rows).
// Then the CPU indexes qsearch ships (FAISS underneath), measured the same way: "flat" (BLAS
// scan) at --flat-n rows (30 single queries: they take tens of ms each) and "hnsw" (M 32,
// efConstruction 200, efSearch 128) at --hnsw-n rows (smaller: its build time).
// One JSON object a line on stdout (and a readable line on stderr).
//
//   qsearch-bench-gpu-index --sizes 1000000,10000000 --dim 1024 --flat-n 1000000 --hnsw-n 100000
//   qsearch-bench-gpu-index --sizes 1000000,10000000 --gpus 0,0 --precision int8 --data clustered
//       (continued) --flat-n 0 --hnsw-n 0
#include <cblas.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "index/gpu_index.h"
#include "index/vector_index.h"

using namespace qsearch;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::vector<int64_t> sizes = {1000000};
  int dim = 1024;
  int k = 10;
  int queries = 300;
  int concurrency = 64;
  double seconds = 5;
  int recall_queries = 20;
  int64_t faiss_flat_n = 1000000;  // --flat-n
  int64_t hnsw_n = 100000;
  uint64_t seed = 1;
  std::vector<int> gpus = {0};  // --gpus: the gpu index's shards
  std::string precision = "bf16";
  int rescore = 64;
  std::string data = "uniform";  // or "clustered"
  int clusters = 1000;
};

// The mixture's centres (--data clustered), from the seed alone; empty for uniform data.
std::vector<float> g_centres;
int g_clusters = 0;

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double uniform01(uint64_t x) { return (static_cast<double>(x >> 11) + 0.5) / 9007199254740992.0; }

// Component j of the i.i.d. standard normal sequence of state s (two per Box-Muller pair).
void normals(uint64_t s, int d, float* out) {
  for (int j = 0; j < d; j += 2) {
    s = mix(s);
    const double u1 = uniform01(s);
    s = mix(s);
    const double u2 = uniform01(s);
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[j] = static_cast<float>(r * std::cos(6.283185307179586 * u2));
    if (j + 1 < d) out[j + 1] = static_cast<float>(r * std::sin(6.283185307179586 * u2));
  }
}

void normalise(float* v, int d) {
  double sq = 0;
  for (int j = 0; j < d; ++j) sq += static_cast<double>(v[j]) * v[j];
  const float inv = sq > 0 ? static_cast<float>(1.0 / std::sqrt(sq)) : 0.f;
  for (int j = 0; j < d; ++j) v[j] *= inv;
}

void make_centres(const Args& a) {
  if (a.data != "clustered") return;
  g_clusters = a.clusters;
  g_centres.assign(static_cast<size_t>(a.clusters) * a.dim, 0.f);
  for (int c = 0; c < a.clusters; ++c) {
    float* v = g_centres.data() + static_cast<size_t>(c) * a.dim;
    normals(mix(a.seed * 7919 + static_cast<uint64_t>(c)), a.dim, v);
    normalise(v, a.dim);
  }
}

// A clustered row: centre (from the row's state) + noise 0.5 / sqrt(d) a component, normalised.
void clustered_row(uint64_t s, int d, float* row) {
  const float* c = g_centres.data() + static_cast<size_t>(mix(s ^ 0xC1u) % g_clusters) * d;
  normals(s, d, row);
  const float scale = static_cast<float>(0.5 / std::sqrt(static_cast<double>(d)));
  for (int j = 0; j < d; ++j) row[j] = c[j] + row[j] * scale;
  normalise(row, d);
}

// Rows [first, first + n) into out (n x d), in parallel.
void make_rows(uint64_t seed, int64_t first, int64_t n, int d, float* out) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([=] {
      for (int64_t i = t * n / threads; i < (t + 1) * n / threads; ++i) {
        float* row = out + i * d;
        uint64_t s = mix(seed * 0x100000001B3ULL ^ static_cast<uint64_t>(first + i));
        if (!g_centres.empty()) {
          clustered_row(s, d, row);
          continue;
        }
        double norm = 0;
        for (int j = 0; j < d; ++j) {
          s = mix(s);
          const float v = static_cast<float>(static_cast<int64_t>(s >> 11) - (int64_t{1} << 52)) /
                          static_cast<float>(int64_t{1} << 52);
          row[j] = v;
          norm += static_cast<double>(v) * v;
        }
        const float inv = static_cast<float>(1.0 / std::sqrt(norm));
        for (int j = 0; j < d; ++j) row[j] *= inv;
      }
    });
  }
  for (auto& t : pool) t.join();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

// Exact top-k row ids of each query over rows [0, n), recomputed from the generator.
std::vector<std::vector<int64_t>> exact(const Args& a, int64_t n, const std::vector<float>& q,
                                        int nq) {
  const int d = a.dim;
  const int64_t block = 65536;
  std::vector<std::vector<std::pair<float, int64_t>>> best(nq);
  std::vector<float> rows(static_cast<size_t>(block) * d), scores(static_cast<size_t>(block) * nq);
  for (int64_t b = 0; b < n; b += block) {
    const int64_t m = std::min(block, n - b);
    make_rows(a.seed, b, m, d, rows.data());
    // scores (m x nq) = rows (m x d) . q^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), nq, d, 1.f,
                rows.data(), d, q.data(), d, 0.f, scores.data(), nq);
    for (int qi = 0; qi < nq; ++qi) {
      auto& h = best[qi];
      for (int64_t i = 0; i < m; ++i) h.emplace_back(-scores[i * nq + qi], b + i);
      if (h.size() > static_cast<size_t>(4 * a.k + 4 * block)) {
        std::nth_element(h.begin(), h.begin() + a.k, h.end());
        h.resize(a.k);
      }
    }
  }
  std::vector<std::vector<int64_t>> out(nq);
  for (int qi = 0; qi < nq; ++qi) {
    auto& h = best[qi];
    std::sort(h.begin(), h.end());
    for (int i = 0; i < a.k && i < static_cast<int>(h.size()); ++i) out[qi].push_back(h[i].second);
  }
  return out;
}

double recall(const std::vector<std::vector<int64_t>>& truth, const std::vector<int64_t>& got,
              int k) {
  double hit = 0;
  for (size_t qi = 0; qi < truth.size(); ++qi) {
    std::set<int64_t> t(truth[qi].begin(), truth[qi].end());
    for (int i = 0; i < k; ++i) hit += t.count(got[qi * k + i]);
  }
  return hit / (static_cast<double>(truth.size()) * k);
}

std::vector<float> make_queries(const Args& a, int n, uint64_t salt) {
  std::vector<float> q(static_cast<size_t>(n) * a.dim);
  make_rows(a.seed ^ salt, 0, n, a.dim, q.data());
  return q;
}

std::string g_run_fields;  // the data kind (and, for the gpu index, its shards and precision)

void report(const char* what, int64_t n, const std::string& fields) {
  std::printf("{\"system\": \"%s\", \"n\": %lld, %s%s}\n", what, static_cast<long long>(n),
              fields.c_str(), g_run_fields.c_str());
  std::fflush(stdout);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Latency one query at a time, QPS with `concurrency` threads, recall against exact.
void measure(const Args& a, const VectorIndex& index, const char* name, int64_t n, double build_s,
             int single) {
  const int d = a.dim, k = a.k;
  auto q = make_queries(a, a.queries, 0x51);
  single = std::min(single, a.queries);
  std::vector<int64_t> out_l(static_cast<size_t>(a.queries) * k);
  std::vector<float> out_d(out_l.size());
  for (int i = 0; i < 3; ++i)
    (void)index.search(1, q.data(), k, {}, nullptr, out_l.data(), out_d.data());
  std::vector<double> lat;
  for (int i = 0; i < single; ++i) {
    const auto s0 = Clock::now();
    Status s = index.search(1, q.data() + static_cast<size_t>(i) * d, k, {}, nullptr, &out_l[i * k],
                            &out_d[i * k]);
    lat.push_back(secs(s0, Clock::now()) * 1e3);
    if (!s.is_ok()) std::fprintf(stderr, "search: %s\n", s.to_string().c_str());
  }
  const int rq = std::min(a.recall_queries, single);
  const auto r0 = Clock::now();
  std::vector<float> rqv(q.begin(), q.begin() + static_cast<size_t>(rq) * d);
  auto truth = exact(a, n, rqv, rq);
  const double rec = recall(truth, out_l, k);
  std::fprintf(stderr, "%s: exact neighbours of %d queries on the CPU in %.1f s\n", name, rq,
               secs(r0, Clock::now()));
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> clat(a.concurrency);
  std::vector<std::thread> threads;
  const auto c0 = Clock::now();
  for (int t = 0; t < a.concurrency; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int64_t> l(k);
      std::vector<float> dd(k);
      for (int i = t % a.queries; !stop.load(std::memory_order_relaxed);
           i = (i + a.concurrency) % a.queries) {
        const auto s0 = Clock::now();
        (void)index.search(1, q.data() + static_cast<size_t>(i) * d, k, {}, nullptr, l.data(),
                           dd.data());
        clat[t].push_back(secs(s0, Clock::now()) * 1e3);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = secs(c0, Clock::now());
  std::vector<double> all;
  for (auto& v : clat) all.insert(all.end(), v.begin(), v.end());
  const double qps = static_cast<double>(done.load()) / elapsed;
  double mean = 0;
  for (double x : lat) mean += x / lat.size();
  std::fprintf(
      stderr,
      "%s n=%lld: 1 query P50 %.3f ms P99 %.3f ms mean %.3f ms (%d queries) | %d concurrent: "
      "%.0f QPS, P50 %.3f ms P99 %.3f ms | recall@%d %.4f | build/load %.1f s\n",
      name, static_cast<long long>(n), pct(lat, 0.5), pct(lat, 0.99), mean, single, a.concurrency,
      qps, pct(all, 0.5), pct(all, 0.99), k, rec, build_s);
  report(
      name, n,
      "\"dim\": " + std::to_string(d) + ", \"k\": " + std::to_string(k) +
          ", \"p50_ms\": " + fmt("%.4f", pct(lat, 0.5)) +
          ", \"p99_ms\": " + fmt("%.4f", pct(lat, 0.99)) + ", \"mean_ms\": " + fmt("%.4f", mean) +
          ", \"single_queries\": " + std::to_string(single) +
          ", \"concurrency\": " + std::to_string(a.concurrency) + ", \"qps\": " + fmt("%.1f", qps) +
          ", \"loaded_p50_ms\": " + fmt("%.4f", pct(all, 0.5)) + ", \"loaded_p99_ms\": " +
          fmt("%.4f", pct(all, 0.99)) + ", \"recall\": " + fmt("%.4f", rec) +
          ", \"recall_queries\": " + std::to_string(rq) + ", \"build_s\": " + fmt("%.2f", build_s));
}

// Adds rows [from, to) in blocks; returns the seconds spent adding (generation excluded).
double fill(const Args& a, VectorIndex* index, int64_t from, int64_t to) {
  const int64_t block = 131072;
  std::vector<float> rows(static_cast<size_t>(std::min(block, to - from)) * a.dim);
  std::vector<int64_t> labels(rows.size() / a.dim);
  double add_s = 0;
  for (int64_t b = from; b < to; b += block) {
    const int64_t m = std::min(block, to - b);
    make_rows(a.seed, b, m, a.dim, rows.data());
    for (int64_t i = 0; i < m; ++i) labels[i] = b + i;
    const auto t0 = Clock::now();
    Status s = index->add(m, labels.data(), rows.data());
    add_s += secs(t0, Clock::now());
    if (!s.is_ok()) {
      std::fprintf(stderr, "add: %s\n", s.to_string().c_str());
      std::exit(1);
    }
  }
  return add_s;
}

std::unique_ptr<VectorIndex> make(const Args& a, const char* type) {
  VectorIndexConfig c;
  c.type = type;
  c.dimension = a.dim;
  if (std::string(type) == "gpu") {
    c.gpu_devices = a.gpus;
    c.gpu_precision = a.precision;
    c.gpu_rescore = a.rescore;
  }
  auto made = make_vector_index(c);
  if (!made.is_ok()) {
    std::fprintf(stderr, "%s index: %s\n", type, made.status().to_string().c_str());
    std::exit(1);
  }
  return std::move(made).value();
}

void bench_gpu(const Args& a) {
  std::string devices;
  for (int g : a.gpus) devices += (devices.empty() ? "" : ",") + std::to_string(g);
  g_run_fields = ", \"data\": \"" + a.data + "\", \"precision\": \"" + a.precision +
                 "\", \"shards\": " + std::to_string(a.gpus.size()) + ", \"gpus\": \"" + devices +
                 "\"" +
                 (a.precision == "int8" ? ", \"rescore\": " + std::to_string(a.rescore) : "");
  auto index = make(a, "gpu");
  if (index->type() != "gpu") {
    std::fprintf(stderr, "gpu index fell back to %s: %s\n", index->type().c_str(),
                 index->fallback_reason().c_str());
    report("qsearch-gpu", 0, "\"fallback_reason\": \"" + index->fallback_reason() + "\"");
    g_run_fields = ", \"data\": \"" + a.data + "\"";
    return;
  }
  int64_t have = 0;
  double load_s = 0;
  for (int64_t n : a.sizes) {
    load_s += fill(a, index.get(), have, n);
    have = n;
    std::string per_shard;
    for (const auto& s : index->device_shards())
      per_shard += (per_shard.empty() ? "" : ", ") + std::to_string(s.rows) + " on device " +
                   std::to_string(s.device);
    std::fprintf(stderr,
                 "qsearch-gpu (%s, %s, %zu shard(s): %s): %lld rows, %.2f GiB on the device, "
                 "%.2f GiB host, %.1f s adding\n",
                 a.data.c_str(), a.precision.c_str(), a.gpus.size(), per_shard.c_str(),
                 static_cast<long long>(n), index->device_bytes() / 1073741824.0,
                 index->memory_bytes() / 1073741824.0, load_s);
    measure(a, *index, "qsearch-gpu", n, load_s, a.queries);
  }
  g_run_fields = ", \"data\": \"" + a.data + "\"";
}

void bench_cpu(const Args& a, const char* type, const char* name, int64_t n, int single) {
  auto index = make(a, type);
  const double build_s = fill(a, index.get(), 0, n);
  measure(a, *index, name, n, build_s, single);
}

std::vector<int64_t> parse_sizes(const char* s) {
  std::vector<int64_t> out;
  for (const char* p = s; *p;) {
    out.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  bool gpu = true;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (f == "--sizes")
      a.sizes = parse_sizes(v), ++i;
    else if (f == "--dim")
      a.dim = std::atoi(v), ++i;
    else if (f == "--k")
      a.k = std::atoi(v), ++i;
    else if (f == "--queries")
      a.queries = std::atoi(v), ++i;
    else if (f == "--concurrency")
      a.concurrency = std::atoi(v), ++i;
    else if (f == "--seconds")
      a.seconds = std::atof(v), ++i;
    else if (f == "--recall-queries")
      a.recall_queries = std::atoi(v), ++i;
    else if (f == "--flat-n")
      a.faiss_flat_n = std::atoll(v), ++i;
    else if (f == "--hnsw-n")
      a.hnsw_n = std::atoll(v), ++i;
    else if (f == "--seed")
      a.seed = std::strtoull(v, nullptr, 10), ++i;
    else if (f == "--no-gpu")
      gpu = false;
    else if (f == "--gpus") {
      a.gpus.clear();
      for (const char* p = v; *p;) {
        a.gpus.push_back(static_cast<int>(std::strtol(p, const_cast<char**>(&p), 10)));
        if (*p == ',')
          ++p;
        else if (*p)
          break;
      }
      ++i;
    } else if (f == "--precision")
      a.precision = v, ++i;
    else if (f == "--rescore")
      a.rescore = std::atoi(v), ++i;
    else if (f == "--data")
      a.data = v, ++i;
    else if (f == "--clusters")
      a.clusters = std::atoi(v), ++i;
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench/bench_gpu_index.cc)\n",
                   f.c_str());
      return 2;
    }
  }
  if (a.dim < 1 || a.k < 1 || a.queries < 1 || a.concurrency < 1 || a.sizes.empty() ||
      a.gpus.empty() || (a.data != "uniform" && a.data != "clustered") || a.clusters < 1 ||
      (a.precision != "bf16" && a.precision != "int8")) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  make_centres(a);
  g_run_fields = ", \"data\": \"" + a.data + "\"";
  spdlog::set_default_logger(spdlog::stderr_color_mt("bench"));  // stdout holds only JSON lines
  if (gpu) bench_gpu(a);
  if (a.faiss_flat_n > 0) bench_cpu(a, "flat", "cpu-flat", a.faiss_flat_n, 30);
  if (a.hnsw_n > 0) bench_cpu(a, "hnsw", "cpu-hnsw", a.hnsw_n, a.queries);
  return 0;
}
