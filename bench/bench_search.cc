// qsearch-bench-search: search QPS, latency and recall@10 of the flat, HNSW and IVF indexes at
// scale (issue 5), through the CollectionStore API directly (RocksDB + FAISS, no HTTP, no model).
//
// For each index type: a fresh collection in a scratch data directory is filled with n vectors
// of `dim` floats (batches of --batch, each one WriteBatch + index add: the ingest rate is
// reported), then searched with --queries queries: single-thread latency (mean/P50/P99) and QPS
// with --threads searching at once; recall@10 against exact neighbours computed here
// independently (OpenBLAS over regenerated vectors, not through FAISS).
//
// Data (--data): "clustered" (default): unit vectors around --clusters random centres, queries
// are stored vectors with noise (like real embeddings: structure, near neighbours exist);
// "random": i.i.d. uniform unit vectors and queries (no structure: the worst case for ANN,
// where HNSW/IVF recall is low by nature). Vectors are regenerated from (seed, index), so the
// ground truth needs no second copy in memory.
//
//   qsearch-bench-search --n 1000000 --dim 1024 --types flat,hnsw,ivf --json out.json
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "service/collections.h"

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
  int threads = 0;  // 0: hardware concurrency
  int batch = 2000;
  std::string data = "clustered";
  int clusters = 1000;
  double noise = 0.5;   // clustered: noise scale relative to the centre (before normalising)
  double query_noise = 0.2;
  int hnsw_m = 32, ef_construction = 200, ef_search = 128;
  int nlist = 0, nprobe = 16;
  double qps_seconds = 10;  // multi-thread QPS phase length (bounded by --queries repeats)
  std::string data_dir;     // default: a temp dir (removed afterwards)
  std::string json_path;
  uint64_t seed = 1;
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--n") o->n = std::stoll(val());
    else if (a == "--dim") o->dim = std::stoi(val());
    else if (a == "--queries") o->queries = std::stoi(val());
    else if (a == "--k") o->k = std::stoi(val());
    else if (a == "--types") {
      o->types.clear();
      std::stringstream ss(val());
      std::string t;
      while (std::getline(ss, t, ',')) o->types.push_back(t);
    }
    else if (a == "--threads") o->threads = std::stoi(val());
    else if (a == "--batch") o->batch = std::stoi(val());
    else if (a == "--data") o->data = val();
    else if (a == "--clusters") o->clusters = std::stoi(val());
    else if (a == "--noise") o->noise = std::stod(val());
    else if (a == "--query-noise") o->query_noise = std::stod(val());
    else if (a == "--hnsw-m") o->hnsw_m = std::stoi(val());
    else if (a == "--ef-construction") o->ef_construction = std::stoi(val());
    else if (a == "--ef-search") o->ef_search = std::stoi(val());
    else if (a == "--nlist") o->nlist = std::stoi(val());
    else if (a == "--nprobe") o->nprobe = std::stoi(val());
    else if (a == "--qps-seconds") o->qps_seconds = std::stod(val());
    else if (a == "--data-dir") o->data_dir = val();
    else if (a == "--json") o->json_path = val();
    else if (a == "--seed") o->seed = std::stoull(val());
    else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-search [--n N] [--dim D] [--queries Q] [--k K]\n"
                   "  [--types flat,hnsw,ivf] [--threads T] [--batch B] [--data clustered|random]\n"
                   "  [--clusters C] [--noise X] [--query-noise X] [--hnsw-m M] [--ef-construction E]\n"
                   "  [--ef-search E] [--nlist L] [--nprobe P] [--qps-seconds S] [--data-dir DIR]\n"
                   "  [--json FILE] [--seed S]\n");
      return a == "--help" ? (std::exit(0), false) : false;
    }
  }
  if (o->threads <= 0) o->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o->n > 0 && o->dim > 0 && o->queries > 0 && o->k > 0 && o->k <= 1000;
}

