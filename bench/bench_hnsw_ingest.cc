// qsearch-bench-hnsw-ingest: ingestion into a flat and an HNSW collection while searches run
// (issue 14), through the CollectionStore API directly (RocksDB + FAISS; no HTTP, no model).
//
// For each mode (--modes): a fresh store and collection, --n random unit vectors of --dim
// (generated before the clock starts) upserted in batches of --batch documents by one writer
// thread, while --search-threads threads search top-10 of random queries back to back. Modes:
//   flat        exact index (the reference rate: RocksDB write + flat append)
//   hnsw        HNSW with the background inserter (writes go to the pending buffer)
//   hnsw-sync   HNSW inserting inside each write (StoreOptions::background_insert = false,
//               the behaviour before issue 14)
// Reported per mode: acknowledged vectors/s (all upserts returned), indexed vectors/s (until
// nothing is pending: every vector in the graph), search latency P50/P99/max in ms during
// ingestion and the number of searches (of a non-empty collection), the largest pending count
// seen; and each HNSW mode's acknowledged rate as a share of flat's.
//
//   qsearch-bench-hnsw-ingest --n 20000 --dim 1024 --modes flat,hnsw,hnsw-sync --json out.json
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "collection/collections.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using qsearch::CollectionSpec;
using qsearch::CollectionStore;
using qsearch::Document;
using qsearch::SearchParams;
using qsearch::Status;

struct Options {
  int64_t n = 20000;
  int dim = 1024;
  int batch = 64;
  int search_threads = 1;
  std::vector<std::string> modes = {"flat", "hnsw", "hnsw-sync"};
  int hnsw_m = 32, ef_construction = 200, ef_search = 128;
  int slice_ms = 10;
  int64_t pending_max = 16384;
  std::string json_path;
  std::string data_dir;
  uint64_t seed = 1;
};

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<float> random_unit_vectors(int64_t n, int d, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n) * d);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int64_t i = t; i < n; i += threads) {
        std::mt19937_64 rng(seed * 1000003 + static_cast<uint64_t>(i));
        std::normal_distribution<float> g;
        float* v = &x[static_cast<size_t>(i) * d];
        double s = 0;
        for (int j = 0; j < d; ++j) {
          v[j] = g(rng);
          s += static_cast<double>(v[j]) * v[j];
        }
        const float inv = static_cast<float>(1.0 / std::sqrt(s));
        for (int j = 0; j < d; ++j) v[j] *= inv;
      }
    });
  }
  for (auto& th : pool) th.join();
  return x;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

