// Embedder semantics (issue 2 section 4): EOS with either tokenizer post-processor, the query
// instruction format, truncation keeping EOS, pad == EOS texts, dimension range and MRL,
// token-budget batching over one or several backends, and Embedder::open errors.
#include "embed/embedder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <set>
#include <thread>

#include "embed/engine/cpu_engine.h"
#include "engine/reference_util.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

using testing::cosine;

// Records every batch; row i of a batch is filled with the sequence's length and first id.
class FakeBackend : public Backend {
 public:
  FakeBackend(int hidden, int64_t budget, int64_t max_seq, std::string name = "fake")
      : hidden_(hidden), budget_(budget), max_seq_(max_seq), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  int hidden_size() const override { return hidden_; }
  int64_t max_batch_tokens() const override { return budget_; }
  int64_t max_sequence_tokens() const override { return max_seq_; }
  EngineMemory memory() const override { return {}; }
  Status embed(const EngineBatch& batch, float* out) override {
    int now = ++active_;
    max_active_ = std::max(max_active_.load(), now);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    {
      std::lock_guard<std::mutex> lock(mu_);
      batches_.push_back(batch);
    }
    for (size_t i = 0; i < batch.num_sequences(); ++i) {
      int dim = batch.dims.empty() ? hidden_ : batch.dims[i];
      float* row = out + i * hidden_;
      for (int j = 0; j < hidden_; ++j) row[j] = 0;
      row[0] = static_cast<float>(batch.cu_seqlens[i + 1] - batch.cu_seqlens[i]);
      row[1] = static_cast<float>(batch.tokens[batch.cu_seqlens[i]]);
      row[2] = static_cast<float>(dim);
    }
    --active_;
    return Status::ok();
  }
  std::vector<EngineBatch> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  int max_active() const { return max_active_; }

 private:
  int hidden_;
  int64_t budget_, max_seq_;
  std::string name_;
  std::mutex mu_;
  std::vector<EngineBatch> batches_;
  std::atomic<int> active_{0}, max_active_{0};
};

class EmbedderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::have_qwen3_tokenizer()) return;
    dir_ = new testing::TempDir();
    testing::make_tiny_model(dir_->path());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_FAIL() << "test model setup failed";
  }
  static std::unique_ptr<Tokenizer> tokenizer(bool embedding_template) {
    std::string path =
        embedding_template ? dir_->file("tokenizer.json") : testing::qwen3_tokenizer_path();
    auto t = Tokenizer::from_file(path);
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t.is_ok() ? std::move(t).value() : nullptr;
  }
  static ModelConfig config() {
    auto c = ModelConfig::from_file(dir_->file("config.json"));
    EXPECT_TRUE(c.is_ok());
    return *c;
  }
  // An embedder over fake backends.
  static std::unique_ptr<Embedder> fake(bool embedding_template, int64_t budget = 8192,
                                        int64_t max_seq = 32768, int backends = 1) {
    std::vector<std::unique_ptr<Backend>> b;
    for (int i = 0; i < backends; ++i)
      b.push_back(std::make_unique<FakeBackend>(128, budget, max_seq, "fake" + std::to_string(i)));
    return std::make_unique<Embedder>(config(), tokenizer(embedding_template), std::move(b));
  }
  static std::unique_ptr<Embedder> real(const std::string& device = "cpu", int64_t budget = 0) {
    EmbedderOptions o;
    o.model_dir = dir_->path();
    o.device = device;
    o.max_batch_tokens = budget;
    auto e = Embedder::open(o);
    EXPECT_TRUE(e.is_ok()) << e.status().to_string();
    return e.is_ok() ? std::move(e).value() : nullptr;
  }
  static testing::TempDir* dir_;
};
testing::TempDir* EmbedderTest::dir_ = nullptr;

TEST_F(EmbedderTest, FormatQuery) {
  EXPECT_EQ(Embedder::format_query("Given a web search query, retrieve relevant passages",
                                   "what is BM25?"),
            "Instruct: Given a web search query, retrieve relevant passages\nQuery:what is BM25?");
}

