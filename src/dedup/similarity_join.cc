// find_similar_pairs: option checks, device choice, vector preparation, the fast candidate
// pass (GPU or FAISS), then the exact fp64 re-check that makes every path give the same answer.
#include "dedup/similarity_join.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include "common/thread_pool.h"
#include "dedup/join_internal.h"

namespace qsearch {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Parses options.device into the GPU worker list; empty list = CPU.
StatusOr<std::vector<int>> parse_device(const std::string& device) {
  const int gpus = similarity_gpu_count();
  std::vector<int> out;
  if (device == "cpu") return out;
  if (device == "auto" || device == "cuda" || device == "gpu") {
    if (gpus == 0) {
      if (device == "auto") return out;
      return unavailable("device " + device + ": no GPU is visible (or this build has no CUDA)");
    }
    for (int g = 0; g < gpus; ++g) out.push_back(g);
    return out;
  }
  if (device.rfind("cuda:", 0) == 0) {
    std::stringstream list(device.substr(5));
    std::string item;
    while (std::getline(list, item, ',')) {
      char* end = nullptr;
      long g = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || g < 0)
        return invalid_argument("bad GPU list in device '" + device + "'");
      if (g >= gpus)
        return unavailable("device '" + device + "': GPU " + item + " is not visible (" +
                           std::to_string(gpus) + " GPU(s))");
      out.push_back(static_cast<int>(g));
    }
    if (out.empty()) return invalid_argument("empty GPU list in device '" + device + "'");
    return out;
  }
  return invalid_argument("unknown device '" + device + "' (auto, cpu, cuda, cuda:0,1)");
}

}  // namespace

Status check_join_device(const std::string& device) { return parse_device(device).status(); }

double inverse_norm(const float* v, int dim) {
  double ss = 0;
  for (int k = 0; k < dim; ++k) ss += static_cast<double>(v[k]) * static_cast<double>(v[k]);
  return ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
}

double exact_cosine(const float* a, const float* b, int dim, double inv_norm_a, double inv_norm_b) {
  double s = 0;
  for (int k = 0; k < dim; ++k) s += static_cast<double>(a[k]) * static_cast<double>(b[k]);
  return s * inv_norm_a * inv_norm_b;
}

double bf16_candidate_margin(int dim, bool bf16_output) {
  const double u = std::ldexp(1.0, -8);  // bf16 unit roundoff (8-bit significand)
  // Inputs rounded to bf16: |a'.b' - a.b| <= (2u + u^2) sum |a_k b_k| <= 2u + u^2 for unit
  // vectors; fp32 accumulation on the tensor cores (which may truncate): dim * 2^-22;
  // normalisation rounded to fp32: 2^-22. A bf16 output tile adds u * |score| <= u.
  double m = 2 * u + u * u + (dim + 1) * std::ldexp(1.0, -22);
  if (bf16_output) m += u;
  return m * 1.05 + 1e-6;
}

double fp32_candidate_margin(int dim) {
  // fp32 products and sums in any order: gamma_dim = dim * 2^-24 / (1 - dim 2^-24), plus the
  // fp32 rounding of the normalised inputs (2 * 2^-24); doubled for safety.
  return 2.0 * ((dim + 2) * std::ldexp(1.0, -24)) + 1e-6;
}

