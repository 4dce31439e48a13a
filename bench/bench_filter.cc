// qsearch-bench-filter: filtered search against unfiltered search (issue 11), through the
// CollectionStore API directly (RocksDB + metadata index + FAISS; no HTTP, no model).
//
// For each index type (--types): a fresh collection is filled with n synthetic unit vectors
// (a Gaussian mixture of --clusters centres, vector i a function of (seed, i) only, generated
// in parallel) with metadata {"p1000": i % 1000, "p100": i % 100, "tag": "t<i % 7>"}, in
// upserts of --batch documents (each one WriteBatch with the metadata index entries, then the
// index add; IVF trains inside the upsert that reaches its threshold). Then, one query at a
// time on one thread, for --queries queries (fresh samples of the mixture):
//   - unfiltered search;
//   - {"p1000": 7}: 0.1% of the documents; {"p100": 7}: 1%;
// and per filtered case recall@k against the exact filtered neighbours computed here
// independently (dot products over the matching vectors, kept in memory).
// Latency: mean, P50, P99 in ms; the filtered/unfiltered ratio of means. Each filtered case
// runs twice: as a filter that comes again (its matching set from the collection's filter
// cache after the first query: nothing is written meanwhile) and "uncached" (every query
// resolves the filter through the metadata index, as a new filter or one after a write does).
//
//   qsearch-bench-filter --n 1000000 --dim 1024 --types flat,hnsw,ivf --json out.json
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "collection/collections.h"
#include "collection/metadata_index.h"
#include "index/exact_scan.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using qsearch::CollectionSpec;
using qsearch::CollectionStore;
using qsearch::Document;
using qsearch::SearchParams;

struct Options {
  int64_t n = 1000000;
  int dim = 1024;
  int queries = 200;
  int k = 10;
  std::vector<std::string> types = {"flat", "hnsw", "ivf"};
  int batch = 5000;
  int clusters = 1000;
  double noise = 0.5;
  int hnsw_m = 32, ef_construction = 100, ef_search = 128;
  int nprobe = 16;
  std::string json_path;
  std::string data_dir;
  uint64_t seed = 1;
  bool sweep = false;  // --sweep: the 1% filter over a grid of fan-out knobs (see below)
};

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void normalize(float* v, int d) {
  double s = 0;
  for (int j = 0; j < d; ++j) s += static_cast<double>(v[j]) * v[j];
  const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
  for (int j = 0; j < d; ++j) v[j] *= inv;
}

class Data {
 public:
  explicit Data(const Options& o) : o_(o), centres_(static_cast<size_t>(o.clusters) * o.dim) {
    std::mt19937_64 rng(o.seed * 77 + 5);
    std::normal_distribution<float> g;
    for (auto& x : centres_) x = g(rng);
    for (int c = 0; c < o.clusters; ++c)
      normalize(&centres_[static_cast<size_t>(c) * o.dim], o.dim);
  }
  void vector(int64_t i, float* out) const { sample(0x9E3779B97F4A7C15ull, i, out); }
  void query(int64_t q, float* out) const { sample(0xC2B2AE3D27D4EB4Full, q, out); }

 private:
  void sample(uint64_t salt, int64_t i, float* out) const {
    std::mt19937_64 rng(o_.seed ^ (salt + static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ull));
    std::normal_distribution<float> g;
    const float* c = &centres_[static_cast<size_t>(rng() % o_.clusters) * o_.dim];
    const float scale = static_cast<float>(o_.noise / std::sqrt(static_cast<double>(o_.dim)));
    for (int j = 0; j < o_.dim; ++j) out[j] = c[j] + g(rng) * scale;
    normalize(out, o_.dim);
  }
  const Options& o_;
  std::vector<float> centres_;
};

json metadata_of(int64_t i) {
  return {{"p1000", i % 1000}, {"p100", i % 100}, {"tag", "t" + std::to_string(i % 7)}};
}

