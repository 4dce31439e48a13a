// cuBLASLt GEMM wrapper (Y = X W^T, bf16 in, fp32 accumulate, bf16 out) against a double
// reference, at small and engine-like shapes, including M not a multiple of the tile sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "engine_test_util.h"

#if QSEARCH_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "embed/engine/cuda/gemm.h"
#include "embed/model/weights.h"

namespace qsearch {
namespace {

std::vector<uint16_t> random_bits(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(d(rng));
  return v;
}

void check_gemm(GemmRunner& g, int m, int n, int k) {
  auto x = random_bits(static_cast<size_t>(m) * k, m + k);
  auto w = random_bits(static_cast<size_t>(n) * k, n + k + 1);
  void *dx = nullptr, *dw = nullptr, *dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, static_cast<size_t>(m) * n * 2), cudaSuccess);
  cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice);
  cudaMemset(dy, 0xff, static_cast<size_t>(m) * n * 2);
  QS_ASSERT_OK(
      g.gemm(static_cast<bf16*>(dx), static_cast<bf16*>(dw), static_cast<bf16*>(dy), m, n, k, 0));
  std::vector<uint16_t> y(static_cast<size_t>(m) * n);
  ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  // rows spread over the matrix (a full check of the large shapes would be slow on the CPU)
  for (int r : std::set<int>{0, std::min(1, m - 1), m / 2, m - 1}) {
    for (int c = 0; c < n; c += (n > 512 ? 7 : 1)) {
      double want = 0;
      for (int e = 0; e < k; ++e)
        want += static_cast<double>(bf16_to_float(x[static_cast<size_t>(r) * k + e])) *
                bf16_to_float(w[static_cast<size_t>(c) * k + e]);
      const double got = bf16_to_float(y[static_cast<size_t>(r) * n + c]);
      // bf16 output rounding (2^-9 relative) + fp32 accumulation over k
      ASSERT_NEAR(got, want, std::fabs(want) * 8e-3 + 1e-3 * std::sqrt(static_cast<double>(k)))
          << "M=" << m << " N=" << n << " K=" << k << " at (" << r << ", " << c << ")";
    }
  }
}

TEST(GemmRunner, MatchesReference) {
  QS_REQUIRE_GPU();
  GemmRunner g;
  QS_ASSERT_OK(g.init());
  check_gemm(g, 64, 768, 128);
  check_gemm(g, 1, 256, 64);
  check_gemm(g, 77, 40, 200);
  check_gemm(g, 512, 4096, 1024);  // 0.6B qkv
  check_gemm(g, 128, 2560, 9728);  // 4B down
  check_gemm(g, 64, 768, 128);     // cached plan again
}

}  // namespace
}  // namespace qsearch

#else
TEST(GemmRunner, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
