// The lexical analysis (collection/text_analyzer.h) and the search-mode helpers
// (collection/hybrid.h): ICU word breaks for unsegmented scripts, NFKC + case folding, byte
// offsets, code-point highlights, query building, and RRF / weighted fusion.
#include <gtest/gtest.h>

#include "collection/hybrid.h"
#include "collection/lexical_index.h"
#include "collection/text_analyzer.h"

namespace qsearch {
namespace {

std::vector<std::string> terms(std::string_view text) {
  std::vector<std::string> out;
  for (const TextToken& t : analyze_text(text)) out.push_back(t.term);
  return out;
}

TEST(Analyzer, SegmentsChineseJapaneseThaiByDictionary) {
  EXPECT_EQ(terms("我们在北京大学学习机器学习"),
            (std::vector<std::string>{"我们", "在", "北京", "大学", "学习", "机器", "学习"}));
  const auto ja = terms("東京都に住んでいます。今日は良い天気です");
  EXPECT_NE(std::find(ja.begin(), ja.end(), "東京"), ja.end());
  EXPECT_NE(std::find(ja.begin(), ja.end(), "天気"), ja.end());
  EXPECT_EQ(std::find(ja.begin(), ja.end(), "。"), ja.end());  // punctuation is no word
  EXPECT_EQ(terms("ภาษาไทยเป็นภาษาที่สวยงาม"),
            (std::vector<std::string>{"ภาษา", "ไทย", "เป็น", "ภาษา", "ที่", "สวยงาม"}));
  // Khmer is segmented too (more than one word out of a run without spaces).
  EXPECT_GT(terms("ខ្ញុំស្រឡាញ់ភាសាខ្មែរ").size(), 1u);
}

TEST(Analyzer, FoldsCaseAndCompatibilityForms) {
  EXPECT_EQ(terms("Hello WORLD Straße"), (std::vector<std::string>{"hello", "world", "strasse"}));
  // Full-width letters and digits fold to ASCII (NFKC), so both spellings meet.
  EXPECT_EQ(terms("ＡＢＣ１２３"), terms("abc123"));
  EXPECT_EQ(terms("ﬁle"), terms("FILE"));                     // ligature
  EXPECT_EQ(terms("soft\u00ADhyphen"), terms("softhyphen"));  // default ignorable removed
  EXPECT_EQ(terms("SKU-4471-XZ"), (std::vector<std::string>{"sku", "4471", "xz"}));
  EXPECT_TRUE(terms("  ,.;!? ").empty());
  EXPECT_TRUE(terms("").empty());
}

TEST(Analyzer, OffsetsAreBytesOfTheInput) {
  const std::string text = "Ünïcode 北京大学";
  const auto tokens = analyze_text(text);
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(text.substr(tokens[0].begin, tokens[0].end - tokens[0].begin), "Ünïcode");
  EXPECT_EQ(tokens[0].term, "ünïcode");
  EXPECT_EQ(text.substr(tokens[1].begin, tokens[1].end - tokens[1].begin), "北京");
  EXPECT_EQ(text.substr(tokens[2].begin, tokens[2].end - tokens[2].begin), "大学");
  EXPECT_EQ(code_points_before(text, tokens[1].begin), 8);
}

TEST(Analyzer, InvalidUtf8IsNoCrashAndKeepsOffsets) {
  const std::string text = std::string("ab\xff\xfe cd \xe4\xb8") + "ef";
  for (const TextToken& t : analyze_text(text)) {
    EXPECT_LE(t.begin, t.end);
    EXPECT_LE(t.end, text.size());
  }
  EXPECT_NE(terms(text).size(), 0u);
}

TEST(Analyzer, LongWordsAreCut) {
  const std::string word(5000, 'a');
  const auto t = terms(word);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].size(), kMaxTokenBytes);
}

