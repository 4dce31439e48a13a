// kernels/scale_scores: int32 products become int * query scale * row scale in place, for the
// rows [0, n) of each query only (the padding columns up to ld stay untouched), with row scales
// indexed by the global row (row_base + r).
#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "scale_scores.cuh"

namespace qsearch::testing {
namespace {

TEST(ScaleScoresKernel, MatchesCpuReference) {
  QS_REQUIRE_GPU();
  const int64_t n = 5000, ld = 5120, base = 300;
  const int queries = 3;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> iv(-16000000, 16000000);
  std::uniform_real_distribution<float> sv(1e-4f, 1e-2f);
  std::vector<int32_t> ints(static_cast<size_t>(queries) * ld);
  for (auto& v : ints) v = iv(rng);
  std::vector<float> row_scales(base + n), query_scales(queries);
  for (auto& s : row_scales) s = sv(rng);
  for (auto& s : query_scales) s = sv(rng);
  DeviceArray<int32_t> buf(ints);
  DeviceArray<float> d_rows(row_scales), d_queries(query_scales);
  QS_ASSERT_CUDA(
      launch_scale_scores(buf.get(), ld, n, queries, base, d_rows.get(), d_queries.get(), nullptr));
  std::vector<int32_t> raw = buf.download();
  ASSERT_EQ(raw.size(), ints.size());
  for (int b = 0; b < queries; ++b) {
    for (int64_t r = 0; r < ld; ++r) {
      const size_t at = static_cast<size_t>(b) * ld + r;
      if (r >= n) {
        ASSERT_EQ(raw[at], ints[at]) << "padding column " << r << " was written";
        continue;
      }
      float got;
      std::memcpy(&got, &raw[at], 4);
      const float want = static_cast<float>(ints[at]) * query_scales[b] * row_scales[base + r];
      ASSERT_NEAR(got, want, 1e-6f * std::fabs(want) + 1e-12f) << "query " << b << " row " << r;
    }
  }
}

TEST(ScaleScoresKernel, RejectsBadArguments) {
  QS_REQUIRE_GPU();
  DeviceArray<int32_t> buf(1024);
  DeviceArray<float> s(1024);
  EXPECT_EQ(launch_scale_scores(buf.get(), 512, 1024, 1, 0, s.get(), s.get(), nullptr),
            cudaErrorInvalidValue);  // ld < n
}

}  // namespace
}  // namespace qsearch::testing
#endif  // QSEARCH_HAVE_CUDA
