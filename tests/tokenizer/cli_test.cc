// `qsearch tokenize` end to end (the binary at QSEARCH_BINARY): output equals the Hugging Face
// oracle line for line, with and without special tokens; errors name the line.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "embed/tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_util.h"

namespace qsearch {
namespace {

std::string tokenize_command(const std::string& extra) {
  return std::string("'") + QSEARCH_BINARY + "' tokenize --tokenizer '" + testing::qwen3_tokenizer_path() + "' " + extra;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream ss(s);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

std::vector<std::string> cli_corpus() {
  auto texts = testing::handwritten_corpus();
  auto random = testing::random_corpus(555, 1000);
  texts.insert(texts.end(), random.begin(), random.end());
  return texts;
}

void expect_cli_matches_oracle(const std::string& flag) {
  auto texts = cli_corpus();
  std::string input;
  for (const auto& t : texts) input += testing::json_quote(t) + "\n";
  int code = 0;
  std::string err;
  std::string out = testing::run_command(tokenize_command(flag), input, &code, &err);
  ASSERT_EQ(code, 0) << err;
  std::string oracle_error;
  auto want = testing::run_oracle(testing::qwen3_tokenizer_path(), texts, flag, &oracle_error);
  ASSERT_TRUE(oracle_error.empty()) << oracle_error;
  auto got = lines_of(out);
  ASSERT_EQ(got.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) ASSERT_EQ(got[i], want[i]) << "line " << i + 1 << ": " << testing::json_quote(texts[i]);
}

TEST(TokenizeCli, MatchesTheOracleWithSpecial) { expect_cli_matches_oracle(""); }

TEST(TokenizeCli, MatchesTheOracleNoSpecial) { expect_cli_matches_oracle("--no-special"); }

TEST(TokenizeCli, ManyLinesInManyBlocksStayInOrder) {
  // More lines than one parallel block, on 3 threads, against the library.
  auto tok = Tokenizer::from_file(testing::qwen3_tokenizer_path());
  ASSERT_TRUE(tok.is_ok());
  auto texts = testing::random_corpus(8, 20000);
  std::string input;
  for (const auto& t : texts) input += testing::json_quote(t) + "\r\n";  // CRLF line ends too
  int code = 0;
  std::string err;
  auto got = lines_of(testing::run_command(tokenize_command("--threads 3"), input, &code, &err));
  ASSERT_EQ(code, 0) << err;
  ASSERT_EQ(got.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ids;
    ASSERT_TRUE(testing::parse_id_array(got[i], &ids)) << got[i];
    ASSERT_EQ(ids, *(*tok)->encode(texts[i])) << "line " << i + 1;
  }
}

TEST(TokenizeCli, JsonEscapes) {
  int code = 0;
  std::string err;
  std::string out = testing::run_command(
      tokenize_command(""), "\"\\ud83d\\ude00 \\u00e9\\t\\\"q\\\" \\\\ \\/\"\n  \"\\u0000\"  \n\"\"\n", &code, &err);
  ASSERT_EQ(code, 0) << err;
  auto tok = Tokenizer::from_file(testing::qwen3_tokenizer_path());
  ASSERT_TRUE(tok.is_ok());
  auto got = lines_of(out);
  ASSERT_EQ(got.size(), 3u);
  std::vector<int32_t> ids;
  ASSERT_TRUE(testing::parse_id_array(got[0], &ids));
  EXPECT_EQ(ids, *(*tok)->encode("\xF0\x9F\x98\x80 \xC3\xA9\t\"q\" \\ /"));
  ASSERT_TRUE(testing::parse_id_array(got[1], &ids));
  EXPECT_EQ(ids, *(*tok)->encode(std::string("\0", 1)));
  EXPECT_EQ(got[2], "[]");
}

TEST(TokenizeCli, ErrorsNameTheLine) {
  struct Case {
    std::string input;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"\"ok\"\n\"fine\"\nnot json\n\"later\"\n", "line 3"},
      {"\"ok\"\n\"bad \xFF utf8\"\n", "line 2: invalid UTF-8 at byte offset 4"},
      {"\"unterminated\n", "line 1"},
      {"\"a\" \"b\"\n", "line 1"},
      {"\"ok\"\n\n", "line 2"},
      {"\"lone \\ud800 surrogate\"\n", "line 1"},
      {"\"bad \\x escape\"\n", "line 1"},
      {"[1, 2]\n", "line 1"},
  };
  for (const Case& c : cases) {
    int code = 0;
    std::string err;
    std::string out = testing::run_command(tokenize_command(""), c.input, &code, &err);
    EXPECT_NE(code, 0) << testing::json_quote(c.input);
    EXPECT_NE(err.find(c.message), std::string::npos) << testing::json_quote(c.input) << " -> " << err;
  }
  // Lines before the bad one are written.
  int code = 0;
  std::string err;
  auto out = lines_of(testing::run_command(tokenize_command(""), "\"a\"\n\"b\"\n{}\n", &code, &err));
  EXPECT_EQ(out.size(), 2u);
}

TEST(TokenizeCli, HelpAndUsageErrors) {
  int code = 0;
  std::string err;
  std::string out = testing::run_command(std::string("'") + QSEARCH_BINARY + "' tokenize --help", "", &code, &err);
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("--no-special"), std::string::npos);
  testing::run_command(std::string("'") + QSEARCH_BINARY + "' tokenize", "", &code, &err);
  EXPECT_NE(code, 0);
  EXPECT_NE(err.find("--tokenizer"), std::string::npos);
  testing::run_command(std::string("'") + QSEARCH_BINARY + "' tokenize --tokenizer /nonexistent.json", "\"x\"\n", &code, &err);
  EXPECT_NE(code, 0);
  EXPECT_NE(err.find("/nonexistent.json"), std::string::npos);
  testing::run_command(tokenize_command("--bogus"), "", &code, &err);
  EXPECT_NE(code, 0);
}

TEST(TokenizeCli, EmptyInputGivesEmptyOutput) {
  int code = 0;
  std::string err;
  std::string out = testing::run_command(tokenize_command(""), "", &code, &err);
  EXPECT_EQ(code, 0) << err;
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace qsearch