TEST_F(EmbedderTest, EosAppendedOnceWhateverThePostProcessor) {
  auto byte_level = fake(false);
  auto templ = fake(true);
  ASSERT_FALSE(byte_level->tokenizer().post_processor_appends(kEndOfTextId));
  ASSERT_TRUE(templ->tokenizer().post_processor_appends(kEndOfTextId));
  for (std::string text : {"hello world", "", "多语言 text", "ends with eos<|endoftext|>"}) {
    auto a = byte_level->prepare(text, "");
    auto b = templ->prepare(text, "");
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    EXPECT_EQ(a->ids, b->ids) << text;
    ASSERT_FALSE(a->ids.empty());
    EXPECT_EQ(a->ids.back(), kEndOfTextId);
    auto plain = byte_level->tokenizer().encode(text, false);
    ASSERT_TRUE(plain.is_ok());
    std::vector<int32_t> want = *plain;
    want.push_back(kEndOfTextId);
    EXPECT_EQ(a->ids, want) << text;
    EXPECT_EQ(a->input_tokens, static_cast<int32_t>(want.size()));
    EXPECT_EQ(a->truncated_tokens, 0);
  }
  // A text ending in "<|endoftext|>" keeps that token and gets its own EOS after it.
  auto e = byte_level->prepare("abc<|endoftext|>", "");
  ASSERT_TRUE(e.is_ok());
  ASSERT_GE(e->ids.size(), 3u);
  EXPECT_EQ(e->ids[e->ids.size() - 1], kEndOfTextId);
  EXPECT_EQ(e->ids[e->ids.size() - 2], kEndOfTextId);
}

TEST_F(EmbedderTest, InstructionOnQueriesOnly) {
  auto e = fake(true);
  const std::string task = "Given a question, retrieve passages that answer it";
  auto q = e->prepare("how long is a year on Mars?", task);
  auto d = e->prepare("how long is a year on Mars?", "");
  auto manual =
      e->tokenizer().encode("Instruct: " + task + "\nQuery:how long is a year on Mars?", true);
  ASSERT_TRUE(q.is_ok() && d.is_ok() && manual.is_ok());
  EXPECT_EQ(q->ids, *manual);
  EXPECT_GT(q->ids.size(), d->ids.size());
  EXPECT_NE(q->ids, d->ids);
}

TEST_F(EmbedderTest, TruncationKeepsEos) {
  auto e = fake(true);
  std::string text;
  for (int i = 0; i < 50; ++i) text += "word" + std::to_string(i) + " ";
  auto full = e->prepare(text, "");
  ASSERT_TRUE(full.is_ok());
  const int32_t n = full->input_tokens;
  ASSERT_GT(n, 20);
  auto t = e->prepare(text, "", 10);
  ASSERT_TRUE(t.is_ok());
  ASSERT_EQ(t->ids.size(), 10u);
  EXPECT_EQ(t->ids.back(), kEndOfTextId);
  EXPECT_TRUE(std::equal(t->ids.begin(), t->ids.begin() + 9, full->ids.begin()));
  EXPECT_EQ(t->input_tokens, n);
  EXPECT_EQ(t->truncated_tokens, n - 10);
  auto one = e->prepare(text, "", 1);
  ASSERT_TRUE(one.is_ok());
  EXPECT_EQ(one->ids, std::vector<int32_t>{kEndOfTextId});
  auto exact = e->prepare(text, "", n);
  ASSERT_TRUE(exact.is_ok());
  EXPECT_EQ(exact->truncated_tokens, 0);
  EXPECT_EQ(exact->ids, full->ids);
  EXPECT_FALSE(e->prepare(text, "", -1).is_ok());

  // Default 8192 tokens, and never above the backends' limit.
  std::string huge;
  for (int i = 0; i < 9000; ++i) huge += " x";
  auto d = e->prepare(huge, "");
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->ids.size(), 8192u);
  EXPECT_EQ(d->ids.back(), kEndOfTextId);
  EXPECT_EQ(d->truncated_tokens, d->input_tokens - 8192);
  auto capped = fake(true, 8192, 100);
  EXPECT_EQ(capped->max_input_tokens(), 100);
  auto c = capped->prepare(huge, "", 5000);
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->ids.size(), 100u);
}

