// ModelConfig: the config.json variants of transformers 4.x and 5.x, and clear errors.
#include "embed/model/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/test_util.h"

namespace qsearch {
namespace {

using nlohmann::json;

// Qwen3-Embedding-0.6B's config.json as shipped (transformers 4.51).
json qwen3_06b() {
  return json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "float32", "transformers_version": "4.51.3",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151669})");
}

StatusOr<ModelConfig> parse(const json& j) {
  return ModelConfig::from_json(j.dump(), "config.json");
}

TEST(ModelConfig, ParsesQwen3Embedding06B) {
  auto c = parse(qwen3_06b());
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c->hidden_size, 1024);
  EXPECT_EQ(c->num_layers, 28);
  EXPECT_EQ(c->num_heads, 16);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_width(), 2048);  // != hidden_size
  EXPECT_EQ(c->kv_width(), 1024);
  EXPECT_EQ(c->intermediate_size, 3072);
  EXPECT_EQ(c->vocab_size, 151669);
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->dtype, "float32");
  // Qwen3-Embedding-0.6B has 595,776,512 parameters (without lm_head, tied).
  EXPECT_EQ(c->num_parameters(), 595776512);
}

TEST(ModelConfig, TransformersFiveLayout) {
  json j = qwen3_06b();
  j.erase("rope_theta");
  j.erase("torch_dtype");
  j["rope_parameters"] = {{"rope_theta", 5000000.0}, {"rope_type", "default"}};
  j["dtype"] = "bfloat16";
  j["architectures"] = {"Qwen3Model"};
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_DOUBLE_EQ(c->rope_theta, 5e6);
  EXPECT_EQ(c->dtype, "bfloat16");
  EXPECT_EQ(c->architecture, "Qwen3Model");
}

TEST(ModelConfig, HeadDimDefaultsToHiddenOverHeads) {
  json j = qwen3_06b();
  j.erase("head_dim");
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->q_width(), 1024);
}

TEST(ModelConfig, KvHeadsDefaultToHeads) {
  json j = qwen3_06b();
  j.erase("num_key_value_heads");
  auto c = parse(j);
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->num_kv_heads, 16);
}

TEST(ModelConfig, RejectsOtherArchitectures) {
  json j = qwen3_06b();
  j["architectures"] = {"LlamaForCausalLM"};
  auto c = parse(j);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(c.status().message().find("config.json"), std::string::npos);
}

TEST(ModelConfig, MissingAndWrongTypedFieldsNameTheField) {
  for (const char* field :
       {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "vocab_size", "max_position_embeddings", "architectures"}) {
    json j = qwen3_06b();
    j.erase(field);
    auto c = parse(j);
    ASSERT_FALSE(c.is_ok()) << field;
    EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("config.json"), std::string::npos);
  }
  json j = qwen3_06b();
  j["hidden_size"] = "1024";
  auto c = parse(j);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("\"hidden_size\" must be an integer"), std::string::npos)
      << c.status().message();
  j = qwen3_06b();
  j["rope_theta"] = "big";
  c = parse(j);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("rope_theta"), std::string::npos);
  j = qwen3_06b();
  j.erase("rope_theta");
  c = parse(j);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("rope_theta"), std::string::npos);
}

TEST(ModelConfig, RejectsUnsupportedFeatures) {
  json j = qwen3_06b();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_FALSE(parse(j).is_ok());
  j = qwen3_06b();
  j["attention_bias"] = true;
  EXPECT_FALSE(parse(j).is_ok());
  j = qwen3_06b();
  j["num_key_value_heads"] = 5;  // 16 % 5 != 0
  EXPECT_FALSE(parse(j).is_ok());
  j = qwen3_06b();
  j["hidden_act"] = "gelu";
  EXPECT_FALSE(parse(j).is_ok());
  EXPECT_FALSE(ModelConfig::from_json("{not json", "config.json").is_ok());
  EXPECT_FALSE(ModelConfig::from_json("[1,2]", "config.json").is_ok());
}

TEST(ModelConfig, FromFileNamesThePath) {
  testing::TempDir dir;
  auto missing = ModelConfig::from_file(dir.file("config.json"));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir.file("config.json")), std::string::npos);
  testing::write_file(dir.file("config.json"), qwen3_06b().dump());
  auto c = ModelConfig::from_file(dir.file("config.json"));
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->hidden_size, 1024);
}

TEST(ModelConfig, FlopsFormula) {
  auto c = parse(qwen3_06b());
  ASSERT_TRUE(c.is_ok());
  // Matmul weights per layer: q,o 2*1024*2048 + k,v 2*1024*1024 + mlp 3*1024*3072.
  double per_layer = 2.0 * 1024 * 2048 + 2.0 * 1024 * 1024 + 3.0 * 1024 * 3072;
  int64_t n = 100;
  double expect = 2.0 * n * per_layer * 28 + 2.0 * 2.0 * n * n / 2.0 * 16 * 128 * 28;
  EXPECT_DOUBLE_EQ(c->flops_per_sequence(n), expect);
  // Quadratic term: doubling a long sequence more than doubles the cost.
  EXPECT_GT(c->flops_per_sequence(32768), 2.0 * c->flops_per_sequence(16384));
}

TEST(ModelConfig, TestModelShapes) {
  auto tiny = test_model_config("tiny");
  ASSERT_TRUE(tiny.is_ok());
  EXPECT_EQ(tiny->hidden_size, 128);
  EXPECT_EQ(tiny->num_layers, 2);
  EXPECT_EQ(tiny->q_width(), 512);
  auto b4 = test_model_config("4B", 3);
  ASSERT_TRUE(b4.is_ok());
  EXPECT_EQ(b4->hidden_size, 2560);
  EXPECT_EQ(b4->num_layers, 3);
  auto b8 = test_model_config("8B");
  ASSERT_TRUE(b8.is_ok());
  EXPECT_EQ(b8->num_layers, 36);
  EXPECT_EQ(b8->intermediate_size, 12288);
  EXPECT_FALSE(test_model_config("13B").is_ok());
}

}  // namespace
}  // namespace qsearch
