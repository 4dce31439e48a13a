// Parity with Hugging Face transformers: data/reference/test_model_refs.json holds Qwen3Model
// (fp32, left padding, last token, L2-normalised) embeddings of the tiny test model, made by
// tests/reference/gen_test_model_refs.py on a GPU machine. Here the same model is regenerated
// from its seed; the token ids must equal HF's and every embedding (alone, in mixed batches,
// with MRL dimensions) must have cosine >= 0.9999 with the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "embed/embedder.h"
#include "engine/reference_util.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

constexpr double kMinCosine = 0.9999;

const char* kRegenerate =
    "generate it on a machine with torch + transformers:\n"
    "  build/qsearch make-test-model --tokenizer .deps/qwen3/tokenizer.json --out /tmp/qs-tm\n"
    "  python3 tests/reference/gen_test_model_refs.py /tmp/qs-tm "
    "data/reference/test_model_refs.json\n"
    "and commit data/reference/test_model_refs.json";

std::vector<double> normalized_prefix(const std::vector<double>& v, size_t dim) {
  std::vector<double> out(v.begin(), v.begin() + std::min(dim, v.size()));
  double ss = 0;
  for (double x : out) ss += x * x;
  for (double& x : out) x /= std::max(std::sqrt(ss), 1e-12);
  return out;
}

TEST(HuggingFaceParity, TestModelMatchesTransformers) {
  const std::string path = std::string(QSEARCH_SOURCE_DIR) + "/data/reference/test_model_refs.json";
  ASSERT_TRUE(testing::file_exists(path)) << path << " is missing: " << kRegenerate;
  auto refs = nlohmann::json::parse(testing::read_file(path), nullptr, false);
  ASSERT_FALSE(refs.is_discarded()) << path << " is not valid JSON";
  ASSERT_TRUE(refs.contains("texts") && refs["texts"].is_array() && refs["texts"].size() >= 10);
  if (!testing::have_qwen3_tokenizer()) return;

  // The same model, regenerated from the recorded seed and shape.
  testing::TempDir dir;
  TestModelOptions o;
  o.seed = refs["test_model"].value("seed", uint64_t{42});
  o.shape = refs["test_model"].value("shape", std::string("tiny"));
  auto info = testing::make_tiny_model(dir.path(), o);
  ASSERT_EQ(checksum_hex(info.checksum), refs["model_checksum"].get<std::string>())
      << "generator changed: regenerate references (" << kRegenerate << ")";

  EmbedderOptions eo;
  eo.model_dir = dir.path();
  eo.device = "cpu";
  auto opened = Embedder::open(eo);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  Embedder& e = **opened;
  const int hidden = e.hidden_size();

  std::vector<PreparedText> items;
  std::vector<std::vector<double>> want, want_single;
  for (const auto& t : refs["texts"]) {
    std::string text = t["text"], instruction = t.value("instruction", "");
    auto p = e.prepare(text, instruction);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    std::vector<int32_t> hf_ids = t["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(p->ids, hf_ids) << "token ids differ from Hugging Face for: " << text.substr(0, 80);
    items.push_back(*p);
    want.push_back(t["embedding"].get<std::vector<double>>());
    want_single.push_back(t["embedding_single"].get<std::vector<double>>());
    ASSERT_EQ(want.back().size(), static_cast<size_t>(hidden));
  }

  // Alone.
  double min_alone = 1.0;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<std::vector<float>> out;
    ASSERT_TRUE(e.embed({items[i]}, 0, &out).is_ok());
    double c = testing::cosine(out[0], want[i]);
    min_alone = std::min(min_alone, c);
    EXPECT_GE(c, kMinCosine) << "text " << i;
    EXPECT_GE(testing::cosine(out[0], want_single[i]), kMinCosine) << "text " << i;
  }
  // Mixed batches: all at once (one batch), in reverse order, and with a small budget.
  std::vector<std::vector<float>> all, reversed, small_batches;
  ASSERT_TRUE(e.embed(items, 0, &all).is_ok());
  std::vector<PreparedText> rev(items.rbegin(), items.rend());
  ASSERT_TRUE(e.embed(rev, 0, &reversed).is_ok());
  EmbedderOptions small = eo;
  small.max_batch_tokens = 256;
  auto small_e = Embedder::open(small);
  ASSERT_TRUE(small_e.is_ok());
  ASSERT_TRUE((*small_e)->embed(items, 0, &small_batches).is_ok());
  double min_batch = 1.0;
  for (size_t i = 0; i < items.size(); ++i) {
    for (const auto* v : {&all[i], &reversed[items.size() - 1 - i], &small_batches[i]}) {
      double c = testing::cosine(*v, want[i]);
      min_batch = std::min(min_batch, c);
      EXPECT_GE(c, kMinCosine) << "text " << i << " in a mixed batch";
    }
  }
  // MRL: truncated and renormalised references.
  double min_mrl = 1.0;
  for (int dim : {32, 64, 128}) {
    std::vector<std::vector<float>> out;
    ASSERT_TRUE(e.embed(items, dim, &out).is_ok());
    for (size_t i = 0; i < items.size(); ++i) {
      ASSERT_EQ(out[i].size(), static_cast<size_t>(dim));
      double c = testing::cosine(out[i], normalized_prefix(want[i], dim));
      min_mrl = std::min(min_mrl, c);
      EXPECT_GE(c, kMinCosine) << "text " << i << " dim " << dim;
    }
  }
  std::printf("HF parity over %zu texts: 1 - min cosine: alone %.3g, batched %.3g, MRL %.3g\n",
              items.size(), 1.0 - min_alone, 1.0 - min_batch, 1.0 - min_mrl);
}

}  // namespace
}  // namespace qsearch
