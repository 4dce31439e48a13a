// The Embedder facade on the CUDA engine (what `qsearch embed --device cuda` runs) against the
// same facade on the CPU engine: texts, an instruction, MRL dimensions.
#include <gtest/gtest.h>

#include <vector>

#include "engine_test_util.h"

namespace qsearch {
namespace {

using namespace qsearch::testing;

TEST(EmbedderCuda, MatchesCpuOnTexts) {
  QS_REQUIRE_GPU();
  std::string dir = test_model_dir("0.6B", 2);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  EmbedderOptions co, go;
  co.model_dir = go.model_dir = dir;
  co.device = "cpu";
  go.device = "cuda";
  auto cpu = Embedder::open(co);
  auto gpu = Embedder::open(go);
  ASSERT_TRUE(cpu.is_ok()) << cpu.status().to_string();
  ASSERT_TRUE(gpu.is_ok()) << gpu.status().to_string();
  EXPECT_EQ((*gpu)->device_name().rfind("cuda", 0), 0u) << (*gpu)->device_name();
  const std::vector<std::string> texts = {
      "What is the capital of China?", "The capital of China is Beijing.", "x",
      "Gravity is a force that attracts two bodies towards each other. 重力は物体を引き付ける。"};
  for (int dim : {0, 64}) {
    for (const char* instruction : {"", "Given a web search query, retrieve relevant passages"}) {
      std::vector<std::vector<float>> a, b;
      QS_ASSERT_OK((*cpu)->embed_texts(texts, instruction, dim, 0, &a));
      QS_ASSERT_OK((*gpu)->embed_texts(texts, instruction, dim, 0, &b));
      ASSERT_EQ(a.size(), texts.size());
      ASSERT_EQ(b.size(), texts.size());
      for (size_t i = 0; i < texts.size(); ++i) {
        ASSERT_EQ(a[i].size(), b[i].size());
        EXPECT_GE(cosine(a[i].data(), b[i].data(), static_cast<int>(a[i].size())), 0.999)
            << "text " << i << " dim " << dim << " instruction '" << instruction << "'";
      }
    }
  }
}

}  // namespace
}  // namespace qsearch
