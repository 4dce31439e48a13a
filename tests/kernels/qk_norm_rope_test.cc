// q/k RMSNorm + NeoX RoPE against a double-precision reference that uses the same fp32
// inv_freq and fp32 angles as transformers (only cos/sin and the arithmetic are in double).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "qk_norm_rope.cuh"

namespace qsearch {
namespace {

using namespace qsearch::testing;

TEST(RopeInvFreq, MatchesTransformersFormula) {
  auto f = rope_inv_freq(1000000.0, 128);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f[0], 1.0f);
  for (int i = 0; i < 64; ++i) {
    double want = 1.0 / std::pow(1e6, (2.0 * i) / 128.0);
    EXPECT_NEAR(f[i], want, want * 3e-7) << i;  // fp32 rounding only
  }
}

void check_qk_norm_rope(int hq, int hkv, const std::vector<int32_t>& positions, double theta) {
  const int d = 128, tokens = static_cast<int>(positions.size());
  const int ld = (hq + 2 * hkv) * d;
  const float eps = 1e-6f;
  auto qkv = random_bf16(static_cast<size_t>(tokens) * ld, 2.0f, hq * 100 + hkv);
  auto qw = random_f32(d, 1.0f, 0.3f, 5), kw = random_f32(d, 1.0f, 0.3f, 6);
  auto inv_freq = rope_inv_freq(theta, d);
  DeviceArray<bf16> d_qkv(qkv);
  DeviceArray<int32_t> d_pos(positions);
  DeviceArray<float> d_f(inv_freq), d_qw(qw), d_kw(kw);
  QS_ASSERT_OK(launch_qk_norm_rope(d_qkv.get(), tokens, hq, hkv, d_pos.get(), d_f.get(), d_qw.get(),
                                   d_kw.get(), eps, 0));
  auto got = to_float(d_qkv.download());
  std::vector<double> want(got.size());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < hq + 2 * hkv; ++h) {
      const size_t base = static_cast<size_t>(t) * ld + static_cast<size_t>(h) * d;
      if (h >= hq + hkv) {  // v: untouched
        for (int j = 0; j < d; ++j) want[base + j] = to_float(qkv[base + j]);
        continue;
      }
      const std::vector<float>& w = h < hq ? qw : kw;
      double ss = 0;
      std::vector<double> x(d);
      for (int j = 0; j < d; ++j) {
        x[j] = to_float(qkv[base + j]);
        ss += x[j] * x[j];
      }
      const double inv = 1.0 / std::sqrt(ss / d + eps);
      for (int j = 0; j < d; ++j) x[j] = x[j] * inv * w[j];
      for (int j = 0; j < d / 2; ++j) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[j];  // fp32, as HF
        const double c = std::cos(static_cast<double>(angle)),
                     s = std::sin(static_cast<double>(angle));
        want[base + j] = x[j] * c - x[j + d / 2] * s;
        want[base + j + d / 2] = x[j + d / 2] * c + x[j] * s;
      }
    }
  }
  EXPECT_TRUE(all_close(got, want, 8e-3, 2e-3)) << "hq " << hq << " hkv " << hkv;
}

TEST(QkNormRopeKernel, MatchesReferenceGqa2) {
  QS_REQUIRE_GPU();
  check_qk_norm_rope(16, 8, {0, 1, 2, 3, 0, 1, 100, 511, 0}, 1e6);
}

TEST(QkNormRopeKernel, MatchesReferenceGqa4LargePositions) {
  QS_REQUIRE_GPU();
  // positions up to 32k: angles of ~32768 rad need accurate range reduction
  check_qk_norm_rope(32, 8, {0, 8191, 8192, 20000, 32767, 1, 4095}, 1e6);
}

TEST(QkNormRopeKernel, OtherTheta) {
  QS_REQUIRE_GPU();
  check_qk_norm_rope(4, 2, {0, 5, 17, 300}, 10000.0);
}

}  // namespace
}  // namespace qsearch

#else
TEST(QkNormRope, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
