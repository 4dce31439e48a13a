// qsearch-bench-dedup: all pairs above a cosine threshold among n random unit vectors with
// planted near-duplicates, on the GPU (find_similar_pairs: fused kernel and/or cuBLAS +
// filter) and with FAISS on the CPU (IndexFlatIP::range_search, the usual brute force), side
// by side on the same machine.
//
//   qsearch-bench-dedup --n 1000000 --dim 1024 --threshold 0.92 --kernel both
//                       --faiss-queries 4000 [--gpu-fraction 0.02] [--json FILE]
//
// Runs too long for the time at hand are measured on a fraction and extrapolated, and the
// table says so: --gpu-fraction processes an evenly spread sample of the GPU block pairs
// (time / fraction); --faiss-queries runs range_search for that many query rows against all
// n (time * n / queries). FAISS computes the full n x n product; the GPU join only the upper
// triangle: the table gives both wall time for the whole job and the per-pair rate.
#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_pool.h"
#include "dedup/similarity_join.h"

namespace {

using qsearch::GpuJoinKernel;
using qsearch::JoinStats;
using qsearch::SimilarityJoinOptions;
using qsearch::SimilarPair;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  int64_t n = 1000000;
  int dim = 1024;
  double threshold = 0.92;
  double planted = 0.001;  // planted pairs per vector
  std::string kernel = "fused";
  double gpu_fraction = 1.0;
  int64_t faiss_queries = 0;
  std::string device = "cuda";
  std::string json_path;
  uint64_t seed = 1;
};

uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Components uniform in [-1, 1), rows normalised; then planted rows t with cosine c in
// [threshold + 0.01, 0.999] to a source row s: t := c s + sqrt(1 - c^2) u, u a random unit
// vector orthogonal to s. Sources and targets are all distinct rows.
std::vector<std::pair<int64_t, int64_t>> make_data(const Options& o, std::vector<float>* x,
                                                   qsearch::ThreadPool& pool) {
  const int64_t n = o.n;
  const int d = o.dim;
  x->resize(static_cast<size_t>(n) * d);
  pool.parallel_for(static_cast<size_t>(n), [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      float* row = x->data() + i * d;
      uint64_t state = mix(o.seed * 0x100000001B3ULL + i);
      double ss = 0;
      for (int k = 0; k < d; k += 2) {
        state = mix(state);
        row[k] = static_cast<float>((state >> 40) * (2.0 / 16777216.0) - 1.0);
        if (k + 1 < d)
          row[k + 1] = static_cast<float>((state & 0xFFFFFF) * (2.0 / 16777216.0) - 1.0);
        ss += double(row[k]) * row[k] + (k + 1 < d ? double(row[k + 1]) * row[k + 1] : 0.0);
      }
      const float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (int k = 0; k < d; ++k) row[k] *= inv;
    }
  });
  const int64_t want = std::max<int64_t>(1, static_cast<int64_t>(n * o.planted));
  std::vector<char> used(static_cast<size_t>(n), 0);
  std::vector<std::pair<int64_t, int64_t>> pairs;
  uint64_t r = mix(o.seed ^ 0xABCDEF);
  while (static_cast<int64_t>(pairs.size()) < want) {
    r = mix(r);
    const int64_t s = static_cast<int64_t>(r % n);
    r = mix(r);
    const int64_t t = static_cast<int64_t>(r % n);
    if (s == t || used[s] || used[t]) continue;
    used[s] = used[t] = 1;
    pairs.emplace_back(std::min(s, t), std::max(s, t));
  }
  pool.parallel_for(pairs.size(), [&](size_t b, size_t e) {
    std::vector<double> u(d);
    for (size_t p = b; p < e; ++p) {
      const int64_t s = pairs[p].first, t = pairs[p].second;
      uint64_t state = mix(o.seed + 77 * p);
      state = mix(state);
      const double c =
          o.threshold + 0.01 + (0.999 - o.threshold - 0.01) * ((state >> 11) * 0x1.0p-53);
      const float* src = x->data() + s * d;
      double dot = 0, nu = 0;
      for (int k = 0; k < d; ++k) {
        state = mix(state);
        u[k] = (state >> 11) * 0x1.0p-53 - 0.5;
        dot += u[k] * src[k];
      }
      for (int k = 0; k < d; ++k) {
        u[k] -= dot * src[k];
        nu += u[k] * u[k];
      }
      const double sn = std::sqrt(std::max(0.0, 1 - c * c)) / std::sqrt(nu);
      float* dst = x->data() + t * d;
      for (int k = 0; k < d; ++k) dst[k] = static_cast<float>(c * src[k] + sn * u[k]);
    }
  });
  return pairs;
}