StatusOr<std::vector<SimilarPair>> find_similar_pairs(const float* x, int64_t n, int dim,
                                                      const SimilarityJoinOptions& options,
                                                      JoinStats* stats) {
  JoinStats local_stats;
  JoinStats& st = stats ? *stats : local_stats;
  st = JoinStats{};
  if (n < 0 || dim <= 0) return invalid_argument("similarity join: need n >= 0 and dim >= 1");
  if (n > 0 && x == nullptr) return invalid_argument("similarity join: no vectors");
  if (!(options.threshold >= -1.0f && options.threshold <= 1.0f))
    return invalid_argument("threshold must be in [-1, 1], got " +
                            std::to_string(options.threshold));
  if (!(options.work_fraction > 0.0 && options.work_fraction <= 1.0))
    return invalid_argument("work_fraction must be in (0, 1]");
  if (options.max_pairs < 0) return invalid_argument("max_pairs must be >= 0");
  if (n >= (int64_t{1} << 31) - 256)
    return invalid_argument("similarity join: at most 2^31 - 257 vectors");
  QS_ASSIGN_OR_RETURN(std::vector<int> gpus, parse_device(options.device));
  st.work_done = 1.0;
  if (n < 2) {
    st.device = gpus.empty() ? "cpu" : "cuda";
    return std::vector<SimilarPair>{};
  }

  ThreadPool pool(options.threads > 0 ? static_cast<size_t>(options.threads) : 0);
  auto t_prepare = Clock::now();
  std::vector<double> inv(static_cast<size_t>(n));
  pool.parallel_for(static_cast<size_t>(n), [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      inv[i] = inverse_norm(x + static_cast<int64_t>(i) * dim, dim);
  });

  std::vector<SimilarPair> candidates;
  const int64_t pairs_total = n * (n - 1) / 2;
  CandidateSink sink(options, pairs_total);
  if (!gpus.empty()) {
    const bool bf16_out = options.gpu_kernel != GpuJoinKernel::kFused;  // kAuto: cuBLAS
    const double margin = bf16_candidate_margin(dim, bf16_out);
    const float threshold_lo = static_cast<float>(options.threshold - margin);
    Bf16Matrix m;
    m.n = n;
    m.dim = dim;
    m.n_pad = round_up_to(n, 128);
    m.dim_pad = static_cast<int>(round_up_to(dim, 32));
    m.data.assign(static_cast<size_t>(m.n_pad) * m.dim_pad, 0);
    pool.parallel_for(static_cast<size_t>(n), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        const float* src = x + static_cast<int64_t>(i) * dim;
        uint16_t* dst = m.data.data() + i * static_cast<size_t>(m.dim_pad);
        for (int k = 0; k < dim; ++k) dst[k] = float_to_bf16(static_cast<float>(src[k] * inv[i]));
      }
    });
    st.prepare_seconds = seconds_since(t_prepare);
    QS_RETURN_IF_ERROR(gpu_join_candidates(m, threshold_lo, gpus, options, &sink, &st));
  } else {
    const double margin = fp32_candidate_margin(dim);
    const float threshold_lo = static_cast<float>(options.threshold - margin);
    std::vector<float> normalized(static_cast<size_t>(n) * dim);
    pool.parallel_for(static_cast<size_t>(n), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i)
        for (int k = 0; k < dim; ++k)
          normalized[i * dim + k] = static_cast<float>(x[i * dim + k] * inv[i]);
    });
    st.prepare_seconds = seconds_since(t_prepare);
    QS_RETURN_IF_ERROR(
        cpu_join_candidates(normalized.data(), n, dim, threshold_lo, options, &sink, &st));
  }
  candidates = sink.take();
  st.candidates = static_cast<int64_t>(candidates.size());

  // The exact check, in parallel: candidates failing it get i = -1 and are dropped.
  auto t_verify = Clock::now();
  const double threshold = options.threshold - kExactCosineSlack;
  pool.parallel_for(candidates.size(), [&](size_t begin, size_t end) {
    for (size_t c = begin; c < end; ++c) {
      SimilarPair& p = candidates[c];
      const double s = exact_cosine(x + p.i * dim, x + p.j * dim, dim, inv[p.i], inv[p.j]);
      if (s >= threshold) {
        p.score = static_cast<float>(std::clamp(s, -1.0, 1.0));
      } else {
        p.i = -1;
      }
    }
  });
  candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                  [](const SimilarPair& p) { return p.i < 0; }),
                   candidates.end());
  std::sort(candidates.begin(), candidates.end(), [](const SimilarPair& a, const SimilarPair& b) {
    return a.i != b.i ? a.i < b.i : a.j < b.j;
  });
  st.verify_seconds = seconds_since(t_verify);
  st.pairs = static_cast<int64_t>(candidates.size());
  return candidates;
}

}  // namespace qsearch
