// ModelWeights on test models in every layout (single, sharded, prefix or not, BF16/F16/F32)
// and with damaged directories (missing tensor, wrong shape, missing shard): one clear error
// naming the file and the tensor. Also pins the test-model generator.
#include "embed/model/weights.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "embed/model/safetensors.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

using testing::TempDir;

StatusOr<std::unique_ptr<ModelWeights>> open_dir(const std::string& dir) {
  auto config = ModelConfig::from_file(dir + "/config.json");
  if (!config.is_ok()) return config.status();
  return ModelWeights::open(dir, *config);
}

// The values of a tensor, whatever the layout.
std::vector<float> values(const ModelWeights& w, const std::string& which) {
  if (which == "embed") return w.embed_tokens().to_float();
  if (which == "norm") return w.norm().to_float();
  if (which == "q_proj") return w.layer(1).q_proj.to_float();
  return w.layer(0).down_proj.to_float();
}

TEST(ModelWeights, EveryLayoutLoadsTheSameWeights) {
  if (!testing::have_qwen3_tokenizer()) return;
  TempDir base;
  auto ref = testing::make_tiny_model(base.file("plain"));
  auto plain = open_dir(base.file("plain"));
  ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
  const ModelWeights& p = **plain;
  EXPECT_EQ(p.embed_tokens().shape, (std::vector<int64_t>{151669, 128}));
  EXPECT_EQ(p.embed_tokens().name, "embed_tokens.weight");
  EXPECT_EQ(p.layer(1).q_proj.shape, (std::vector<int64_t>{512, 128}));
  EXPECT_EQ(p.layer(1).o_proj.shape, (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(p.layer(0).k_proj.shape, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(p.layer(0).q_norm.shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(p.layer(0).down_proj.shape, (std::vector<int64_t>{128, 384}));
  EXPECT_EQ(p.total_bytes(), ref.bytes);

  struct Layout {
    const char* name;
    bool prefix;
    int shards;
    DType dtype;
    bool lm_head;
  };
  for (Layout l : {Layout{"prefix", true, 1, DType::kBF16, false},
                   Layout{"sharded", false, 3, DType::kBF16, true},
                   Layout{"sharded_prefix", true, 2, DType::kBF16, false},
                   Layout{"lm_head", false, 1, DType::kBF16, true}}) {
    TestModelOptions o;
    o.prefix = l.prefix;
    o.shards = l.shards;
    o.dtype = l.dtype;
    o.lm_head = l.lm_head;
    auto info = testing::make_tiny_model(base.file(l.name), o);
    if (!l.lm_head) {
      EXPECT_EQ(info.checksum, ref.checksum) << l.name;  // layout-independent
    }
    EXPECT_EQ(testing::file_exists(base.file(l.name) + "/model.safetensors.index.json"),
              l.shards > 1);
    auto w = open_dir(base.file(l.name));
    ASSERT_TRUE(w.is_ok()) << l.name << ": " << w.status().to_string();
    if (l.prefix) {
      EXPECT_EQ((*w)->layer(0).q_proj.name, "model.layers.0.self_attn.q_proj.weight");
    }
    for (const char* t : {"embed", "norm", "q_proj", "down"})
      EXPECT_EQ(values(**w, t), values(p, t)) << l.name << " " << t;
  }
  // F16 and F32 checkpoints hold the same draws, stored at other precisions.
  for (DType dt : {DType::kF16, DType::kF32}) {
    TestModelOptions o;
    o.dtype = dt;
    std::string name = dtype_name(dt);
    auto info = testing::make_tiny_model(base.file(name), o);
    EXPECT_NE(info.checksum, ref.checksum);
    auto w = open_dir(base.file(name));
    ASSERT_TRUE(w.is_ok()) << w.status().to_string();
    EXPECT_EQ((*w)->layer(0).q_proj.dtype, dt);
    std::vector<float> a = values(**w, "q_proj"), b = values(p, "q_proj");
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-3) << i;
    if (dt == DType::kF32) {  // BF16 is F32 rounded to nearest even
      for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(float_to_bf16(a[i]), float_to_bf16(b[i]));
    }
  }
}

TEST(ModelWeights, GeneratorIsDeterministicAndSeeded) {
  if (!testing::have_qwen3_tokenizer()) return;
  TempDir base;
  auto a = testing::make_tiny_model(base.file("a"));
  auto b = testing::make_tiny_model(base.file("b"));
  TestModelOptions o;
  o.seed = 7;
  auto c = testing::make_tiny_model(base.file("c"), o);
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_NE(a.checksum, c.checksum);
  EXPECT_EQ(testing::read_file(base.file("a/model.safetensors")),
            testing::read_file(base.file("b/model.safetensors")));
  // Statistics of the draws: matrices ~ N(0, 0.02), norms ~ 1 + N(0, 0.1).
  auto w = open_dir(base.file("a"));
  ASSERT_TRUE(w.is_ok());
  auto stats = [](const std::vector<float>& v, double* mean, double* sd) {
    double s = 0, ss = 0;
    for (float x : v) s += x;
    *mean = s / v.size();
    for (float x : v) ss += (x - *mean) * (x - *mean);
    *sd = std::sqrt(ss / v.size());
  };
  double mean, sd;
  stats((*w)->layer(0).gate_proj.to_float(), &mean, &sd);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(sd, 0.02, 0.001);
  std::vector<float> norms = (*w)->layer(0).input_layernorm.to_float();
  auto more = (*w)->layer(1).post_attention_layernorm.to_float();
  norms.insert(norms.end(), more.begin(), more.end());
  stats(norms, &mean, &sd);
  EXPECT_NEAR(mean, 1.0, 0.03);
  EXPECT_NEAR(sd, 0.1, 0.03);
  // The directory looks like Qwen3-Embedding's: config, tokenizer with the EOS template.
  auto tok = nlohmann::json::parse(testing::read_file(base.file("a/tokenizer.json")));
  EXPECT_EQ(tok["post_processor"]["type"], "TemplateProcessing");
  EXPECT_EQ(tok["post_processor"]["single"][1]["SpecialToken"]["id"], "<|endoftext|>");
  EXPECT_EQ(tok["post_processor"]["special_tokens"]["<|endoftext|>"]["ids"][0], 151643);
  auto cfg = nlohmann::json::parse(testing::read_file(base.file("a/config.json")));
  EXPECT_EQ(cfg["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  auto meta = nlohmann::json::parse(testing::read_file(base.file("a/test_model.json")));
  EXPECT_EQ(meta["checksum"], checksum_hex(a.checksum));
}

TEST(ModelWeights, RngIsPinned) {
  // splitmix64 reference values (seed 0): guards against accidental generator changes.
  TestRng rng(0);
  EXPECT_EQ(rng.next_u64(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(rng.next_u64(), 0x6e789e6aa1b965f4ull);
  TestRng n(1);
  double s = 0, ss = 0;
  for (int i = 0; i < 100000; ++i) {
    double x = n.normal();
    s += x;
    ss += x * x;
  }
  EXPECT_NEAR(s / 1e5, 0.0, 0.02);
  EXPECT_NEAR(ss / 1e5, 1.0, 0.02);
}

// The parallel generator reads the stream by index: normal_at and normal_pair must be exactly
// what sequential normal() calls return, and the thread count must not change a byte.
TEST(ModelWeights, RandomAccessStreamEqualsTheSequentialOne) {
  for (uint64_t seed : {0ull, 42ull, 0xdeadbeefull}) {
    TestRng rng(seed);
    for (uint64_t j = 0; j < 2001; ++j) ASSERT_EQ(TestRng::normal_at(seed, j), rng.normal()) << j;
    double a, b;
    TestRng::normal_pair(seed, 500, &a, &b);
    EXPECT_EQ(a, TestRng::normal_at(seed, 1000));
    EXPECT_EQ(b, TestRng::normal_at(seed, 1001));
  }
  if (!testing::have_qwen3_tokenizer()) return;
  TempDir base;
  TestModelOptions one, three;
  one.threads = 1;
  three.threads = 3;
  three.reranker = one.reranker = true;
  three.tied = one.tied = false;  // lm_head too: an odd-sized stream offset is crossed
  auto a = testing::make_tiny_model(base.file("a"), one);
  auto b = testing::make_tiny_model(base.file("b"), three);
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_EQ(testing::read_file(base.file("a/model.safetensors")),
            testing::read_file(base.file("b/model.safetensors")));
}

// The reranker layout: Qwen3ForCausalLM, "model." names, the tokenizer.json as given, and the
// LM head tied (no lm_head.weight) or untied (lm_head.weight, tie_word_embeddings false).
TEST(ModelWeights, RerankerTestModelLayout) {
  if (!testing::have_qwen3_tokenizer()) return;
  TempDir base;
  TestModelOptions tied, untied;
  tied.reranker = untied.reranker = true;
  untied.tied = false;
  auto t = testing::make_tiny_model(base.file("t"), tied);
  auto u = testing::make_tiny_model(base.file("u"), untied);
  auto plain = testing::make_tiny_model(base.file("e"));
  EXPECT_EQ(t.checksum, plain.checksum);  // same tensors as the embedding model
  EXPECT_NE(u.checksum, t.checksum);      // plus lm_head.weight
  EXPECT_EQ(testing::read_file(base.file("t/tokenizer.json")),
            testing::read_file(testing::qwen3_tokenizer_path()));
  for (const char* d : {"t", "u"}) {
    auto cfg = nlohmann::json::parse(testing::read_file(base.file(std::string(d) + "/config.json")));
    EXPECT_EQ(cfg["architectures"][0], "Qwen3ForCausalLM");
    EXPECT_EQ(cfg["tie_word_embeddings"], std::string(d) == "t");
    auto conf = ModelConfig::from_file(base.file(std::string(d) + "/config.json"));
    ASSERT_TRUE(conf.is_ok());
    EXPECT_EQ(conf->tie_word_embeddings, std::string(d) == "t");
    auto meta = nlohmann::json::parse(testing::read_file(base.file(std::string(d) + "/test_model.json")));
    EXPECT_EQ(meta["kind"], "reranker");
    EXPECT_EQ(meta["prefix"], true);
  }
  std::string header = testing::read_file(base.file("u/model.safetensors")).substr(0, 20000);
  EXPECT_NE(header.find("\"lm_head.weight\""), std::string::npos);
  EXPECT_NE(header.find("\"model.embed_tokens.weight\""), std::string::npos);
  EXPECT_EQ(testing::read_file(base.file("t/model.safetensors")).substr(0, 20000).find("lm_head"),
            std::string::npos);
  auto w = open_dir(base.file("u"));
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  auto head = (*w)->tensor("lm_head.weight", {151669, 128});
  ASSERT_TRUE(head.is_ok()) << head.status().to_string();
  EXPECT_EQ((*w)->tensor("lm_head.weight", {151669, 64}).status().code(), StatusCode::kCorruption);
  EXPECT_EQ((*w)->tensor("nothing.weight", {1}).status().code(), StatusCode::kNotFound);
}

TEST(ModelWeights, ErrorsNameFileAndTensor) {
  if (!testing::have_qwen3_tokenizer()) return;
  TempDir base;
  testing::make_tiny_model(base.path());
  auto config = ModelConfig::from_file(base.file("config.json"));
  ASSERT_TRUE(config.is_ok());
  auto st = SafetensorsFile::open(base.file("model.safetensors"));
  ASSERT_TRUE(st.is_ok());
  // Rewrites model.safetensors without / with a changed tensor.
  auto rewrite = [&](const std::string& dir, const std::string& drop, const std::string& reshape) {
    std::vector<SafetensorsTensor> ts;
    for (const TensorView& t : (*st)->tensors()) {
      if (t.name == drop) continue;
      SafetensorsTensor o{t.name, t.dtype, t.shape, t.data};
      if (t.name == reshape) o.shape = {t.shape[1], t.shape[0]};
      ts.push_back(o);
    }
    ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", ts).is_ok());
  };
  TempDir d1;
  rewrite(d1.path(), "layers.1.mlp.up_proj.weight", "");
  auto w1 = ModelWeights::open(d1.path(), *config);
  ASSERT_FALSE(w1.is_ok());
  EXPECT_EQ(w1.status().code(), StatusCode::kNotFound);
  EXPECT_NE(w1.status().message().find("layers.1.mlp.up_proj.weight"), std::string::npos);
  EXPECT_NE(w1.status().message().find(d1.file("model.safetensors")), std::string::npos);

  TempDir d2;
  rewrite(d2.path(), "", "layers.0.self_attn.o_proj.weight");
  auto w2 = ModelWeights::open(d2.path(), *config);
  ASSERT_FALSE(w2.is_ok());
  EXPECT_NE(w2.status().message().find("layers.0.self_attn.o_proj.weight"), std::string::npos);
  EXPECT_NE(w2.status().message().find("[512, 128]"), std::string::npos);
  EXPECT_NE(w2.status().message().find("expected [128, 512]"), std::string::npos)
      << w2.status().message();

  // A config that disagrees with the weights (hidden 256) fails on the first tensor.
  ModelConfig wrong = *config;
  wrong.hidden_size = 256;
  auto w3 = ModelWeights::open(base.path(), wrong);
  ASSERT_FALSE(w3.is_ok());
  EXPECT_NE(w3.status().message().find("embed_tokens.weight"), std::string::npos);

  // No weights at all.
  TempDir empty;
  auto w4 = ModelWeights::open(empty.path(), *config);
  ASSERT_FALSE(w4.is_ok());
  EXPECT_NE(w4.status().message().find("no model.safetensors"), std::string::npos);

  // Sharded: a missing shard, and an index entry pointing at the wrong shard.
  TempDir sh;
  TestModelOptions o;
  o.shards = 2;
  testing::make_tiny_model(sh.path(), o);
  std::string shard2 = sh.file("model-00002-of-00002.safetensors");
  std::string moved = sh.file("moved.safetensors");
  ASSERT_EQ(std::rename(shard2.c_str(), moved.c_str()), 0);
  auto w5 = open_dir(sh.path());
  ASSERT_FALSE(w5.is_ok());
  EXPECT_NE(w5.status().message().find("model-00002-of-00002.safetensors"), std::string::npos);
  EXPECT_NE(w5.status().message().find("model.safetensors.index.json"), std::string::npos);
  EXPECT_NE(w5.status().message().find("tensor \""), std::string::npos) << w5.status().message();
  ASSERT_EQ(std::rename(moved.c_str(), shard2.c_str()), 0);
  ASSERT_TRUE(open_dir(sh.path()).is_ok());
  auto index = nlohmann::json::parse(testing::read_file(sh.file("model.safetensors.index.json")));
  index["weight_map"]["norm.weight"] = "model-00001-of-00002.safetensors";
  testing::write_file(sh.file("model.safetensors.index.json"), index.dump());
  auto w6 = open_dir(sh.path());
  ASSERT_FALSE(w6.is_ok());
  EXPECT_NE(w6.status().message().find("norm.weight"), std::string::npos);
  EXPECT_NE(w6.status().message().find("model-00001-of-00002.safetensors"), std::string::npos);
  testing::write_file(sh.file("model.safetensors.index.json"), "{\"weight_map\": 3}");
  EXPECT_FALSE(open_dir(sh.path()).is_ok());

  // A truncated single file.
  TempDir tr;
  testing::make_tiny_model(tr.path());
  std::string bytes = testing::read_file(tr.file("model.safetensors"));
  testing::write_file(tr.file("model.safetensors"), bytes.substr(0, bytes.size() - 100));
  auto w7 = open_dir(tr.path());
  ASSERT_FALSE(w7.is_ok());
  EXPECT_NE(w7.status().message().find("norm.weight"), std::string::npos)
      << w7.status().message();  // the last tensor's data is cut
  EXPECT_NE(w7.status().message().find(tr.file("model.safetensors")), std::string::npos);
}

}  // namespace
}  // namespace qsearch
