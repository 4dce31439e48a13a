// qsearch-bench-search: search QPS, latency and recall@k of the flat, HNSW and IVF indexes at
// scale (issue 5), through the CollectionStore API directly (RocksDB + FAISS, no HTTP, no model).
//
// For each index type (--types, in order): a fresh collection in a scratch data directory is
// filled with n vectors of `dim` floats (upserts of --batch documents, each one WriteBatch +
// index add; IVF training happens inside the upsert that reaches the training threshold, since
// the store runs without its background thread here unless --save-interval is set: the ingest
// time includes it), then searched:
//   - one thread: the queries in order, one at a time (latency mean/P50/P99, QPS = 1/mean),
//     for all --queries or until --latency-seconds passed (at least 10 queries);
//   - --threads threads cycling through the queries for --qps-seconds (QPS, P50/P99 under load).
// recall@k is measured over the one-thread queries against exact neighbours computed here
// independently (blocked OpenBLAS sgemm over the same vectors, not through FAISS).
//
// Data (--data): "clustered" (default): a Gaussian mixture on the unit sphere: --clusters centres
// (random Gaussian directions, unit norm), each vector = its centre + isotropic Gaussian noise of
// norm about --noise, normalised; the cluster of vector i is a hash of (seed, i). Queries are
// drawn the same way, independently (fresh samples, not copies of stored vectors). "random":
// i.i.d. Gaussian directions (no structure: the worst case for approximate indexes). Vector i
// depends only on (seed, i), so results do not depend on the thread count. All n vectors are
// generated once, in parallel, and held in memory (n * dim * 4 bytes).
//
// Results go to stdout as a table and, after each index type, to --json (so a run stopped by a
// time limit keeps the types already done). Progress lines (stderr) carry elapsed seconds.
//
//   qsearch-bench-search --n 1000000 --dim 1024 --types flat,hnsw,ivf --json out.json
//
// Quantized types (issue 14): hnsw-sq8, hnsw-fp16 (HNSW over scalar-quantized vectors) and ivf-pq
// (--pq-m, 0: dimension/4; --pq-nbits), each rescoring its best --rescore candidates exactly
// from the stored embeddings. Every type reports bytes_per_vector (GET collection's figure),
// and the build time includes waiting until the HNSW inserter has emptied its pending buffer.
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "collection/collections.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Options {
  int64_t n = 1000000;
  int dim = 1024;
  int queries = 1000;
  int k = 10;
  std::vector<std::string> types = {"flat", "hnsw", "ivf"};
  int threads = 0;               // search threads of the QPS phase; 0: hardware concurrency
  int batch = 2000;              // documents per upsert
  std::string data = "clustered";
  int clusters = 1000;
  double noise = 0.5;            // clustered: noise norm relative to the unit centre
  int hnsw_m = 32, ef_construction = 200, ef_search = 128;
  int nlist = 0;                 // 0: the store's default (about 4*sqrt(n) at training time)
  int nprobe = 16;
  int ivf_train_min = 0;         // 0: the store's default (39 * nlist, or 24336 with nlist 0)
  int rescore = 100;             // quantized types: candidates rescored exactly
  int pq_m = 0;                  // ivf-pq: sub-quantizers (0: dim/4)
  int pq_nbits = 8;
  double latency_seconds = 60;   // one-thread phase: stop after this long (>= 10 queries)
  double qps_seconds = 10;       // multi-thread phase length
  double ingest_seconds = 0;     // > 0: stop ingesting after this long and measure what is in
  int save_interval = 0;         // the store's index_save_interval_s (0: no background saves)
  std::string data_dir;          // default: a temp dir (removed afterwards)
  std::string json_path;
  uint64_t seed = 1;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: qsearch-bench-search [--n N] [--dim D] [--queries Q] [--k K]\n"
               "  [--types flat,hnsw,ivf] [--threads T] [--batch B] [--data clustered|random]\n"
               "  [--clusters C] [--noise X] [--hnsw-m M] [--ef-construction E] [--ef-search E]\n"
               "  [--nlist L] [--nprobe P] [--ivf-train-min N] [--latency-seconds S]\n"
               "  [--qps-seconds S] [--ingest-seconds S] [--save-interval S] [--data-dir DIR]\n"
               "  [--json FILE] [--seed S] [--rescore R] [--pq-m M] [--pq-nbits B]\n"
               "  types: flat, hnsw, ivf, hnsw-sq8, hnsw-fp16, ivf-pq\n");
  std::exit(code);
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    try {
      if (a == "--n") o->n = std::stoll(val());
      else if (a == "--dim") o->dim = std::stoi(val());
      else if (a == "--queries") o->queries = std::stoi(val());
      else if (a == "--k") o->k = std::stoi(val());
      else if (a == "--types") {
        o->types.clear();
        std::stringstream ss(val());
        std::string t;
        while (std::getline(ss, t, ',')) {
          if (t != "flat" && t != "hnsw" && t != "ivf" && t != "hnsw-sq8" && t != "hnsw-fp16" &&
              t != "ivf-pq") {
            std::fprintf(stderr, "--types: unknown index type '%s' (flat, hnsw, ivf, hnsw-sq8, hnsw-fp16, ivf-pq)\n", t.c_str());
            return false;
          }
          o->types.push_back(t);
        }
      }
      else if (a == "--threads") o->threads = std::stoi(val());
      else if (a == "--batch") o->batch = std::stoi(val());
      else if (a == "--data") o->data = val();
      else if (a == "--clusters") o->clusters = std::stoi(val());
      else if (a == "--noise") o->noise = std::stod(val());
      else if (a == "--hnsw-m") o->hnsw_m = std::stoi(val());
      else if (a == "--ef-construction") o->ef_construction = std::stoi(val());
      else if (a == "--ef-search") o->ef_search = std::stoi(val());
      else if (a == "--nlist") o->nlist = std::stoi(val());
      else if (a == "--nprobe") o->nprobe = std::stoi(val());
      else if (a == "--ivf-train-min") o->ivf_train_min = std::stoi(val());
      else if (a == "--rescore") o->rescore = std::stoi(val());
      else if (a == "--pq-m") o->pq_m = std::stoi(val());
      else if (a == "--pq-nbits") o->pq_nbits = std::stoi(val());
      else if (a == "--latency-seconds") o->latency_seconds = std::stod(val());
      else if (a == "--qps-seconds") o->qps_seconds = std::stod(val());
      else if (a == "--ingest-seconds") o->ingest_seconds = std::stod(val());
      else if (a == "--save-interval") o->save_interval = std::stoi(val());
      else if (a == "--data-dir") o->data_dir = val();
      else if (a == "--json") o->json_path = val();
      else if (a == "--seed") o->seed = std::stoull(val());
      else if (a == "--help" || a == "-h") usage(0);
      else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); usage(2); }
    } catch (const std::exception&) {
      std::fprintf(stderr, "%s: not a number\n", a.c_str());
      return false;
    }
  }
  if (o->threads <= 0) o->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o->data != "clustered" && o->data != "random") {
    std::fprintf(stderr, "--data must be clustered or random\n");
    return false;
  }
  if (o->n < o->k || o->dim < 1 || o->queries < 1 || o->k < 1 || o->k > 1000 || o->batch < 1 ||
      o->clusters < 1 || o->noise < 0 || o->types.empty()) {
    std::fprintf(stderr, "bad values: need n >= k, 1 <= k <= 1000, dim, queries, batch, clusters >= 1\n");
    return false;
  }
  return true;
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Runs f(begin, end) over [0, n) split into `threads` contiguous ranges.
template <typename F>
void parallel_ranges(int64_t n, int threads, F f) {
  std::vector<std::thread> ts;
  const int64_t per = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const int64_t b = t * per, e = std::min(n, b + per);
    if (b < e) ts.emplace_back([=] { f(b, e); });
  }
  for (auto& th : ts) th.join();
}

