// Reranker parity with Hugging Face transformers: data/reference/reranker_refs.json holds the
// Qwen3-Reranker model card's scores (AutoModelForCausalLM fp32) of the tiny test rerankers,
// tied and untied LM head, made by tests/reference/gen_reranker_refs.py on the GPU machine
// (scripts/device_rerank.sh). Here both models are regenerated from their seeds; every pair's
// token ids (prompt, cut over 8192 tokens) must equal HF's and every CPU score must be within
// 1e-5 of HF's unpadded score, alone and in mixed batches. The test FAILS while the file is
// missing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "embed/reranker.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

constexpr double kTolerance = 1e-5;

const char* kRegenerate =
    "generate it on a machine with torch + transformers (scripts/device_rerank.sh does):\n"
    "  build/qsearch make-test-model --reranker --tokenizer .deps/qwen3/tokenizer.json "
    "--out /tmp/rr-tied\n"
    "  build/qsearch make-test-model --reranker --lm-head untied --tokenizer "
    ".deps/qwen3/tokenizer.json --out /tmp/rr-untied\n"
    "  python3 tests/reference/gen_reranker_refs.py /tmp/rr-tied /tmp/rr-untied "
    "data/reference/reranker_refs.json --device cuda\n"
    "and commit data/reference/reranker_refs.json";

TEST(HuggingFaceParity, RerankerMatchesTransformers) {
  const std::string path = std::string(QSEARCH_SOURCE_DIR) + "/data/reference/reranker_refs.json";
  ASSERT_TRUE(testing::file_exists(path)) << path << " is missing: " << kRegenerate;
  auto refs = nlohmann::json::parse(testing::read_file(path), nullptr, false);
  ASSERT_FALSE(refs.is_discarded()) << path << " is not valid JSON";
  ASSERT_TRUE(refs.contains("pairs") && refs["pairs"].is_array() && refs["pairs"].size() >= 10);
  ASSERT_TRUE(refs.contains("models") && refs["models"].contains("tied") &&
              refs["models"].contains("untied"));
  if (!testing::have_qwen3_tokenizer()) return;

  // The pair over 8192 tokens must be among them, cut to exactly max_length.
  const size_t max_length = refs.value("max_length", size_t{8192});
  bool cut_seen = false;
  for (const auto& p : refs["pairs"])
    cut_seen |= p.value("truncated_tokens", 0) > 0 && p["ids"].size() == max_length;
  EXPECT_TRUE(cut_seen) << "no reference pair was cut to " << max_length << " tokens";

  for (const char* kind : {"tied", "untied"}) {
    SCOPED_TRACE(kind);
    const auto& meta = refs["models"][kind]["test_model"];
    testing::TempDir dir;
    TestModelOptions o;
    o.reranker = true;
    o.tied = std::string(kind) == "tied";
    o.seed = meta.value("seed", uint64_t{42});
    o.shape = meta.value("shape", std::string("tiny"));
    auto info = testing::make_tiny_model(dir.path(), o);
    ASSERT_EQ(checksum_hex(info.checksum),
              refs["models"][kind]["model_checksum"].get<std::string>())
        << "generator changed: regenerate references (" << kRegenerate << ")";

    EmbedderOptions eo;
    eo.model_dir = dir.path();
    eo.device = "cpu";
    auto opened = Reranker::open(eo);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    Reranker& r = **opened;
    EXPECT_EQ(r.yes_id(), refs["yes_id"].get<int32_t>());
    EXPECT_EQ(r.no_id(), refs["no_id"].get<int32_t>());

    std::vector<PreparedPair> pairs;
    std::vector<double> single, batched;
    for (const auto& p : refs["pairs"]) {
      const std::string query = p["query"], document = p["document"];
      const std::string instruction = p["instruction"].is_null()
                                          ? std::string(kDefaultRerankInstruction)
                                          : p["instruction"].get<std::string>();
      auto prepared = r.prepare(query, document, instruction, static_cast<int>(max_length));
      ASSERT_TRUE(prepared.is_ok()) << prepared.status().to_string();
      EXPECT_EQ(prepared->ids, p["ids"].get<std::vector<int32_t>>())
          << "token ids differ from Hugging Face for: " << query.substr(0, 60);
      EXPECT_EQ(prepared->truncated_tokens, p["truncated_tokens"].get<int32_t>());
      EXPECT_EQ(prepared->input_tokens, p["input_tokens"].get<int32_t>());
      pairs.push_back(std::move(prepared).value());
      single.push_back(p["scores"][kind]["single"].get<double>());
      batched.push_back(p["scores"][kind]["batched"].get<double>());
    }
    // HF's left-padded batches differ from its unpadded runs by rounding (RoPE positions shift
    // with the padding); ours may differ from them by that much more.
    double hf_padding = 0;
    for (size_t i = 0; i < single.size(); ++i)
      hf_padding = std::max(hf_padding, std::fabs(single[i] - batched[i]));

    // Alone, then all in one call (mixed batches within the engine's token budget).
    double worst_alone = 0, worst_batched = 0, worst_vs_padded = 0;
    for (size_t i = 0; i < pairs.size(); ++i) {
      std::vector<float> s;
      ASSERT_TRUE(r.score({pairs[i]}, &s).is_ok());
      EXPECT_NEAR(s[0], single[i], kTolerance) << "pair " << i;
      worst_alone = std::max(worst_alone, std::fabs(s[0] - single[i]));
    }
    std::vector<PreparedPair> short_pairs;  // the long ones ran alone above already
    std::vector<size_t> index;
    for (size_t i = 0; i < pairs.size(); ++i)
      if (pairs[i].ids.size() <= 1024) {
        short_pairs.push_back(pairs[i]);
        index.push_back(i);
      }
    std::reverse(short_pairs.begin(), short_pairs.end());
    std::reverse(index.begin(), index.end());
    std::vector<float> together;
    ASSERT_TRUE(r.score(short_pairs, &together).is_ok());
    for (size_t k = 0; k < short_pairs.size(); ++k) {
      const size_t i = index[k];
      EXPECT_NEAR(together[k], single[i], kTolerance) << "pair " << i << " in a batch";
      EXPECT_NEAR(together[k], batched[i], kTolerance + hf_padding) << "pair " << i;
      worst_batched = std::max(worst_batched, std::fabs(together[k] - single[i]));
      worst_vs_padded = std::max(worst_vs_padded, std::fabs(together[k] - batched[i]));
    }
    std::printf(
        "HF reranker parity (%s head, %zu pairs): max |ours - HF| alone %.3g, batched "
        "%.3g, vs HF padded batches %.3g (HF padded vs unpadded %.3g)\n",
        kind, pairs.size(), worst_alone, worst_batched, worst_vs_padded, hf_padding);
  }
}

}  // namespace
}  // namespace qsearch