json run_mode(const Options& o, const std::string& mode, const std::vector<float>& x,
              const std::vector<float>& queries) {
  const std::string dir = (fs::path(o.data_dir) / mode).string();
  fs::remove_all(dir);
  qsearch::StoreOptions so;
  so.data_dir = dir;
  so.index_save_interval_s = 3600;  // no save inside the measurement
  so.index_save_writes = 1LL << 40;
  so.background_insert = mode != "hnsw-sync";
  so.index_insert_slice_ms = o.slice_ms;
  so.index_pending_max = o.pending_max;
  auto opened = CollectionStore::open(so);
  if (!opened.is_ok()) throw std::runtime_error(opened.status().to_string());
  std::unique_ptr<CollectionStore> store = std::move(opened).value();
  CollectionSpec spec;
  spec.name = "bench";
  spec.dimension = o.dim;
  spec.metric = qsearch::Metric::kCosine;
  spec.lexical = false;
  spec.index.type = mode == "flat" ? "flat" : "hnsw";
  spec.index.hnsw_m = o.hnsw_m;
  spec.index.hnsw_ef_construction = o.ef_construction;
  spec.index.hnsw_ef_search = o.ef_search;
  if (Status st = store->create_collection(spec); !st.is_ok()) throw std::runtime_error(st.to_string());

  std::atomic<bool> done{false};
  std::atomic<int64_t> max_pending{0};
  std::vector<std::vector<double>> lat(o.search_threads);
  std::vector<std::thread> searchers;
  const int nq = static_cast<int>(queries.size() / o.dim);
  for (int t = 0; t < o.search_threads; ++t) {
    searchers.emplace_back([&, t] {
      SearchParams p;
      p.k = 10;
      for (int i = t; !done.load(); i += o.search_threads) {
        std::vector<float> q(queries.begin() + static_cast<size_t>(i % nq) * o.dim,
                             queries.begin() + static_cast<size_t>(i % nq + 1) * o.dim);
        const auto t0 = Clock::now();
        auto hits = store->search("bench", q, p);
        const double ms = since(t0) * 1000;
        if (!hits.is_ok()) {
          spdlog::error("search: {}", hits.status().to_string());
          return;
        }
        if (!hits->empty()) lat[t].push_back(ms);  // searches of the still-empty collection do not count
      }
    });
  }
  std::thread watcher([&] {
    while (!done.load()) {
      auto info = store->get_collection("bench");
      if (info.is_ok()) max_pending = std::max(max_pending.load(), info->index_pending);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const auto t0 = Clock::now();
  std::vector<double> upsert_ms;
  for (int64_t start = 0; start < o.n; start += o.batch) {
    const int64_t end = std::min<int64_t>(o.n, start + o.batch);
    std::vector<Document> docs(static_cast<size_t>(end - start));
    for (int64_t i = start; i < end; ++i) {
      Document& d = docs[static_cast<size_t>(i - start)];
      d.id = "d" + std::to_string(i);
      d.embedding.assign(x.begin() + static_cast<size_t>(i) * o.dim,
                         x.begin() + static_cast<size_t>(i + 1) * o.dim);
    }
    const auto u0 = Clock::now();
    if (Status st = store->upsert("bench", docs); !st.is_ok()) throw std::runtime_error(st.to_string());
    upsert_ms.push_back(since(u0) * 1000);
  }
  const double acked_s = since(t0);
  for (;;) {
    auto info = store->get_collection("bench");
    if (!info.is_ok() || info->index_pending == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double indexed_s = since(t0);
  done = true;
  for (auto& th : searchers) th.join();
  watcher.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  json r = {{"mode", mode},
            {"vectors", o.n},
            {"acked_s", acked_s},
            {"acked_per_s", static_cast<double>(o.n) / acked_s},
            {"indexed_s", indexed_s},
            {"indexed_per_s", static_cast<double>(o.n) / indexed_s},
            {"upsert_p99_ms", percentile(upsert_ms, 99)},
            {"upsert_max_ms", percentile(upsert_ms, 100)},
            {"searches", all.size()},
            {"search_p50_ms", percentile(all, 50)},
            {"search_p99_ms", percentile(all, 99)},
            {"search_max_ms", percentile(all, 100)},
            {"max_pending", max_pending.load()}};
  std::fprintf(stderr, "%s\n", r.dump().c_str());  // each mode as it completes
  store.reset();
  fs::remove_all(dir);
  return r;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--n") o.n = std::stoll(next());
    else if (a == "--dim") o.dim = std::stoi(next());
    else if (a == "--batch") o.batch = std::stoi(next());
    else if (a == "--search-threads") o.search_threads = std::stoi(next());
    else if (a == "--modes") o.modes = split(next());
    else if (a == "--hnsw-m") o.hnsw_m = std::stoi(next());
    else if (a == "--ef-construction") o.ef_construction = std::stoi(next());
    else if (a == "--ef-search") o.ef_search = std::stoi(next());
    else if (a == "--slice-ms") o.slice_ms = std::stoi(next());
    else if (a == "--pending-max") o.pending_max = std::stoll(next());
    else if (a == "--json") o.json_path = next();
    else if (a == "--data-dir") o.data_dir = next();
    else if (a == "--seed") o.seed = std::stoull(next());
    else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-hnsw-ingest [--n N] [--dim D] [--batch B] "
                   "[--search-threads T] [--modes flat,hnsw,hnsw-sync] [--hnsw-m M] "
                   "[--ef-construction E] [--ef-search E] [--slice-ms MS] [--pending-max N] "
                   "[--json PATH] [--data-dir DIR] [--seed S]\n");
      return 2;
    }
  }
  if (o.n < 1 || o.dim < 1 || o.batch < 1 || o.search_threads < 0) {
    std::fprintf(stderr, "--n, --dim, --batch must be >= 1, --search-threads >= 0\n");
    return 2;
  }
  if (o.data_dir.empty()) {
    o.data_dir = (fs::temp_directory_path() / ("qsearch-bench-ingest-" + std::to_string(getpid()))).string();
  }
  fs::create_directories(o.data_dir);
  spdlog::set_level(spdlog::level::warn);
  const auto g0 = Clock::now();
  const std::vector<float> x = random_unit_vectors(o.n, o.dim, o.seed);
  const std::vector<float> queries = random_unit_vectors(256, o.dim, o.seed + 99);
  std::fprintf(stderr, "generated %lld x %d vectors in %.1f s\n", static_cast<long long>(o.n), o.dim,
               since(g0));
  json results = json::array();
  double flat_rate = 0;
  try {
    for (const std::string& mode : o.modes) {
      if (mode != "flat" && mode != "hnsw" && mode != "hnsw-sync") {
        std::fprintf(stderr, "unknown mode '%s' (flat, hnsw, hnsw-sync)\n", mode.c_str());
        return 2;
      }
      std::fprintf(stderr, "mode %s ...\n", mode.c_str());
      json r = run_mode(o, mode, x, queries);
      if (mode == "flat") flat_rate = r["acked_per_s"].get<double>();
      results.push_back(r);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  fs::remove_all(o.data_dir);
  std::printf("HNSW ingestion while searching: n=%lld dim=%d batch=%d search threads=%d "
              "(M %d, efConstruction %d, efSearch %d), %u CPUs\n\n",
              static_cast<long long>(o.n), o.dim, o.batch, o.search_threads, o.hnsw_m,
              o.ef_construction, o.ef_search, std::thread::hardware_concurrency());
  std::printf("| mode | acked vec/s | vs flat | indexed vec/s | upsert P99 ms | search P50 ms | "
              "search P99 ms | search max ms | searches | max pending |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (auto& r : results) {
    const double rate = r["acked_per_s"].get<double>();
    if (flat_rate > 0) r["acked_vs_flat"] = rate / flat_rate;
    std::printf("| %s | %.0f | %s | %.0f | %.1f | %.2f | %.2f | %.2f | %lld | %lld |\n",
                r["mode"].get<std::string>().c_str(), rate,
                flat_rate > 0 ? (std::to_string(static_cast<int>(std::lround(100 * rate / flat_rate))) + "%").c_str() : "-",
                r["indexed_per_s"].get<double>(), r["upsert_p99_ms"].get<double>(),
                r["search_p50_ms"].get<double>(), r["search_p99_ms"].get<double>(),
                r["search_max_ms"].get<double>(), static_cast<long long>(r["searches"].get<int64_t>()),
                static_cast<long long>(r["max_pending"].get<int64_t>()));
  }
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path);
    out << json{{"n", o.n}, {"dim", o.dim}, {"batch", o.batch}, {"search_threads", o.search_threads},
                {"hnsw_m", o.hnsw_m}, {"ef_construction", o.ef_construction},
                {"cpus", std::thread::hardware_concurrency()}, {"results", results}}
               .dump(2)
        << "\n";
  }
  return 0;
}