struct Row {
  std::string path;
  double fraction = 1;     // work measured / full work
  double measured = 0;     // seconds of the measured compare phase
  double full = 0;         // seconds for the whole n (measured / fraction + fixed costs)
  double pairs_per_s = 0;  // vector pairs compared per second
  double tflops = 0;       // 2 * dim per pair compared
  int64_t found = -1;
  int64_t planted_found = -1;
  std::string note;
};

Row run_gpu(const Options& o, const std::vector<float>& x, GpuJoinKernel kernel,
            const std::vector<std::pair<int64_t, int64_t>>& planted,
            std::vector<SimilarPair>* pairs_out) {
  SimilarityJoinOptions jo;
  jo.threshold = static_cast<float>(o.threshold);
  jo.device = o.device;
  jo.gpu_kernel = kernel;
  jo.work_fraction = o.gpu_fraction;
  JoinStats st;
  const auto t0 = Clock::now();
  auto r = qsearch::find_similar_pairs(x.data(), o.n, o.dim, jo, &st);
  const double wall = since(t0);
  Row row;
  row.path = (st.device.rfind("cuda", 0) == 0 ? "GPU " : "") + st.device;
  if (!r.is_ok()) {
    row.note = "FAILED: " + r.status().to_string();
    std::fprintf(stderr, "%s\n", row.note.c_str());
    return row;
  }
  const double all_pairs = 0.5 * double(o.n) * double(o.n - 1);
  row.fraction = st.work_done;
  row.measured = st.compare_seconds;
  row.full = st.prepare_seconds + st.compare_seconds / st.work_done + st.verify_seconds;
  row.pairs_per_s = all_pairs * st.work_done / st.compare_seconds;
  row.tflops = row.pairs_per_s * 2.0 * o.dim / 1e12;
  row.found = static_cast<int64_t>(r->size());
  if (st.work_done >= 1.0) {
    std::set<std::pair<int64_t, int64_t>> got;
    for (const SimilarPair& p : *r) got.insert({p.i, p.j});
    row.planted_found = 0;
    for (const auto& p : planted) row.planted_found += got.count(p);
  }
  char note[256];
  std::snprintf(note, sizeof(note),
                "wall %.2f s: prepare+upload %.2f, compare %.2f, exact check %.3f; block %lld%s, "
                "%lld candidates",
                wall, st.prepare_seconds, st.compare_seconds, st.verify_seconds,
                static_cast<long long>(st.block_rows), st.streamed ? " streamed" : "",
                static_cast<long long>(st.candidates));
  row.note = note;
  std::fprintf(stderr, "%s: %s\n", row.path.c_str(), note);
  if (pairs_out) *pairs_out = std::move(r).value();
  return row;
}