TEST(LexicalQuery, TermsPhrasesAndEscaping) {
  LexicalQuery q = make_lexical_query("Quick \"brown FOX\" 机器学习");
  EXPECT_EQ(q.match, "\"quick\" OR \"brown fox\" OR \"机器\" OR \"学习\"");
  EXPECT_EQ(q.terms, (std::vector<std::string>{"quick", "brown", "fox", "机器", "学习"}));
  EXPECT_TRUE(make_lexical_query("  !!! \"\" ").match.empty());
  // Words joined by code punctuation are one phrase; a space or other punctuation separates.
  q = make_lexical_query("SKU-4471-XZ v1.2.3 a, b 東京。大阪");
  EXPECT_EQ(q.match, "\"sku 4471 xz\" OR \"v1.2.3\" OR \"a\" OR \"b\" OR \"東京\" OR \"大阪\"");
  // An unbalanced quote makes the rest a phrase; FTS5 syntax in the text stays literal.
  q = make_lexical_query("a OR b NEAR(c) \"d e");
  EXPECT_EQ(q.match, "\"a\" OR \"or\" OR \"b\" OR \"near\" OR \"c\" OR \"d e\"");
}

TEST(Highlights, CodePointsOfTheDocumentText) {
  const std::string text = "Café 北京大学 and the café";
  auto h = highlight_terms(text, {"café", "北京"}, -1, 0);
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0], std::make_pair(0, 4));
  EXPECT_EQ(h[1], std::make_pair(5, 7));
  EXPECT_EQ(h[2], std::make_pair(18, 22));
  // Inside a chunk [5, 9): offsets stay those of the whole text.
  h = highlight_terms(text, {"café", "大学"}, 5, 9);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0], std::make_pair(7, 9));
}

SearchHit hit(const std::string& id, float score) {
  SearchHit h;
  h.id = id;
  h.score = score;
  return h;
}

TEST(Fusion, ReciprocalRankFusion) {
  FusionOptions rrf;  // k = 60
  auto out = fuse_hits({hit("a", 0.9f), hit("b", 0.8f), hit("c", 0.7f)},
                       {hit("c", 12.0f), hit("d", 5.0f)}, rrf, false);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].id, "c");  // 1/63 + 1/61
  EXPECT_NEAR(out[0].score, 1.0 / 63 + 1.0 / 61, 1e-7);
  EXPECT_EQ(*out[0].dense_score, 0.7f);
  EXPECT_EQ(*out[0].lexical_score, 12.0f);
  EXPECT_EQ(out[1].id, "a");  // 1/61, ahead of d (also 1/62 < 1/61)
  EXPECT_EQ(out[2].id, "b");  // 1/62 ties with d: dense order first
  EXPECT_EQ(out[3].id, "d");
  EXPECT_FALSE(out[3].dense_score.has_value());
}

TEST(Fusion, WeightedOverNormalisedScores) {
  FusionOptions w;
  w.type = FusionOptions::Type::kWeighted;
  w.alpha = 0.25;
  auto out =
      fuse_hits({hit("a", 0.9f), hit("b", 0.5f)}, {hit("b", 10.0f), hit("c", 2.0f)}, w, false);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].id, "b");  // 0.25 * 0 + 0.75 * 1
  EXPECT_NEAR(out[0].score, 0.75, 1e-6);
  EXPECT_EQ(out[1].id, "a");  // 0.25 * 1
  EXPECT_NEAR(out[1].score, 0.25, 1e-6);
  EXPECT_NEAR(out[2].score, 0.0, 1e-6);
  // l2: the smallest distance is the best dense score.
  w.alpha = 1.0;
  out = fuse_hits({hit("near", 0.1f), hit("far", 2.0f)}, {}, w, true);
  EXPECT_EQ(out[0].id, "near");
  EXPECT_NEAR(out[0].score, 1.0, 1e-6);
}

TEST(Fusion, OptionsValidation) {
  using json = nlohmann::json;
  EXPECT_EQ(FusionOptions::from_json(json::array()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FusionOptions::from_json({{"type", "max"}}).status().code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(FusionOptions::from_json({{"type", 3}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      FusionOptions::from_json(nlohmann::json::parse(R"({"type": "rrf", "k": 0})")).status().code(),
      StatusCode::kUnprocessable);
  EXPECT_EQ(FusionOptions::from_json({{"type", "rrf"}, {"alpha", 0.5}}).status().code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(FusionOptions::from_json({{"type", "weighted"}, {"alpha", 1.5}}).status().code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(FusionOptions::from_json({{"type", "weighted"}, {"alpha", "x"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto ok = FusionOptions::from_json({{"type", "rrf"}, {"k", 10}});
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->rrf_k, 10);
  EXPECT_EQ(parse_search_mode("sparse").status().code(), StatusCode::kUnprocessable);
}

}  // namespace
}  // namespace qsearch
