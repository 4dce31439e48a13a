// Search modes end to end (server subprocess, random-weight test model, CPU engine): "lexical"
// and "hybrid" find documents by words in Chinese, Japanese, Thai and English text, results
// carry highlights in code points of the returned text, filters, offset, chunked collections,
// "lexical": false, and the errors (400 for wrong JSON types, 422 for bad values).
#include <gtest/gtest.h>

#include <set>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

// The code points [start, end) of UTF-8 text, by a decoder of this test's own.
std::string slice(const std::string& text, int start, int end) {
  std::vector<size_t> starts;
  for (size_t b = 0; b < text.size(); ++b)
    if ((static_cast<unsigned char>(text[b]) & 0xC0) != 0x80) starts.push_back(b);
  starts.push_back(text.size());
  if (start < 0 || end < start || end >= static_cast<int>(starts.size())) return "<out of range>";
  return text.substr(starts[start], starts[end] - starts[start]);
}

class LexicalApi : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    SharedServerTest::SetUpTestSuite();
    ASSERT_EQ(s().post("/collections", json{{"name", "kb"}}).status, 201);
    json docs = json::array();
    const std::vector<std::tuple<std::string, std::string, std::string>> texts = {
        {"zh", "我们在北京大学学习机器学习和自然语言处理", "zh"},
        {"ja", "東京都に住んでいます。今日は良い天気ですね", "ja"},
        {"th", "ภาษาไทยเป็นภาษาที่สวยงามและมีประวัติยาวนาน", "th"},
        {"en1", "The Quick brown fox jumps over the lazy dog", "en"},
        {"en2", "A brown dog is quick to sleep; the fox is not", "en"},
        {"code", "Shipment of part SKU-4471-XZ delayed until further notice", "en"},
    };
    for (const auto& [id, text, lang] : texts)
      docs.push_back({{"id", id}, {"text", text}, {"metadata", {{"lang", lang}}}});
    ASSERT_EQ(s().post("/collections/kb/documents", json{{"documents", docs}}).status, 200);
  }
  static json search(const json& body, int expect_status = 200) {
    HttpResult r = s().post("/collections/kb/search", body);
    EXPECT_EQ(r.status, expect_status) << body.dump() << " -> " << r.body;
    return r.json_body();
  }
  static std::vector<std::string> ids(const json& body) {
    std::vector<std::string> out;
    for (const auto& r : body["results"]) out.push_back(r["id"]);
    return out;
  }
};

TEST_F(LexicalApi, LexicalFindsWordsInEveryScript) {
  EXPECT_EQ(ids(search({{"query", "机器学习"}, {"mode", "lexical"}})),
            std::vector<std::string>{"zh"});
  EXPECT_EQ(ids(search({{"query", "天気"}, {"mode", "lexical"}})), std::vector<std::string>{"ja"});
  EXPECT_EQ(ids(search({{"query", "สวยงาม"}, {"mode", "lexical"}})),
            std::vector<std::string>{"th"});
  EXPECT_EQ(ids(search({{"query", "sku-4471-xz"}, {"mode", "lexical"}})),
            std::vector<std::string>{"code"});
  EXPECT_EQ(ids(search({{"query", "\"quick brown\""}, {"mode", "lexical"}})),
            std::vector<std::string>{"en1"});
}

TEST_F(LexicalApi, HighlightsAreCodePointsOfTheReturnedText) {
  json r = search({{"query", "机器学习 天気 QUICK"}, {"mode", "lexical"}, {"k", 5}});
  ASSERT_EQ(r["results"].size(), 4u);  // zh, ja, en1, en2
  for (const auto& hit : r["results"]) {
    ASSERT_TRUE(hit.contains("highlights")) << hit.dump();
    ASSERT_FALSE(hit["highlights"].empty()) << hit.dump();
    const std::string text = hit["text"];
    for (const auto& h : hit["highlights"]) {
      const std::string word = slice(text, h["start"], h["end"]);
      EXPECT_TRUE(word == "机器" || word == "学习" || word == "天気" || word == "Quick" ||
                  word == "quick")
          << hit["id"] << ": " << word;
    }
  }
  // Without the text, highlights still come (offsets into the stored text).
  r = search({{"query", "天気"}, {"mode", "lexical"}, {"include", json::array()}});
  ASSERT_EQ(r["results"].size(), 1u);
  EXPECT_FALSE(r["results"][0].contains("text"));
  EXPECT_EQ(r["results"][0]["highlights"], json::parse(R"([{"start": 16, "end": 18}])"));
  // Dense results carry none.
  r = search({{"query", "天気"}});
  EXPECT_FALSE(r["results"][0].contains("highlights"));
}

TEST_F(LexicalApi, HybridFusesBothSides) {
  json r = search({{"query", "sku-4471-xz"}, {"mode", "hybrid"}, {"k", 6}});
  ASSERT_EQ(r["results"].size(), 6u);  // the dense side returns every document
  // RRF: the only lexical match is first on the lexical side and gets its 1/61 on top.
  EXPECT_EQ(r["results"][0]["id"], "code");
  EXPECT_TRUE(r["results"][0].contains("lexical_score"));
  EXPECT_TRUE(r["results"][0].contains("dense_score"));
  EXPECT_FALSE(r["results"][0]["highlights"].empty());
  double prev = 1e9;
  for (const auto& hit : r["results"]) {
    EXPECT_LE(hit["score"].get<double>(), prev);
    prev = hit["score"];
  }
  // Weighted: alpha 1 is the dense order, alpha 0 puts the best lexical match first.
  json dense = search({{"query", "fox dog"}, {"k", 6}});
  r = search({{"query", "fox dog"},
              {"mode", "hybrid"},
              {"k", 6},
              {"fusion", {{"type", "weighted"}, {"alpha", 1.0}}}});
  EXPECT_EQ(ids(r), ids(dense));
  json lexical = search({{"query", "fox dog"}, {"mode", "lexical"}, {"k", 2}});
  ASSERT_EQ(lexical["results"].size(), 2u);
  r = search({{"query", "fox dog"},
              {"mode", "hybrid"},
              {"k", 1},
              {"fusion", {{"type", "weighted"}, {"alpha", 0.0}}}});
  EXPECT_EQ(r["results"][0]["id"], lexical["results"][0]["id"]);
  EXPECT_NEAR(r["results"][0]["score"].get<double>(), 1.0, 1e-6);
  r = search({{"query", "fox"},
              {"mode", "hybrid"},
              {"fusion", {{"type", "rrf"}, {"k", 1}}},
              {"filter", {{"lang", "en"}}}});
  for (const auto& hit : r["results"]) EXPECT_EQ(hit["metadata"]["lang"], "en");
}