// Deterministic generator: vector i depends only on (seed, i).
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
  void vector(int64_t i, float* out) const { fill(i, out, o_.noise, 0x9E3779B97F4A7C15ull); }
  // Query q: stored vector (q * 7919) % n with extra noise (clustered), or a fresh random vector.
  void query(int q, float* out) const {
    if (o_.data == "clustered") {
      vector((static_cast<int64_t>(q) * 7919) % o_.n, out);
      std::mt19937_64 rng(o_.seed ^ (0xABCDEFull + static_cast<uint64_t>(q)));
      std::normal_distribution<float> g;
      float scale = static_cast<float>(o_.query_noise / std::sqrt(static_cast<double>(o_.dim)));
      for (int j = 0; j < o_.dim; ++j) out[j] += g(rng) * scale;
      normalize(out);
    } else {
      fill(-1 - q, out, 0, 0x1234567ull);
    }
  }

 private:
  void fill(int64_t i, float* out, double noise, uint64_t salt) const {
    std::mt19937_64 rng(o_.seed ^ (salt + static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ull));
    std::normal_distribution<float> g;
    if (o_.data == "clustered" && i >= 0) {
      const float* c = &centres_[static_cast<size_t>(rng() % o_.clusters) * o_.dim];
      // Unit centre plus noise of norm ~`noise`.
      float scale = static_cast<float>(noise / std::sqrt(static_cast<double>(o_.dim)));
      for (int j = 0; j < o_.dim; ++j) out[j] = c[j] + g(rng) * scale;
    } else {
      for (int j = 0; j < o_.dim; ++j) out[j] = g(rng);
    }
    normalize(out);
  }
  void normalize(float* v) const {
    double s = 0;
    for (int j = 0; j < o_.dim; ++j) s += static_cast<double>(v[j]) * v[j];
    float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
    for (int j = 0; j < o_.dim; ++j) v[j] *= inv;
  }
  const Options& o_;
  std::vector<float> centres_;
};

// Exact top-k (inner product = cosine on unit vectors) of every query, by blocked sgemm over
// regenerated data vectors on `threads` threads.
std::vector<std::vector<int64_t>> exact_neighbours(const Options& o, const Data& d,
                                                   const std::vector<float>& queries) {
  const int nq = o.queries, dim = o.dim, k = o.k;
  using Heap = std::priority_queue<std::pair<float, int64_t>, std::vector<std::pair<float, int64_t>>,
                                   std::greater<>>;
  std::vector<std::vector<Heap>> heaps(o.threads, std::vector<Heap>(nq));
  const int64_t block = 4096;
  std::atomic<int64_t> next{0};
  std::vector<std::thread> ts;
  openblas_set_num_threads(1);
  for (int t = 0; t < o.threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<float> xs(static_cast<size_t>(block) * dim), scores(static_cast<size_t>(block) * nq);
      for (;;) {
        int64_t b0 = next.fetch_add(block);
        if (b0 >= o.n) break;
        int64_t nb = std::min(block, o.n - b0);
        for (int64_t i = 0; i < nb; ++i) d.vector(b0 + i, &xs[static_cast<size_t>(i) * dim]);
        // scores[i * nq + q] = x_i . q_q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nb), nq, dim, 1.f,
                    xs.data(), dim, queries.data(), dim, 0.f, scores.data(), nq);
        for (int64_t i = 0; i < nb; ++i)
          for (int q = 0; q < nq; ++q) {
            float s = scores[static_cast<size_t>(i) * nq + q];
            Heap& h = heaps[t][q];
            if (static_cast<int>(h.size()) < k) h.emplace(s, b0 + i);
            else if (s > h.top().first) { h.pop(); h.emplace(s, b0 + i); }
          }
      }
    });
  }
  for (auto& th : ts) th.join();
  std::vector<std::vector<int64_t>> out(nq);
  for (int q = 0; q < nq; ++q) {
    std::vector<std::pair<float, int64_t>> all;
    for (int t = 0; t < o.threads; ++t)
      while (!heaps[t][q].empty()) { all.push_back(heaps[t][q].top()); heaps[t][q].pop(); }
    std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
    for (int i = 0; i < k && i < static_cast<int>(all.size()); ++i) out[q].push_back(all[i].second);
  }
  return out;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * v.size())) - 1;
  return v[std::min(i, v.size() - 1)];
}

