// The flash attention kernel against a double-precision causal softmax attention on the same
// bf16 inputs: varlen packed batches, GQA 2 and 4, lengths around the 64-row tile edges, a
// 32k-token sequence (checked on sampled rows), and the graph-mode upper-bound grid.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "attention.cuh"

namespace qsearch {
namespace {

using namespace qsearch::testing;

constexpr int kD = 128;

// Reference output row (Hq * 128 doubles) for token row `row` of sequence [start, start + len).
std::vector<double> reference_row(const std::vector<float>& qkv, int hq, int hkv, int start,
                                  int row) {
  const int ld = (hq + 2 * hkv) * kD;
  const double scale = 1.0 / std::sqrt(static_cast<double>(kD));
  std::vector<double> out(static_cast<size_t>(hq) * kD, 0.0);
  const int i = row - start;
  for (int h = 0; h < hq; ++h) {
    const int kvh = h / (hq / hkv);
    const float* q = &qkv[static_cast<size_t>(row) * ld + h * kD];
    std::vector<double> s(i + 1);
    double mx = -1e300;
    for (int j = 0; j <= i; ++j) {
      const float* k = &qkv[static_cast<size_t>(start + j) * ld + (hq + kvh) * kD];
      double dot = 0;
      for (int e = 0; e < kD; ++e) dot += static_cast<double>(q[e]) * k[e];
      s[j] = dot * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int j = 0; j <= i; ++j) sum += (s[j] = std::exp(s[j] - mx));
    for (int j = 0; j <= i; ++j) {
      const float* v = &qkv[static_cast<size_t>(start + j) * ld + (hq + hkv + kvh) * kD];
      for (int e = 0; e < kD; ++e) out[static_cast<size_t>(h) * kD + e] += s[j] / sum * v[e];
    }
  }
  return out;
}

// Runs the kernel on sequences of the given lengths; checks `rows_to_check` rows (all if empty).
// k_growth > 0 scales key j of each sequence by 1 + k_growth * j / len: scores grow along the
// sequence, so row maxima jump late (exercises the softmax's lazy rescaling).
void check_attention(int hq, int hkv, const std::vector<int>& lens, int extra_grid, int block_m,
                     const std::set<int>& rows_to_check = {}, float k_growth = 0.0f) {
  SCOPED_TRACE("block_m " + std::to_string(block_m));
  std::vector<int32_t> cu = {0};
  for (int l : lens) cu.push_back(cu.back() + l);
  const int tokens = cu.back(), n = static_cast<int>(lens.size());
  const int ld = (hq + 2 * hkv) * kD, ld_out = hq * kD;
  auto qkv_b = random_bf16(static_cast<size_t>(tokens) * ld, 1.0f, tokens + hq);
  // sharper attention for q: scale q by 1.5
  for (int t = 0; t < tokens; ++t)
    for (int e = 0; e < hq * kD; ++e) {
      auto& x = qkv_b[static_cast<size_t>(t) * ld + e];
      x = to_bf16(to_float(x) * 1.5f);
    }
  if (k_growth > 0) {
    for (size_t i = 0; i < lens.size(); ++i)
      for (int j = 0; j < lens[i]; ++j)
        for (int e = hq * kD; e < (hq + hkv) * kD; ++e) {
          auto& x = qkv_b[static_cast<size_t>(cu[i] + j) * ld + e];
          x = to_bf16(to_float(x) * (1.0f + k_growth * j / lens[i]));
        }
  }
  const auto qkv = to_float(qkv_b);

  std::vector<AttentionTile> tiles;
  build_attention_tiles(cu.data(), n, block_m, &tiles);
  const int num_tiles = static_cast<int>(tiles.size());
  std::vector<int32_t> nt = {num_tiles};
  DeviceArray<bf16> d_qkv(qkv_b), d_out(static_cast<size_t>(tokens) * ld_out);
  DeviceArray<int32_t> d_nt(nt);
  DeviceArray<AttentionTile> d_tiles(tiles);
  d_out.poison();
  QS_ASSERT_OK(launch_attention(d_qkv.get(), hq, hkv, block_m, d_tiles.get(), d_nt.get(),
                                num_tiles + extra_grid, 1.0f / std::sqrt(128.0f), d_out.get(), 0));
  QS_ASSERT_CUDA(cudaDeviceSynchronize());
  const auto out = to_float(d_out.download());

  for (int i = 0; i < n; ++i) {
    for (int r = cu[i]; r < cu[i + 1]; ++r) {
      if (!rows_to_check.empty() && !rows_to_check.count(r)) continue;
      const auto want = reference_row(qkv, hq, hkv, cu[i], r);
      std::vector<float> got(out.begin() + static_cast<size_t>(r) * ld_out,
                             out.begin() + static_cast<size_t>(r + 1) * ld_out);
      ASSERT_TRUE(all_close(got, want, 2e-2, 4e-3))
          << "sequence " << i << " (len " << lens[i] << ") row " << r - cu[i];
      ASSERT_LT(rel_l2(got, want), 8e-3) << "sequence " << i << " row " << r - cu[i];
    }
  }
}

TEST(AttentionTiles, CoverEveryRowOnceLongestFirst) {
  std::vector<int32_t> cu = {0, 1, 65, 200, 328};
  for (int block_m : {64, 128}) {
    std::vector<AttentionTile> tiles;
    build_attention_tiles(cu.data(), 4, block_m, &tiles);
    std::vector<int> covered(328, 0);
    for (size_t k = 0; k < tiles.size(); ++k) {
      const auto& t = tiles[k];
      if (k > 0) {
        EXPECT_LE(t.q_start, tiles[k - 1].q_start);
      }
      EXPECT_EQ(t.q_start % block_m, 0);
      for (int r = t.q_start; r < std::min(t.q_start + block_m, t.seq_len); ++r)
        covered[t.seq_start + r]++;
    }
    for (int r = 0; r < 328; ++r) EXPECT_EQ(covered[r], 1) << r;
    EXPECT_LE(static_cast<int64_t>(tiles.size()), max_attention_tiles(328, 4));
  }
}

TEST(AttentionTiles, BlockMFollowsTheLongestSequence) {
  std::vector<int32_t> short_cu = {0, 100, 611};
  std::vector<int32_t> long_cu = {0, 3, 3 + kAttentionLongSequence};
  EXPECT_EQ(attention_block_m(short_cu.data(), 2), 64);
  EXPECT_EQ(attention_block_m(long_cu.data(), 2), 128);
}

TEST(AttentionKernel, VarlenGqa2) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128}) check_attention(4, 2, {1, 7, 63, 64, 65, 130, 17, 300, 128, 256}, 0, bm);
}