TEST_F(EmbedderTest, PrepareIds) {
  auto e = fake(true);
  auto a = e->prepare_ids({1, 2, 3});
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->ids, (std::vector<int32_t>{1, 2, 3, kEndOfTextId}));
  auto b = e->prepare_ids({1, 2, kEndOfTextId});
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->ids, (std::vector<int32_t>{1, 2, kEndOfTextId}));
  auto empty = e->prepare_ids({});
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty->ids, std::vector<int32_t>{kEndOfTextId});
  auto t = e->prepare_ids({5, 6, 7, 8, 9}, 3);
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->ids, (std::vector<int32_t>{5, 6, kEndOfTextId}));
  EXPECT_EQ(t->input_tokens, 6);
  EXPECT_EQ(t->truncated_tokens, 3);
  auto bad = e->prepare_ids({1, 151669});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(e->prepare_ids({-3}).is_ok());
}

TEST_F(EmbedderTest, InvalidUtf8IsAnError) {
  auto e = fake(true);
  auto p = e->prepare(std::string("ok \xff\xfe bad"), "");
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EmbedderTest, BatchesByTokenBudgetInOrder) {
  auto e = fake(true, /*budget=*/20);
  auto* backend = static_cast<FakeBackend*>(&e->backend(0));
  std::vector<PreparedText> items;
  for (int len : {5, 5, 9, 30, 1, 19, 2}) {
    PreparedText p;
    for (int i = 0; i < len - 1; ++i) p.ids.push_back(static_cast<int32_t>(items.size() + 100));
    p.ids.push_back(kEndOfTextId);
    items.push_back(p);
  }
  std::vector<std::vector<float>> out;
  ASSERT_TRUE(e->embed(items, 64, &out).is_ok());
  ASSERT_EQ(out.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_EQ(out[i].size(), 64u);
    EXPECT_EQ(out[i][0], static_cast<float>(items[i].ids.size())) << i;
    EXPECT_EQ(out[i][1], static_cast<float>(items[i].ids[0])) << i;
    EXPECT_EQ(out[i][2], 64.0f);
  }
  // {5,5,9} = 19, {30} alone (over budget), {1,19} = 20, {2}.
  auto batches = backend->batches();
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[0].num_sequences(), 3u);
  EXPECT_EQ(batches[1].num_tokens(), 30u);
  EXPECT_EQ(batches[2].num_tokens(), 20u);
  EXPECT_EQ(batches[3].num_tokens(), 2u);
  for (const auto& b : batches) EXPECT_EQ(b.dims, std::vector<int32_t>(b.num_sequences(), 64));

  std::vector<std::vector<float>> none;
  EXPECT_TRUE(e->embed({}, 0, &none).is_ok());
  EXPECT_TRUE(none.empty());
  std::vector<PreparedText> bad = {PreparedText{}};
  EXPECT_FALSE(e->embed(bad, 0, &out).is_ok());
}

TEST_F(EmbedderTest, SeveralBackendsShareTheWork) {
  auto e = fake(true, /*budget=*/8, 32768, /*backends=*/3);
  EXPECT_EQ(e->device_name(), "fake0,fake1,fake2");
  std::vector<PreparedText> items;
  for (int i = 0; i < 60; ++i) {
    PreparedText p;
    p.ids = {static_cast<int32_t>(i), static_cast<int32_t>(i), kEndOfTextId};
    items.push_back(p);
  }
  std::vector<std::vector<float>> out;
  ASSERT_TRUE(e->embed(items, 0, &out).is_ok());
  ASSERT_EQ(out.size(), 60u);
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(out[i].size(), 128u);
    EXPECT_EQ(out[i][1], static_cast<float>(i));  // results land in input order
  }
  size_t total = 0;
  int used = 0;
  for (size_t b = 0; b < 3; ++b) {
    auto* fb = static_cast<FakeBackend*>(&e->backend(b));
    total += fb->batches().size();
    used += fb->batches().empty() ? 0 : 1;
    EXPECT_LE(fb->max_active(), 1);  // one batch per backend at a time
  }
  EXPECT_EQ(total, 30u);  // 2 items (6 tokens) per batch of 8
  EXPECT_GE(used, 2);
}

