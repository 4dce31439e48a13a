// Internal parts of the similarity join shared by similarity_join.cc (dispatch, exact check),
// cpu_join.cc (FAISS) and gpu_join.cc (CUDA). Not a public header.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "dedup/similarity_join.h"

namespace qsearch {

// Collects candidate pairs from worker threads, enforces max_pairs, reports progress and
// watches the cancel flag. Thread-safe.
class CandidateSink {
 public:
  CandidateSink(const SimilarityJoinOptions& options, int64_t pairs_total) : options_(options) {
    progress_.pairs_total = pairs_total;
  }

  // Appends pairs (global indices, approximate scores) and counts `compared` pairs as done.
  Status add(const SimilarPair* pairs, size_t count, int64_t compared) {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int64_t>(pairs_.size() + count) > options_.max_pairs) {
      failed_.store(true);
      return resource_exhausted("more than " + std::to_string(options_.max_pairs) +
                                " pairs at or near cosine " + std::to_string(options_.threshold) +
                                ": raise the threshold (or max_pairs)");
    }
    pairs_.insert(pairs_.end(), pairs, pairs + count);
    progress_.pairs_compared += compared;
    progress_.candidates = static_cast<int64_t>(pairs_.size());
    if (options_.progress) options_.progress(progress_);
    return Status::ok();
  }

  // True when the caller cancelled or another worker failed: workers stop at the next block.
  bool should_stop() const {
    return failed_.load() || (options_.cancel != nullptr && options_.cancel->load());
  }
  bool cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }
  void fail() { failed_.store(true); }

  std::vector<SimilarPair> take() { return std::move(pairs_); }

 private:
  const SimilarityJoinOptions& options_;
  std::mutex mu_;
  std::vector<SimilarPair> pairs_;
  JoinProgress progress_;
  std::atomic<bool> failed_{false};
};

// Vectors prepared for the GPU: normalised, bf16 (round to nearest even), n_pad x dim_pad
// with zero padding (n_pad = round_up(n, 128), dim_pad = round_up(dim, 32)).
struct Bf16Matrix {
  int64_t n = 0;
  int64_t n_pad = 0;
  int dim = 0;
  int dim_pad = 0;
  std::vector<uint16_t> data;
};

// Candidate pairs (i < j) with approximate score >= threshold_lo, over the given GPU worker
// list (device ids, repeats allowed). Fills stats' GPU fields.
Status gpu_join_candidates(const Bf16Matrix& m, float threshold_lo, const std::vector<int>& devices,
                           const SimilarityJoinOptions& options, CandidateSink* sink,
                           JoinStats* stats);

// Candidate pairs (i < j) with fp32 inner product > threshold_lo over normalised vectors,
// through FAISS range_search_inner_product in blocks of query rows against the rows after.
Status cpu_join_candidates(const float* normalized, int64_t n, int dim, float threshold_lo,
                           const SimilarityJoinOptions& options, CandidateSink* sink,
                           JoinStats* stats);

inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  static_assert(sizeof(u) == sizeof(f));
  __builtin_memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                     // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, sizeof(f));
  return f;
}

inline int64_t round_up_to(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

}  // namespace qsearch