Row run_faiss(const Options& o, const std::vector<float>& x,
              const std::vector<SimilarPair>* gpu_pairs) {
  Row row;
  const int64_t nq = std::min(o.faiss_queries, o.n);
  row.path = "FAISS CPU IndexFlatIP::range_search (" +
             std::to_string(std::thread::hardware_concurrency()) + " threads)";
  faiss::IndexFlatIP index(o.dim);
  const auto t_add = Clock::now();
  index.add(o.n, x.data());  // the rows are unit vectors already
  const double add_s = since(t_add);
  // Query rows spread over the whole set.
  std::vector<int64_t> rows(static_cast<size_t>(nq));
  std::vector<float> q(static_cast<size_t>(nq) * o.dim);
  for (int64_t k = 0; k < nq; ++k) {
    rows[k] = k * (o.n / nq);
    std::memcpy(q.data() + k * o.dim, x.data() + rows[k] * o.dim, sizeof(float) * o.dim);
  }
  faiss::RangeSearchResult res(static_cast<size_t>(nq));
  const auto t0 = Clock::now();
  index.range_search(nq, q.data(), static_cast<float>(o.threshold), &res);
  row.measured = since(t0);
  row.fraction = double(nq) / double(o.n);
  row.full = row.measured / row.fraction + add_s;
  row.pairs_per_s = double(nq) * double(o.n) / row.measured;  // it scores the full n x n
  row.tflops = row.pairs_per_s * 2.0 * o.dim / 1e12;
  int64_t found = 0, agree = 0, gpu_total = 0;
  std::set<std::pair<int64_t, int64_t>> gpu_set;
  if (gpu_pairs)
    for (const SimilarPair& p : *gpu_pairs) gpu_set.insert({p.i, p.j});
  for (int64_t k = 0; k < nq; ++k)
    for (size_t e = res.lims[k]; e < res.lims[k + 1]; ++e) {
      const int64_t j = res.labels[e];
      if (j == rows[k]) continue;
      ++found;
      agree += gpu_set.count({std::min(rows[k], j), std::max(rows[k], j)});
    }
  if (gpu_pairs)
    for (const SimilarPair& p : *gpu_pairs)
      for (int64_t r : {p.i, p.j}) gpu_total += (r % (o.n / nq) == 0 && r / (o.n / nq) < nq);
  row.found = found;
  char note[256];
  std::snprintf(note, sizeof(note),
                "%lld query rows x %lld in %.2f s (add %.2f s); %lld pairs at those rows%s",
                static_cast<long long>(nq), static_cast<long long>(o.n), row.measured, add_s,
                static_cast<long long>(found),
                gpu_pairs ? (", " + std::to_string(agree) + " also found by the GPU, which has " +
                             std::to_string(gpu_total) + " there")
                                .c_str()
                          : "");
  row.note = note;
  std::fprintf(stderr, "%s: %s\n", row.path.c_str(), note);
  return row;
}

