// The reranker facade on the CPU engine: the model card's prompt (three parts tokenized without
// special tokens), the cut that keeps prefix and suffix, the "yes"/"no" rows of a tied or
// untied LM head, scores against the naive double-precision reference forward, batch
// independence, the engine's raw hidden-state output, and Reranker::open errors.
#include "embed/reranker.h"

#include <gtest/gtest.h>

#include <cmath>
#include <mutex>

#include "embed/engine/cpu_engine.h"
#include "engine/reference_util.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

// One tiny reranker per head kind, written once per process (the directories are removed at
// exit with the static).
struct Rerankers {
  testing::TempDir tied_dir, untied_dir;
  std::unique_ptr<Reranker> tied, untied;
};

Rerankers* shared() {
  static Rerankers r;
  static std::once_flag once;
  std::call_once(once, [] {
    if (!testing::have_qwen3_tokenizer()) return;
    for (bool tied : {true, false}) {
      TestModelOptions o;
      o.reranker = true;
      o.tied = tied;
      const std::string& dir = tied ? r.tied_dir.path() : r.untied_dir.path();
      testing::make_tiny_model(dir, o);
      EmbedderOptions eo;
      eo.model_dir = dir;
      eo.device = "cpu";
      auto opened = Reranker::open(eo);
      EXPECT_TRUE(opened.is_ok()) << opened.status().to_string();
      if (opened.is_ok()) (tied ? r.tied : r.untied) = std::move(opened).value();
    }
  });
  return &r;
}

class RerankerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    r_ = shared();
    if (!r_->tied || !r_->untied) GTEST_FAIL() << "test reranker setup failed";
  }
  Rerankers* r_ = nullptr;
};

std::vector<int32_t> encode(const Reranker& r, std::string_view text) {
  auto ids = r.tokenizer().encode(text, /*add_special=*/false);
  EXPECT_TRUE(ids.is_ok());
  return *ids;
}

// The model card's score of a hidden state, in double: softmax([h.no, h.yes])[1].
double reference_score(const testing::ReferenceModel& ref, const std::vector<int32_t>& ids,
                       bool tied, int32_t no_id, int32_t yes_id) {
  const ModelConfig& c = ref.config();
  std::vector<double> h = ref.last_hidden(ids);
  TensorView head = ref.weights().embed_tokens();
  if (!tied) {
    auto t = ref.weights().tensor("lm_head.weight", {c.vocab_size, c.hidden_size});
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    head = *t;
  }
  auto logit = [&](int32_t id) {
    TensorView row = head;
    row.shape = {c.hidden_size};
    row.data = static_cast<const uint8_t*>(head.data) +
               static_cast<size_t>(id) * c.hidden_size * dtype_size(head.dtype);
    std::vector<float> w = row.to_float();
    double s = 0;
    for (int j = 0; j < c.hidden_size; ++j) s += h[j] * w[j];
    return s;
  };
  return 1.0 / (1.0 + std::exp(logit(no_id) - logit(yes_id)));
}

TEST(RerankerPrompt, IsTheModelCards) {
  EXPECT_EQ(Reranker::prefix(),
            "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
            "Query and the Instruct provided. Note that the answer can only be \"yes\" or "
            "\"no\".<|im_end|>\n<|im_start|>user\n");
  EXPECT_EQ(Reranker::suffix(), "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(Reranker::format_body("Find it", "q?", "d."),
            "<Instruct>: Find it\n<Query>: q?\n<Document>: d.");
  EXPECT_EQ(kDefaultRerankInstruction,
            "Given a web search query, retrieve relevant passages that answer the query");
}

TEST_F(RerankerTest, IdsArePrefixBodySuffixWithoutSpecialTokens) {
  Reranker& r = *r_->tied;
  auto p = r.prepare("What is the capital of China?", "Beijing.", kDefaultRerankInstruction);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  std::vector<int32_t> want = encode(r, Reranker::prefix());
  for (int32_t id : encode(r, Reranker::format_body(kDefaultRerankInstruction,
                                                    "What is the capital of China?", "Beijing.")))
    want.push_back(id);
  for (int32_t id : encode(r, Reranker::suffix())) want.push_back(id);
  EXPECT_EQ(p->ids, want);
  EXPECT_EQ(p->truncated_tokens, 0);
  EXPECT_EQ(p->input_tokens, static_cast<int32_t>(want.size()));
  // Added tokens are single ids, and nothing is appended (no <|endoftext|>).
  EXPECT_EQ(p->ids.front(), 151644);  // <|im_start|>
  EXPECT_NE(p->ids.back(), kEndOfTextId);
  // "yes" and "no" come from the tokenizer's vocabulary.
  EXPECT_EQ(r.yes_id(), *r.tokenizer().token_to_id("yes"));
  EXPECT_EQ(r.no_id(), *r.tokenizer().token_to_id("no"));
  EXPECT_EQ(r.yes_id(), 9693);  // in the Qwen3 vocabulary
  EXPECT_EQ(r.no_id(), 2152);
  EXPECT_NE(r.yes_id(), r.no_id());
}