json run_type(const Options& o, const Data& d, qsearch::CollectionStore& store,
              const std::string& type, const std::vector<float>& queries,
              const std::vector<std::vector<int64_t>>& truth) {
  using namespace qsearch;
  CollectionSpec spec;
  spec.name = "bench_" + type;
  spec.dimension = o.dim;
  spec.metric = Metric::kCosine;
  spec.index.type = type;
  spec.index.hnsw_m = o.hnsw_m;
  spec.index.hnsw_ef_construction = o.ef_construction;
  spec.index.hnsw_ef_search = o.ef_search;
  spec.index.ivf_nlist = o.nlist;
  spec.index.ivf_nprobe = o.nprobe;
  spec.model = "bench";
  store.delete_collection(spec.name).ignore();
  Status st = store.create_collection(spec);
  if (!st.is_ok()) {
    std::fprintf(stderr, "create %s: %s\n", type.c_str(), st.to_string().c_str());
    std::exit(1);
  }
  // Ingest.
  auto t0 = Clock::now();
  std::vector<Document> docs;
  for (int64_t b0 = 0; b0 < o.n; b0 += o.batch) {
    int64_t nb = std::min<int64_t>(o.batch, o.n - b0);
    docs.assign(static_cast<size_t>(nb), Document{});
    for (int64_t i = 0; i < nb; ++i) {
      Document& doc = docs[static_cast<size_t>(i)];
      doc.id = std::to_string(b0 + i);
      doc.embedding.resize(static_cast<size_t>(o.dim));
      d.vector(b0 + i, doc.embedding.data());
    }
    st = store.upsert(spec.name, docs);
    if (!st.is_ok()) {
      std::fprintf(stderr, "upsert %s: %s\n", type.c_str(), st.to_string().c_str());
      std::exit(1);
    }
    if ((b0 / o.batch) % 50 == 0) {
      double s = std::chrono::duration<double>(Clock::now() - t0).count();
      std::fprintf(stderr, "  %s: %lld / %lld vectors, %.0f s\r", type.c_str(),
                   static_cast<long long>(b0 + nb), static_cast<long long>(o.n), s);
    }
  }
  double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto info = store.get_collection(spec.name);
  std::string effective = info.is_ok() ? info->index_type : "?";
  std::fprintf(stderr, "\n  %s: ingested %lld vectors in %.1f s (index now %s)\n", type.c_str(),
               static_cast<long long>(o.n), ingest_s, effective.c_str());

  // Single-thread latency and recall.
  SearchParams params;
  params.k = o.k;
  std::vector<double> lat;
  double recall_sum = 0;
  std::vector<float> q(static_cast<size_t>(o.dim));
  for (int qi = 0; qi < o.queries; ++qi) {
    q.assign(queries.begin() + static_cast<size_t>(qi) * o.dim, queries.begin() + static_cast<size_t>(qi + 1) * o.dim);
    auto s0 = Clock::now();
    auto hits = store.search(spec.name, q, params);
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
    if (!hits.is_ok()) {
      std::fprintf(stderr, "search %s: %s\n", type.c_str(), hits.status().to_string().c_str());
      std::exit(1);
    }
    std::set<int64_t> want(truth[qi].begin(), truth[qi].end());
    int found = 0;
    for (const auto& h : *hits) found += want.count(std::stoll(h.id)) ? 1 : 0;
    recall_sum += static_cast<double>(found) / std::max<size_t>(1, want.size());
  }
  double mean = 0;
  for (double x : lat) mean += x;
  mean /= lat.size();

  // Multi-thread QPS: --threads searchers cycling through the queries for --qps-seconds.
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  auto q0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < o.threads; ++t)
    ts.emplace_back([&, t] {
      std::vector<float> v(static_cast<size_t>(o.dim));
      for (int i = t; !stop.load(); i += o.threads) {
        int qi = i % o.queries;
        v.assign(queries.begin() + static_cast<size_t>(qi) * o.dim, queries.begin() + static_cast<size_t>(qi + 1) * o.dim);
        if (store.search(spec.name, v, params).is_ok()) done++;
        if (std::chrono::duration<double>(Clock::now() - q0).count() > o.qps_seconds) stop = true;
      }
    });
  for (auto& th : ts) th.join();
  double qps_s = std::chrono::duration<double>(Clock::now() - q0).count();

  json r = {{"index", type}, {"effective_index", effective}, {"n", o.n}, {"dim", o.dim},
            {"ingest_seconds", ingest_s}, {"ingest_vectors_per_s", o.n / ingest_s},
            {"queries", o.queries}, {"k", o.k}, {"recall_at_k", recall_sum / o.queries},
            {"latency_ms", {{"mean", mean}, {"p50", pct(lat, 0.5)}, {"p99", pct(lat, 0.99)}}},
            {"single_thread_qps", 1000.0 / mean}, {"threads", o.threads},
            {"qps", done.load() / qps_s}};
  if (type == "hnsw") r["params"] = {{"m", o.hnsw_m}, {"ef_construction", o.ef_construction}, {"ef_search", o.ef_search}};
  if (type == "ivf") r["params"] = {{"nlist", o.nlist}, {"nprobe", o.nprobe}};
  store.delete_collection(spec.name).ignore();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  bool own_dir = o.data_dir.empty();
  if (own_dir) {
    o.data_dir = (fs::temp_directory_path() / ("qsearch-bench-search-" + std::to_string(::getpid()))).string();
  }
  fs::create_directories(o.data_dir);
  Data data(o);

  std::fprintf(stderr, "bench-search: n %lld, dim %d, %s data, %d queries, k %d, %d threads\n",
               static_cast<long long>(o.n), o.dim, o.data.c_str(), o.queries, o.k, o.threads);
  std::vector<float> queries(static_cast<size_t>(o.queries) * o.dim);
  for (int q = 0; q < o.queries; ++q) data.query(q, &queries[static_cast<size_t>(q) * o.dim]);
  auto t0 = Clock::now();
  auto truth = exact_neighbours(o, data, queries);
  std::fprintf(stderr, "  exact neighbours: %.1f s\n", std::chrono::duration<double>(Clock::now() - t0).count());

  qsearch::StoreOptions so;
  so.data_dir = o.data_dir;
  so.model = "bench";
  auto store = qsearch::CollectionStore::open(so);
  if (!store.is_ok()) {
    std::fprintf(stderr, "open store: %s\n", store.status().to_string().c_str());
    return 1;
  }
  json results = json::array();
  for (const auto& type : o.types) results.push_back(run_type(o, data, **store, type, queries, truth));

  std::printf("\n| index | n | dim | ingest vec/s | recall@%d | mean ms | P50 ms | P99 ms | QPS (%d threads) |\n",
              o.k, o.threads);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results)
    std::printf("| %s | %lld | %d | %.0f | %.4f | %.3f | %.3f | %.3f | %.1f |\n",
                r["index"].get<std::string>().c_str(), static_cast<long long>(o.n), o.dim,
                r["ingest_vectors_per_s"].get<double>(), r["recall_at_k"].get<double>(),
                r["latency_ms"]["mean"].get<double>(), r["latency_ms"]["p50"].get<double>(),
                r["latency_ms"]["p99"].get<double>(), r["qps"].get<double>());
  if (!o.json_path.empty()) {
    json out = {{"tool", "qsearch-bench-search"}, {"data", o.data}, {"n", o.n}, {"dim", o.dim},
                {"queries", o.queries}, {"k", o.k}, {"threads", o.threads},
                {"hardware_threads", std::thread::hardware_concurrency()}, {"results", results}};
    std::ofstream(o.json_path) << out.dump(2) << '\n';
  }
  store->reset();
  if (own_dir) fs::remove_all(o.data_dir);
  return 0;
}
