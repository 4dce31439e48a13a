// Tokenizer behaviour beyond id parity: the two BPE merge loops agree, offsets, decode, the
// batch API, invalid UTF-8, loading errors, long words.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "embed/tokenizer/bpe.h"
#include "embed/tokenizer/pretokenizer.h"
#include "embed/tokenizer/tokenizer.h"
#include "embed/tokenizer/tokenizer_json.h"
#include "embed/tokenizer/unicode.h"
#include "tokenizer/tokenizer_util.h"

namespace qsearch {
namespace {

using nlohmann::json;

// The real Qwen3 tokenizer, loaded once; nullptr (and a failure) when it cannot be loaded.
const Tokenizer* load_qwen3() {
  static std::unique_ptr<Tokenizer> tok = [] {
    auto t = Tokenizer::from_file(testing::qwen3_tokenizer_path());
    return t.is_ok() ? std::move(*t) : nullptr;
  }();
  if (!tok) ADD_FAILURE() << "cannot load " << testing::qwen3_tokenizer_path() << " (run `make deps`)";
  return tok.get();
}

#define QWEN3_OR_FAIL(name)              \
  const Tokenizer* name##_ptr = load_qwen3(); \
  ASSERT_NE(name##_ptr, nullptr);          \
  const Tokenizer& name = *name##_ptr

std::vector<std::string> corpus() {
  auto texts = testing::handwritten_corpus();
  auto random = testing::random_corpus(3, 1500);
  texts.insert(texts.end(), random.begin(), random.end());
  return texts;
}

std::string nfc(const std::string& s) {
  std::string out;
  return unicode::nfc_normalize(s, &out, nullptr) ? out : s;
}

TEST(Tokenizer, VocabularyAndSpecialTokens) {
  QWEN3_OR_FAIL(t);
  EXPECT_EQ(t.vocab_size(), 151669);
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(t.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(t.token_to_id("\xC4\xA0world"), 1879);  // "Ġworld"
  EXPECT_EQ(t.token_to_id("no such token at all"), std::nullopt);
  EXPECT_FALSE(t.post_processor_appends(151643));  // the npm file has a ByteLevel post-processor
  EXPECT_EQ(*t.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  EXPECT_EQ(*t.encode("<|im_start|>user"), (std::vector<int32_t>{151644, 872}));
  EXPECT_TRUE(t.encode("")->empty());
}

TEST(Bpe, LinearAndHeapMergeLoopsAgree) {
  auto data = parse_tokenizer_json(testing::read_file(testing::qwen3_tokenizer_path()));
  ASSERT_TRUE(data.is_ok()) << data.status().to_string();
  const BpeModel& bpe = (*data)->bpe;
  std::mt19937_64 rng(11);
  size_t words = 0;
  // Real pieces of the corpus, then random byte strings.
  for (const auto& text : corpus()) {
    std::string norm = nfc(text);
    split_qwen2(norm, unicode::ClassTable::get(), [&](size_t b, size_t e) {
      std::string_view piece = std::string_view(norm).substr(b, std::min(e - b, BpeModel::kLinearMaxBytes));
      std::vector<int32_t> a, h;
      bpe.merge_linear(piece, &a);
      bpe.merge_heap(piece, &h);
      ASSERT_EQ(a, h) << testing::json_quote(std::string(piece));
      ++words;
    });
  }
  for (int n = 0; n < 20000; ++n) {
    std::string w;
    size_t len = 1 + rng() % BpeModel::kLinearMaxBytes;
    const char* alphabet = "aaeeinorst  \xE4\xB8\xAD\xE6\x96\x87";
    for (size_t k = 0; k < len; ++k) w += (rng() % 4) ? alphabet[rng() % 18] : static_cast<char>(rng() % 256);
    std::vector<int32_t> a, h;
    bpe.merge_linear(w, &a);
    bpe.merge_heap(w, &h);
    ASSERT_EQ(a, h);
    ++words;
  }
  EXPECT_GT(words, 20000u);
}

TEST(Tokenizer, DecodeInvertsEncodeUpToNfc) {
  QWEN3_OR_FAIL(t);
  for (const auto& text : corpus()) {
    auto ids = t.encode(text, false);
    ASSERT_TRUE(ids.is_ok());
    EXPECT_EQ(t.decode(*ids), nfc(text)) << testing::json_quote(text);
  }
  // A token that is half of a character decodes to U+FFFD, as Rust's from_utf8_lossy does.
  auto ids = t.encode("\xF4\x8F\xBF\xBD", false);  // U+10FFFD: several byte tokens
  ASSERT_TRUE(ids.is_ok());
  ASSERT_GT(ids->size(), 1u);
  EXPECT_EQ(t.decode({ids->front()}), "\xEF\xBF\xBD");
}

TEST(Tokenizer, OffsetsPointIntoTheOriginalText) {
  QWEN3_OR_FAIL(t);
  for (const auto& text : corpus()) {
    auto ids = t.encode(text, true);
    auto spans = t.encode_with_offsets(text, true);
    ASSERT_TRUE(ids.is_ok() && spans.is_ok());
    ASSERT_EQ(spans->size(), ids->size());
    const bool unchanged = nfc(text) == text;
    uint32_t last_begin = 0;
    for (size_t i = 0; i < spans->size(); ++i) {
      const TokenSpan& s = (*spans)[i];
      EXPECT_EQ(s.id, (*ids)[i]);
      ASSERT_LE(s.begin, s.end);
      ASSERT_LE(s.end, text.size());
      EXPECT_GE(s.begin, last_begin) << testing::json_quote(text);
      last_begin = s.begin;
      std::string piece = text.substr(s.begin, s.end - s.begin);
      EXPECT_FALSE(unicode::find_invalid_utf8(piece)) << "span cuts a character";
      if (unchanged) {
        // The token's bytes lie inside its span (spans widen to whole characters).
        std::string bytes = t.decode({s.id});
        if (bytes.find("\xEF\xBF\xBD") == std::string::npos) {
          EXPECT_EQ(piece, bytes) << testing::json_quote(text);
        }
      }
    }
  }
  // Added tokens cover their text; NFC-changed text maps to the original bytes.
  auto s = t.encode_with_offsets("ab<|im_end|>cafe\xCC\x81", true);
  ASSERT_TRUE(s.is_ok());
  ASSERT_GE(s->size(), 3u);
  EXPECT_EQ((*s)[0].begin, 0u);
  EXPECT_EQ((*s)[0].end, 2u);
  EXPECT_EQ((*s)[1].id, 151645);
  EXPECT_EQ((*s)[1].begin, 2u);
  EXPECT_EQ((*s)[1].end, 12u);
  EXPECT_EQ((*s)[2].begin, 12u);
  EXPECT_EQ(s->back().end, 18u);  // "café" written with a combining accent: 6 bytes
  // The accented letter, composed by NFC, maps back to "e" + U+0301.
  auto accent = t.encode_with_offsets("e\xCC\x81", false);
  ASSERT_TRUE(accent.is_ok());
  for (const auto& sp : *accent) {
    EXPECT_EQ(sp.begin, 0u);
    EXPECT_EQ(sp.end, 3u);
  }
}

TEST(Tokenizer, PostProcessorTokensHaveEmptySpansAtTheEnd) {
  auto doc = json::parse(testing::read_file(testing::qwen3_tokenizer_path()));
  doc["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
    "pair": [], "special_tokens": {
      "<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643], "tokens": ["<|endoftext|>"]},
      "<|im_start|>": {"id": "<|im_start|>", "ids": [151644], "tokens": ["<|im_start|>"]}}})");
  auto t = Tokenizer::from_json(doc.dump());
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_TRUE((*t)->post_processor_appends(151643));
  EXPECT_FALSE((*t)->post_processor_appends(151644));
  EXPECT_EQ(*(*t)->encode("Hello world"), (std::vector<int32_t>{151644, 9707, 1879, 151643}));
  EXPECT_EQ(*(*t)->encode("Hello world", false), (std::vector<int32_t>{9707, 1879}));
  auto spans = (*t)->encode_with_offsets("Hello world");
  ASSERT_TRUE(spans.is_ok());
  ASSERT_EQ(spans->size(), 4u);
  EXPECT_EQ((*spans)[0].begin, 11u);
  EXPECT_EQ((*spans)[0].end, 11u);
  EXPECT_EQ((*spans)[3].begin, 11u);
  EXPECT_EQ((*spans)[3].end, 11u);
}

TEST(Tokenizer, InvalidUtf8IsAnErrorWithTheOffset) {
  QWEN3_OR_FAIL(t);
  struct Case {
    std::string text;
    size_t offset;
  };
  for (const Case& c : std::vector<Case>{{"abc\xFF", 3},
                                        {"\xC0\xAF", 0},
                                        {"ok <|endoftext|> \xED\xA0\x80", 17},
                                        {"\xF4\x90\x80\x80", 0},
                                        {"truncated \xE4\xB8", 10}}) {
    auto r = t.encode(c.text);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("byte offset " + std::to_string(c.offset)), std::string::npos)
        << r.status().message();
    EXPECT_FALSE(t.encode_with_offsets(c.text).is_ok());
  }
}

TEST(Tokenizer, BatchEqualsOneByOne) {
  QWEN3_OR_FAIL(t);
  auto texts = corpus();
  texts.insert(texts.begin() + 7, "bad \xC3");
  ThreadPool pool(4);
  auto parallel = t.encode_batch(texts, true, &pool);
  auto serial = t.encode_batch(texts, false, nullptr);
  ASSERT_EQ(parallel.size(), texts.size());
  ASSERT_EQ(serial.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto one = t.encode(texts[i], true);
    ASSERT_EQ(parallel[i].is_ok(), one.is_ok()) << i;
    if (!one.is_ok()) {
      EXPECT_EQ(i, 7u);
      EXPECT_EQ(parallel[i].status().code(), StatusCode::kInvalidArgument);
      continue;
    }
    EXPECT_EQ(*parallel[i], *one);
    EXPECT_EQ(*serial[i], *t.encode(texts[i], false));
  }
}

TEST(Tokenizer, LongWordsAreNotQuadratic) {
  QWEN3_OR_FAIL(t);
  // One piece of 1.2 MB (CJK without punctuation), one of 1 MB (letters), 1 MB of digits.
  std::mt19937_64 rng(1);
  std::string cjk, letters;
  for (int i = 0; i < 400000; ++i) unicode::append_utf8(static_cast<char32_t>(0x4E00 + rng() % 3000), &cjk);
  for (int i = 0; i < 1000000; ++i) letters += static_cast<char>('a' + rng() % 26);
  std::string digits(1000000, '5');
  auto start = std::chrono::steady_clock::now();
  for (const std::string* s : {&cjk, &letters, &digits}) {
    auto ids = t.encode(*s, false);
    ASSERT_TRUE(ids.is_ok());
    EXPECT_EQ(t.decode(*ids), *s);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 20.0) << "3.2 MB of single pieces took " << seconds << " s";
}

// A minimal byte-level tokenizer.json to test loading rules without the 11 MB file.
json tiny_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_encode(std::string(1, static_cast<char>(b)))] = b;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  vocab["\xC4\xA0" "abc"] = 258;
  json doc = {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 259}, {"content", "<s>"}, {"special", true}, {"normalized", false}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", json::parse(R"({"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": ""}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})")},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab},
                 {"merges", json::array({"a b", json::array({"ab", "c"}), "\xC4\xA0 abc"})}}},
  };
  doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = std::string(kQwen2SplitPattern);
  return doc;
}