TEST_F(RerankerTest, LongPairsAreCutInTheBodyKeepingPrefixAndSuffix) {
  Reranker& r = *r_->tied;
  std::string doc;
  for (int i = 0; i < 200; ++i) doc += "word" + std::to_string(i) + " ";
  auto full = r.prepare("q", doc, "i");
  ASSERT_TRUE(full.is_ok());
  ASSERT_GT(full->ids.size(), 300u);
  auto cut = r.prepare("q", doc, "i", 300);
  ASSERT_TRUE(cut.is_ok()) << cut.status().to_string();
  EXPECT_EQ(cut->ids.size(), 300u);
  EXPECT_EQ(cut->input_tokens, static_cast<int32_t>(full->ids.size()));
  EXPECT_EQ(cut->truncated_tokens, static_cast<int32_t>(full->ids.size() - 300));
  const std::vector<int32_t> prefix = encode(r, Reranker::prefix()),
                             suffix = encode(r, Reranker::suffix());
  // prefix and the first body tokens as in the full pair, then the whole suffix
  EXPECT_TRUE(std::equal(cut->ids.begin(), cut->ids.end() - suffix.size(), full->ids.begin()));
  EXPECT_TRUE(std::equal(suffix.begin(), suffix.end(), cut->ids.end() - suffix.size()));
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), cut->ids.begin()));
  // The default limit is 8192 tokens.
  std::string huge;
  for (int i = 0; i < 3000; ++i) huge += "token" + std::to_string(i) + " ";
  auto big = r.prepare("q", huge, "i");
  ASSERT_TRUE(big.is_ok());
  EXPECT_EQ(big->ids.size(), 8192u);
  EXPECT_GT(big->truncated_tokens, 0);
}

TEST_F(RerankerTest, BadInputsAreErrors) {
  Reranker& r = *r_->tied;
  auto small = r.prepare("q", "d", "i", 20);  // the prompt alone is longer
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("cannot hold"), std::string::npos);
  EXPECT_EQ(r.prepare("q", "bad \xff utf-8", "i").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.prepare("q", "d", "i", -1).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RerankerTest, ScoresMatchTheNaiveReferenceForBothHeads) {
  std::string long_doc;
  for (int i = 0; i < 60; ++i)
    long_doc += "Rerankers judge relevance, sentence " + std::to_string(i) + ". ";
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"What is the capital of China?", "The capital of China is Beijing."},
      {"What is the capital of China?", "Gravity is a force."},
      {"量子计算是什么？", "量子计算利用量子叠加和纠缠来处理信息。"},
      {"", ""},
      {"long", long_doc},
  };
  for (bool tied : {true, false}) {
    Reranker& r = tied ? *r_->tied : *r_->untied;
    auto ref = testing::ReferenceModel::load(tied ? r_->tied_dir.path() : r_->untied_dir.path());
    ASSERT_TRUE(ref);
    std::vector<PreparedPair> prepared;
    for (const auto& [q, d] : pairs) {
      auto p = r.prepare(q, d, kDefaultRerankInstruction);
      ASSERT_TRUE(p.is_ok());
      prepared.push_back(*p);
    }
    std::vector<float> scores;
    ASSERT_TRUE(r.score(prepared, &scores).is_ok());
    ASSERT_EQ(scores.size(), pairs.size());
    double worst = 0, lo = 1, hi = 0;
    for (size_t i = 0; i < pairs.size(); ++i) {
      double want = reference_score(*ref, prepared[i].ids, tied, r.no_id(), r.yes_id());
      EXPECT_NEAR(scores[i], want, 1e-5) << (tied ? "tied" : "untied") << " pair " << i;
      worst = std::max(worst, std::fabs(scores[i] - want));
      lo = std::min<double>(lo, scores[i]);
      hi = std::max<double>(hi, scores[i]);
    }
    EXPECT_GT(hi - lo, 0.005) << "scores should differ between pairs";
    std::printf("%s head: max |ours - reference| %.3g over %zu pairs, scores %.4f..%.4f\n",
                tied ? "tied" : "untied", worst, pairs.size(), lo, hi);
  }
}