// The data set: vector i and query q depend only on (seed, i) / (seed, q).
class Data {
 public:
  explicit Data(const Options& o) : o_(o) {
    if (o.data == "clustered") {
      centres_.resize(static_cast<size_t>(o.clusters) * o.dim);
      std::mt19937_64 rng(o.seed * 77 + 5);
      std::normal_distribution<float> g;
      for (auto& x : centres_) x = g(rng);
      for (int c = 0; c < o.clusters; ++c) normalize(&centres_[static_cast<size_t>(c) * o.dim]);
    }
  }
  void vector(int64_t i, float* out) const { sample(0x9E3779B97F4A7C15ull, i, out); }
  void query(int64_t q, float* out) const { sample(0xC2B2AE3D27D4EB4Full, q, out); }

 private:
  void sample(uint64_t salt, int64_t i, float* out) const {
    std::mt19937_64 rng(o_.seed ^ (salt + static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ull));
    std::normal_distribution<float> g;
    if (o_.data == "clustered") {
      const float* c = &centres_[static_cast<size_t>(rng() % o_.clusters) * o_.dim];
      const float scale = static_cast<float>(o_.noise / std::sqrt(static_cast<double>(o_.dim)));
      for (int j = 0; j < o_.dim; ++j) out[j] = c[j] + g(rng) * scale;
    } else {
      for (int j = 0; j < o_.dim; ++j) out[j] = g(rng);
    }
    normalize(out);
  }
  void normalize(float* v) const {
    double s = 0;
    for (int j = 0; j < o_.dim; ++j) s += static_cast<double>(v[j]) * v[j];
    const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
    for (int j = 0; j < o_.dim; ++j) v[j] *= inv;
  }
  const Options& o_;
  std::vector<float> centres_;
};