TEST_F(EmbedderTest, DimensionRange) {
  auto e = fake(true);
  auto p = e->prepare("x", "");
  ASSERT_TRUE(p.is_ok());
  std::vector<std::vector<float>> out;
  for (int dim : {31, 129, -1}) {
    Status s = e->embed({*p}, dim, &out);
    ASSERT_FALSE(s.is_ok()) << dim;
    EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  }
  for (int dim : {32, 128, 0}) {
    ASSERT_TRUE(e->embed({*p}, dim, &out).is_ok()) << dim;
    EXPECT_EQ(out[0].size(), dim == 0 ? 128u : static_cast<size_t>(dim));
  }
}

TEST_F(EmbedderTest, RealEngineEndToEnd) {
  auto e = real("cpu");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->device_name(), "cpu");
  EXPECT_EQ(e->max_input_tokens(), 32768);
  auto ref = testing::ReferenceModel::load(dir_->path());
  ASSERT_NE(ref, nullptr);
  std::vector<std::string> texts = {"The quick brown fox", "", "量子计算的基本原理",
                                    "ends with eos<|endoftext|>", "ends with eos"};
  std::vector<std::vector<float>> full, mrl;
  ASSERT_TRUE(e->embed_texts(texts, "", 0, 0, &full).is_ok());
  ASSERT_TRUE(e->embed_texts(texts, "", 64, 0, &mrl).is_ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto p = e->prepare(texts[i], "");
    ASSERT_TRUE(p.is_ok());
    EXPECT_LE(testing::max_abs_diff(full[i], ref->embed(p->ids)), 1e-5) << texts[i];
    ASSERT_EQ(mrl[i].size(), 64u);
    EXPECT_LE(testing::max_abs_diff(mrl[i], ref->embed(p->ids, 64)), 1e-5) << texts[i];
  }
  // pad == EOS: the text ending in "<|endoftext|>" is pooled at its own last position, so it
  // differs from the same text without it.
  EXPECT_LT(cosine(full[3], full[4]), 0.9999);
  // Queries differ from documents.
  std::vector<std::vector<float>> q;
  ASSERT_TRUE(e->embed_texts({texts[0]}, "Retrieve similar sentences", 0, 0, &q).is_ok());
  EXPECT_LT(cosine(q[0], full[0]), 0.9999);
}

TEST_F(EmbedderTest, SmallBudgetSameResults) {
  auto big = real("cpu");
  auto small = real("cpu", 16);
  ASSERT_NE(big, nullptr);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->backend(0).max_batch_tokens(), 16);
  std::vector<std::string> texts;
  for (int i = 0; i < 12; ++i) texts.push_back("sentence number " + std::to_string(i * 7919));
  texts.push_back(std::string(300, 'a') + " long one over the budget");
  std::vector<std::vector<float>> a, b;
  ASSERT_TRUE(big->embed_texts(texts, "", 0, 0, &a).is_ok());
  ASSERT_TRUE(small->embed_texts(texts, "", 0, 0, &b).is_ok());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_GE(cosine(a[i], b[i]), 0.9999) << i;
}