TEST(AttentionKernel, VarlenGqa4) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128}) check_attention(8, 2, {129, 2, 64, 255, 1}, 0, bm);
}

TEST(AttentionKernel, SurplusGridBlocksExit) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128}) check_attention(2, 1, {40, 3, 100}, 37, bm);
}

TEST(AttentionKernel, LongSequence2048) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128})
    check_attention(2, 1, {2048}, 0, bm, {0, 1, 63, 64, 65, 500, 1023, 1024, 1500, 2046, 2047});
}

TEST(AttentionKernel, Sequence32kSampledRows) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128})
    check_attention(2, 1, {32768}, 0, bm, {0, 5, 64, 4097, 16383, 16384, 30000, 32704, 32767});
}

TEST(AttentionKernel, LateMaximaRescale) {
  QS_REQUIRE_GPU();
  for (int bm : {64, 128}) check_attention(4, 1, {1000, 70}, 0, bm, {}, 6.0f);
}

TEST(AttentionKernel, RejectsBadGqa) {
  QS_REQUIRE_GPU();
  EXPECT_FALSE(launch_attention(nullptr, 6, 4, 64, nullptr, nullptr, 1, 1.0f, nullptr, 0).is_ok());
  EXPECT_FALSE(launch_attention(nullptr, 4, 2, 96, nullptr, nullptr, 1, 1.0f, nullptr, 0).is_ok());
}

}  // namespace
}  // namespace qsearch

#else
TEST(Attention, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