// Exact top-k by inner product (= cosine: all vectors are unit) of every query among the first n
// vectors: blocked sgemm
// (one BLAS thread per worker) and a min-heap per query and worker, merged at the end.
std::vector<std::vector<int64_t>> exact_neighbours(const Options& o, int64_t n, const std::vector<float>& xs,
                                                   const std::vector<float>& queries) {
  const int nq = o.queries, dim = o.dim, k = o.k;
  using Entry = std::pair<float, int64_t>;
  using Heap = std::priority_queue<Entry, std::vector<Entry>, std::greater<>>;
  std::vector<std::vector<Heap>> heaps(o.threads, std::vector<Heap>(nq));
  const int64_t block = 4096;
  std::atomic<int64_t> next{0};
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  std::vector<std::thread> ts;
  for (int t = 0; t < o.threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<float> scores(static_cast<size_t>(block) * nq);
      for (;;) {
        const int64_t b0 = next.fetch_add(block);
        if (b0 >= n) break;
        const int64_t nb = std::min(block, n - b0);
        // scores[i * nq + q] = x_(b0+i) . q_q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nb), nq, dim, 1.f,
                    xs.data() + static_cast<size_t>(b0) * dim, dim, queries.data(), dim, 0.f,
                    scores.data(), nq);
        for (int64_t i = 0; i < nb; ++i)
          for (int q = 0; q < nq; ++q) {
            const float s = scores[static_cast<size_t>(i) * nq + q];
            Heap& h = heaps[t][q];
            if (static_cast<int>(h.size()) < k) h.emplace(s, b0 + i);
            else if (s > h.top().first) { h.pop(); h.emplace(s, b0 + i); }
          }
      }
    });
  }
  for (auto& th : ts) th.join();
  openblas_set_num_threads(blas_threads);  // FAISS (IVF training, batched adds) uses BLAS threads
  std::vector<std::vector<int64_t>> out(nq);
  for (int q = 0; q < nq; ++q) {
    std::vector<Entry> all;
    for (int t = 0; t < o.threads; ++t)
      while (!heaps[t][q].empty()) { all.push_back(heaps[t][q].top()); heaps[t][q].pop(); }
    std::sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) { return a.first > b.first; });
    for (int i = 0; i < k && i < static_cast<int>(all.size()); ++i) out[q].push_back(all[i].second);
  }
  return out;
}

// Exact neighbours over the first n vectors, recomputed only when n changes (a type whose
// ingest stopped at --ingest-seconds holds fewer vectors).
struct Truth {
  Truth(const Options& o_, const std::vector<float>& xs_, const std::vector<float>& queries_)
      : o(o_), xs(xs_), queries(queries_) {}
  const Options& o;
  const std::vector<float>& xs;
  const std::vector<float>& queries;
  int64_t n = -1;
  double seconds = 0;
  std::vector<std::vector<int64_t>> ids;
  const std::vector<std::vector<int64_t>>& over(int64_t count) {
    if (count != n) {
      const auto t0 = Clock::now();
      ids = exact_neighbours(o, count, xs, queries);
      seconds = since(t0);
      n = count;
    }
    return ids;
  }
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * v.size()));
  return v[std::min(i == 0 ? 0 : i - 1, v.size() - 1)];
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