bool parse(int argc, char** argv, Options* o) {
  for (int a = 1; a < argc; ++a) {
    std::string k = argv[a];
    auto val = [&]() -> std::string { return a + 1 < argc ? argv[++a] : ""; };
    if (k == "--n")
      o->n = std::stoll(val());
    else if (k == "--dim")
      o->dim = std::stoi(val());
    else if (k == "--threshold")
      o->threshold = std::stod(val());
    else if (k == "--planted")
      o->planted = std::stod(val());
    else if (k == "--kernel")
      o->kernel = val();
    else if (k == "--gpu-fraction")
      o->gpu_fraction = std::stod(val());
    else if (k == "--faiss-queries")
      o->faiss_queries = std::stoll(val());
    else if (k == "--device")
      o->device = val();
    else if (k == "--json")
      o->json_path = val();
    else if (k == "--seed")
      o->seed = std::stoull(val());
    else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-dedup [--n N] [--dim D] [--threshold T] [--planted F]\n"
                   "  [--kernel fused|cublas|both|none] [--gpu-fraction F] [--faiss-queries Q]\n"
                   "  [--device cuda] [--json FILE] [--seed S]\n");
      return false;
    }
  }
  return o->n >= 2 && o->dim >= 1 && o->gpu_fraction > 0 && o->gpu_fraction <= 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  qsearch::ThreadPool pool;
  const auto t0 = Clock::now();
  std::vector<float> x;
  auto planted = make_data(o, &x, pool);
  std::fprintf(stderr, "data: %lld x %d unit vectors, %zu planted pairs, made in %.1f s\n",
               static_cast<long long>(o.n), o.dim, planted.size(), since(t0));

  std::vector<Row> rows;
  std::vector<SimilarPair> gpu_pairs;
  bool have_gpu_pairs = false;
  if (o.kernel == "fused" || o.kernel == "both") {
    rows.push_back(run_gpu(o, x, GpuJoinKernel::kFused, planted, &gpu_pairs));
    have_gpu_pairs = rows.back().found >= 0 && o.gpu_fraction >= 1.0;
  }
  if (o.kernel == "cublas" || o.kernel == "both") {
    std::vector<SimilarPair> other;
    rows.push_back(run_gpu(o, x, GpuJoinKernel::kCublas, planted, &other));
    if (have_gpu_pairs && rows.back().found >= 0) {
      bool same = other.size() == gpu_pairs.size();
      for (size_t k = 0; same && k < other.size(); ++k)
        same = other[k].i == gpu_pairs[k].i && other[k].j == gpu_pairs[k].j;
      rows.back().note += same ? "; pairs identical to the fused kernel's"
                               : "; PAIRS DIFFER from the fused kernel's";
    } else if (!have_gpu_pairs && rows.back().found >= 0 && o.gpu_fraction >= 1.0) {
      gpu_pairs = std::move(other);
      have_gpu_pairs = true;
    }
  }
  if (o.faiss_queries > 0) rows.push_back(run_faiss(o, x, have_gpu_pairs ? &gpu_pairs : nullptr));

  std::printf("\nall pairs with cosine >= %.2f among %lld unit vectors of %d dims (%zu planted)\n",
              o.threshold, static_cast<long long>(o.n), o.dim, planted.size());
  std::printf(
      "| path | measured share | measured s | whole job s | Gpairs/s | TFLOP/s | pairs found | "
      "planted found |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    char planted_found[32] = "-";
    if (r.planted_found >= 0)
      std::snprintf(planted_found, sizeof(planted_found), "%lld/%zu",
                    static_cast<long long>(r.planted_found), planted.size());
    std::printf("| %s | %.4g%s | %.2f | %.1f%s | %.3g | %.3g | %lld | %s |\n", r.path.c_str(),
                r.fraction * 100, "%", r.measured, r.full, r.fraction < 1 ? " (extrapolated)" : "",
                r.pairs_per_s / 1e9, r.tflops, static_cast<long long>(r.found), planted_found);
  }
  for (const Row& r : rows) std::printf("- %s: %s\n", r.path.c_str(), r.note.c_str());
  double best_gpu = 0, faiss = 0;
  for (const Row& r : rows) {
    if (r.path.rfind("GPU", 0) == 0 && r.full > 0 && (best_gpu == 0 || r.full < best_gpu))
      best_gpu = r.full;
    if (r.path.rfind("FAISS", 0) == 0) faiss = r.full;
  }
  if (best_gpu > 0 && faiss > 0)
    std::printf("- speedup of the whole job, GPU vs FAISS CPU: %.0fx\n", faiss / best_gpu);

  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    f << "{\"n\": " << o.n << ", \"dim\": " << o.dim << ", \"threshold\": " << o.threshold
      << ", \"planted\": " << planted.size() << ", \"rows\": [";
    for (size_t k = 0; k < rows.size(); ++k) {
      const Row& r = rows[k];
      f << (k ? ", " : "") << "{\"path\": \"" << r.path << "\", \"fraction\": " << r.fraction
        << ", \"measured_s\": " << r.measured << ", \"full_s\": " << r.full
        << ", \"pairs_per_s\": " << r.pairs_per_s << ", \"tflops\": " << r.tflops
        << ", \"found\": " << r.found << ", \"planted_found\": " << r.planted_found << "}";
    }
    f << "]}\n";
  }
  for (const Row& r : rows)
    if (r.note.rfind("FAILED", 0) == 0) return 1;
  return 0;
}
