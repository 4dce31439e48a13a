// GPU similarity: the kernels against CPU references (every score, every index), and the
// whole join on 100k x 1024 vectors with planted near-duplicates against an independent
// brute force (fp32 CUDA cores + fp64 re-check): the same pairs exactly, on every GPU path
// (fused, cuBLAS + filter, streamed blocks, several workers, result-buffer overflow), and the
// same as the CPU (FAISS) path. Skips visibly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include "dedup/similarity_join.h"
#include "dedup_test_util.h"

#ifdef QSEARCH_HAVE_CUDA
#include <cuda_runtime.h>

#include "dedup/join_internal.h"
#include "gpu_reference.h"
#include "similarity.cuh"
#endif

namespace qsearch {
namespace {

using dedup_test::expect_same_pairs;
using dedup_test::make_planted_set;

#define REQUIRE_GPU()                                                                    \
  do {                                                                                   \
    if (similarity_gpu_count() == 0)                                                     \
      GTEST_SKIP() << "no CUDA GPU visible (or a CPU-only build): GPU similarity tests " \
                      "skipped";                                                         \
  } while (0)

#ifdef QSEARCH_HAVE_CUDA

// Random bf16 rows (n_pad x dim_pad, zero padding) and their float values.
struct Bf16Rows {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};
Bf16Rows random_bf16_rows(int64_t rows, int dim, int dim_pad, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(dim)));
  const int64_t rows_pad = round_up_to(rows, 128);
  Bf16Rows r;
  r.bits.assign(static_cast<size_t>(rows_pad) * dim_pad, 0);
  r.values.assign(static_cast<size_t>(rows) * dim, 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int k = 0; k < dim; ++k) {
      const uint16_t b = float_to_bf16(normal(rng));
      r.bits[i * dim_pad + k] = b;
      r.values[i * dim + k] = bf16_to_float(b);
    }
  return r;
}

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// Runs the fused kernel with a threshold below every score and checks each (i, j) once,
// with its score within fp32-accumulation error of the fp64 dot of the bf16 inputs.
void check_fused_kernel(int64_t rows_a, int64_t rows_b, int dim, bool triangular) {
  const int dim_pad = static_cast<int>(round_up_to(dim, 32));
  Bf16Rows a = random_bf16_rows(rows_a, dim, dim_pad, 100 + rows_a);
  Bf16Rows b = triangular ? a : random_bf16_rows(rows_b, dim, dim_pad, 200 + rows_b);
  if (triangular) rows_b = rows_a;
  uint16_t* d_a = to_device(a.bits);
  uint16_t* d_b = to_device(b.bits);
  const int64_t expected = triangular ? rows_a * (rows_a - 1) / 2 : rows_a * rows_b;
  const uint64_t capacity = static_cast<uint64_t>(expected);
  SimPair* d_out = nullptr;
  unsigned long long* d_count = nullptr;
  ASSERT_EQ(cudaMalloc(&d_out, capacity * sizeof(SimPair)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_count, sizeof(unsigned long long)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_out, 0xff, capacity * sizeof(SimPair)), cudaSuccess);  // poison
  ASSERT_EQ(cudaMemset(d_count, 0, sizeof(unsigned long long)), cudaSuccess);
  ASSERT_EQ(launch_similarity_threshold(d_a, rows_a, d_b, rows_b, dim_pad, dim_pad, -4.0f,
                                        triangular, d_out, capacity, d_count, nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  unsigned long long count = 0;
  ASSERT_EQ(cudaMemcpy(&count, d_count, sizeof(count), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(static_cast<int64_t>(count), expected);
  std::vector<SimPair> got(count);
  ASSERT_EQ(cudaMemcpy(got.data(), d_out, count * sizeof(SimPair), cudaMemcpyDeviceToHost),
            cudaSuccess);
  std::vector<char> seen(static_cast<size_t>(rows_a * rows_b), 0);
  double worst = 0;
  for (const SimPair& p : got) {
    ASSERT_LT(p.i, rows_a);
    ASSERT_LT(p.j, rows_b);
    if (triangular) {
      ASSERT_GT(p.j, p.i);
    }
    ASSERT_EQ(seen[p.i * rows_b + p.j]++, 0) << "pair emitted twice";
    double ref = 0, mag = 0;
    for (int k = 0; k < dim; ++k) {
      const double prod = static_cast<double>(a.values[p.i * dim + k]) * b.values[p.j * dim + k];
      ref += prod;
      mag += std::fabs(prod);
    }
    ASSERT_TRUE(std::isfinite(p.score));
    const double err = std::fabs(p.score - ref);
    worst = std::max(worst, err / (mag + 1e-30));
    ASSERT_LE(err, dim * std::ldexp(1.0, -22) * mag + 1e-7) << p.i << "," << p.j;
  }
  std::printf("fused kernel %lldx%lld dim %d%s: %llu pairs, worst error / sum|ab| %.2e\n",
              static_cast<long long>(rows_a), static_cast<long long>(rows_b), dim,
              triangular ? " (triangle)" : "", count, worst);
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_out);
  cudaFree(d_count);
}

TEST(SimilarityKernel, FusedMatchesReference) {
  REQUIRE_GPU();
  check_fused_kernel(300, 260, 96, false);    // partial tiles in both directions
  check_fused_kernel(128, 384, 1024, false);  // exact tiles, the production dimension
  check_fused_kernel(517, 517, 64, true);     // self block: j > i only
  check_fused_kernel(1, 129, 32, false);
}

TEST(SimilarityKernel, FilterMatchesHostFilter) {
  REQUIRE_GPU();
  for (bool triangular : {false, true}) {
    const int64_t rows = 333, cols = triangular ? 333 : 517, ldc = round_up_to(cols, 8) + 8;
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<uint16_t> tile(static_cast<size_t>(rows * ldc));
    for (auto& v : tile) v = float_to_bf16(u(rng));
    const float threshold = 0.7f;
    std::map<std::pair<uint32_t, uint32_t>, float> want;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float s = bf16_to_float(tile[i * ldc + j]);
        if (s >= threshold && (!triangular || j > i)) want[{uint32_t(i), uint32_t(j)}] = s;
      }
    uint16_t* d_tile = to_device(tile);
    SimPair* d_out = nullptr;
    unsigned long long* d_count = nullptr;
    const uint64_t capacity = want.size() + 10;
    ASSERT_EQ(cudaMalloc(&d_out, capacity * sizeof(SimPair)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_count, sizeof(unsigned long long)), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_count, 0, sizeof(unsigned long long)), cudaSuccess);
    ASSERT_EQ(launch_threshold_filter_bf16(d_tile, rows, cols, ldc, threshold, triangular, d_out,
                                           capacity, d_count, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    unsigned long long count = 0;
    ASSERT_EQ(cudaMemcpy(&count, d_count, sizeof(count), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(count, want.size());
    std::vector<SimPair> got(count);
    ASSERT_EQ(cudaMemcpy(got.data(), d_out, count * sizeof(SimPair), cudaMemcpyDeviceToHost),
              cudaSuccess);
    std::map<std::pair<uint32_t, uint32_t>, float> got_map;
    for (const SimPair& p : got) got_map[{p.i, p.j}] = p.score;
    EXPECT_EQ(got_map, want);
    cudaFree(d_tile);
    cudaFree(d_out);
    cudaFree(d_count);
  }
}

TEST(SimilarityKernel, OverflowIsCountedNotWritten) {
  REQUIRE_GPU();
  const int64_t rows = 256;
  const int dim_pad = 32;
  Bf16Rows a = random_bf16_rows(rows, 32, dim_pad, 77);
  uint16_t* d_a = to_device(a.bits);
  const uint64_t capacity = 100;
  SimPair* d_out = nullptr;
  unsigned long long* d_count = nullptr;
  // A sentinel element after the buffer must stay untouched.
  ASSERT_EQ(cudaMalloc(&d_out, (capacity + 1) * sizeof(SimPair)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_out, 0x5a, (capacity + 1) * sizeof(SimPair)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_count, sizeof(unsigned long long)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_count, 0, sizeof(unsigned long long)), cudaSuccess);
  ASSERT_EQ(launch_similarity_threshold(d_a, rows, d_a, rows, dim_pad, dim_pad, -4.0f, false, d_out,
                                        capacity, d_count, nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  unsigned long long count = 0;
  ASSERT_EQ(cudaMemcpy(&count, d_count, sizeof(count), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(count, static_cast<unsigned long long>(rows * rows));
  SimPair sentinel;
  ASSERT_EQ(cudaMemcpy(&sentinel, d_out + capacity, sizeof(SimPair), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(sentinel.i, 0x5a5a5a5au);
  cudaFree(d_a);
  cudaFree(d_out);
  cudaFree(d_count);
}

// The 100k x 1024 data set and its brute-force pairs, made once for the join tests.
class GpuJoin : public ::testing::Test {
 protected:
  static constexpr double kThreshold = 0.92;
  static void SetUpTestSuite() {
    if (similarity_gpu_count() == 0) return;
    data_ = new dedup_test::PlantedSet(make_planted_set(100000, 1024, kThreshold, 2024));
    want_ = new std::vector<SimilarPair>();
    auto t0 = std::chrono::steady_clock::now();
    error_ =
        dedup_test::gpu_brute_force_pairs(data_->x.data(), data_->n, data_->dim, kThreshold, want_);
    std::printf("reference: %zu pairs in %.2f s\n", want_->size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  static void TearDownTestSuite() {
    delete data_;
    delete want_;
    data_ = nullptr;
    want_ = nullptr;
  }
  void run_and_compare(SimilarityJoinOptions o, const char* what, JoinStats* stats_out = nullptr) {
    ASSERT_TRUE(error_.empty()) << error_;
    o.threshold = static_cast<float>(kThreshold);
    JoinStats stats;
    auto t0 = std::chrono::steady_clock::now();
    auto got = find_similar_pairs(data_->x.data(), data_->n, data_->dim, o, &stats);
    ASSERT_TRUE(got.is_ok()) << what << ": " << got.status().to_string();
    std::printf(
        "%s: %s, %zu pairs, %lld candidates, block %lld%s, %lld reruns, %.3f s "
        "(compare %.3f s)\n",
        what, stats.device.c_str(), got->size(), static_cast<long long>(stats.candidates),
        static_cast<long long>(stats.block_rows), stats.streamed ? " streamed" : "",
        static_cast<long long>(stats.reruns),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
        stats.compare_seconds);
    expect_same_pairs(*got, *want_, what);
    if (stats_out) *stats_out = stats;
  }
  static dedup_test::PlantedSet* data_;
  static std::vector<SimilarPair>* want_;
  static std::string error_;
};
dedup_test::PlantedSet* GpuJoin::data_ = nullptr;
std::vector<SimilarPair>* GpuJoin::want_ = nullptr;
std::string GpuJoin::error_;

TEST_F(GpuJoin, ReferenceHoldsThePlantedPairs) {
  REQUIRE_GPU();
  ASSERT_TRUE(error_.empty()) << error_;
  auto found = dedup_test::pair_set(*want_);
  for (auto p : data_->planted_above) EXPECT_TRUE(found.count(p));
  for (auto p : data_->planted_near_above) EXPECT_TRUE(found.count(p));
  for (auto p : data_->planted_near_below) EXPECT_FALSE(found.count(p));
}

TEST_F(GpuJoin, FusedEqualsBruteForce) {
  REQUIRE_GPU();
  SimilarityJoinOptions o;
  o.device = "cuda:0";
  o.gpu_kernel = GpuJoinKernel::kFused;
  JoinStats stats;
  run_and_compare(o, "fused", &stats);
  EXPECT_FALSE(stats.streamed);
  EXPECT_DOUBLE_EQ(stats.work_done, 1.0);
}

TEST_F(GpuJoin, CublasEqualsBruteForce) {
  REQUIRE_GPU();
  SimilarityJoinOptions o;
  o.device = "cuda:0";
  o.gpu_kernel = GpuJoinKernel::kCublas;
  o.block_rows = 16384;  // several block pairs, a partial last block
  run_and_compare(o, "cublas");
}

TEST_F(GpuJoin, StreamedBlocksEqualBruteForce) {
  REQUIRE_GPU();
  SimilarityJoinOptions o;
  o.device = "cuda:0";
  o.block_rows = 8192;
  o.gpu_kernel = GpuJoinKernel::kFused;
  o.gpu_memory_limit = 160ll << 20;  // < 200 MB of bf16 vectors: streamed
  JoinStats stats;
  run_and_compare(o, "fused, streamed", &stats);
  EXPECT_TRUE(stats.streamed);
  EXPECT_EQ(stats.block_rows, 8192);
  EXPECT_EQ(stats.block_pairs, 13 * 14 / 2);
  o.gpu_kernel = GpuJoinKernel::kCublas;
  o.gpu_memory_limit = 600ll << 20;  // two 128 MB tiles besides the blocks: still streamed
  run_and_compare(o, "cublas, streamed", &stats);
  EXPECT_TRUE(stats.streamed);
  EXPECT_EQ(stats.block_pairs, 13 * 14 / 2);
}

TEST_F(GpuJoin, SeveralWorkersAndOverflowEqualBruteForce) {
  REQUIRE_GPU();
  for (GpuJoinKernel kernel : {GpuJoinKernel::kFused, GpuJoinKernel::kCublas}) {
    SimilarityJoinOptions o;
    o.device = "cuda:0,0,0";  // three workers splitting the block pairs
    o.gpu_kernel = kernel;
    o.block_rows = 10240;
    o.gpu_pair_capacity = 8;  // every block pair with more hits runs again
    JoinStats stats;
    run_and_compare(o,
                    kernel == GpuJoinKernel::kFused ? "3 workers, tiny buffer, fused"
                                                    : "3 workers, tiny buffer, cublas",
                    &stats);
    EXPECT_GT(stats.reruns, 0);
  }
}

TEST_F(GpuJoin, CpuPathEqualsGpuPath) {
  REQUIRE_GPU();
  // FAISS on 30k of the vectors (the CPU path on all 100k x 1024 is slow in a unit test).
  const int64_t n = 30000;
  SimilarityJoinOptions o;
  o.threshold = static_cast<float>(kThreshold);
  o.device = "cpu";
  auto cpu = find_similar_pairs(data_->x.data(), n, data_->dim, o);
  ASSERT_TRUE(cpu.is_ok()) << cpu.status().to_string();
  o.device = "cuda";
  JoinStats stats;
  auto gpu = find_similar_pairs(data_->x.data(), n, data_->dim, o, &stats);
  ASSERT_TRUE(gpu.is_ok()) << gpu.status().to_string();
  EXPECT_NE(stats.device.find("cuBLAS"), std::string::npos) << "the default GPU path";
  EXPECT_GT(cpu->size(), 50u);
  expect_same_pairs(*gpu, *cpu, "gpu vs cpu");
}

TEST_F(GpuJoin, CancelAndWorkFraction) {
  REQUIRE_GPU();
  std::atomic<bool> cancel{true};
  SimilarityJoinOptions o;
  o.device = "cuda";
  o.cancel = &cancel;
  EXPECT_EQ(find_similar_pairs(data_->x.data(), data_->n, data_->dim, o).status().code(),
            StatusCode::kCancelled);
  o.cancel = nullptr;
  o.block_rows = 4096;
  o.work_fraction = 0.25;
  JoinStats stats;
  auto r = find_similar_pairs(data_->x.data(), data_->n, data_->dim, o, &stats);
  ASSERT_TRUE(r.is_ok());
  EXPECT_GT(stats.work_done, 0.2);
  EXPECT_LT(stats.work_done, 0.3);
  // Whatever a sample finds is a subset of the truth.
  auto all = dedup_test::pair_set(*want_);
  for (const SimilarPair& p : *r) EXPECT_TRUE(all.count({p.i, p.j}));
}

#else  // no CUDA in this build

TEST(GpuJoin, SkippedWithoutCuda) {
  GTEST_SKIP() << "CPU-only build (QSEARCH_CUDA=OFF): GPU similarity tests skipped";
}

#endif

}  // namespace
}  // namespace qsearch
