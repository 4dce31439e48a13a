// The memory-bound kernels against CPU references computed in double from the same inputs:
// embedding gather, add+RMSNorm, SwiGLU, last-token pool, random fill.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "embedding.cuh"
#include "fill.cuh"
#include "pool.cuh"
#include "rms_norm.cuh"
#include "swiglu.cuh"

namespace qsearch {
namespace {

using namespace qsearch::testing;

TEST(EmbeddingKernel, GathersRowsExactly) {
  QS_REQUIRE_GPU();
  const int vocab = 1000, hidden = 264, tokens = 77;
  auto table = random_bf16(static_cast<size_t>(vocab) * hidden, 0.05f, 1);
  std::vector<int32_t> ids(tokens);
  std::mt19937 rng(2);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  ids[0] = 0;
  ids[1] = vocab - 1;
  DeviceArray<bf16> d_table(table);
  DeviceArray<int32_t> d_ids(ids);
  DeviceArray<float> d_out(static_cast<size_t>(tokens) * hidden);
  d_out.poison();
  QS_ASSERT_OK(launch_embedding_gather(d_table.get(), d_ids.get(), tokens, hidden, d_out.get(), 0));
  auto out = d_out.download();
  for (int t = 0; t < tokens; ++t)
    for (int j = 0; j < hidden; ++j)
      ASSERT_EQ(out[t * hidden + j], to_float(table[static_cast<size_t>(ids[t]) * hidden + j]))
          << "token " << t << " dim " << j;
}

TEST(EmbeddingKernel, RejectsHiddenNotMultipleOf8) {
  QS_REQUIRE_GPU();
  EXPECT_FALSE(launch_embedding_gather(nullptr, nullptr, 1, 12, nullptr, 0).is_ok());
}

void check_add_rms_norm(int hidden, bool with_delta) {
  const int tokens = 19;
  const float eps = 1e-6f;
  const size_t n = static_cast<size_t>(tokens) * hidden;
  auto resid = random_f32(n, 0.0f, 3.0f, 10 + hidden);
  resid[5] = 1e-3f;
  auto delta = random_bf16(n, 1.0f, 11 + hidden);
  auto weight = random_f32(hidden, 1.0f, 0.2f, 12 + hidden);
  // one row of tiny values: rsqrt(mean + eps) must not blow up
  for (int j = 0; j < hidden; ++j) resid[static_cast<size_t>(3) * hidden + j] = 1e-5f;

  DeviceArray<float> d_resid(resid), d_w(weight);
  DeviceArray<bf16> d_delta(delta), d_out(n);
  d_out.poison();
  QS_ASSERT_OK(launch_add_rms_norm(d_resid.get(), with_delta ? d_delta.get() : nullptr, d_w.get(),
                                   d_out.get(), tokens, hidden, eps, 0));
  auto got_resid = d_resid.download();
  auto got = to_float(d_out.download());
  std::vector<double> want_resid(n), want(n);
  for (int t = 0; t < tokens; ++t) {
    double ss = 0;
    for (int j = 0; j < hidden; ++j) {
      size_t i = static_cast<size_t>(t) * hidden + j;
      double x = resid[i] + (with_delta ? static_cast<double>(to_float(delta[i])) : 0.0);
      want_resid[i] = static_cast<float>(x);  // the GPU adds in fp32
      ss += want_resid[i] * want_resid[i];
    }
    double inv = 1.0 / std::sqrt(ss / hidden + eps);
    for (int j = 0; j < hidden; ++j) {
      size_t i = static_cast<size_t>(t) * hidden + j;
      want[i] = want_resid[i] * inv * weight[j];
    }
  }
  EXPECT_TRUE(all_close(got_resid, want_resid, 0.0, 0.0)) << "residual, hidden " << hidden;
  EXPECT_TRUE(all_close(got, want, 8e-3, 1e-4)) << "normed, hidden " << hidden;
}

TEST(RmsNormKernel, MatchesReferenceWithResidualAdd) {
  QS_REQUIRE_GPU();
  for (int hidden : {128, 1024, 2560, 4096}) check_add_rms_norm(hidden, true);
}

TEST(RmsNormKernel, MatchesReferenceWithoutDelta) {
  QS_REQUIRE_GPU();
  for (int hidden : {128, 1032, 4096}) check_add_rms_norm(hidden, false);
}

TEST(SwigluKernel, MatchesReference) {
  QS_REQUIRE_GPU();
  for (int inter : {384, 3072, 9728}) {
    const int tokens = 23;
    auto gu = random_bf16(static_cast<size_t>(tokens) * 2 * inter, 2.0f, inter);
    gu[0] = to_bf16(-90.0f);  // exp overflow side
    gu[1] = to_bf16(90.0f);
    DeviceArray<bf16> d_gu(gu), d_out(static_cast<size_t>(tokens) * inter);
    d_out.poison();
    QS_ASSERT_OK(launch_swiglu(d_gu.get(), tokens, inter, d_out.get(), 0));
    auto got = to_float(d_out.download());
    std::vector<double> want(got.size());
    for (int t = 0; t < tokens; ++t)
      for (int j = 0; j < inter; ++j) {
        double g = to_float(gu[static_cast<size_t>(t) * 2 * inter + j]);
        double u = to_float(gu[static_cast<size_t>(t) * 2 * inter + inter + j]);
        want[static_cast<size_t>(t) * inter + j] = g / (1.0 + std::exp(-g)) * u;
      }
    EXPECT_TRUE(all_close(got, want, 8e-3, 1e-5)) << "inter " << inter;
  }
}

TEST(PoolKernel, FinalNormMrlAndL2PerSequence) {
  QS_REQUIRE_GPU();
  for (int hidden : {128, 1024, 4096}) {
    const int rows = 40;
    const float eps = 1e-6f;
    auto resid = random_f32(static_cast<size_t>(rows) * hidden, 0.0f, 5.0f, hidden);
    auto delta = random_bf16(static_cast<size_t>(rows) * hidden, 1.0f, hidden + 1);
    auto weight = random_f32(hidden, 1.0f, 0.3f, hidden + 2);
    std::vector<int32_t> last = {0, 7, 39, 12, 12};
    std::vector<int32_t> dims = {hidden, 32, 1, 100, hidden - 1};
    const int n = static_cast<int>(last.size());
    DeviceArray<float> d_resid(resid), d_w(weight), d_out(static_cast<size_t>(n) * hidden);
    DeviceArray<bf16> d_delta(delta);
    DeviceArray<int32_t> d_last(last), d_dims(dims);
    d_out.poison();
    QS_ASSERT_OK(launch_last_token_pool(d_resid.get(), d_delta.get(), hidden, d_last.get(),
                                        d_dims.get(), n, d_w.get(), eps, true, d_out.get(), 0));
    auto got = d_out.download();
    std::vector<double> want(got.size());
    for (int i = 0; i < n; ++i) {
      std::vector<double> x(hidden);
      double ss = 0;
      for (int j = 0; j < hidden; ++j) {
        size_t k = static_cast<size_t>(last[i]) * hidden + j;
        x[j] = static_cast<double>(resid[k]) + to_float(delta[k]);
        ss += x[j] * x[j];
      }
      double inv = 1.0 / std::sqrt(ss / hidden + eps), ss2 = 0;
      for (int j = 0; j < dims[i]; ++j) {
        x[j] = x[j] * inv * weight[j];
        ss2 += x[j] * x[j];
      }
      double norm = std::max(std::sqrt(ss2), 1e-12);
      for (int j = 0; j < hidden; ++j)
        want[static_cast<size_t>(i) * hidden + j] = j < dims[i] ? x[j] / norm : 0.0;
    }
    EXPECT_TRUE(all_close(got, want, 1e-5, 1e-6)) << "hidden " << hidden;
    for (int i = 0; i < n; ++i)  // exact zeros past dims[i]
      for (int j = dims[i]; j < hidden; ++j)
        ASSERT_EQ(got[static_cast<size_t>(i) * hidden + j], 0.0f);
  }
}

// The reranker's output: the final-norm hidden state of each last token, every component, no
// MRL and no L2 (dims are ignored).
TEST(PoolKernel, RawHiddenStateWithoutNormalisation) {
  QS_REQUIRE_GPU();
  for (int hidden : {128, 1024, 4096}) {
    const int rows = 24;
    const float eps = 1e-6f;
    auto resid = random_f32(static_cast<size_t>(rows) * hidden, 0.0f, 5.0f, hidden + 3);
    auto delta = random_bf16(static_cast<size_t>(rows) * hidden, 1.0f, hidden + 4);
    auto weight = random_f32(hidden, 1.0f, 0.3f, hidden + 5);
    std::vector<int32_t> last = {3, 0, 23, 3};
    std::vector<int32_t> dims = {hidden, 32, 1, hidden};  // ignored
    const int n = static_cast<int>(last.size());
    DeviceArray<float> d_resid(resid), d_w(weight), d_out(static_cast<size_t>(n) * hidden);
    DeviceArray<bf16> d_delta(delta);
    DeviceArray<int32_t> d_last(last), d_dims(dims);
    d_out.poison();
    QS_ASSERT_OK(launch_last_token_pool(d_resid.get(), d_delta.get(), hidden, d_last.get(),
                                        d_dims.get(), n, d_w.get(), eps, false, d_out.get(), 0));
    auto got = d_out.download();
    std::vector<double> want(got.size());
    double norm2 = 0;
    for (int i = 0; i < n; ++i) {
      std::vector<double> x(hidden);
      double ss = 0;
      for (int j = 0; j < hidden; ++j) {
        size_t k = static_cast<size_t>(last[i]) * hidden + j;
        x[j] = static_cast<double>(resid[k]) + to_float(delta[k]);
        ss += x[j] * x[j];
      }
      double inv = 1.0 / std::sqrt(ss / hidden + eps);
      for (int j = 0; j < hidden; ++j) {
        want[static_cast<size_t>(i) * hidden + j] = x[j] * inv * weight[j];
        norm2 += want[static_cast<size_t>(i) * hidden + j] * want[static_cast<size_t>(i) * hidden + j];
      }
    }
    EXPECT_TRUE(all_close(got, want, 1e-5, 1e-6)) << "hidden " << hidden;
    // Not normalised: each row's norm is about sqrt(hidden) (RMS 1 times weights near 1).
    EXPECT_GT(norm2 / n, 0.25 * hidden) << "hidden " << hidden;
  }
}

TEST(FillKernel, RandomIsDeterministicWithTheRequestedSpread) {
  QS_REQUIRE_GPU();
  const size_t n = 1 << 20;
  DeviceArray<bf16> a(n), b(n), c(n);
  QS_ASSERT_OK(launch_fill_random_bf16(a.get(), n, 0.02f, 7, 0));
  QS_ASSERT_OK(launch_fill_random_bf16(b.get(), n, 0.02f, 7, 0));
  QS_ASSERT_OK(launch_fill_random_bf16(c.get(), n, 0.02f, 8, 0));
  auto fa = to_float(a.download()), fb = to_float(b.download()), fc = to_float(c.download());
  double sum = 0, sq = 0;
  size_t same_c = 0;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(fa[i], fb[i]);
    sum += fa[i];
    sq += static_cast<double>(fa[i]) * fa[i];
    same_c += fa[i] == fc[i];
  }
  const double mean = sum / n, std = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(std, 0.02, 1e-3);
  EXPECT_LT(same_c, n / 20) << "another seed must give other values";
  DeviceArray<float> f(1000);
  QS_ASSERT_OK(launch_fill_f32(f.get(), 1000, 1.5f, 0));
  for (float v : f.download()) ASSERT_EQ(v, 1.5f);
}

}  // namespace
}  // namespace qsearch

#else
TEST(Kernels, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