struct Latency {
  std::vector<double> ms;
  json summary() const {
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    double mean = 0;
    for (double x : s) mean += x;
    mean /= std::max<size_t>(1, s.size());
    auto pct = [&](double p) {
      return s.empty() ? 0.0 : s[std::min(s.size() - 1, static_cast<size_t>(p * s.size()))];
    };
    return {{"mean_ms", mean}, {"p50_ms", pct(0.5)}, {"p99_ms", pct(0.99)}, {"queries", s.size()}};
  }
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--n")
        o->n = std::stoll(val());
      else if (a == "--dim")
        o->dim = std::stoi(val());
      else if (a == "--queries")
        o->queries = std::stoi(val());
      else if (a == "--k")
        o->k = std::stoi(val());
      else if (a == "--batch")
        o->batch = std::stoi(val());
      else if (a == "--clusters")
        o->clusters = std::stoi(val());
      else if (a == "--ef-construction")
        o->ef_construction = std::stoi(val());
      else if (a == "--ef-search")
        o->ef_search = std::stoi(val());
      else if (a == "--nprobe")
        o->nprobe = std::stoi(val());
      else if (a == "--json")
        o->json_path = val();
      else if (a == "--data-dir")
        o->data_dir = val();
      else if (a == "--seed")
        o->seed = std::stoull(val());
      else if (a == "--sweep")
        o->sweep = true;
      else if (a == "--types") {
        o->types.clear();
        std::stringstream ss(val());
        std::string t;
        while (std::getline(ss, t, ',')) {
          if (t != "flat" && t != "hnsw" && t != "ivf") return false;
          o->types.push_back(t);
        }
      } else {
        std::fprintf(
            stderr,
            "usage: qsearch-bench-filter [--n N] [--dim D] [--queries Q] [--k K] [--types "
            "flat,hnsw,ivf]\n"
            "  [--batch B] [--clusters C] [--ef-construction E] [--ef-search E] [--nprobe P]\n"
            "  [--json FILE] [--data-dir DIR] [--seed S] [--sweep]\n");
        std::exit(a == "--help" ? 0 : 2);
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "%s: not a number\n", a.c_str());
      return false;
    }
  }
  return o->n >= 1000 && o->dim >= 1 && o->queries >= 1 && o->k >= 1 && o->k <= 1000 &&
         o->batch >= 1 && !o->types.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr, "bad arguments (n >= 1000, 1 <= k <= 1000)\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);  // the store's info lines would mix into the table
  const auto t_all = Clock::now();
  const int d = o.dim;
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  Data data(o);
  std::vector<float> vectors(static_cast<size_t>(o.n) * d);
  {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int64_t i = t; i < o.n; i += threads)
          data.vector(i, &vectors[static_cast<size_t>(i) * d]);
      });
    for (auto& th : ts) th.join();
  }
  std::vector<float> queries(static_cast<size_t>(o.queries) * d);
  for (int q = 0; q < o.queries; ++q) data.query(q, &queries[static_cast<size_t>(q) * d]);
  std::fprintf(stderr, "[%.0fs] generated %lld x %d vectors\n", since(t_all),
               static_cast<long long>(o.n), d);

  // Exact filtered ground truth: the matching rows, scored directly.
  struct Case {
    std::string name;
    json filter;
    int64_t mod, value;
    std::vector<std::vector<std::string>> truth;
  };
  std::vector<Case> cases = {{"0.1%", {{"p1000", 7}}, 1000, 7, {}},
                             {"1%", {{"p100", 7}}, 100, 7, {}}};
  for (Case& c : cases) {
    c.truth.resize(o.queries);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int q = static_cast<int>(t); q < o.queries; q += static_cast<int>(threads)) {
          const float* qv = &queries[static_cast<size_t>(q) * d];
          std::vector<std::pair<float, int64_t>> scored;
          for (int64_t i = c.value; i < o.n; i += c.mod) {
            const float* v = &vectors[static_cast<size_t>(i) * d];
            double s = 0;
            for (int j = 0; j < d; ++j) s += static_cast<double>(qv[j]) * v[j];
            scored.emplace_back(static_cast<float>(-s), i);
          }
          const size_t kk = std::min<size_t>(o.k, scored.size());
          std::partial_sort(scored.begin(), scored.begin() + kk, scored.end());
          for (size_t r = 0; r < kk; ++r)
            c.truth[q].push_back("d" + std::to_string(scored[r].second));
        }
      });
    for (auto& th : ts) th.join();
  }
  std::fprintf(stderr, "[%.0fs] exact filtered neighbours computed\n", since(t_all));

  json results = json::array();
  std::printf(
      "| index | build s | unfiltered mean ms | 0.1%% mean ms (x) | 0.1%% uncached ms (x) | "
      "0.1%% recall@%d | 1%% mean ms (x) | 1%% uncached ms (x) | 1%% recall@%d |\n",
      o.k, o.k);
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& type : o.types) {
    const std::string dir =
        o.data_dir.empty() ? (fs::temp_directory_path() /
                              ("qsearch-bench-filter-" + type + "-" + std::to_string(getpid())))
                                 .string()
                           : o.data_dir + "/" + type;
    fs::remove_all(dir);
    qsearch::StoreOptions so;
    so.data_dir = dir;
    so.index_save_interval_s = 0;
    auto opened = CollectionStore::open(so);
    if (!opened.is_ok()) {
      std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
      return 1;
    }
    auto store = std::move(opened).value();
    CollectionSpec spec;
    spec.name = "bench";
    spec.dimension = d;
    spec.index.type = type;
    spec.index.hnsw_m = o.hnsw_m;
    spec.index.hnsw_ef_construction = o.ef_construction;
    spec.index.hnsw_ef_search = o.ef_search;
    spec.index.ivf_nprobe = o.nprobe;
    if (auto s = store->create_collection(spec); !s.is_ok()) {
      std::fprintf(stderr, "create: %s\n", s.to_string().c_str());
      return 1;
    }
    const auto t_build = Clock::now();
    for (int64_t b = 0; b < o.n; b += o.batch) {
      std::vector<Document> docs;
      for (int64_t i = b; i < std::min(o.n, b + o.batch); ++i) {
        Document doc;
        doc.id = "d" + std::to_string(i);
        doc.metadata = metadata_of(i);
        doc.embedding.assign(vectors.begin() + i * d, vectors.begin() + (i + 1) * d);
        docs.push_back(std::move(doc));
      }
      if (auto s = store->upsert("bench", docs); !s.is_ok()) {
        std::fprintf(stderr, "upsert: %s\n", s.to_string().c_str());
        return 1;
      }
      if ((b / o.batch) % 40 == 0)
        std::fprintf(stderr, "[%.0fs] %s: %lld documents\n", since(t_all), type.c_str(),
                     static_cast<long long>(b));
    }
    // HNSW: upserts return once their vectors are searchable (the pending buffer); the graph
    // takes them in the background. The build ends, and searches are measured, only when the
    // graph holds every vector (otherwise searches would meet the inserter's lock slices and
    // scan the buffer).
    for (;;) {
      auto info = store->get_collection("bench");
      if (!info.is_ok() || info->index_pending == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double build_s = since(t_build);
    std::fprintf(stderr, "[%.0fs] %s built in %.1f s\n", since(t_all), type.c_str(), build_s);
    json r = {{"index", type}, {"n", o.n}, {"dim", d}, {"build_s", build_s}};
    // cached: the filter's matching set comes from the filter cache after the first query
    // (nothing is written while the queries run), as for a filter that comes again; false:
    // every query resolves the filter through the metadata index (a new filter, or one after
    // a write).
    auto measure = [&](const json& filter, const Case* c, bool cached = true) -> json {
      Latency lat;
      double hits = 0, total = 0;
      SearchParams p;
      p.k = o.k;
      p.filter = filter;
      p.use_filter_cache = cached;
      qsearch::SearchProfile stages, total_stages;
      for (int q = 0; q < o.queries; ++q) {
        stages = {};
        p.profile = &stages;
        std::vector<float> qv(queries.begin() + static_cast<size_t>(q) * d,
                              queries.begin() + static_cast<size_t>(q + 1) * d);
        const auto t0 = Clock::now();
        auto got = store->search("bench", qv, p);
        lat.ms.push_back(since(t0) * 1000);
        total_stages.resolve_us += stages.resolve_us;
        total_stages.index_us += stages.index_us;
        total_stages.assemble_us += stages.assemble_us;
        if (!got.is_ok()) {
          std::fprintf(stderr, "search: %s\n", got.status().to_string().c_str());
          std::exit(1);
        }
        if (c) {
          std::set<std::string> truth(c->truth[q].begin(), c->truth[q].end());
          for (const auto& h : *got) hits += truth.count(h.id);
          total += static_cast<double>(truth.size());
        }
      }
      json j = lat.summary();
      if (c) j["recall"] = total > 0 ? hits / total : 0.0;
      // Mean time per stage (collections.h SearchProfile): where a filtered search's time goes.
      j["stages_us"] = {{"resolve", total_stages.resolve_us / o.queries},
                        {"index", total_stages.index_us / o.queries},
                        {"assemble", total_stages.assemble_us / o.queries}};
      return j;
    };
    r["unfiltered"] = measure(json::object(), nullptr);
    for (const Case& c : cases) {
      json j = measure(c.filter, &c);
      j["ratio_to_unfiltered"] =
          j["mean_ms"].get<double>() / r["unfiltered"]["mean_ms"].get<double>();
      json cold = measure(c.filter, &c, false);
      cold["ratio_to_unfiltered"] =
          cold["mean_ms"].get<double>() / r["unfiltered"]["mean_ms"].get<double>();
      j["uncached"] = cold;
      r[c.name] = j;
    }
    for (const char* name : {"0.1%", "1%"}) {
      for (const json* j : {&r[name], &r[name]["uncached"]}) {
        std::fprintf(stderr, "[%.0fs] %s %s%s: mean %.3f ms; resolve %.0f us, index %.0f us, assemble %.0f us\n",
                     since(t_all), type.c_str(), name, j == &r[name] ? "" : " uncached",
                     (*j)["mean_ms"].get<double>(), (*j)["stages_us"]["resolve"].get<double>(),
                     (*j)["stages_us"]["index"].get<double>(), (*j)["stages_us"]["assemble"].get<double>());
      }
    }
    if (o.sweep) {
      // The fan-out knobs of a filtered search, swept on the 1% filter: labels per part of the
      // exact scan (index/exact_scan.h) and labels per slice of the metadata index's reads.
      json sweep = json::array();
      const Case& one = cases.back();
      for (int64_t grain : {256, 512, 1024, 2048}) {
        for (int64_t slice : {32768, 65536, 131072}) {
          qsearch::index_internal::set_exact_scan_grain(grain);
          qsearch::set_metadata_slice_labels(slice);
          json hot = measure(one.filter, &one), cold = measure(one.filter, &one, false);
          std::fprintf(stderr, "[%.0fs] %s sweep %s grain %lld slice %lld: %.3f ms, uncached %.3f ms (resolve %.0f us, index %.0f us)\n",
                       since(t_all), type.c_str(), one.name.c_str(), static_cast<long long>(grain),
                       static_cast<long long>(slice), hot["mean_ms"].get<double>(),
                       cold["mean_ms"].get<double>(), cold["stages_us"]["resolve"].get<double>(),
                       cold["stages_us"]["index"].get<double>());
          sweep.push_back({{"grain", grain}, {"slice_labels", slice}, {"cached", hot}, {"uncached", cold}});
        }
      }
      qsearch::index_internal::set_exact_scan_grain(0);
      qsearch::set_metadata_slice_labels(0);
      r["sweep_1%"] = sweep;
    }
    std::printf(
        "| %s | %.1f | %.2f | %.2f (%.2fx) | %.2f (%.2fx) | %.4f | %.2f (%.2fx) | %.2f (%.2fx) | "
        "%.4f |\n",
        type.c_str(), build_s, r["unfiltered"]["mean_ms"].get<double>(),
        r["0.1%"]["mean_ms"].get<double>(), r["0.1%"]["ratio_to_unfiltered"].get<double>(),
        r["0.1%"]["uncached"]["mean_ms"].get<double>(),
        r["0.1%"]["uncached"]["ratio_to_unfiltered"].get<double>(), r["0.1%"]["recall"].get<double>(),
        r["1%"]["mean_ms"].get<double>(), r["1%"]["ratio_to_unfiltered"].get<double>(),
        r["1%"]["uncached"]["mean_ms"].get<double>(),
        r["1%"]["uncached"]["ratio_to_unfiltered"].get<double>(), r["1%"]["recall"].get<double>());
    std::fflush(stdout);
    results.push_back(r);
    if (!o.json_path.empty())
      std::ofstream(o.json_path)
          << json{{"results", results}, {"k", o.k}, {"queries", o.queries}}.dump(2) << "\n";
    store.reset();
    fs::remove_all(dir);
  }
  std::fprintf(stderr, "[%.0fs] done\n", since(t_all));
  return 0;
}