TEST_F(LexicalApi, OffsetPagesEveryMode) {
  for (const char* mode : {"dense", "lexical", "hybrid"}) {
    json all = search({{"query", "fox dog quick brown"}, {"mode", mode}, {"k", 4}});
    json page = search({{"query", "fox dog quick brown"}, {"mode", mode}, {"k", 2}, {"offset", 2}});
    std::vector<std::string> a = ids(all), p = ids(page);
    ASSERT_GE(a.size(), 2u) << mode;
    EXPECT_EQ(p, std::vector<std::string>(a.begin() + 2, a.end())) << mode;
  }
}

TEST_F(LexicalApi, Errors) {
  search({{"query", "x"}, {"mode", "sparse"}}, 422);
  search({{"query", "x"}, {"mode", 1}}, 400);
  search({{"query", "x"}, {"mode", "hybrid"}, {"fusion", {{"type", "max"}}}}, 422);
  search({{"query", "x"}, {"mode", "hybrid"}, {"fusion", "rrf"}}, 400);
  search({{"query", "x"}, {"mode", "hybrid"}, {"fusion", {{"type", "weighted"}, {"alpha", 2}}}},
         422);
  search({{"query", "x"}, {"mode", "hybrid"}, {"fusion", {{"type", "rrf"}, {"k", 0}}}}, 422);
  search({{"query", "x"}, {"fusion", {{"type", "rrf"}}}}, 422);  // fusion without hybrid
  search({{"vector", json::array({1, 2})}, {"mode", "lexical"}}, 422);
  search({{"id", "zh"}, {"mode", "hybrid"}}, 422);
  search({{"query", "x"}, {"offset", -1}}, 422);
  search({{"query", "x"}, {"k", 10}, {"offset", 991}}, 422);
  search({{"query", "x"}, {"offset", "2"}}, 400);
  json e = search({{"query", "x"}, {"mode", "lexical"}, {"rerank", {{"top_n", 5}}}}, 404);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("reranker"), std::string::npos);
  // Words that are all punctuation: no results, no error.
  EXPECT_TRUE(search({{"query", "?!"}, {"mode", "lexical"}})["results"].empty());
}

TEST_F(LexicalApi, LexicalOffCollection) {
  HttpResult c = s().post("/collections", json{{"name", "nolex"}, {"lexical", false}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json_body()["options"]["lexical"], false);
  ASSERT_EQ(s().put("/collections/nolex/documents/a", json{{"text", "fox"}}).status, 200);
  HttpResult r = s().post("/collections/nolex/search", json{{"query", "fox"}, {"mode", "lexical"}});
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("lexical"), std::string::npos);
  EXPECT_EQ(s().post("/collections/nolex/search", json{{"query", "fox"}}).status, 200);
  EXPECT_EQ(s().post("/collections", json{{"name", "bad"}, {"lexical", "no"}}).status, 422);
  EXPECT_EQ(s().get("/collections/kb").json_body()["options"]["lexical"], true);
}

TEST_F(LexicalApi, ChunkedCollectionHighlightsTheBestChunk) {
  ASSERT_EQ(s().post("/collections",
                     json{{"name", "chunks"}, {"chunking", {{"max_tokens", 16}, {"overlap", 0}}}})
                .status,
            201);
  std::string text;
  for (int i = 0; i < 12; ++i) text += "river mountain capital library engine harbour. ";
  // Repeated, so that at least one chunk (token windows) holds the word whole.
  text += "zeppelin zeppelin zeppelin zeppelin zeppelin zeppelin. ";
  for (int i = 0; i < 12; ++i) text += "garden signal winter cloud vector search. ";
  HttpResult w = s().put("/collections/chunks/documents/long", json{{"text", text}});
  ASSERT_EQ(w.status, 200) << w.body;
  ASSERT_GT(w.json_body()["chunks"].get<int>(), 3);
  for (const char* mode : {"lexical", "hybrid"}) {
    json r = s().post("/collections/chunks/search", json{{"query", "zeppelin"}, {"mode", mode}})
                 .json_body();
    ASSERT_EQ(r["results"].size(), 1u) << mode << r.dump();
    const json& hit = r["results"][0];
    const std::string chunk = hit["chunk"]["text"];
    EXPECT_NE(chunk.find("zeppelin"), std::string::npos) << mode;
    ASSERT_FALSE(hit["highlights"].empty()) << mode;
    for (const auto& h : hit["highlights"]) {
      EXPECT_EQ(slice(hit["text"], h["start"], h["end"]), "zeppelin");
      EXPECT_GE(h["start"].get<int>(), hit["chunk"]["start"].get<int>());
      EXPECT_LE(h["end"].get<int>(), hit["chunk"]["end"].get<int>());
    }
  }
}

}  // namespace
}  // namespace qsearch::testing
