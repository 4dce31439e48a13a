// The CPU engine against the naive double-precision reference on the tiny test model, batch
// independence, MRL, validation, and a 32k-token sequence.
#include "embed/engine/cpu_engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "embed/embedder.h"
#include "engine/reference_util.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

using testing::cosine;
using testing::max_abs_diff;

// Random ids (deterministic), ending with <|endoftext|> as the Embedder guarantees.
std::vector<int32_t> random_ids(size_t n, uint64_t seed) {
  TestRng rng(seed);
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < n; ++i) ids.push_back(static_cast<int32_t>(rng.next_u64() % 151669));
  ids.push_back(kEndOfTextId);
  return ids;
}

class CpuEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::have_qwen3_tokenizer()) return;
    dir_ = new testing::TempDir();
    testing::make_tiny_model(dir_->path());
    ref_ = testing::ReferenceModel::load(dir_->path()).release();
    auto config = ModelConfig::from_file(dir_->file("config.json"));
    ASSERT_TRUE(config.is_ok());
    auto e = CpuEngine::create(dir_->path(), *config, {});
    ASSERT_TRUE(e.is_ok()) << e.status().to_string();
    engine_ = e->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete ref_;
    delete dir_;
    engine_ = nullptr;
    ref_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!engine_ || !ref_) GTEST_FAIL() << "test model setup failed";
  }

  // Runs one batch; returns one vector of hidden floats per sequence.
  static std::vector<std::vector<float>> run(CpuEngine& e,
                                             const std::vector<std::vector<int32_t>>& seqs,
                                             const std::vector<int32_t>& dims = {}) {
    EngineBatch b;
    for (size_t i = 0; i < seqs.size(); ++i) b.add(seqs[i], dims.empty() ? 0 : dims[i]);
    if (dims.empty()) b.dims.clear();
    std::vector<float> out(seqs.size() * e.hidden_size(), -7.0f);
    Status s = e.embed(b, out.data());
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    std::vector<std::vector<float>> rows;
    for (size_t i = 0; i < seqs.size(); ++i)
      rows.emplace_back(out.begin() + i * e.hidden_size(), out.begin() + (i + 1) * e.hidden_size());
    return rows;
  }

  static testing::TempDir* dir_;
  static testing::ReferenceModel* ref_;
  static CpuEngine* engine_;
};

testing::TempDir* CpuEngineTest::dir_ = nullptr;
testing::ReferenceModel* CpuEngineTest::ref_ = nullptr;
CpuEngine* CpuEngineTest::engine_ = nullptr;

// Lengths on both sides of the short/long attention paths and of a query tile.
const std::vector<size_t> kLengths = {1, 2, 7, 33, 128, 129, 257, 300};

TEST_F(CpuEngineTest, MatchesNaiveReferenceAlone) {
  EXPECT_EQ(engine_->hidden_size(), 128);
  EXPECT_EQ(engine_->name(), "cpu");
  EXPECT_EQ(engine_->max_batch_tokens(), 8192);
  EXPECT_EQ(engine_->max_sequence_tokens(), 32768);
  double worst = 0;
  for (size_t len : kLengths) {
    auto ids = random_ids(len, 1000 + len);
    std::vector<float> got = run(*engine_, {ids})[0];
    std::vector<double> want = ref_->embed(ids);
    worst = std::max(worst, max_abs_diff(got, want));
    EXPECT_LE(max_abs_diff(got, want), 1e-5) << "length " << len;
    EXPECT_GE(cosine(got, want), 0.999999) << "length " << len;
    double norm = 0;
    for (float v : got) norm += static_cast<double>(v) * v;
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
  std::printf("CPU engine vs double reference: max abs difference %.3g\n", worst);
}

TEST_F(CpuEngineTest, BatchCompositionNeverChangesAResult) {
  std::vector<std::vector<int32_t>> seqs;
  for (size_t len : kLengths) seqs.push_back(random_ids(len, 1000 + len));
  std::vector<std::vector<float>> alone;
  for (const auto& s : seqs) alone.push_back(run(*engine_, {s})[0]);
  // All together, reversed, and interleaved with duplicates.
  auto together = run(*engine_, seqs);
  std::vector<std::vector<int32_t>> rev(seqs.rbegin(), seqs.rend());
  auto reversed = run(*engine_, rev);
  std::vector<std::vector<int32_t>> dup = {seqs[3], seqs[7], seqs[3], seqs[0], seqs[5]};
  auto duplicated = run(*engine_, dup);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_GE(cosine(together[i], alone[i]), 0.9999);
    EXPECT_LE(max_abs_diff(together[i], std::vector<double>(alone[i].begin(), alone[i].end())),
              1e-6)
        << i;
    EXPECT_GE(cosine(reversed[seqs.size() - 1 - i], alone[i]), 0.9999);
    EXPECT_LE(max_abs_diff(together[i], ref_->embed(seqs[i])), 1e-5) << i;
  }
  EXPECT_GE(cosine(duplicated[0], alone[3]), 0.9999);
  EXPECT_GE(cosine(duplicated[2], alone[3]), 0.9999);
  EXPECT_GE(cosine(duplicated[1], alone[7]), 0.9999);
  EXPECT_GE(cosine(duplicated[3], alone[0]), 0.9999);
  EXPECT_GE(cosine(duplicated[4], alone[5]), 0.9999);
}

