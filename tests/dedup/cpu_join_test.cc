// The similarity join on the CPU (FAISS) against the brute-force reference, with planted
// pairs inside the bf16/fp32 error band of the threshold; options and failure modes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "dedup/similarity_join.h"
#include "dedup_test_util.h"

namespace qsearch {
namespace {

using dedup_test::brute_force_pairs_cpu;
using dedup_test::expect_same_pairs;
using dedup_test::make_planted_set;
using dedup_test::pair_set;

SimilarityJoinOptions cpu_options(float threshold) {
  SimilarityJoinOptions o;
  o.threshold = threshold;
  o.device = "cpu";
  return o;
}

// 100k vectors of 32 dims (the GPU test uses 1024 dims; this keeps 2 CPU cores at seconds).
TEST(CpuJoin, HundredThousandPlantedEqualsBruteForce) {
  const double t = 0.92;
  auto data = make_planted_set(100000, 32, t, 7);
  auto t0 = std::chrono::steady_clock::now();
  JoinStats stats;
  auto got = find_similar_pairs(data.x.data(), data.n, data.dim, cpu_options(t), &stats);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  auto t1 = std::chrono::steady_clock::now();
  auto want = brute_force_pairs_cpu(data.x.data(), data.n, data.dim, t);
  auto t2 = std::chrono::steady_clock::now();
  std::printf("faiss join %.2f s, brute force %.2f s, %zu pairs, %lld candidates\n",
              std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count(), want.size(),
              static_cast<long long>(stats.candidates));
  expect_same_pairs(*got, want, "cpu join");

  // The planted structure is where it should be.
  auto found = pair_set(*got);
  for (auto p : data.planted_above) EXPECT_TRUE(found.count(p)) << p.first << "," << p.second;
  for (auto p : data.planted_near_above) EXPECT_TRUE(found.count(p)) << p.first << "," << p.second;
  for (auto p : data.planted_near_below) EXPECT_FALSE(found.count(p)) << p.first << "," << p.second;
  for (const SimilarPair& p : *got) {
    EXPECT_NE(p.i, data.zero_vector);
    EXPECT_NE(p.j, data.zero_vector);
  }
  EXPECT_GE(want.size(), data.planted_above.size() + data.planted_near_above.size());
  EXPECT_EQ(stats.pairs, static_cast<int64_t>(got->size()));
  EXPECT_GE(stats.candidates, stats.pairs);
  EXPECT_DOUBLE_EQ(stats.work_done, 1.0);
}

// Few dimensions: thousands of natural pairs around the threshold, not only planted ones.
TEST(CpuJoin, NaturalPairsAroundThresholdEqualBruteForce) {
  const double t = 0.95;
  auto data = make_planted_set(20000, 8, t, 11);
  SimilarityJoinOptions o = cpu_options(static_cast<float>(t));
  o.cpu_block_rows = 1000;  // several blocks, one partial
  auto got = find_similar_pairs(data.x.data(), data.n, data.dim, o);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  auto want = brute_force_pairs_cpu(data.x.data(), data.n, data.dim, t);
  EXPECT_GT(want.size(), 1000u) << "the data should have many natural pairs";
  expect_same_pairs(*got, want, "cpu join, 8 dims");
}

TEST(CpuJoin, ScoresAreExactCosines) {
  auto data = make_planted_set(3000, 48, 0.9, 3);
  auto got = find_similar_pairs(data.x.data(), data.n, data.dim, cpu_options(0.9f));
  ASSERT_TRUE(got.is_ok());
  ASSERT_FALSE(got->empty());
  for (const SimilarPair& p : *got) {
    ASSERT_LT(p.i, p.j);
    const double ref = dedup_test::reference_cosine(data.x.data() + p.i * data.dim,
                                                    data.x.data() + p.j * data.dim, data.dim);
    ASSERT_NEAR(p.score, ref, 1e-6);
    ASSERT_GE(ref, 0.9);
  }
}

TEST(CpuJoin, TinyInputs) {
  float one[4] = {1, 2, 3, 4};
  auto r0 = find_similar_pairs(nullptr, 0, 4, cpu_options(0.9f));
  ASSERT_TRUE(r0.is_ok());
  EXPECT_TRUE(r0->empty());
  auto r1 = find_similar_pairs(one, 1, 4, cpu_options(0.9f));
  ASSERT_TRUE(r1.is_ok());
  EXPECT_TRUE(r1->empty());
  float two[8] = {1, 2, 3, 4, 2, 4, 6, 8};  // the same direction
  auto r2 = find_similar_pairs(two, 2, 4, cpu_options(1.0f));
  ASSERT_TRUE(r2.is_ok());
  ASSERT_EQ(r2->size(), 1u);
  EXPECT_EQ((*r2)[0].i, 0);
  EXPECT_EQ((*r2)[0].j, 1);
  EXPECT_NEAR((*r2)[0].score, 1.0, 1e-7);
}

TEST(CpuJoin, BadOptions) {
  float v[8] = {1, 0, 0, 0, 0, 1, 0, 0};
  SimilarityJoinOptions o = cpu_options(1.5f);
  EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kInvalidArgument);
  o = cpu_options(0.9f);
  o.device = "tpu";
  EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kInvalidArgument);
  o.device = "cuda:x";
  EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kInvalidArgument);
  o.device = "cuda:99";
  EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kUnavailable);
  if (similarity_gpu_count() == 0) {
    o.device = "cuda";
    EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kUnavailable);
    o.device = "auto";  // falls back to the CPU
    EXPECT_TRUE(find_similar_pairs(v, 2, 4, o).is_ok());
  }
  o = cpu_options(0.9f);
  EXPECT_EQ(find_similar_pairs(v, 2, 0, o).status().code(), StatusCode::kInvalidArgument);
  o.work_fraction = 0;
  EXPECT_EQ(find_similar_pairs(v, 2, 4, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(CpuJoin, TooManyPairsIsAnError) {
  auto data = make_planted_set(2000, 8, 0.5, 5);
  SimilarityJoinOptions o = cpu_options(0.5f);  // 8 dims: a large share of pairs
  o.max_pairs = 1000;
  auto r = find_similar_pairs(data.x.data(), data.n, data.dim, o);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("raise the threshold"), std::string::npos);
}

TEST(CpuJoin, CancelStopsEarly) {
  auto data = make_planted_set(20000, 32, 0.9, 9);
  std::atomic<bool> cancel{false};
  SimilarityJoinOptions o = cpu_options(0.9f);
  o.cpu_block_rows = 512;
  o.cancel = &cancel;
  int calls = 0;
  o.progress = [&](const JoinProgress& p) {
    EXPECT_LE(p.pairs_compared, p.pairs_total);
    if (++calls == 3) cancel.store(true);
  };
  auto r = find_similar_pairs(data.x.data(), data.n, data.dim, o);
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

TEST(CpuJoin, ProgressCountsEveryPair) {
  auto data = make_planted_set(5000, 16, 0.95, 13);
  SimilarityJoinOptions o = cpu_options(0.95f);
  o.cpu_block_rows = 700;
  JoinProgress last;
  o.progress = [&](const JoinProgress& p) { last = p; };
  ASSERT_TRUE(find_similar_pairs(data.x.data(), data.n, data.dim, o).is_ok());
  EXPECT_EQ(last.pairs_total, 5000LL * 4999 / 2);
  EXPECT_EQ(last.pairs_compared, last.pairs_total);
}

TEST(CpuJoin, Margins) {
  // The bf16 bound at 1024 dims: 2u + u^2 + 1025 * 2^-22 with u = 2^-8, about 0.0082.
  EXPECT_GT(bf16_candidate_margin(1024, false), 0.0081);
  EXPECT_LT(bf16_candidate_margin(1024, false), 0.0095);
  EXPECT_GT(bf16_candidate_margin(1024, true), bf16_candidate_margin(1024, false) + 0.0039);
  EXPECT_LT(fp32_candidate_margin(1024), 2e-4);
}

}  // namespace
}  // namespace qsearch