TEST(TokenizerLoading, TinyTokenizerWorks) {
  auto t = Tokenizer::from_json(tiny_tokenizer().dump());
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ((*t)->vocab_size(), 260);
  EXPECT_EQ(*(*t)->encode("abc abc<s>ab"), (std::vector<int32_t>{257, 258, 259, 256}));
  EXPECT_EQ(*(*t)->encode("abd"), (std::vector<int32_t>{256, 'd'}));
}

TEST(TokenizerLoading, UnsupportedComponentsAreClearErrors) {
  struct Case {
    const char* what;
    void (*change)(json&);
    StatusCode code;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"NFKC", [](json& d) { d["normalizer"] = {{"type", "NFKC"}}; }, StatusCode::kInvalidArgument, "NFKC"},
      {"Lowercase", [](json& d) { d["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]})"); },
       StatusCode::kInvalidArgument, "Lowercase"},
      {"GPT-2 ByteLevel", [](json& d) { d["pre_tokenizer"] = {{"type", "ByteLevel"}, {"use_regex", true}}; },
       StatusCode::kInvalidArgument, "pre_tokenizer"},
      {"other regex", [](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+"; },
       StatusCode::kInvalidArgument, "Split pattern"},
      {"WordPiece", [](json& d) { d["model"]["type"] = "WordPiece"; }, StatusCode::kInvalidArgument, "WordPiece"},
      {"dropout", [](json& d) { d["model"]["dropout"] = 0.1; }, StatusCode::kInvalidArgument, "dropout"},
      {"Roberta", [](json& d) { d["post_processor"] = {{"type", "RobertaProcessing"}}; },
       StatusCode::kInvalidArgument, "RobertaProcessing"},
      {"merge out of vocab", [](json& d) { d["model"]["merges"].push_back("x yz"); }, StatusCode::kCorruption, "merge #3"},
      {"bad merge string", [](json& d) { d["model"]["merges"].push_back("abc"); }, StatusCode::kCorruption, "merge #3"},
      {"missing byte", [](json& d) { d["model"]["vocab"].erase("a"); }, StatusCode::kInvalidArgument, "byte 97"},
      {"template id", [](json& d) { d["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
          "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
          "special_tokens": {}})"); }, StatusCode::kCorruption, "</s>"},
  };
  for (const Case& c : cases) {
    json doc = tiny_tokenizer();
    c.change(doc);
    auto t = Tokenizer::from_json(doc.dump());
    ASSERT_FALSE(t.is_ok()) << c.what;
    EXPECT_EQ(t.status().code(), c.code) << c.what << ": " << t.status().to_string();
    EXPECT_NE(t.status().message().find(c.message), std::string::npos) << c.what << ": " << t.status().to_string();
  }
  EXPECT_EQ(Tokenizer::from_json("{\"model\": ").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(Tokenizer::from_json("[1, 2]").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(Tokenizer::from_file("/nonexistent/tokenizer.json").status().code(), StatusCode::kNotFound);
}

TEST(TokenizerLoading, RealFileLoadsQuickly) {
  std::string text = testing::read_file(testing::qwen3_tokenizer_path());
  ASSERT_GT(text.size(), 10u << 20);
  auto start = std::chrono::steady_clock::now();
  auto t = Tokenizer::from_json(text);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(t.is_ok());
  // ~0.3 s on an idle core; generous for loaded CI machines.
  EXPECT_LT(seconds, 5.0);
  std::printf("tokenizer.json loaded in %.3f s\n", seconds);
}

}  // namespace
}  // namespace qsearch
