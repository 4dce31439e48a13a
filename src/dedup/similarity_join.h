// All pairs of vectors at or above a cosine threshold (a similarity self-join), on the GPU
// when one is there, else on FAISS (CPU). The library side of `qsearch dedup`, also meant
// for the service (POST /collections/{name}/duplicates).
//
// Data contract (FAISS Index.h): n vectors of dim floats, row-major, component k of vector i
// at x[i * dim + k]. Vectors need not be normalised: the score is their cosine.
//
// What "exact" means here: pair (i, j), i < j, is returned if and only if
//     exact_cosine(x_i, x_j) >= threshold - kExactCosineSlack (1e-12),
// with exact_cosine the fp64 formula below (sequential fp64 sum of the float products, times
// the fp64 inverse norms; a zero vector has cosine 0 with everything). The slack only absorbs
// fp64 rounding (~1e-16), so that two vectors of the same direction pass threshold 1.0;
// float32 inputs cannot place a cosine that close to a threshold otherwise. The fast paths (bf16
// tensor cores, fp32 BLAS) only propose candidates with threshold - margin, where margin
// bounds their worst-case error (bf16: 2u + u^2 + dim 2^-22 with u = 2^-8, about 0.0082 at
// 1024 dims); every candidate is then re-scored with exact_cosine on the host. So the answer
// does not depend on the device, and pairs within bf16 rounding of the threshold are decided
// the same way everywhere. Returned scores are exact_cosine rounded to float.
//
// Concurrency: find_similar_pairs is reentrant; each call owns its GPU buffers and threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

inline constexpr double kExactCosineSlack = 1e-12;

struct SimilarPair {
  int64_t i = 0;  // i < j
  int64_t j = 0;
  float score = 0.0f;  // exact_cosine(x_i, x_j), clamped to [-1, 1], rounded to float
};

enum class GpuJoinKernel {
  kAuto,    // the faster one on H100 (measured, docs/dedup.md): kCublas
  kFused,   // mma.sync tiles with the threshold filter fused (kernels/similarity.cu): no
            // score tile in memory at all
  kCublas,  // cuBLAS bf16 product per block pair into a bf16 tile (one 2 GB tile per slot),
            // then the filter kernel, overlapped with the next product
};

struct JoinProgress {
  int64_t pairs_compared = 0;  // vector pairs scored so far
  int64_t pairs_total = 0;     // n (n - 1) / 2, times work_fraction
  int64_t candidates = 0;      // candidate pairs found so far (before the exact check)
};

struct SimilarityJoinOptions {
  // Keep pairs with exact cosine >= threshold. Must be in [-1, 1].
  float threshold = 0.92f;
  // "auto" (all visible GPUs, else CPU), "cpu", "cuda" (all GPUs), "cuda:0,2" (those GPUs;
  // a GPU listed twice gets two workers, which tests use to exercise the split).
  std::string device = "auto";
  GpuJoinKernel gpu_kernel = GpuJoinKernel::kAuto;
  // Fail with kResourceExhausted once more candidate pairs than this are found (each costs
  // 24 bytes of host memory): a threshold too low for the data.
  int64_t max_pairs = 200'000'000;
  // GPU: rows per block; block pairs are the unit of work, of scheduling over GPUs and of
  // streaming. 0: 65536 (fused) or 32768 (cuBLAS), smaller when memory is short.
  int64_t block_rows = 0;
  // GPU: bytes of each GPU the join may use (0: free memory minus 1 GiB). When all vectors
  // (bf16) fit they are uploaded once; otherwise blocks are streamed from host memory.
  int64_t gpu_memory_limit = 0;
  // GPU: first size of the device result buffer, in pairs (0: sized to memory). A block
  // pair that overflows it is run again with a buffer of the reported size.
  int64_t gpu_pair_capacity = 0;
  // CPU: query rows per FAISS range_search call.
  int64_t cpu_block_rows = 4096;
  // CPU: threads for the exact re-scoring (0: all cores). FAISS uses OpenMP's own.
  int threads = 0;
  // Benchmarks only: process an evenly spread sample of this fraction of the block pairs
  // (the result is then partial; JoinStats::work_done says how much was done).
  double work_fraction = 1.0;
  // Called from worker threads (serialised) after each block pair.
  std::function<void(const JoinProgress&)> progress;
  // Polled between block pairs; when it becomes true the join returns kCancelled.
  const std::atomic<bool>* cancel = nullptr;
};

struct JoinStats {
  std::string device;          // "cpu (FAISS)" or "cuda:0 (fused)", ...
  int64_t block_rows = 0;      // GPU block rows
  int64_t block_pairs = 0;     // block pairs processed
  bool streamed = false;       // GPU: blocks streamed from host memory
  int64_t reruns = 0;          // GPU: block pairs run again after a result overflow
  int64_t candidates = 0;      // pairs proposed by the fast path
  int64_t pairs = 0;           // pairs kept by the exact check
  double work_done = 0;        // fraction of all pairs compared (1 unless work_fraction < 1)
  double prepare_seconds = 0;  // norms, bf16 conversion, upload
  double compare_seconds = 0;  // the all-pairs phase
  double verify_seconds = 0;   // exact re-scoring and sorting
};

// The pairs, sorted by (i, j). kInvalidArgument for bad sizes or options, kUnavailable when
// the device asks for a GPU that is not there, kResourceExhausted past max_pairs or GPU
// memory, kCancelled on cancel.
StatusOr<std::vector<SimilarPair>> find_similar_pairs(const float* x, int64_t n, int dim,
                                                      const SimilarityJoinOptions& options,
                                                      JoinStats* stats = nullptr);

// The reference score (see above). inv_norm_a = 1 / sqrt(sum of squares in fp64), 0 for a
// zero vector.
double exact_cosine(const float* a, const float* b, int dim, double inv_norm_a, double inv_norm_b);
double inverse_norm(const float* v, int dim);

// Checks a device string as find_similar_pairs would (kInvalidArgument / kUnavailable), so a
// job can fail before hours of embedding rather than after.
Status check_join_device(const std::string& device);

// Number of GPUs the join can use (0 in CPU-only builds or without a GPU). Never fails.
int similarity_gpu_count();

// The margin added below the threshold for the candidates of each fast path (see above).
double bf16_candidate_margin(int dim, bool bf16_output);
double fp32_candidate_margin(int dim);

}  // namespace qsearch