TEST_F(EmbedderTest, OpenErrors) {
  EmbedderOptions o;
  o.device = "cpu";
  o.model_dir = dir_->file("nope");
  auto missing = Embedder::open(o);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);
  EXPECT_NE(missing.status().message().find("Qwen3-Embedding"), std::string::npos);

  testing::TempDir partial;
  o.model_dir = partial.path();
  auto no_config = Embedder::open(o);
  ASSERT_FALSE(no_config.is_ok());
  EXPECT_NE(no_config.status().message().find("has no config.json"), std::string::npos);
  testing::write_file(partial.file("config.json"), testing::read_file(dir_->file("config.json")));
  auto no_tok = Embedder::open(o);
  ASSERT_FALSE(no_tok.is_ok());
  EXPECT_NE(no_tok.status().message().find("has no tokenizer.json"), std::string::npos);
  testing::write_file(partial.file("tokenizer.json"),
                      testing::read_file(dir_->file("tokenizer.json")));
  auto no_weights = Embedder::open(o);
  ASSERT_FALSE(no_weights.is_ok());
  EXPECT_NE(no_weights.status().message().find("no model.safetensors"), std::string::npos);

  o.model_dir = dir_->path();
  o.device = "tpu";
  EXPECT_EQ(Embedder::open(o).status().code(), StatusCode::kInvalidArgument);
  o.device = "cuda:x";
  EXPECT_EQ(Embedder::open(o).status().code(), StatusCode::kInvalidArgument);
  if (cuda_device_count() == 0) {
    o.device = "cuda";
    auto cuda = Embedder::open(o);
    ASSERT_FALSE(cuda.is_ok());
    EXPECT_EQ(cuda.status().code(), StatusCode::kUnavailable);
    o.device = "auto";
    auto autod = Embedder::open(o);
    ASSERT_TRUE(autod.is_ok()) << autod.status().to_string();
    EXPECT_EQ((*autod)->device_name(), "cpu");
  }
}

TEST(EngineDType, ParsesBf16AndFp8Only) {
  ASSERT_TRUE(parse_engine_dtype("bf16").is_ok());
  EXPECT_EQ(*parse_engine_dtype("bf16"), EngineDType::kBF16);
  ASSERT_TRUE(parse_engine_dtype("fp8").is_ok());
  EXPECT_EQ(*parse_engine_dtype("fp8"), EngineDType::kFP8);
  EXPECT_STREQ(engine_dtype_name(EngineDType::kFP8), "fp8");
  EXPECT_STREQ(engine_dtype_name(EngineDType::kBF16), "bf16");
  for (const char* bad : {"", "FP8", "fp16", "e4m3", "bf16 "}) {
    auto d = parse_engine_dtype(bad);
    ASSERT_FALSE(d.is_ok()) << bad;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("bf16 or fp8"), std::string::npos) << d.status().message();
  }
}

// --dtype fp8 is refused with one clear message where there is no FP8 engine to run it: the CPU
// engine, and "auto" on a machine without a GPU. bf16 (the default) is unchanged.
TEST_F(EmbedderTest, Fp8RefusedOnTheCpuEngine) {
  EmbedderOptions o;
  o.model_dir = dir_->path();
  o.device = "cpu";
  o.dtype = EngineDType::kFP8;
  auto cpu = Embedder::open(o);
  ASSERT_FALSE(cpu.is_ok());
  EXPECT_EQ(cpu.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(cpu.status().message().find(kFp8NeedsGpuMessage), std::string::npos)
      << cpu.status().message();
  EXPECT_NE(cpu.status().message().find("CPU engine"), std::string::npos);
  if (cuda_device_count() == 0) {
    o.device = "auto";
    auto autod = Embedder::open(o);
    ASSERT_FALSE(autod.is_ok());
    EXPECT_EQ(autod.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(autod.status().message().find(kFp8NeedsGpuMessage), std::string::npos)
        << autod.status().message();
    o.device = "cuda";
    EXPECT_EQ(Embedder::open(o).status().code(), StatusCode::kUnavailable);
  }
  o.device = "cpu";
  o.dtype = EngineDType::kBF16;
  auto ok = Embedder::open(o);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)->device_name(), "cpu");
}

}  // namespace
}  // namespace qsearch
