// Documents API v2 over HTTP (server subprocess, test model on the CPU engine): filters in
// search/count/scroll/delete/duplicates, scroll pages and cursors, bulk delete, PATCH, and the
// 400s that name the offending part of a filter.
#include <gtest/gtest.h>

#include <set>

#include "server_util.h"

namespace qsearch::testing {
namespace {

class DocumentsApi : public SharedServerTest {
 protected:
  void SetUp() override {
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    HttpResult r = s().post("/collections", json{{"name", name_}, {"dimension", 32}});
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::string path(const std::string& rest = "") const { return "/collections/" + name_ + rest; }
  void add(int n) {
    json docs = json::array();
    for (int i = 0; i < n; ++i)
      docs.push_back({{"id", "d" + std::to_string(100 + i)},
                      {"text", "document number " + std::to_string(i)},
                      {"metadata",
                       {{"year", 2015 + i % 10},
                        {"lang", i % 3 == 0 ? "de" : "en"},
                        {"tags", i % 2 ? json::array({"odd", "any"}) : json::array({"any"})},
                        {"nested", {{"a", i % 4}}}}}});
    HttpResult r = s().post(path("/documents"), json{{"documents", docs}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  int64_t count(const json& filter) {
    HttpResult r = s().post(path("/count"), json{{"filter", filter}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json_body().value("count", int64_t{-1});
  }
  std::string error_of(const HttpResult& r) { return r.json_body()["error"]["message"].dump(); }
  std::string name_;
};

TEST_F(DocumentsApi, FiltersInSearchAndCount) {
  add(40);
  EXPECT_EQ(count(json::object()), 40);
  EXPECT_EQ(count({{"year", {{"$gte", 2023}}}}), 8);  // years 2023, 2024: 4 each
  EXPECT_EQ(count({{"nested.a", 1}}), 10);
  EXPECT_EQ(count({{"lang", {{"$in", {"en", "de"}}}}}), 40);
  EXPECT_EQ(count({{"tags", "odd"}}), 20);  // array contains
  EXPECT_EQ(count({{"$or", {{{"lang", "de"}}, {{"tags", "odd"}}}}}), 27);
  EXPECT_EQ(count({{"year", "2015"}}), 0);  // no cross-type match
  HttpResult r =
      s().post(path("/search"),
               json{{"query", "document"}, {"k", 50}, {"filter", {{"year", {{"$gte", 2023}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json_body()["results"].size(), 8u) << r.body;
  for (const auto& h : r.json_body()["results"]) EXPECT_GE(h["metadata"]["year"].get<int>(), 2023);
  // What used to answer 200 with nothing now says what is wrong, naming the part.
  r = s().post(path("/search"), json{{"query", "x"}, {"filter", {{"lang", {"en", "de"}}}}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(error_of(r).find("filter.lang"), std::string::npos) << r.body;
  r = s().post(path("/search"), json{{"query", "x"}, {"filter", {{"year", {{"$gte", true}}}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error_of(r).find("filter.year.$gte"), std::string::npos) << r.body;
  r = s().post(path("/count"), json{{"filter", {{"$and", {{{"a", {{"$regex", "x"}}}}}}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error_of(r).find("filter.$and[0].a.$regex"), std::string::npos) << r.body;
  EXPECT_EQ(s().post(path("/count"), json{{"filter", 3}}).status, 400);
  EXPECT_EQ(s().post(path("/count"), json{{"filtre", json::object()}}).status, 400);
  EXPECT_EQ(s().post("/collections/nope/count", json::object()).status, 404);
  r = s().post(path("/duplicates"), json{{"filter", {{"x", {{"$gt", nullptr}}}}}});
  EXPECT_EQ(r.status, 400) << r.body;
  r = s().post(path("/duplicates"), json{{"filter", {{"lang", "de"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["documents"], 14);
}

TEST_F(DocumentsApi, ScrollPagesEveryMatchOnce) {
  add(25);
  std::vector<std::string> ids;
  json body = {{"limit", 4}, {"filter", {{"lang", "en"}}}, {"include", {"metadata"}}};
  for (int page = 0; page < 20; ++page) {
    HttpResult r = s().post(path("/documents/scroll"), body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json_body();
    for (const auto& d : j["documents"]) {
      ids.push_back(d["id"]);
      EXPECT_EQ(d["metadata"]["lang"], "en");
      EXPECT_FALSE(d.contains("text"));
      EXPECT_FALSE(d.contains("embedding"));
    }
    if (j["next_cursor"].is_null()) break;
    ASSERT_TRUE(j["next_cursor"].is_string());
    body["cursor"] = j["next_cursor"];
  }
  EXPECT_EQ(ids.size(), 16u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  HttpResult r =
      s().post(path("/documents/scroll"), json{{"limit", 1}, {"include", {"embedding", "text"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json d = r.json_body()["documents"][0];
  EXPECT_EQ(d["embedding"].size(), 32u);
  EXPECT_TRUE(d["text"].is_string());
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"limit", 1001}}).status, 422);
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"limit", 0}}).status, 422);
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"limit", "5"}}).status, 400);
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"cursor", "not-a-cursor"}}).status, 400);
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"include", {"vector"}}}).status, 400);
  EXPECT_EQ(s().post(path("/documents/scroll"), json{{"filter", {{"a", {{"$in", 1}}}}}}).status,
            400);
}

TEST_F(DocumentsApi, DeleteByIdsAndByFilter) {
  add(30);
  HttpResult r = s().post(path("/documents/delete"), json{{"ids", {"d100", "d101", "missing"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body(), json({{"deleted", 2}}));
  EXPECT_EQ(s().get(path("/documents/d100")).status, 404);
  r = s().post(path("/documents/delete"), json{{"filter", {{"year", {{"$lt", 2017}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["deleted"], 4);  // years 2015, 2016 of i = 10, 11, 20, 21
  EXPECT_EQ(count({{"year", {{"$lt", 2017}}}}), 0);
  EXPECT_EQ(count(json::object()), 24);
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 24);
  EXPECT_EQ(s().post(path("/documents/delete"), json{{"filter", json::object()}}).status, 400);
  EXPECT_EQ(s().post(path("/documents/delete"), json::object()).status, 400);
  EXPECT_EQ(
      s().post(path("/documents/delete"), json{{"ids", {"a"}}, {"filter", {{"a", 1}}}}).status,
      400);
  EXPECT_EQ(s().post(path("/documents/delete"), json{{"ids", {1}}}).status, 400);
  EXPECT_EQ(s().post(path("/documents/delete"), json{{"ids", "d1"}}).status, 400);
  EXPECT_EQ(s().post("/collections/nope/documents/delete", json{{"ids", {"a"}}}).status, 404);
}

TEST_F(DocumentsApi, PatchMergesMetadataWithoutReembedding) {
  add(3);
  HttpResult before = s().get(path("/documents/d101?include=embedding"));
  ASSERT_EQ(before.status, 200) << before.body;
  json patch = {
      {"metadata", {{"lang", nullptr}, {"nested", {{"b", 2}}}, {"new", json::array({1, 2})}}}};
  HttpResult r = s().request("PATCH", path("/documents/d101"), patch.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json want = before.json_body()["metadata"];
  want.erase("lang");
  want["nested"]["b"] = 2;
  want["new"] = {1, 2};
  EXPECT_EQ(r.json_body()["metadata"], want);
  HttpResult after = s().get(path("/documents/d101?include=embedding"));
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.json_body()["metadata"], want);
  EXPECT_EQ(after.json_body()["embedding"].dump(), before.json_body()["embedding"].dump());
  EXPECT_EQ(after.json_body()["text"], before.json_body()["text"]);
  EXPECT_EQ(count({{"new", 2}}), 1);
  EXPECT_EQ(s().request("PATCH", path("/documents/absent"), R"({"metadata":{}})").status, 404);
  EXPECT_EQ(s().request("PATCH", path("/documents/d101"), R"({"text":"x","metadata":{}})").status,
            400);
  EXPECT_EQ(s().request("PATCH", path("/documents/d101"), R"({"metadata":[1]})").status, 400);
  EXPECT_EQ(s().request("PATCH", path("/documents/d101"), R"({})").status, 400);
}

}  // namespace
}  // namespace qsearch::testing
