// Randomised checks of the lexical analysis and index (a cheap stand-in for a fuzzer, run in CI):
// thousands of random texts mixing scripts, punctuation, FTS5 syntax characters, quotes and
// invalid UTF-8 bytes. For each: analyze_text gives ordered, non-overlapping byte ranges inside
// the input with non-empty valid UTF-8 terms of at most kMaxTokenBytes; any text as a query is
// a valid FTS5 expression (no syntax error reaches the caller); a document is found by a query
// made of its own text; highlights are ordered code-point ranges inside the text.
#include <gtest/gtest.h>
#include <unicode/utf8.h>

#include <filesystem>
#include <random>

#include "collection/hybrid.h"
#include "collection/lexical_index.h"
#include "collection/text_analyzer.h"

namespace qsearch {
namespace {

std::string random_text(std::mt19937_64& rng) {
  static const std::vector<std::string> pieces = {"机器学习",
                                                  "北京大学",
                                                  "東京",
                                                  "天気です",
                                                  "ภาษาไทย",
                                                  "สวยงาม",
                                                  "ខ្មែរ",
                                                  "ພາສາລາວ",
                                                  "မြန်မာ",
                                                  "Hello",
                                                  "WORLD",
                                                  "straße",
                                                  "ＡＢＣ",
                                                  "１２３",
                                                  "SKU-4471-XZ",
                                                  "naïve",
                                                  "e\xcc\x81",
                                                  "👩🏽‍💻",
                                                  " ",
                                                  "  ",
                                                  "\n",
                                                  "\t",
                                                  ".",
                                                  ",",
                                                  "\"",
                                                  "\"\"",
                                                  "'",
                                                  "*",
                                                  "^",
                                                  ":",
                                                  "(",
                                                  ")",
                                                  "-",
                                                  "+",
                                                  "NEAR",
                                                  "AND",
                                                  "OR",
                                                  "NOT",
                                                  "\x00",
                                                  "\xff",
                                                  "\xc3",
                                                  "\xe4\xb8",
                                                  "\xed\xa0\x80",
                                                  "\xf4\x90\x80\x80",
                                                  "\u00ad",
                                                  "\u200d",
                                                  "\ufeff",
                                                  "ﬁ",
                                                  "İ",
                                                  "ß"};
  std::string s;
  const int n = static_cast<int>(rng() % 24);
  for (int i = 0; i < n; ++i) {
    if (rng() % 8 == 0) {
      s.push_back(static_cast<char>(rng() % 256));
    } else {
      const std::string& p = pieces[rng() % pieces.size()];
      s += p == "\x00" ? std::string(1, '\0') : p;
    }
  }
  return s;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t n = static_cast<int32_t>(s.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c = 0;
    U8_NEXT(p, i, n, c);
    if (c < 0) return false;
  }
  return true;
}

TEST(LexicalRandom, AnalysisQueriesIndexAndHighlights) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("qsearch-lexical-random-" + std::to_string(getpid())))
                              .string();
  std::filesystem::create_directories(dir);
  auto index = LexicalIndex::create(dir + "/r.sqlite", 1);
  ASSERT_TRUE(index.is_ok()) << index.status().to_string();
  std::mt19937_64 rng(20261202);
  uint64_t seq = 0;
  int found = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const std::string text = random_text(rng);
    size_t last_end = 0;
    std::vector<TextToken> tokens = analyze_text(text);
    for (const TextToken& t : tokens) {
      ASSERT_LE(last_end, t.begin);
      ASSERT_LT(t.begin, t.end);
      ASSERT_LE(t.end, text.size());
      ASSERT_FALSE(t.term.empty());
      ASSERT_LE(t.term.size(), kMaxTokenBytes);
      ASSERT_TRUE(valid_utf8(t.term));
      last_end = t.end;
    }
    // Any text is a valid query; the document is found by its own words.
    const LexicalQuery q = make_lexical_query(text);
    ASSERT_EQ(q.match.empty(), tokens.empty()) << "text: " << text;
    const int64_t label = iter;
    ASSERT_TRUE((*index)->apply({}, {{label, text}}, ++seq).is_ok());
    std::vector<LexicalIndex::Match> matches;
    Status s = (*index)->search(q, 10, &matches);
    ASSERT_TRUE(s.is_ok()) << s.to_string() << " for query " << q.match;
    if (!tokens.empty()) {
      ASSERT_EQ(matches.size(), 1u) << q.match;
      EXPECT_EQ(matches[0].label, label);
      ++found;
    } else {
      EXPECT_TRUE(matches.empty());
    }
    // Another random text as a query: no error.
    s = (*index)->search(make_lexical_query(random_text(rng)), 10, &matches);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    const auto spans = highlight_terms(text, q.terms, -1, 0);
    const int32_t cps = code_points_before(text, text.size());
    int32_t prev = 0;
    for (const auto& [start, end] : spans) {
      ASSERT_LE(prev, start);
      ASSERT_LT(start, end);
      ASSERT_LE(end, cps);
      prev = end;
    }
    EXPECT_EQ(spans.size(), std::min(tokens.size(), kMaxHighlights));
    ASSERT_TRUE((*index)->apply({label}, {}, ++seq).is_ok());
    ASSERT_EQ((*index)->rows(), 0);
  }
  EXPECT_GT(found, 2000);
  index->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