[[noreturn]] void fail(const std::string& what, const qsearch::Status& st) {
  std::fprintf(stderr, "bench-search: %s: %s\n", what.c_str(), st.to_string().c_str());
  std::exit(1);
}

json run_type(const Options& o, const std::vector<float>& xs, qsearch::CollectionStore& store,
              const std::string& type, const std::vector<float>& queries,
              Truth& exact, Clock::time_point start) {
  using namespace qsearch;
  CollectionSpec spec;
  spec.name = "bench_" + type;
  spec.dimension = o.dim;
  spec.metric = Metric::kCosine;
  const size_t dash = type.find('-');
  spec.index.type = type.substr(0, dash);
  if (dash != std::string::npos) {
    spec.index.quantizer = type.substr(dash + 1);
    spec.index.rescore = o.rescore;
    spec.index.pq_m = o.pq_m > 0 ? o.pq_m : IndexSpec::default_pq_m(o.dim);
    spec.index.pq_nbits = o.pq_nbits;
  }
  spec.index.hnsw_m = o.hnsw_m;
  spec.index.hnsw_ef_construction = o.ef_construction;
  spec.index.hnsw_ef_search = o.ef_search;
  spec.index.ivf_nlist = o.nlist;
  spec.index.ivf_nprobe = o.nprobe;
  spec.index.ivf_train_min = o.ivf_train_min;
  spec.model = "bench";
  store.delete_collection(spec.name).ignore();
  if (Status st = store.create_collection(spec); !st.is_ok()) fail("create " + type, st);

  // Ingest: upserts of --batch documents; the slowest one is reported (IVF: the training).
  const auto t0 = Clock::now();
  int64_t ingested = 0;
  double slowest_batch = 0;
  int64_t slowest_at = 0;
  double next_report = 10;
  std::vector<Document> docs;
  for (int64_t b0 = 0; b0 < o.n; b0 += o.batch) {
    const int64_t nb = std::min<int64_t>(o.batch, o.n - b0);
    docs.assign(static_cast<size_t>(nb), Document{});
    for (int64_t i = 0; i < nb; ++i) {
      Document& doc = docs[static_cast<size_t>(i)];
      doc.id = std::to_string(b0 + i);
      const float* v = xs.data() + static_cast<size_t>(b0 + i) * o.dim;
      doc.embedding.assign(v, v + o.dim);
    }
    const auto b_start = Clock::now();
    if (Status st = store.upsert(spec.name, docs); !st.is_ok()) fail("upsert " + type, st);
    const double b_s = since(b_start);
    if (b_s > slowest_batch) { slowest_batch = b_s; slowest_at = b0 + nb; }
    ingested = b0 + nb;
    const double s = since(t0);
    const bool out_of_time = o.ingest_seconds > 0 && s > o.ingest_seconds && ingested < o.n;
    if (s >= next_report || ingested == o.n || out_of_time) {
      std::fprintf(stderr, "  [%6.1f s] %s: %lld / %lld vectors, %.1f s, %.0f vectors/s\n",
                   since(start), type.c_str(), static_cast<long long>(b0 + nb),
                   static_cast<long long>(o.n), s, (b0 + nb) / s);
      next_report = s + 10;
    }
    if (out_of_time) {
      std::fprintf(stderr, "  %s: --ingest-seconds %.0f reached: measuring the %lld vectors ingested\n",
                   type.c_str(), o.ingest_seconds, static_cast<long long>(ingested));
      break;
    }
  }
  // The graph complete: wait for the background inserter (counted in the build time).
  for (;;) {
    auto pending = store.get_collection(spec.name);
    if (!pending.is_ok() || pending->index_pending == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double ingest_s = since(t0);
  auto info = store.get_collection(spec.name);
  const int64_t index_bytes = info.is_ok() ? info->index_bytes : 0;
  const int64_t bytes_per_vector =
      info.is_ok() && info->index_vectors > 0 ? info->index_bytes / info->index_vectors : 0;
  const std::string effective = info.is_ok() ? info->index_type : "?";
  std::fprintf(stderr, "  [%6.1f s] %s: ingested %lld vectors in %.1f s (index now %s; slowest upsert %.2f s, at %lld)\n",
               since(start), type.c_str(), static_cast<long long>(ingested), ingest_s, effective.c_str(),
               slowest_batch, static_cast<long long>(slowest_at));
  const auto& truth = exact.over(ingested);

  // One thread: latency and recall.
  SearchParams params;
  params.k = o.k;
  std::vector<double> lat;
  double recall_sum = 0;
  std::vector<float> q(static_cast<size_t>(o.dim));
  const auto l0 = Clock::now();
  for (int qi = 0; qi < o.queries; ++qi) {
    if (qi >= 10 && since(l0) > o.latency_seconds) break;
    q.assign(queries.begin() + static_cast<size_t>(qi) * o.dim, queries.begin() + static_cast<size_t>(qi + 1) * o.dim);
    const auto s0 = Clock::now();
    auto hits = store.search(spec.name, q, params);
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
    if (!hits.is_ok()) fail("search " + type, hits.status());
    const std::set<int64_t> want(truth[qi].begin(), truth[qi].end());
    int found = 0;
    for (const auto& h : *hits) found += want.count(std::stoll(h.id)) ? 1 : 0;
    recall_sum += static_cast<double>(found) / std::max<size_t>(1, want.size());
  }
  const int measured = static_cast<int>(lat.size());
  const double mean = mean_of(lat);
  std::fprintf(stderr, "  [%6.1f s] %s: %d one-thread queries, mean %.3f ms, recall@%d %.4f\n",
               since(start), type.c_str(), measured, mean, o.k, recall_sum / measured);

  // --threads threads cycling through the queries for --qps-seconds.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::mutex lat_mu;
  std::vector<double> load_lat;
  const auto q0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < o.threads; ++t)
    ts.emplace_back([&, t] {
      std::vector<float> v(static_cast<size_t>(o.dim));
      std::vector<double> mine;
      for (int64_t i = t; !stop.load(); i += o.threads) {
        const int qi = static_cast<int>(i % o.queries);
        v.assign(queries.begin() + static_cast<size_t>(qi) * o.dim, queries.begin() + static_cast<size_t>(qi + 1) * o.dim);
        const auto s0 = Clock::now();
        if (store.search(spec.name, v, params).is_ok()) {
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
        } else {
          errors++;
        }
        if (since(q0) > o.qps_seconds) stop = true;
      }
      std::lock_guard<std::mutex> lock(lat_mu);
      load_lat.insert(load_lat.end(), mine.begin(), mine.end());
    });
  for (auto& th : ts) th.join();
  const double qps_s = since(q0);
  if (errors > 0) std::fprintf(stderr, "bench-search: %lld failed searches under load\n", static_cast<long long>(errors.load()));
  std::fprintf(stderr, "  [%6.1f s] %s: %.1f QPS with %d threads\n", since(start), type.c_str(),
               load_lat.size() / qps_s, o.threads);

  json r = {{"index", type}, {"effective_index", effective}, {"n", ingested}, {"dim", o.dim},
            {"complete", ingested == o.n},
            {"ingest_seconds", ingest_s}, {"ingest_vectors_per_s", ingested / ingest_s},
            {"slowest_upsert_seconds", slowest_batch}, {"slowest_upsert_at", slowest_at},
            {"queries_one_thread", measured}, {"k", o.k}, {"recall_at_k", recall_sum / measured},
            {"latency_ms", {{"mean", mean}, {"p50", pct(lat, 0.5)}, {"p99", pct(lat, 0.99)}}},
            {"single_thread_qps", 1000.0 / mean},
            {"threads", o.threads}, {"qps", load_lat.size() / qps_s}, {"qps_seconds", qps_s},
            {"queries_under_load", load_lat.size()}, {"errors_under_load", errors.load()},
            {"latency_under_load_ms", {{"mean", mean_of(load_lat)}, {"p50", pct(load_lat, 0.5)}, {"p99", pct(load_lat, 0.99)}}}};
  r["index_bytes"] = index_bytes;
  r["bytes_per_vector"] = bytes_per_vector;
  if (spec.index.type == "hnsw") r["params"] = {{"m", o.hnsw_m}, {"ef_construction", o.ef_construction}, {"ef_search", o.ef_search}};
  if (spec.index.type == "ivf") r["params"] = {{"nlist", o.nlist}, {"nprobe", o.nprobe}, {"train_min", o.ivf_train_min}};
  if (dash != std::string::npos) {
    r["params"]["quantizer"] = spec.index.quantizer;
    r["params"]["rescore"] = spec.index.rescore;
    if (spec.index.quantizer == "pq") {
      r["params"]["pq_m"] = spec.index.pq_m;
      r["params"]["pq_nbits"] = spec.index.pq_nbits;
    }
  }
  const auto d0 = Clock::now();
  store.delete_collection(spec.name).ignore();
  std::fprintf(stderr, "  [%6.1f s] %s: collection deleted in %.1f s\n", since(start), type.c_str(), since(d0));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  const auto start = Clock::now();
  const bool own_dir = o.data_dir.empty();
  if (own_dir) {
    o.data_dir = (fs::temp_directory_path() / ("qsearch-bench-search-" + std::to_string(::getpid()))).string();
  }
  fs::create_directories(o.data_dir);
  Data data(o);

  std::fprintf(stderr, "bench-search: n %lld, dim %d, %s data (%d clusters, noise %.2f), %d queries, k %d, %d threads\n",
               static_cast<long long>(o.n), o.dim, o.data.c_str(), o.clusters, o.noise, o.queries,
               o.k, o.threads);
  std::vector<float> xs(static_cast<size_t>(o.n) * o.dim);
  std::vector<float> queries(static_cast<size_t>(o.queries) * o.dim);
  parallel_ranges(o.n, o.threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) data.vector(i, &xs[static_cast<size_t>(i) * o.dim]);
  });
  parallel_ranges(o.queries, o.threads, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) data.query(q, &queries[static_cast<size_t>(q) * o.dim]);
  });
  std::fprintf(stderr, "  [%6.1f s] generated %lld vectors and %d queries\n", since(start),
               static_cast<long long>(o.n), o.queries);
  Truth exact{o, xs, queries};
  exact.over(o.n);
  const double truth_s = exact.seconds;
  std::fprintf(stderr, "  [%6.1f s] exact neighbours: %.1f s\n", since(start), truth_s);

  qsearch::StoreOptions so;
  so.data_dir = o.data_dir;
  so.model = "bench";
  so.index_save_interval_s = o.save_interval;
  auto store = qsearch::CollectionStore::open(so);
  if (!store.is_ok()) fail("open store", store.status());

  json out = {{"tool", "qsearch-bench-search"}, {"data", o.data}, {"n", o.n}, {"dim", o.dim},
              {"queries", o.queries}, {"k", o.k}, {"threads", o.threads}, {"batch", o.batch},
              {"save_interval_s", o.save_interval}, {"seed", o.seed},
              {"hardware_threads", std::thread::hardware_concurrency()},
              {"exact_neighbours_seconds", truth_s}, {"results", json::array()}};
  if (o.data == "clustered") {
    out["clusters"] = o.clusters;
    out["noise"] = o.noise;
  }
  for (const auto& type : o.types) {
    out["results"].push_back(run_type(o, xs, **store, type, queries, exact, start));
    if (!o.json_path.empty()) std::ofstream(o.json_path) << out.dump(2) << '\n';
  }

  std::printf("\n| index | n | dim | ingest s | ingest vec/s | recall@%d | mean ms | P50 ms | P99 ms | QPS 1 thread | QPS %d threads | P99 ms (%d threads) | bytes/vector |\n",
              o.k, o.threads, o.threads);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : out["results"])
    std::printf("| %s | %lld | %d | %.1f | %.0f | %.4f | %.3f | %.3f | %.3f | %.1f | %.1f | %.3f | %lld |\n",
                r["index"].get<std::string>().c_str(), static_cast<long long>(r["n"].get<int64_t>()), o.dim,
                r["ingest_seconds"].get<double>(), r["ingest_vectors_per_s"].get<double>(),
                r["recall_at_k"].get<double>(), r["latency_ms"]["mean"].get<double>(),
                r["latency_ms"]["p50"].get<double>(), r["latency_ms"]["p99"].get<double>(),
                r["single_thread_qps"].get<double>(), r["qps"].get<double>(),
                r["latency_under_load_ms"]["p99"].get<double>(),
                static_cast<long long>(r["bytes_per_vector"].get<int64_t>()));
  store->reset();
  if (own_dir) fs::remove_all(o.data_dir);
  return 0;
}
