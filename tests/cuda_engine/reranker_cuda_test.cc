// The reranker on the CUDA engine against the CPU reranker (fp32 reference): raw hidden states
// of the same pairs (cosine), scores (absolute difference, bf16 tolerance), tied and untied
// heads, the tiny and a 2-layer 0.6B shape; and the CUDA engine's raw rows against its own
// embeddings. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_engine/engine_test_util.h"
#include "embed/reranker.h"

namespace qsearch {
namespace {

using testing::cosine;

// A test reranker directory (written once per process and shape/head).
std::string reranker_dir(const std::string& shape, int layers, bool tied) {
  static std::map<std::string, std::string> made;
  if (!std::filesystem::exists(testing::tokenizer_path())) return "";
  const std::string key = shape + "-" + std::to_string(layers) + (tied ? "-tied" : "-untied");
  if (auto it = made.find(key); it != made.end()) return it->second;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("qsearch-rerank-cuda-test-" + std::to_string(::getpid())) / key)
                              .string();
  TestModelOptions o;
  o.tokenizer_path = testing::tokenizer_path();
  o.out_dir = dir;
  o.shape = shape;
  o.layers = layers;
  o.reranker = true;
  o.tied = tied;
  auto info = write_test_model(o);
  if (!info.is_ok()) {
    ADD_FAILURE() << "write_test_model: " << info.status().to_string();
    return "";
  }
  made[key] = dir;
  return dir;
}

std::unique_ptr<Reranker> open(const std::string& dir, const std::string& device) {
  EmbedderOptions o;
  o.model_dir = dir;
  o.device = device;
  auto r = Reranker::open(o);
  EXPECT_TRUE(r.is_ok()) << device << ": " << r.status().to_string();
  return r.is_ok() ? std::move(r).value() : nullptr;
}

std::vector<PreparedPair> test_pairs(const Reranker& r) {
  std::string mid, long_doc;
  for (int i = 0; i < 40; ++i) mid += "Reranking sentence " + std::to_string(i) + ". ";
  for (int i = 0; i < 900; ++i) long_doc += "word" + std::to_string(i) + " ";
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"What is the capital of China?", "The capital of China is Beijing."},
      {"What is the capital of China?", "Gravity is a force."},
      {"量子计算是什么？", "量子计算利用量子叠加和纠缠来处理信息。"},
      {"", ""},
      {"medium", mid},
      {"long", long_doc},
  };
  std::vector<PreparedPair> out;
  for (const auto& [q, d] : texts) {
    auto p = r.prepare(q, d, kDefaultRerankInstruction);
    EXPECT_TRUE(p.is_ok());
    if (p.is_ok()) out.push_back(*p);
  }
  return out;
}

void expect_gpu_matches_cpu(const std::string& dir) {
  auto cpu = open(dir, "cpu");
  auto gpu = open(dir, "cuda");
  ASSERT_TRUE(cpu && gpu);
  const int h = cpu->hidden_size();
  std::vector<PreparedPair> pairs = test_pairs(*cpu);
  // Raw hidden states, one batch on each engine.
  EngineBatch batch;
  batch.raw_hidden = true;
  for (const auto& p : pairs) batch.add(p.ids, h);
  std::vector<float> a(pairs.size() * h), b(pairs.size() * h);
  QS_ASSERT_OK(cpu->backend(0).embed(batch, a.data()));
  QS_ASSERT_OK(gpu->backend(0).embed(batch, b.data()));
  for (size_t i = 0; i < pairs.size(); ++i)
    EXPECT_GE(cosine(&a[i * h], &b[i * h], h), 0.999) << "pair " << i << " hidden state";
  // Scores, alone and all together.
  std::vector<float> sc, sg, together;
  ASSERT_TRUE(cpu->score(pairs, &sc).is_ok());
  ASSERT_TRUE(gpu->score(pairs, &together).is_ok());
  double worst = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    ASSERT_TRUE(gpu->score({pairs[i]}, &sg).is_ok());
    ASSERT_TRUE(std::isfinite(sg[0]));
    EXPECT_NEAR(sg[0], sc[i], 0.02) << "pair " << i << " (" << pairs[i].ids.size() << " tokens)";
    EXPECT_NEAR(together[i], sg[0], 2e-3) << "pair " << i << ": batch vs alone on the GPU";
    worst = std::max(worst, std::fabs(static_cast<double>(sg[0]) - sc[i]));
  }
  std::printf("%s: max |gpu - cpu| score %.4g over %zu pairs\n", dir.c_str(), worst, pairs.size());
}

TEST(RerankerCuda, TinyTiedMatchesCpu) {
  QS_REQUIRE_GPU();
  const std::string dir = reranker_dir("tiny", 0, true);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  expect_gpu_matches_cpu(dir);
}

TEST(RerankerCuda, TinyUntiedMatchesCpu) {
  QS_REQUIRE_GPU();
  const std::string dir = reranker_dir("tiny", 0, false);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  expect_gpu_matches_cpu(dir);
}

TEST(RerankerCuda, Shape06BUntiedMatchesCpu) {
  QS_REQUIRE_GPU();
  const std::string dir = reranker_dir("0.6B", 2, false);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  expect_gpu_matches_cpu(dir);
}

// On the GPU too, a raw row normalised is the embedding of the same sequence.
TEST(RerankerCuda, RawRowsAreTheEmbeddingsBeforeNormalisation) {
  QS_REQUIRE_GPU();
  const std::string dir = reranker_dir("tiny", 0, true);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto gpu = open(dir, "cuda");
  ASSERT_TRUE(gpu);
  Backend& b = gpu->backend(0);
  const int h = b.hidden_size();
  EngineBatch emb, raw;
  raw.raw_hidden = true;
  for (int len : {1, 30, 300}) {
    emb.add(testing::random_sequence(len, len), h);
    raw.add(testing::random_sequence(len, len), h);
  }
  std::vector<float> e(3 * h), r(3 * h);
  QS_ASSERT_OK(b.embed(emb, e.data()));
  QS_ASSERT_OK(b.embed(raw, r.data()));
  for (int i = 0; i < 3; ++i) {
    double ss = 0;
    for (int j = 0; j < h; ++j) ss += static_cast<double>(r[i * h + j]) * r[i * h + j];
    EXPECT_GT(std::sqrt(ss), 2.0);
    for (int j = 0; j < h; ++j)
      EXPECT_NEAR(r[i * h + j] / std::sqrt(ss), e[i * h + j], 1e-5) << i << "," << j;
  }
}

}  // namespace
}  // namespace qsearch