TEST_F(RerankerTest, TiedAndUntiedHeadsGiveDifferentScores) {
  // Same seed: the same transformer, only the head differs (embed_tokens rows vs lm_head).
  auto a = r_->tied->prepare("q", "d", kDefaultRerankInstruction);
  ASSERT_TRUE(a.is_ok());
  std::vector<float> st, su;
  ASSERT_TRUE(r_->tied->score({*a}, &st).is_ok());
  ASSERT_TRUE(r_->untied->score({*a}, &su).is_ok());
  EXPECT_GT(std::fabs(st[0] - su[0]), 1e-4);
  for (float s : {st[0], su[0]}) {
    EXPECT_GT(s, 0.0f);
    EXPECT_LT(s, 1.0f);
  }
}

TEST_F(RerankerTest, BatchCompositionNeverChangesAScore) {
  Reranker& r = *r_->untied;
  std::vector<PreparedPair> pairs;
  for (int i = 0; i < 12; ++i) {
    auto p = r.prepare("query " + std::to_string(i), std::string(static_cast<size_t>(i) * 17, 'x'),
                       kDefaultRerankInstruction);
    ASSERT_TRUE(p.is_ok());
    pairs.push_back(*p);
  }
  std::vector<float> together;
  ASSERT_TRUE(r.score(pairs, &together).is_ok());
  for (size_t i = 0; i < pairs.size(); ++i) {
    std::vector<float> alone;
    ASSERT_TRUE(r.score({pairs[i]}, &alone).is_ok());
    // OpenBLAS picks its GEMM blocking by the number of rows, so the fp32 sums of a batch and
    // of a single pair may differ in the last bits (the embedding tests allow the same); a
    // padding or masking error would move a score by far more than this.
    EXPECT_NEAR(alone[0], together[i], 2e-6) << "pair " << i;
  }
}

TEST(RerankerEngine, RawHiddenStateIsTheEmbeddingBeforeNormalisation) {
  if (!testing::have_qwen3_tokenizer()) return;
  testing::TempDir dir;
  testing::make_tiny_model(dir.path());
  auto config = ModelConfig::from_file(dir.file("config.json"));
  ASSERT_TRUE(config.is_ok());
  auto engine = CpuEngine::create(dir.path(), *config);
  ASSERT_TRUE(engine.is_ok());
  const int h = config->hidden_size;
  EngineBatch emb, raw;
  raw.raw_hidden = true;
  for (int len : {3, 40, 200}) {
    std::vector<int32_t> ids(len);
    for (int i = 0; i < len; ++i) ids[i] = (i * 7919 + len) % 150000;
    emb.add(ids, h);
    raw.add(ids, h);
  }
  std::vector<float> e(3 * h), r(3 * h);
  ASSERT_TRUE((*engine)->embed(emb, e.data()).is_ok());
  ASSERT_TRUE((*engine)->embed(raw, r.data()).is_ok());
  for (int i = 0; i < 3; ++i) {
    double ss = 0;
    for (int j = 0; j < h; ++j) ss += static_cast<double>(r[i * h + j]) * r[i * h + j];
    EXPECT_GT(std::sqrt(ss), 2.0) << "raw rows are not normalised";
    for (int j = 0; j < h; ++j)
      EXPECT_NEAR(r[i * h + j] / std::sqrt(ss), e[i * h + j], 1e-6) << i << "," << j;
  }
  // A raw batch takes no MRL dimension.
  EngineBatch bad;
  bad.raw_hidden = true;
  bad.add({1, 2, 3}, 32);
  EXPECT_EQ((*engine)->embed(bad, r.data()).code(), StatusCode::kInvalidArgument);
}

TEST(RerankerOpen, Errors) {
  EmbedderOptions o;
  o.device = "cpu";
  o.model_dir = "/nonexistent/reranker";
  auto missing = Reranker::open(o);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("Qwen3-Reranker"), std::string::npos);
  if (!testing::have_qwen3_tokenizer()) return;

  // untied in config.json, but no lm_head.weight
  testing::TempDir dir;
  TestModelOptions to;
  to.reranker = true;
  testing::make_tiny_model(dir.path(), to);
  std::string config = testing::read_file(dir.file("config.json"));
  size_t at = config.find("\"tie_word_embeddings\": true");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, std::string("\"tie_word_embeddings\": true").size(),
                 "\"tie_word_embeddings\": false");
  testing::write_file(dir.file("config.json"), config);
  o.model_dir = dir.path();
  auto no_head = Reranker::open(o);
  EXPECT_EQ(no_head.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_head.status().message().find("lm_head.weight"), std::string::npos)
      << no_head.status().message();

  // a Qwen3Model has no LM head at all
  at = config.find("Qwen3ForCausalLM");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, std::string("Qwen3ForCausalLM").size(), "Qwen3Model");
  testing::write_file(dir.file("config.json"), config);
  auto base = Reranker::open(o);
  EXPECT_EQ(base.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(base.status().message().find("no LM head"), std::string::npos);
}

}  // namespace
}  // namespace qsearch
