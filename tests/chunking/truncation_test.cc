// Without chunking, a text longer than the collection's max_tokens is truncated and every
// write response says so: "truncated", "tokens" (kept, EOS included) and "tokens_cut".
#include <gtest/gtest.h>

#include <string>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

std::string words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " word" : "word") + std::to_string(i % 97);
  return s;
}

TEST(Truncation, PutBatchImportAndGetReportTokensKeptAndCut) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "t"}, {"max_tokens", 16}}).status, 201);

  // Token count of the long text without truncation (the embeddings usage counts EOS too).
  const std::string long_text = words(60);
  HttpResult e = server.post("/v1/embeddings", json{{"input", long_text}});
  ASSERT_EQ(e.status, 200) << e.body;
  const int full = e.json_body()["usage"]["prompt_tokens"].get<int>();
  ASSERT_GT(full, 16);

  HttpResult r = server.put("/collections/t/documents/long", json{{"text", long_text}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["truncated"], true);
  EXPECT_EQ(j["tokens"], 16);
  EXPECT_EQ(j["tokens_cut"], full - 16);

  r = server.put("/collections/t/documents/short", json{{"text", "short"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["truncated"], false);
  EXPECT_EQ(r.json_body()["tokens_cut"], 0);

  json got = server.get("/collections/t/documents/long").json_body();
  EXPECT_EQ(got["truncated"], true);
  EXPECT_EQ(got["tokens"], 16);
  EXPECT_EQ(got["tokens_cut"], full - 16);

  r = server.post("/collections/t/documents",
                  json{{"documents", {{{"id", "a"}, {"text", long_text}}, {{"id", "b"}, {"text", "b"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["results"][0]["tokens_cut"], full - 16);
  EXPECT_EQ(r.json_body()["results"][1]["tokens_cut"], 0);

  std::string ndjson = json{{"id", "i1"}, {"text", long_text}}.dump() + "\n" +
                       json{{"id", "i2"}, {"text", long_text}}.dump() + "\n" +
                       json{{"id", "i3"}, {"text", "x"}}.dump() + "\n";
  r = server.post("/collections/t/import", ndjson);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["upserted"], 3);
  EXPECT_EQ(r.json_body()["truncated"], 2);
  EXPECT_EQ(r.json_body()["tokens_cut"], 2 * (full - 16));
}

}  // namespace
}  // namespace qsearch::testing