TEST_F(CpuEngineTest, EmbeddingsDependOnContentAndOrder) {
  auto a = random_ids(40, 1), b = random_ids(40, 2);
  auto swapped = a;
  std::swap(swapped[3], swapped[20]);  // same tokens, other order (EOS still last)
  auto rows = run(*engine_, {a, b, swapped});
  EXPECT_LT(cosine(rows[0], rows[1]), 0.99);    // the test model is not degenerate
  EXPECT_LT(cosine(rows[0], rows[2]), 0.9999);  // causal attention + RoPE see the order
  EXPECT_LE(max_abs_diff(rows[2], ref_->embed(swapped)), 1e-5);
}

TEST_F(CpuEngineTest, MrlDimensions) {
  auto ids = random_ids(50, 5);
  std::vector<int32_t> dims = {32, 64, 100, 128};
  auto rows = run(*engine_, {ids, ids, ids, ids}, dims);
  for (size_t i = 0; i < dims.size(); ++i) {
    std::vector<float> head(rows[i].begin(), rows[i].begin() + dims[i]);
    EXPECT_LE(max_abs_diff(head, ref_->embed(ids, dims[i])), 1e-5) << dims[i];
    for (int j = dims[i]; j < 128; ++j) ASSERT_EQ(rows[i][j], 0.0f) << dims[i] << " " << j;
  }
}

TEST_F(CpuEngineTest, ThreadCountDoesNotChangeResults) {
  auto config = ModelConfig::from_file(dir_->file("config.json"));
  ASSERT_TRUE(config.is_ok());
  auto one = CpuEngine::create(dir_->path(), *config, {8192, 1});
  ASSERT_TRUE(one.is_ok());
  std::vector<std::vector<int32_t>> seqs = {random_ids(200, 9), random_ids(17, 10)};
  auto a = run(**one, seqs);
  auto b = run(*engine_, seqs);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_LE(max_abs_diff(a[i], std::vector<double>(b[i].begin(), b[i].end())), 1e-6);
}

TEST_F(CpuEngineTest, ValidatesBatches) {
  auto config = ModelConfig::from_file(dir_->file("config.json"));
  ASSERT_TRUE(config.is_ok());
  auto small = CpuEngine::create(dir_->path(), *config, {64, 0});
  ASSERT_TRUE(small.is_ok());
  std::vector<float> out(4 * 128);
  auto try_batch = [&](CpuEngine& e, const std::vector<std::vector<int32_t>>& seqs,
                       std::vector<int32_t> dims = {}) {
    EngineBatch b;
    for (const auto& s : seqs) b.add(s, 128);
    if (!dims.empty()) b.dims = dims;
    return e.embed(b, out.data());
  };
  EXPECT_FALSE(try_batch(*engine_, {{5, 151669}}).is_ok());  // id == vocab size
  EXPECT_FALSE(try_batch(*engine_, {{-1, kEndOfTextId}}).is_ok());
  EXPECT_FALSE(try_batch(*engine_, {{1, kEndOfTextId}}, {0}).is_ok());
  EXPECT_FALSE(try_batch(*engine_, {{1, kEndOfTextId}}, {129}).is_ok());
  EngineBatch empty_seq;
  empty_seq.add({1, 2}, 128);
  empty_seq.add({}, 128);
  EXPECT_FALSE(engine_->embed(empty_seq, out.data()).is_ok());
  // Over the budget of 64 tokens: two sequences are refused, one long sequence alone is not.
  EXPECT_FALSE(try_batch(**small, {random_ids(40, 1), random_ids(40, 2)}).is_ok());
  ASSERT_TRUE(try_batch(**small, {random_ids(100, 3)}).is_ok());
  EXPECT_LE(max_abs_diff(std::vector<float>(out.begin(), out.begin() + 128),
                         ref_->embed(random_ids(100, 3))),
            1e-5);
  EngineBatch none;
  EXPECT_TRUE(engine_->embed(none, out.data()).is_ok());
}

// A 32k-token sequence (max_position_embeddings) on a 1-layer model: attention is tiled, so
// memory stays far below the n^2 scores (4 GiB per head); the result matches the reference,
// whose last layer costs O(n) for the last token.
TEST(CpuEngineLong, FullContextSequence) {
  if (!testing::have_qwen3_tokenizer()) return;
  testing::TempDir dir;
  TestModelOptions o;
  o.layers = 1;
  testing::make_tiny_model(dir.path(), o);
  auto config = ModelConfig::from_file(dir.file("config.json"));
  ASSERT_TRUE(config.is_ok());
  auto engine = CpuEngine::create(dir.path(), *config, {});
  ASSERT_TRUE(engine.is_ok());
  auto ref = testing::ReferenceModel::load(dir.path());
  ASSERT_NE(ref, nullptr);
  auto ids = random_ids(32768, 77);
  EngineBatch b;
  b.add(ids, 128);
  std::vector<float> out(128);
  auto t0 = std::chrono::steady_clock::now();
  Status s = (*engine)->embed(b, out.data());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  std::printf("32768-token sequence, 1 layer: %.1f s\n", secs);
  EngineMemory m = (*engine)->memory();
  EXPECT_LT(m.workspace_bytes, int64_t{512} << 20) << m.workspace_bytes;
  std::vector<double> want = ref->embed(ids);
  EXPECT_GE(cosine(out, want), 0.99999);
  EXPECT_LE(max_abs_diff(out, want), 1e-4);
  // One token more than max_position_embeddings is refused.
  ids.insert(ids.begin(), 1);
  EngineBatch too_long;
  too_long.add(ids, 128);
  EXPECT_FALSE((*engine)->embed(too_long, out.data()).is_ok());
}

}  // namespace
}  // namespace qsearch
