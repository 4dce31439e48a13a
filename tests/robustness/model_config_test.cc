// Regression tests for findings of the config.json fuzzer (tests/fuzz/config_fuzz.cc).
//
// Finding 1 (UBSan, signed overflow in ModelConfig::q_width()): from_json bounds each size
// field by 2^30 but not their products, so num_attention_heads 65536 with head_dim 65536 was
// accepted and q_width() = 65536 * 65536 overflowed int (undefined behaviour; the loader then
// checks q_proj against a garbage shape and engines size buffers from it). An accepted config
// must keep every derived width, and the parameter count, inside its type.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "embed/model/config.h"

namespace qsearch {
namespace {

using nlohmann::json;

json base_config() {
  return {{"architectures", {"Qwen3ForCausalLM"}}, {"model_type", "qwen3"}, {"hidden_size", 1024},
          {"num_hidden_layers", 28}, {"num_attention_heads", 16}, {"num_key_value_heads", 8},
          {"head_dim", 128}, {"intermediate_size", 3072}, {"vocab_size", 151669},
          {"max_position_embeddings", 32768}, {"rope_theta", 1000000.0}, {"rms_norm_eps", 1e-6}};
}

TEST(ModelConfigLimits, RealShapeIsAccepted) {
  auto c = ModelConfig::from_json(base_config().dump(), "config.json");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->q_width(), 2048);
  EXPECT_GT(c->num_parameters(), 500'000'000);
}

// Every case either is rejected with a message naming the file, or yields derived sizes that
// are positive and fit their types (checked in wider arithmetic here, not with the methods).
void expect_rejected_or_consistent(const json& j, const std::string& what) {
  auto c = ModelConfig::from_json(j.dump(), "config.json");
  if (!c.is_ok()) {
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << what;
    EXPECT_NE(c.status().message().find("config.json"), std::string::npos) << what;
    return;
  }
  const __int128 q = static_cast<__int128>(c->num_heads) * c->head_dim;
  const __int128 kv = static_cast<__int128>(c->num_kv_heads) * c->head_dim;
  EXPECT_LE(q, std::numeric_limits<int>::max()) << what << ": q width overflows int";
  EXPECT_LE(kv, std::numeric_limits<int>::max()) << what << ": kv width overflows int";
  const __int128 h = c->hidden_size;
  const __int128 params = static_cast<__int128>(c->vocab_size) * h +
                          c->num_layers * (2 * h * q + 2 * h * kv + 3 * h * c->intermediate_size);
  EXPECT_LE(params, std::numeric_limits<int64_t>::max()) << what << ": parameter count overflows";
}

TEST(ModelConfigLimits, HugeHeadProductIsRejected) {
  json j = base_config();
  j["num_attention_heads"] = 65536;
  j["num_key_value_heads"] = 1;
  j["head_dim"] = 65536;
  expect_rejected_or_consistent(j, "heads 65536 x head_dim 65536");
}

TEST(ModelConfigLimits, HugeKvProductIsRejected) {
  json j = base_config();
  j["num_attention_heads"] = 1 << 20;
  j["num_key_value_heads"] = 1 << 20;
  j["head_dim"] = 1 << 12;
  expect_rejected_or_consistent(j, "kv heads 2^20 x head_dim 2^12");
}

TEST(ModelConfigLimits, HugeVocabularyIsRejected) {
  json j = base_config();
  j["vocab_size"] = int64_t{1} << 40;  // absurd but representable: either answer is fine
  expect_rejected_or_consistent(j, "vocab 2^40");
  j["vocab_size"] = int64_t{1} << 62;
  j["hidden_size"] = 1 << 30;
  expect_rejected_or_consistent(j, "vocab 2^62 x hidden 2^30");
}

}  // namespace
}  // namespace qsearch
